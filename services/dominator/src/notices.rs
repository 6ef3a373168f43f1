//! Events the dominator publishes about machines (`dom.event.<host>.<kind>`):
//!
//! - `rejected`: an MDB record was refused; the machine keeps its previous
//!   record.
//! - `error`: the machine is in error (its required image is unknown,
//!   deleted or expired, the safety shutoff refused its update, its agent
//!   reports a problem). Published once per change of the error, not per
//!   decision.
//! - `resolved`: the machine is no longer in error.
//! - `paused` / `unpaused`: an operator paused the machine (`domtool
//!   pause`), and the pause ended (resumed, or ran out).
//! - `halted`: the rollout of the machine's image halted, and this
//!   machine is one of those that failed.
//!
//! The dominator keeps no state, so when it first sees a machine in error
//! (or paused) it looks at the last `error`/`resolved` (`paused`/
//! `unpaused`) event of that host: a restart does not repeat what was
//! already announced.

use std::collections::{BTreeMap, HashMap, HashSet};

use dom_bus::Bus;
use dom_model::controls::RolloutControl;
use dom_model::{Decision, Event, HoldReason};

/// Marks the events the dominator writes, in their `details`.
pub const SOURCE: &str = "dominator";
pub const REJECTED: &str = "rejected";
pub const ERROR: &str = "error";
pub const RESOLVED: &str = "resolved";
pub const PAUSED: &str = "paused";
pub const UNPAUSED: &str = "unpaused";
pub const HALTED: &str = "halted";

/// What is announced about machines: their errors and their pauses.
#[derive(Debug)]
pub struct Notices {
    errors: Topic,
    pauses: Topic,
}

impl Default for Notices {
    fn default() -> Self {
        Self {
            errors: Topic::new(ERROR, RESOLVED),
            pauses: Topic::new(PAUSED, UNPAUSED),
        }
    }
}

impl Notices {
    /// See [`Topic::observe`].
    pub fn observe(&mut self, decision: &Decision) {
        self.errors.observe(&errors(decision));
        self.pauses.observe(&pauses(decision));
    }

    /// See [`Topic::stand_by`].
    pub fn stand_by(&mut self, decision: &Decision) {
        self.errors.stand_by(&errors(decision));
        self.pauses.stand_by(&pauses(decision));
    }

    /// Announces every machine whose error or pause changed; false if
    /// some could not be published (they are tried again next time).
    pub async fn announce(&mut self, bus: &Bus, decision: &Decision, now: &str) -> bool {
        let errors = self.errors.announce(bus, &errors(decision), now).await;
        let pauses = self.pauses.announce(bus, &pauses(decision), now).await;
        errors && pauses
    }
}

/// Each machine's current state on a topic: the line to announce (none:
/// off) and its image.
type Current<'a> = BTreeMap<&'a str, (Option<String>, Option<String>)>;

fn errors(decision: &Decision) -> Current<'_> {
    decision
        .machines
        .iter()
        .map(|m| {
            let image = m.required.as_ref().map(|i| i.to_string());
            (m.host.as_str(), (m.error.clone(), image))
        })
        .collect()
}

fn pauses(decision: &Decision) -> Current<'_> {
    decision
        .machines
        .iter()
        .map(|m| {
            let paused = match &m.held {
                Some(hold @ HoldReason::Paused { .. }) => Some(hold.to_string()),
                _ => None,
            };
            (m.host.as_str(), (paused, None))
        })
        .collect()
}

/// One kind of thing announced about machines, on and off, per host.
#[derive(Debug)]
struct Topic {
    on: &'static str,
    off: &'static str,
    announced: HashMap<String, Option<String>>,
    /// Machines a standby saw on: what was announced for them is read
    /// back from the events (see [`Topic::observe`]).
    uncertain: HashSet<String>,
}

impl Topic {
    fn new(on: &'static str, off: &'static str) -> Self {
        Self {
            on,
            off,
            announced: HashMap::new(),
            uncertain: HashSet::new(),
        }
    }

    /// What a standby does instead of [`Notices::announce`]. A machine
    /// never seen in error needs no announcement; for one seen in error,
    /// whether the active dominator announced it (and its end) is left to
    /// the events to tell once this one takes over.
    fn observe(&mut self, current: &Current<'_>) {
        for (host, (line, _)) in current {
            if line.is_some() {
                self.uncertain.insert(host.to_string());
            }
            if self.uncertain.contains(*host) {
                self.announced.remove(*host);
            } else {
                self.announced.insert(host.to_string(), None);
            }
        }
    }

    /// What an active dominator does on losing the lease midway through
    /// [`Notices::announce`]: whether the errors it had announced ended,
    /// and whether its last events were stored, is left to the events to
    /// tell, as for a standby.
    fn stand_by(&mut self, current: &Current<'_>) {
        for (host, announced) in &self.announced {
            if announced.is_some() {
                self.uncertain.insert(host.clone());
            }
        }
        self.observe(current);
    }

    /// Publishes an event for every machine whose error changed since it
    /// was last announced. Returns false if some could not be published
    /// (they are tried again next time).
    async fn announce(&mut self, bus: &Bus, current: &Current<'_>, now: &str) -> bool {
        let mut ok = true;
        // Machines gone from the MDB need no more announcements.
        self.announced
            .retain(|host, _| current.contains_key(host.as_str()));
        for (&host, (error, image)) in current {
            let error = error.as_ref();
            let known = match self.announced.get(host) {
                Some(known) => known.clone(),
                None if error.is_none() && !self.uncertain.contains(host) => {
                    self.announced.insert(host.to_string(), None);
                    continue;
                }
                None => match bus.last_event(host, &[self.on, self.off]).await {
                    Ok(Some((_, event))) if event.kind == self.on => Some(event.message),
                    Ok(_) => None,
                    Err(e) => {
                        tracing::warn!(host, error = %e, "cannot read past events");
                        None
                    }
                },
            };
            self.uncertain.remove(host);
            if known.as_ref() == error {
                self.announced.insert(host.to_string(), known);
                continue;
            }
            let event = match error {
                Some(error) => Event::new(host, self.on, now, error.clone()),
                None => Event::new(host, self.off, now, self.ended(known.as_deref())),
            };
            let event = match image {
                Some(image) => event.with_image(image),
                None => event,
            }
            .with_details(serde_json::json!({ "source": SOURCE }));
            match bus.publish_event(&event).await {
                Ok(_) => {
                    match error {
                        Some(line) => tracing::warn!(host, kind = self.on, %line, "announced"),
                        None => tracing::info!(host, kind = self.off, "announced"),
                    }
                    self.announced.insert(host.to_string(), error.cloned());
                }
                Err(e) => {
                    tracing::warn!(host, error = %e, "cannot publish event");
                    self.announced.insert(host.to_string(), known);
                    ok = false;
                }
            }
        }
        ok
    }
}

impl Topic {
    /// The line saying it ended.
    fn ended(&self, was: Option<&str>) -> String {
        let was = was.unwrap_or("");
        match self.off {
            UNPAUSED => format!("no longer paused (was: {was})"),
            _ => format!("no longer in error (was: {was})"),
        }
    }
}

/// Publishes a `halted` event on every machine a rollout's halt names.
pub async fn halted(bus: &Bus, halt: &RolloutControl) {
    let machines: Vec<&str> = halt.machines.iter().map(|m| m.host.as_str()).collect();
    for machine in &halt.machines {
        let message = format!(
            "the rollout of image {} halted: {}; this machine: {}",
            halt.image, halt.reason, machine.why
        );
        let event = Event::new(&machine.host, HALTED, &halt.when, message)
            .with_image(halt.image.as_str())
            .with_details(serde_json::json!({
                "source": SOURCE,
                "reason": halt.reason,
                "machines": machines,
            }));
        if let Err(e) = bus.publish_event(&event).await {
            tracing::warn!(host = %machine.host, error = %e, "cannot publish event");
        }
    }
}

/// Publishes a `rejected` event for a refused MDB record.
pub async fn rejected(bus: &Bus, host: &str, reason: &str, sequence: u64, now: &str) {
    let event = Event::new(host, REJECTED, now, reason).with_details(serde_json::json!({
        "source": SOURCE,
        "subject": bus.subjects.mdb(host),
        "sequence": sequence,
    }));
    if let Err(e) = bus.publish_event(&event).await {
        tracing::warn!(host, error = %e, "cannot publish event");
    }
}
