//! `domtool watch`: what happens in the fleet, one line each, as it
//! happens: events, state reports, desired states, MDB changes and
//! controls.

use std::process::ExitCode;

use dom_bus::stamp::now_rfc3339;
use dom_bus::{outln, Bus, FleetKind, Heard};
use dom_model::text::bounded;
use dom_model::{DesiredState, Event, MdbRecord, StateReport};
use futures::StreamExt;

pub async fn watch(bus: &Bus, count: Option<usize>) -> anyhow::Result<ExitCode> {
    // One subscription for everything, so lines come in the order the
    // server saw the messages.
    let messages = bus.hear_all().await?;
    let mut messages = std::pin::pin!(messages);
    eprintln!(
        "watching {}.> on {} (interrupt to stop)",
        bus.subjects.prefix(),
        bus.server()
    );
    let mut printed = 0;
    while count.is_none_or(|n| printed < n) {
        let Some(heard) = messages.next().await else {
            break;
        };
        let line = match heard {
            Heard::Event {
                event: Ok(event), ..
            } => event_line(&event),
            Heard::Event {
                subject,
                event: Err(e),
            } => format!("{} {subject}: {}", now_rfc3339(), bounded(&e)),
            Heard::Fleet {
                kind,
                name,
                payload,
            } => format!("{} {}", now_rfc3339(), change_line(kind, &name, &payload)),
        };
        outln!("{line}");
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
            Err(e) => format!("mdb {name} refused: {}", bounded(&e.to_string())),
        },
        FleetKind::Ctl => format!(
            "ctl {name} {}",
            bounded(String::from_utf8_lossy(payload).trim())
        ),
        FleetKind::Image => format!("image {name}"),
    }
}
