//! The fleet as the dominator sees it, built from bus messages.
//!
//! [`View::apply`] folds one message of the fleet feed into a
//! [`Fleet`](dom_model::Fleet): MDB records, image records, state
//! reports, controls and desired states. Nothing on the bus is trusted: a
//! payload that does not decode is refused ([`Applied::Rejected`]) and the
//! view keeps what it had. `domtool status` builds the same view from a
//! snapshot, so both judge the fleet alike.

use std::collections::{BTreeMap, HashMap};

use dom_model::controls::{Control, Kind, SafetyClearance, SubsConfig};
use dom_model::desired::is_valid_host;
use dom_model::policy::Updates;
use dom_model::text::bounded;
use dom_model::{
    Decision, DesiredState, Fleet, FleetControls, ImageMessage, MdbRecord, StateReport,
};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use crate::{FleetKind, FleetMessage};

/// What applying a message did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Applied {
    /// The view changed: decide again.
    Changed,
    /// Nothing that matters changed (an echo of our own desired state, an
    /// unknown control).
    Unchanged,
    /// An MDB record was refused; the machine keeps its previous record.
    /// `host` is the subject's host when it is a valid one.
    Rejected {
        host: Option<String>,
        reason: String,
    },
    /// Another message did not decode and was skipped. Reasons repeat at
    /// most a bounded prefix of what the message said.
    Skipped(String),
}

/// The dominator's view of the fleet.
#[derive(Clone, Debug, Default)]
pub struct View {
    pub fleet: Fleet,
    /// Hosts whose latest MDB payload was refused, with why.
    pub rejected: BTreeMap<String, String>,
    /// Safety clearances still standing, by host.
    clearances: BTreeMap<String, SafetyClearance>,
    /// The stream sequence of the last desired state this process
    /// published per host, so the feed's echo of it is not taken for news.
    published: HashMap<String, u64>,
    /// The stream sequence of the last message on each host's
    /// desired-state subject, from the feed or this process's own
    /// publishes: what a publish expects to follow.
    desired_last: HashMap<String, u64>,
}

impl View {
    pub fn new(controls: FleetControls) -> Self {
        Self {
            fleet: Fleet {
                controls,
                ..Fleet::default()
            },
            ..Self::default()
        }
    }

    /// Folds one message of the fleet feed into the view.
    pub fn apply(&mut self, message: &FleetMessage) -> Applied {
        let name = message.name.as_str();
        let payload = &message.payload[..];
        let applied = match message.kind {
            FleetKind::Mdb => match MdbRecord::decode(name, payload) {
                Ok(record) => {
                    self.rejected.remove(name);
                    self.fleet.set_mdb(name, record);
                    Applied::Changed
                }
                Err(e) => {
                    let reason = bounded(&e.to_string());
                    self.rejected.insert(name.to_string(), reason.clone());
                    Applied::Rejected {
                        host: is_valid_host(name).then(|| name.to_string()),
                        reason,
                    }
                }
            },
            FleetKind::Image => match ImageMessage::decode(payload) {
                Ok(image) if image.name().as_str() == name => {
                    self.fleet.add_image(image);
                    Applied::Changed
                }
                Ok(image) => Applied::Skipped(format!(
                    "image record on the subject of {name} names image {}",
                    image.name()
                )),
                Err(e) => Applied::Skipped(format!("image {name}: {e}")),
            },
            FleetKind::State => match StateReport::decode(payload) {
                Ok(report) if report.host == name => {
                    self.fleet.reports.insert(name.to_string(), report);
                    Applied::Changed
                }
                Ok(report) => Applied::Skipped(format!(
                    "state report on the subject of {name} names host {}",
                    report.host
                )),
                Err(e) => Applied::Skipped(format!("state report of {name}: {e}")),
            },
            FleetKind::Desired => self.apply_desired(name, message.sequence, payload),
            FleetKind::Ctl => match Control::decode(name, payload) {
                Ok(control) => self.control(control),
                Err(e) => Applied::Skipped(e.to_string()),
            },
        };
        match applied {
            Applied::Skipped(why) => Applied::Skipped(bounded(&why)),
            applied => applied,
        }
    }

    fn apply_desired(&mut self, host: &str, sequence: u64, payload: &[u8]) -> Applied {
        let last = self.desired_last.entry(host.to_string()).or_default();
        *last = (*last).max(sequence);
        if self.published.get(host).is_some_and(|&own| sequence <= own) {
            return Applied::Unchanged;
        }
        match DesiredState::decode(payload) {
            Ok(state) if state.host == host => {
                self.fleet.desired.insert(host.to_string(), state);
                Applied::Changed
            }
            // Someone published a desired state the agent will refuse:
            // forget it, so the next decision publishes a good one.
            other => {
                self.fleet.desired.remove(host);
                let why = match other {
                    Ok(state) => format!("names host {}", state.host),
                    Err(e) => e.to_string(),
                };
                Applied::Skipped(format!("desired state of {host} (to be replaced): {why}"))
            }
        }
    }

    /// Takes a control into the view: one from the feed, or one this
    /// process just published (the feed's echo of it changes nothing).
    pub fn control(&mut self, control: Control) -> Applied {
        match control {
            Control::Updates(updates) => self.fleet.controls.updates = updates.to_policy(),
            Control::SafetyClear(clearance) => {
                self.clearances.insert(clearance.host.clone(), clearance);
            }
            Control::Rollout(rollout) => {
                self.fleet
                    .controls
                    .rollouts
                    .insert(rollout.image.clone(), rollout);
            }
            Control::Pause(pause) => {
                self.fleet.controls.paused.insert(pause.host.clone(), pause);
            }
            Control::FastUpdate(fast) => {
                self.fleet
                    .controls
                    .fast_update
                    .insert(fast.host, fast.image);
            }
            Control::SubsConfig(SubsConfig {
                host: None, config, ..
            }) => self.fleet.controls.agent_config = config,
            Control::SubsConfig(SubsConfig {
                host: Some(host),
                config,
                ..
            }) => {
                self.fleet.controls.host_config.insert(host, config);
            }
            Control::DefaultImage(default) => self.fleet.controls.default_image = default.image,
            Control::Withdrawn(name) => self.withdraw(&name),
            Control::Unknown(_) => return Applied::Unchanged,
        }
        Applied::Changed
    }

    /// A control published empty: what it said no longer holds.
    fn withdraw(&mut self, name: &str) {
        let controls = &mut self.fleet.controls;
        match Kind::of(name) {
            Some(Kind::Updates) => controls.updates = Updates::Enabled,
            Some(Kind::SafetyClear(host)) => {
                self.clearances.remove(host);
            }
            Some(Kind::Rollout(image)) => controls.rollouts.retain(|i, _| i.as_str() != image),
            Some(Kind::Pause(host)) => {
                controls.paused.remove(host);
            }
            Some(Kind::FastUpdate(host)) => {
                controls.fast_update.remove(host);
            }
            Some(Kind::SubsConfig(None)) => controls.agent_config = Default::default(),
            Some(Kind::SubsConfig(Some(host))) => {
                controls.host_config.remove(host);
            }
            Some(Kind::DefaultImage) => controls.default_image = None,
            None => {}
        }
    }

    /// Decides what every machine should be told, with the clearances
    /// that still stand and the HighImpact grants the requests in the
    /// state reports call for. `now` is Unix seconds.
    pub fn decide(&mut self, now: i64) -> Decision {
        self.fleet.controls.safety_cleared = self
            .clearances
            .iter()
            .filter(|(host, clearance)| !self.used(host, clearance))
            .map(|(host, clearance)| (host.clone(), clearance.image.clone()))
            .collect();
        dom_model::policy::decide_with_grants(&mut self.fleet, now)
    }

    /// Whether the machine's report shows a successful update to the
    /// cleared image that started after the clearance: it was used, even
    /// if by an earlier run of the dominator.
    fn used(&self, host: &str, clearance: &SafetyClearance) -> bool {
        let Some(update) = self
            .fleet
            .reports
            .get(host)
            .and_then(|r| r.last_update.as_ref())
        else {
            return false;
        };
        let parse = |s: &str| OffsetDateTime::parse(s, &Rfc3339).ok();
        update.ok
            && update.image == clearance.image.as_str()
            && matches!((parse(&update.started), parse(&clearance.when)),
                        (Some(started), Some(when)) if started >= when)
    }

    /// Records a desired state this process published at `sequence`.
    pub fn published(&mut self, state: DesiredState, sequence: u64) {
        self.published.insert(state.host.clone(), sequence);
        let last = self.desired_last.entry(state.host.clone()).or_default();
        *last = (*last).max(sequence);
        self.fleet.desired.insert(state.host.clone(), state);
    }

    /// The stream sequence of the last desired state known stored for
    /// `host` (0: none), which the next publish for it expects.
    pub fn desired_sequence(&self, host: &str) -> u64 {
        self.desired_last.get(host).copied().unwrap_or(0)
    }

    /// Takes what the stream holds for `host`'s desired state (`None`:
    /// nothing) after a publish expecting an older one was refused: the
    /// view then decides on it, and the next publish expects it.
    pub fn desired_stored(&mut self, host: &str, stored: Option<(u64, &[u8])>) -> Applied {
        match stored {
            Some((sequence, payload)) => {
                self.published.remove(host);
                self.desired_last.insert(host.to_string(), sequence);
                self.apply_desired(host, sequence, payload)
            }
            None => {
                self.published.remove(host);
                self.desired_last.remove(host);
                self.fleet.desired.remove(host);
                Applied::Changed
            }
        }
    }

    /// Forgets clearances that have done their job.
    pub fn forget_clearances(&mut self, hosts: &[String]) {
        for host in hosts {
            self.clearances.remove(host);
        }
    }

    /// Hosts whose latest MDB payload was refused and which have no
    /// record in the view: after a replay, their previous good record is
    /// still to be found in the stream's history.
    pub fn rejected_without_record(&self) -> Vec<String> {
        self.rejected
            .keys()
            .filter(|host| !self.fleet.mdb.contains_key(*host) && is_valid_host(host))
            .cloned()
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dom_model::ImageName;

    fn msg(kind: FleetKind, name: &str, payload: &[u8], sequence: u64) -> FleetMessage {
        FleetMessage {
            kind,
            name: name.into(),
            payload: bytes::Bytes::copy_from_slice(payload),
            sequence,
            published: None,
        }
    }

    #[test]
    fn a_refused_mdb_payload_keeps_the_previous_record() {
        let mut view = View::default();
        let good = br#"{"RequiredImage":"sparse.0"}"#;
        assert_eq!(
            view.apply(&msg(FleetKind::Mdb, "web1", good, 1)),
            Applied::Changed
        );
        for bad in [
            &b"{not json"[..],
            br#"{"RequiredImage":5}"#,
            br#"{"Hostname":"web2","RequiredImage":"x"}"#,
        ] {
            let applied = view.apply(&msg(FleetKind::Mdb, "web1", bad, 2));
            assert!(
                matches!(&applied, Applied::Rejected { host: Some(h), .. } if h == "web1"),
                "{applied:?}"
            );
        }
        let record = &view.fleet.mdb["web1"];
        assert_eq!(
            record.required_image,
            Some(ImageName::parse("sparse.0").unwrap())
        );
        assert!(view.rejected.contains_key("web1"));
        view.apply(&msg(FleetKind::Mdb, "web1", b"", 3));
        assert!(view.fleet.mdb.is_empty() && view.rejected.is_empty());
        let bad_host = view.apply(&msg(FleetKind::Mdb, "bad@host", good, 4));
        assert!(matches!(bad_host, Applied::Rejected { host: None, .. }));
    }

    #[test]
    fn own_desired_echoes_are_ignored() {
        let mut view = View::default();
        let image = dom_tests::sparse_record("sparse.0");
        let first = DesiredState::for_image("web1", &image);
        let mut second = first.clone();
        second.updates_allowed = false;
        view.published(second.clone(), 7);
        let echo = msg(FleetKind::Desired, "web1", &first.encode(), 6);
        assert_eq!(view.apply(&echo), Applied::Unchanged);
        assert_eq!(view.fleet.desired["web1"], second);
        let other = msg(FleetKind::Desired, "web1", &first.encode(), 8);
        assert_eq!(view.apply(&other), Applied::Changed);
        let junk = msg(FleetKind::Desired, "web1", b"{}", 9);
        assert!(matches!(view.apply(&junk), Applied::Skipped(_)));
        assert!(view.fleet.desired.is_empty());
    }

    #[test]
    fn a_publish_expects_the_last_desired_state_known_stored() {
        let mut view = View::default();
        let image = dom_tests::sparse_record("sparse.0");
        let state = DesiredState::for_image("web1", &image);
        assert_eq!(view.desired_sequence("web1"), 0);
        view.apply(&msg(FleetKind::Desired, "web1", &state.encode(), 5));
        assert_eq!(view.desired_sequence("web1"), 5);
        // Junk on the subject is still the subject's last message.
        view.apply(&msg(FleetKind::Desired, "web1", b"{}", 6));
        assert_eq!(view.desired_sequence("web1"), 6);
        view.published(state.clone(), 9);
        assert_eq!(view.desired_sequence("web1"), 9);
        // The feed's late echo of an older one does not move it back.
        view.apply(&msg(FleetKind::Desired, "web1", &state.encode(), 7));
        assert_eq!(view.desired_sequence("web1"), 9);
        // A refusal: another publisher's state at 12 is taken as it is.
        let mut theirs = state.clone();
        theirs.updates_allowed = false;
        let encoded = theirs.encode();
        assert_eq!(
            view.desired_stored("web1", Some((12, &encoded))),
            Applied::Changed
        );
        assert_eq!(view.desired_sequence("web1"), 12);
        assert_eq!(view.fleet.desired["web1"], theirs);
        // Nothing stored any more (the subject was purged).
        view.desired_stored("web1", None);
        assert_eq!(view.desired_sequence("web1"), 0);
        assert!(view.fleet.desired.is_empty());
    }

    #[test]
    fn high_impact_requests_in_reports_become_grants_in_desired_states() {
        // Both machines move at once: no rollout waves.
        let mut view = View::new(FleetControls {
            rollout: dom_model::policy::RolloutPolicy {
                canary: dom_model::policy::Canary::Machines(0),
                ..Default::default()
            },
            ..FleetControls::default()
        });
        let image = br#"{"v":1,"name":"db.1","manifest":"MANIFEST","sparse":true,
            "triggers":[{"MatchLines":["/db/.*"],"Service":"db","HighImpact":true}],
            "files":1,"bytes":1,"inodes":2,"created":"2026-11-26T09:00:00Z","creator":"a@b"}"#;
        let image = String::from_utf8_lossy(image)
            .replace("MANIFEST", &dom_model::ObjectId::of(b"m").to_string());
        view.apply(&msg(FleetKind::Image, "db.1", image.as_bytes(), 1));
        for (i, host) in ["db1", "db2"].into_iter().enumerate() {
            let mdb = br#"{"RequiredImage":"db.1"}"#;
            view.apply(&msg(FleetKind::Mdb, host, mdb, 2 + i as u64));
            let asks = format!(r#"{{"v":1,"host":"{host}","high_impact":{{"image":"db.1"}}}}"#);
            view.apply(&msg(FleetKind::State, host, asks.as_bytes(), 4 + i as u64));
        }
        let decision = view.decide(0);
        let granted = |d: &Decision, host: &str| {
            d.machine(host)
                .and_then(|m| m.desired.as_ref())
                .is_some_and(|d| d.high_impact_granted)
        };
        assert!(granted(&decision, "db1") && !granted(&decision, "db2"));
        assert_eq!(decision.summary.waiting_for_high_impact, 1);
        for (i, state) in decision.to_publish().enumerate() {
            view.published(state.clone(), 10 + i as u64);
        }
        // db1 is done: its grant is withdrawn first, then db2's turn comes.
        view.apply(&msg(
            FleetKind::State,
            "db1",
            br#"{"v":1,"host":"db1"}"#,
            20,
        ));
        let decision = view.decide(0);
        assert!(!granted(&decision, "db1") && !granted(&decision, "db2"));
        for (i, state) in decision.to_publish().enumerate() {
            view.published(state.clone(), 30 + i as u64);
        }
        let decision = view.decide(0);
        assert!(!granted(&decision, "db1") && granted(&decision, "db2"));
    }
}
