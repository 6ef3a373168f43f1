//! `domtool watch` on a terminal: a live status screen. The fleet's
//! summary on top (machines, compliant, updating, held, in error, whether
//! updates are stopped and why, each required image's progress), the
//! latest events below, redrawn as they change; suitable for a status
//! screen. `--once` prints one screen and exits.
//!
//! The fleet is judged as `domtool status` judges it: the dominator's own
//! policy on its own view, kept up to date from the streams (the last
//! message per subject, then every new one).

use std::collections::{BTreeMap, VecDeque};
use std::io::Write;
use std::pin::pin;
use std::process::ExitCode;
use std::time::Duration;

use dom_bus::stamp::{now_rfc3339, now_unix};
use dom_bus::{outln, Bus, FleetKind, FleetUpdate, View};
use dom_model::policy::Updates;
use dom_model::{Decision, Event};
use futures::StreamExt;

/// Events kept for the screen.
const EVENTS_KEPT: usize = 200;
/// How often the screen is redrawn at most.
const REDRAW: Duration = Duration::from_millis(500);

/// Runs the screen until interrupted; with `once`, prints one screen
/// (without terminal control sequences) once the streams are read.
pub async fn screen(bus: &Bus, once: bool) -> anyhow::Result<ExitCode> {
    let feed = bus.watch_fleet(&FleetKind::ALL).await?;
    let mut feed = pin!(feed);
    let (events, mut events_pending) = bus.recent_events(EVENTS_KEPT).await?;
    let mut events = pin!(events);
    let mut view = View::default();
    let mut latest: VecDeque<Event> = VecDeque::with_capacity(EVENTS_KEPT);
    let mut caught_up = false;
    let terminal = (!once).then(Terminal::enter);
    let mut redraw = tokio::time::interval(REDRAW);
    let mut dirty = true;
    let interrupted = dom_bus::shutdown::signalled();
    let mut interrupted = pin!(interrupted);
    loop {
        tokio::select! {
            update = feed.next() => match update {
                Some(Ok(FleetUpdate::Message(message))) => {
                    view.apply(&message);
                    dirty = true;
                }
                Some(Ok(FleetUpdate::CaughtUp)) => {
                    bus.recover_refused(&mut view).await;
                    caught_up = true;
                }
                Some(Err(e)) => tracing::warn!(error = %e, "fleet feed"),
                None => anyhow::bail!("the fleet feed from {} ended", bus.server()),
            },
            event = events.next() => match event {
                Some(Ok((event, pending))) => {
                    if latest.len() == EVENTS_KEPT {
                        latest.pop_back();
                    }
                    latest.push_front(event);
                    events_pending = pending;
                    dirty = true;
                }
                Some(Err(e)) => tracing::warn!(error = %e, "events"),
                None => anyhow::bail!("the events from {} ended", bus.server()),
            },
            _ = redraw.tick() => {
                if !(caught_up && dirty) {
                    continue;
                }
                let (width, height) = terminal_size();
                let decision = view.decide(now_unix());
                let lines = render(&Screen {
                    server: bus.server(),
                    now: &now_rfc3339(),
                    decision: &decision,
                    refused: view.rejected.len(),
                    events: latest.make_contiguous(),
                    width,
                    height,
                });
                if once {
                    if events_pending > 0 {
                        continue;
                    }
                    for line in lines {
                        outln!("{line}");
                    }
                    return Ok(ExitCode::SUCCESS);
                }
                if let Some(terminal) = &terminal {
                    terminal.draw(&lines)?;
                }
                dirty = false;
            }
            _ = &mut interrupted => break,
        }
    }
    drop(terminal);
    Ok(ExitCode::SUCCESS)
}

/// What one screen shows.
pub struct Screen<'a> {
    pub server: &'a str,
    pub now: &'a str,
    pub decision: &'a Decision,
    /// Hosts whose latest MDB record was refused.
    pub refused: usize,
    /// Latest first.
    pub events: &'a [Event],
    pub width: usize,
    pub height: usize,
}

/// The screen's lines, each at most `width` characters, at most `height`
/// of them.
pub fn render(screen: &Screen<'_>) -> Vec<String> {
    let s = &screen.decision.summary;
    let mut lines = vec![
        format!("fleet on {}  {}", screen.server, screen.now),
        format!(
            "machines {}  compliant {}  updating {} (at most {})  waiting {}  held {}  \
             in error {}  safety shutoffs {}",
            s.machines,
            s.compliant,
            s.updating,
            s.max_updating,
            s.waiting_for_slot,
            s.held.saturating_sub(s.waiting_for_slot),
            s.errors,
            s.safety_shutoffs
        ),
        match &s.updates {
            Updates::Enabled => "updates: enabled".to_string(),
            Updates::Disabled { reason, by } => format!("updates: STOPPED by {by}: {reason}"),
        },
    ];
    if s.max_high_impact > 0 && (s.high_impact > 0 || s.waiting_for_high_impact > 0) {
        lines.push(format!(
            "HighImpact: {} running (at most {}), {} waiting",
            s.high_impact, s.max_high_impact, s.waiting_for_high_impact
        ));
    }
    if screen.refused > 0 {
        lines.push(format!("MDB records refused: {}", screen.refused));
    }
    let mut images: BTreeMap<String, (usize, usize)> = BTreeMap::new();
    for machine in &screen.decision.machines {
        let name = machine
            .required
            .as_ref()
            .map_or_else(|| "(none)".to_string(), |i| i.to_string());
        let counts = images.entry(name).or_default();
        counts.0 += 1;
        counts.1 += usize::from(machine.compliant);
    }
    let mut images: Vec<_> = images.into_iter().collect();
    images.sort_by(|a, b| b.1 .0.cmp(&a.1 .0).then(a.0.cmp(&b.0)));
    for (name, (total, compliant)) in images.iter().take(5) {
        lines.push(format!("  {name}: {compliant}/{total} compliant"));
    }
    if images.len() > 5 {
        lines.push(format!("  … and {} more images", images.len() - 5));
    }
    lines.push(String::new());
    lines.push("latest events".to_string());
    let room = screen.height.saturating_sub(lines.len());
    if screen.events.is_empty() && room > 0 {
        lines.push("  (none yet)".to_string());
    }
    for event in screen.events.iter().take(room) {
        lines.push(event_line(event));
    }
    lines.truncate(screen.height.max(1));
    lines
        .into_iter()
        .map(|line| line.chars().take(screen.width.max(1)).collect())
        .collect()
}

/// One event, for the screen: its time of day, host, kind and message.
fn event_line(event: &Event) -> String {
    let time = event.time.get(11..19).unwrap_or(&event.time);
    let image = event
        .image
        .as_deref()
        .map(|i| format!(" [{i}]"))
        .unwrap_or_default();
    let message = event.message.replace(['\n', '\r'], " ");
    format!(
        "{time} {} {}{image}: {message}",
        event.host.replace(char::is_control, "?"),
        event.kind.replace(char::is_control, "?")
    )
}

/// The terminal's columns and rows; when standard output is not a
/// terminal, lines are not cut and 40 are shown.
fn terminal_size() -> (usize, usize) {
    let mut size = libc::winsize {
        ws_row: 0,
        ws_col: 0,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCGWINSZ writes a winsize into the struct given.
    let ok = unsafe { libc::ioctl(libc::STDOUT_FILENO, libc::TIOCGWINSZ, &mut size) } == 0;
    if ok && size.ws_col > 0 && size.ws_row > 0 {
        (size.ws_col.into(), size.ws_row.into())
    } else {
        (usize::MAX, 40)
    }
}

/// The terminal in screen mode: the alternate screen, no cursor; put back
/// as it was when dropped.
struct Terminal;

impl Terminal {
    fn enter() -> Self {
        print!("\x1b[?1049h\x1b[?25l");
        let _ = std::io::stdout().flush();
        Self
    }

    fn draw(&self, lines: &[String]) -> std::io::Result<()> {
        let mut out = String::from("\x1b[H");
        for (i, line) in lines.iter().enumerate() {
            if i > 0 {
                out.push_str("\r\n");
            }
            out.push_str(line);
            out.push_str("\x1b[K");
        }
        out.push_str("\x1b[J");
        let mut stdout = std::io::stdout().lock();
        stdout.write_all(out.as_bytes())?;
        stdout.flush()
    }
}

impl Drop for Terminal {
    fn drop(&mut self) {
        print!("\x1b[?25h\x1b[?1049l");
        let _ = std::io::stdout().flush();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dom_model::{Fleet, ImageMessage, ImageName, MdbRecord};

    fn event(host: &str, message: &str) -> Event {
        Event {
            v: 1,
            host: host.into(),
            kind: Event::UPDATE.into(),
            time: "2026-11-26T14:29:58Z".into(),
            image: Some("sparse.0".into()),
            message: message.into(),
            details: serde_json::Value::Null,
        }
    }

    fn fleet() -> Fleet {
        let mut fleet = Fleet::default();
        let image = dom_tests::sparse_record("sparse.0");
        fleet.add_image(ImageMessage::Record(image));
        for host in ["web1", "web2", "web3"] {
            let record = MdbRecord::new(host).requiring(ImageName::parse("sparse.0").unwrap());
            fleet.set_mdb(host, Some(record));
        }
        fleet.controls.updates = Updates::Disabled {
            reason: "bad image".into(),
            by: "alice@ops".into(),
        };
        fleet
    }

    #[test]
    fn the_summary_comes_first_then_the_latest_events_that_fit() {
        let decision = dom_model::policy::decide(&fleet(), 0);
        let events: Vec<Event> = (0..50).map(|i| event("web1", &format!("n{i}"))).collect();
        let lines = render(&Screen {
            server: "nats://127.0.0.1:4222",
            now: "2026-11-26T14:30:00Z",
            decision: &decision,
            refused: 1,
            events: &events,
            width: 40,
            height: 12,
        });
        assert_eq!(lines.len(), 12, "{lines:#?}");
        assert!(lines.iter().all(|l| l.chars().count() <= 40), "{lines:#?}");
        assert!(
            lines[1].starts_with("machines 3  compliant 0"),
            "{lines:#?}"
        );
        assert_eq!(lines[2], "updates: STOPPED by alice@ops: bad image");
        assert!(lines.contains(&"MDB records refused: 1".to_string()));
        assert!(lines.contains(&"  sparse.0: 0/3 compliant".to_string()));
        let first_event = lines.iter().position(|l| l == "latest events").unwrap() + 1;
        assert_eq!(lines[first_event], "14:29:58 web1 update [sparse.0]: n0");
    }

    #[test]
    fn a_message_cannot_break_the_screen() {
        let line = event_line(&event("web1", "two\nlines\r"));
        assert_eq!(line, "14:29:58 web1 update [sparse.0]: two lines ");
    }
}
