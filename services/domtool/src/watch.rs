//! `domtool watch`: what happens in the fleet, one line each, as it
//! happens: events, state reports, desired states, MDB changes and
//! controls.

use std::io::Write;
use std::process::ExitCode;

use dom_bus::{Bus, FleetKind};
use dom_model::{DesiredState, Event, MdbRecord, StateReport};
use dominator::now_rfc3339;
use futures::StreamExt;

pub async fn watch(bus: &Bus, count: Option<usize>) -> anyhow::Result<ExitCode> {
    // One subscription for everything, so lines come in the order the
    // server saw the messages.
    let prefix = bus.subjects.prefix();
    let mut messages = bus.client.subscribe(format!("{prefix}.>")).await?;
    bus.client.flush().await?;
    eprintln!(
        "watching {prefix}.> on {} (interrupt to stop)",
        bus.server()
    );
    let mut printed = 0;
    let mut stdout = std::io::stdout();
    while count.is_none_or(|n| printed < n) {
        let Some(message) = messages.next().await else {
            break;
        };
        let subject = message.subject.as_str();
        let kind = FleetKind::ALL
            .into_iter()
            .find(|&k| bus.fleet_name(k, subject).is_some());
        let line = match kind {
            None if subject.starts_with(&format!("{prefix}.event.")) => {
                match Event::decode(&message.payload) {
                    Ok(event) => event_line(&event),
                    Err(e) => format!("{} {}: {e}", now_rfc3339(), message.subject),
                }
            }
            None => continue,
            Some(kind) => {
                let name = bus.fleet_name(kind, &message.subject).unwrap_or("");
                format!(
                    "{} {}",
                    now_rfc3339(),
                    change_line(kind, name, &message.payload)
                )
            }
        };
        if writeln!(stdout, "{line}")
            .and_then(|_| stdout.flush())
            .is_err()
        {
            break;
        }
        printed += 1;
    }
    Ok(ExitCode::SUCCESS)
}

/// One event, one line.
pub fn event_line(event: &Event) -> String {
    let image = event
        .image
        .as_deref()
        .map(|i| format!(" [{i}]"))
        .unwrap_or_default();
    format!(
        "{} event {} {}{image}: {}",
        event.time, event.host, event.kind, event.message
    )
}

fn change_line(kind: FleetKind, name: &str, payload: &[u8]) -> String {
    match kind {
        FleetKind::State => match StateReport::decode(payload) {
            Ok(r) => format!(
                "state {name} generation {} image {} {}{}{}{}",
                r.generation,
                r.image.as_deref().unwrap_or("-"),
                if r.compliant {
                    "compliant".to_string()
                } else {
                    format!("{} deviations", r.deviations)
                },
                if r.fetching { " fetching" } else { "" },
                if r.updating { " updating" } else { "" },
                r.error.map(|e| format!(" error: {e}")).unwrap_or_default(),
            ),
            Err(e) => format!("state {name}: {e}"),
        },
        FleetKind::Desired => match DesiredState::decode(payload) {
            Ok(d) => format!(
                "desired {name} image {} {}{}",
                d.image,
                if d.updates_allowed { "allowed" } else { "held" },
                d.planned
                    .map(|p| format!(" pre-fetch {}", p.image))
                    .unwrap_or_default()
            ),
            Err(e) => format!("desired {name}: {e}"),
        },
        FleetKind::Mdb => match MdbRecord::decode(name, payload) {
            Ok(Some(record)) => format!("mdb {name} {}", String::from_utf8_lossy(&record.encode())),
            Ok(None) => format!("mdb {name} removed"),
            Err(e) => format!("mdb {name} refused: {e}"),
        },
        FleetKind::Ctl => format!("ctl {name} {}", String::from_utf8_lossy(payload).trim()),
        FleetKind::Image => format!("image {name}"),
    }
}
