//! Events the dominator publishes about machines (`dom.event.<host>.<kind>`):
//!
//! - `rejected`: an MDB record was refused; the machine keeps its previous
//!   record.
//! - `error`: the machine is in error (its required image is unknown,
//!   deleted or expired, the safety shutoff refused its update, its agent
//!   reports a problem). Published once per change of the error, not per
//!   decision.
//! - `resolved`: the machine is no longer in error.
//!
//! The dominator keeps no state, so when it first sees a machine in error
//! it looks at the last `error`/`resolved` event of that host: a restart
//! does not repeat an error already announced.

use std::collections::{BTreeMap, HashMap, HashSet};

use dom_bus::Bus;
use dom_model::{Decision, Event};

/// Marks the events the dominator writes, in their `details`.
pub const SOURCE: &str = "dominator";
pub const REJECTED: &str = "rejected";
pub const ERROR: &str = "error";
pub const RESOLVED: &str = "resolved";

/// The errors announced so far, per host.
#[derive(Debug, Default)]
pub struct Notices {
    announced: HashMap<String, Option<String>>,
    /// Machines a standby saw in error: what was announced for them is
    /// read back from the events (see [`Notices::observe`]).
    uncertain: HashSet<String>,
}

impl Notices {
    /// What a standby does instead of [`Notices::announce`]. A machine
    /// never seen in error needs no announcement; for one seen in error,
    /// whether the active dominator announced it (and its end) is left to
    /// the events to tell once this one takes over.
    pub fn observe(&mut self, decision: &Decision) {
        for m in &decision.machines {
            if m.error.is_some() {
                self.uncertain.insert(m.host.clone());
            }
            if self.uncertain.contains(&m.host) {
                self.announced.remove(&m.host);
            } else {
                self.announced.insert(m.host.clone(), None);
            }
        }
    }

    /// What an active dominator does on losing the lease midway through
    /// [`Notices::announce`]: whether the errors it had announced ended,
    /// and whether its last events were stored, is left to the events to
    /// tell, as for a standby.
    pub fn stand_by(&mut self, decision: &Decision) {
        for (host, announced) in &self.announced {
            if announced.is_some() {
                self.uncertain.insert(host.clone());
            }
        }
        self.observe(decision);
    }

    /// Publishes an event for every machine whose error changed since it
    /// was last announced. Returns false if some could not be published
    /// (they are tried again next time).
    pub async fn announce(&mut self, bus: &Bus, decision: &Decision, now: &str) -> bool {
        let mut ok = true;
        let current: BTreeMap<&str, (Option<&String>, Option<String>)> = decision
            .machines
            .iter()
            .map(|m| {
                let image = m.required.as_ref().map(|i| i.to_string());
                (m.host.as_str(), (m.error.as_ref(), image))
            })
            .collect();
        // Machines gone from the MDB need no more announcements.
        self.announced
            .retain(|host, _| current.contains_key(host.as_str()));
        for (host, (error, image)) in current {
            let known = match self.announced.get(host) {
                Some(known) => known.clone(),
                None if error.is_none() && !self.uncertain.contains(host) => {
                    self.announced.insert(host.to_string(), None);
                    continue;
                }
                None => match bus.last_event(host, &[ERROR, RESOLVED]).await {
                    Ok(Some((_, event))) if event.kind == ERROR => Some(event.message),
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
                Some(error) => Event::new(host, ERROR, now, error.clone()),
                None => Event::new(
                    host,
                    RESOLVED,
                    now,
                    format!(
                        "no longer in error (was: {})",
                        known.as_deref().unwrap_or("")
                    ),
                ),
            };
            let event = match image {
                Some(image) => event.with_image(image),
                None => event,
            }
            .with_details(serde_json::json!({ "source": SOURCE }));
            match bus.publish_event(&event).await {
                Ok(_) => {
                    if let Some(error) = error {
                        tracing::warn!(host, %error, "machine in error");
                    } else {
                        tracing::info!(host, "machine no longer in error");
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
