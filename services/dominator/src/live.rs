//! The live feed behind the status page: what changed after each round,
//! as server-sent events.
//!
//! A browser that connects gets a `snapshot` event (the summary and
//! every machine's row), then a `changes` event after rounds: the summary
//! again, the rows of the machines whose status or state report changed,
//! and the hosts that left the MDB. So ten thousand machines cost one
//! large event at connect and then only what changes.
//!
//! The work is done by one task, off the decision loop: after the board
//! ticks (at most every [`MIN_INTERVAL`]), it takes the new decision (a
//! shared pointer) and the reports that changed, compares the decision
//! with the previous one machine by machine (both are in host order), and
//! broadcasts the rows that differ, serialised once for every browser.
//! With no browser connected it only keeps the latest decision.
//!
//! The same task samples the fleet's summary every few seconds into the
//! last hour's [`History`] for the page's chart: the snapshot carries
//! the whole history, and each new sample is a `sample` event.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use dom_model::policy::{RolloutPhase, RolloutSummary};
use dom_model::report::UpdateResult;
use dom_model::{Decision, MachineStatus, StateReport};
use serde::Serialize;
use tokio::sync::broadcast;

use crate::history::{now_ms, rfc3339_ms, History, Sample};
use crate::status::Board;

/// Least time between two `changes` events.
pub const MIN_INTERVAL: Duration = Duration::from_millis(250);
/// Events kept for a browser that reads slowly; past that it gets a new
/// snapshot.
const BACKLOG: usize = 64;

/// One server-sent event: its name and its JSON data.
#[derive(Clone, Debug)]
pub struct Frame {
    pub event: &'static str,
    pub data: Arc<str>,
}

/// One machine as the status page's table shows it.
#[derive(Debug, Serialize)]
pub struct Row<'a> {
    pub host: &'a str,
    pub status: &'static str,
    pub required: Option<&'a str>,
    pub planned: Option<&'a str>,
    pub current: Option<&'a str>,
    pub compliant: bool,
    pub updating: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub held: Option<String>,
    pub high_impact: bool,
    /// From the state report, when there is one.
    pub reported: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub deviations: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_update: Option<&'a UpdateResult>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub agent_error: Option<&'a str>,
}

impl<'a> Row<'a> {
    pub fn new(machine: &'a MachineStatus, report: Option<&'a StateReport>) -> Self {
        Row {
            host: &machine.host,
            status: status_word(machine, report),
            required: machine.required.as_ref().map(|i| i.as_str()),
            planned: machine.planned.as_ref().map(|i| i.as_str()),
            current: machine.current.as_deref(),
            compliant: machine.compliant,
            updating: machine.updating,
            error: machine.error.as_deref(),
            held: machine.held.as_ref().map(|h| h.to_string()),
            high_impact: machine.high_impact,
            reported: report.is_some(),
            deviations: report.map(|r| r.deviations),
            last_update: report.and_then(|r| r.last_update.as_ref()),
            agent_error: report.and_then(|r| r.error.as_deref()),
        }
    }
}

/// One word for a machine's standing, the first that applies: `error`,
/// `updating`, `compliant`, `no image`, `held`, `no report`,
/// `non-compliant`.
pub fn status_word(machine: &MachineStatus, report: Option<&StateReport>) -> &'static str {
    if machine.error.is_some() {
        "error"
    } else if machine.updating {
        "updating"
    } else if machine.compliant {
        "compliant"
    } else if machine.required.is_none() {
        "no image"
    } else if machine.held.is_some() {
        "held"
    } else if report.is_none() {
        "no report"
    } else {
        "non-compliant"
    }
}

#[derive(Serialize)]
struct Summary<'a> {
    /// The dominator's clock when sent, RFC 3339 to the millisecond: the
    /// chart's right edge.
    now: String,
    caught_up: bool,
    /// This dominator's name, whether it is the active one, and who is.
    id: &'a str,
    active: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    active_dominator: Option<&'a str>,
    rounds: u64,
    desired_published: u64,
    last_round: Option<&'a str>,
    rejected_mdb: usize,
    unmanaged: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    fleet: Option<&'a dom_model::policy::FleetSummary>,
    /// The rollouts under way, halted or aborted.
    rollouts: Vec<&'a RolloutSummary>,
}

#[derive(Serialize)]
struct Snapshot<'a> {
    summary: Summary<'a>,
    machines: Vec<Row<'a>>,
    history: &'a History,
}

#[derive(Serialize)]
struct Changes<'a> {
    summary: Summary<'a>,
    machines: Vec<Row<'a>>,
    removed: Vec<&'a str>,
}

/// What the feed last told browsers about.
struct Seen {
    decision: Option<Arc<Decision>>,
    reports: HashMap<String, Arc<StateReport>>,
    seeded: bool,
    /// Kept here, under the same lock as what browsers were told, so a
    /// browser that connects gets every sample once: in its snapshot or
    /// as an event after it.
    history: History,
}

/// The live feed: one per dominator, shared by every browser.
pub struct Feed {
    board: Arc<Board>,
    sample_every: Duration,
    seen: Mutex<Seen>,
    frames: broadcast::Sender<Frame>,
}

impl Feed {
    /// The feed of `board`, sampling its summary every `sample_every`
    /// once [`Feed::run`] runs.
    pub fn new(board: Arc<Board>, sample_every: Duration) -> Arc<Self> {
        let seen = Seen {
            decision: None,
            reports: HashMap::new(),
            seeded: false,
            history: History::new(sample_every, crate::history::WINDOW),
        };
        Arc::new(Self {
            board,
            sample_every,
            seen: Mutex::new(seen),
            frames: broadcast::channel(BACKLOG).0,
        })
    }

    /// Follows the board, and samples it, until it is dropped.
    pub async fn run(self: Arc<Self>) {
        let mut ticks = self.board.subscribe();
        let mut samples = tokio::time::interval(self.sample_every);
        samples.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                changed = ticks.changed() => {
                    if changed.is_err() {
                        return;
                    }
                    self.tick();
                    // The first decision is the first sample: the chart
                    // starts as soon as there is something to draw.
                    let first = self.seen.lock().expect("feed lock").history.is_empty();
                    if first && self.sample() {
                        samples.reset();
                    }
                    tokio::time::sleep(MIN_INTERVAL).await;
                }
                _ = samples.tick() => {
                    self.sample();
                }
            }
        }
    }

    /// Adds the board's summary to the history and tells browsers; takes
    /// nothing before the first decision. Says whether it took one.
    fn sample(&self) -> bool {
        let Some(decision) = self.board.decision() else {
            return false;
        };
        let sample = Sample::of(&decision.summary, now_ms());
        let mut seen = self.seen.lock().expect("feed lock");
        seen.history.record(sample);
        let frame = Frame {
            event: "sample",
            data: serde_json::to_string(&sample)
                .expect("samples serialise")
                .into(),
        };
        // Nobody listening is not an error.
        let _ = self.frames.send(frame);
        true
    }

    /// The history as JSON, for `GET /history`.
    pub fn history_json(&self) -> Vec<u8> {
        let seen = self.seen.lock().expect("feed lock");
        serde_json::to_vec(&seen.history).expect("samples serialise")
    }

    /// A snapshot for a browser that connects, and the receiver of every
    /// change after it.
    pub fn subscribe(&self) -> (Frame, broadcast::Receiver<Frame>) {
        let mut seen = self.seen.lock().expect("feed lock");
        // Browsers already connected hear of what changed first; the new
        // one starts from the same point.
        self.advance(&mut seen);
        let receiver = self.frames.subscribe();
        let status = self.board.status();
        let machines = seen
            .decision
            .as_deref()
            .map(|d| {
                d.machines
                    .iter()
                    .map(|m| Row::new(m, seen.reports.get(&m.host).map(|r| &**r)))
                    .collect()
            })
            .unwrap_or_default();
        let snapshot = Snapshot {
            summary: summary(&status, seen.decision.as_deref()),
            machines,
            history: &seen.history,
        };
        let frame = Frame {
            event: "snapshot",
            data: serde_json::to_string(&snapshot)
                .expect("rows serialise")
                .into(),
        };
        (frame, receiver)
    }

    /// Brings what was seen up to the board's reports, without telling
    /// anyone.
    fn catch_up(&self, seen: &mut Seen) {
        if !seen.seeded {
            seen.reports = self.board.all_reports();
            seen.seeded = true;
        } else {
            for (host, report) in self.board.take_report_changes() {
                match report {
                    Some(report) => seen.reports.insert(host, report),
                    None => seen.reports.remove(&host),
                };
            }
        }
        seen.decision = self.board.decision();
    }

    /// After a change of the board: broadcasts what changed, if anyone
    /// listens.
    fn tick(&self) {
        let mut seen = self.seen.lock().expect("feed lock");
        self.advance(&mut seen);
    }

    fn advance(&self, seen: &mut Seen) {
        if self.frames.receiver_count() == 0 || !seen.seeded {
            // Keep the reports current, so the map does not have to be
            // copied again when a browser connects.
            self.catch_up(seen);
            return;
        }
        let old = seen.decision.clone();
        let reported = self.board.take_report_changes();
        for (host, report) in &reported {
            match report {
                Some(report) => seen.reports.insert(host.clone(), report.clone()),
                None => seen.reports.remove(host),
            };
        }
        let new = self.board.decision();
        seen.decision = new.clone();
        let status = self.board.status();
        let mut changed: Vec<&MachineStatus> = Vec::new();
        let mut removed: Vec<&str> = Vec::new();
        if let Some(new) = new.as_deref() {
            let old = old.as_deref().map_or(&[][..], |d| &d.machines[..]);
            diff(old, &new.machines, &mut changed, &mut removed);
            let mut more: Vec<&MachineStatus> = reported
                .iter()
                .filter_map(|(host, _)| new.machine(host))
                .collect();
            changed.append(&mut more);
            changed.sort_by(|a, b| a.host.cmp(&b.host));
            changed.dedup_by(|a, b| a.host == b.host);
        }
        let changes = Changes {
            summary: summary(&status, new.as_deref()),
            machines: changed
                .into_iter()
                .map(|m| Row::new(m, seen.reports.get(&m.host).map(|r| &**r)))
                .collect(),
            removed,
        };
        let frame = Frame {
            event: "changes",
            data: serde_json::to_string(&changes)
                .expect("rows serialise")
                .into(),
        };
        // Nobody listening any more is not an error.
        let _ = self.frames.send(frame);
    }
}

fn summary<'a>(status: &'a crate::Status, decision: Option<&'a Decision>) -> Summary<'a> {
    Summary {
        now: rfc3339_ms(now_ms()),
        caught_up: status.caught_up,
        id: &status.id,
        active: status.active,
        active_dominator: status.active_dominator.as_deref(),
        rounds: status.rounds,
        desired_published: status.desired_published,
        last_round: status.last_round.as_deref(),
        rejected_mdb: status.rejected_mdb.len(),
        unmanaged: decision.map_or(0, |d| d.unmanaged.len()),
        fleet: decision.map(|d| &d.summary),
        rollouts: decision.map_or_else(Vec::new, |d| {
            d.rollouts
                .iter()
                .filter(|r| r.phase != RolloutPhase::Done)
                .collect()
        }),
    }
}

/// The machines of `new` that are not in `old` or differ, and the hosts
/// of `old` not in `new`; both lists in host order.
fn diff<'a>(
    old: &'a [MachineStatus],
    new: &'a [MachineStatus],
    changed: &mut Vec<&'a MachineStatus>,
    removed: &mut Vec<&'a str>,
) {
    let (mut i, mut j) = (0, 0);
    while i < old.len() || j < new.len() {
        match (old.get(i), new.get(j)) {
            (Some(o), Some(n)) if o.host == n.host => {
                if o != n {
                    changed.push(n);
                }
                i += 1;
                j += 1;
            }
            (Some(o), Some(n)) if o.host < n.host => {
                removed.push(&o.host);
                i += 1;
            }
            (_, Some(n)) => {
                changed.push(n);
                j += 1;
            }
            (Some(o), None) => {
                removed.push(&o.host);
                i += 1;
            }
            (None, None) => break,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn machine(host: &str, compliant: bool) -> MachineStatus {
        MachineStatus {
            host: host.into(),
            required: None,
            planned: None,
            current: None,
            compliant,
            updating: false,
            error: None,
            planned_error: None,
            held: None,
            safety_cleared: false,
            high_impact: false,
            high_impact_requested: false,
            desired: None,
            publish: false,
        }
    }

    #[test]
    fn the_diff_finds_changed_added_and_removed_machines() {
        let old = [machine("a", false), machine("b", false), machine("c", true)];
        let new = [machine("a", false), machine("b", true), machine("d", true)];
        let (mut changed, mut removed) = (Vec::new(), Vec::new());
        diff(&old, &new, &mut changed, &mut removed);
        let hosts: Vec<&str> = changed.iter().map(|m| m.host.as_str()).collect();
        assert_eq!(hosts, ["b", "d"]);
        assert_eq!(removed, ["c"]);
        let (mut changed, mut removed) = (Vec::new(), Vec::new());
        diff(&[], &old, &mut changed, &mut removed);
        assert_eq!(changed.len(), 3);
        diff(&old, &[], &mut changed, &mut removed);
        assert_eq!(removed, ["a", "b", "c"]);
    }

    #[test]
    fn status_words() {
        let mut m = machine("a", false);
        assert_eq!(status_word(&m, None), "no image");
        m.required = Some(dom_model::ImageName::parse("i.0").unwrap());
        assert_eq!(status_word(&m, None), "no report");
        let report = StateReport::new("a");
        assert_eq!(status_word(&m, Some(&report)), "non-compliant");
        m.compliant = true;
        assert_eq!(status_word(&m, Some(&report)), "compliant");
        m.error = Some("bad".into());
        assert_eq!(status_word(&m, Some(&report)), "error");
    }
}
