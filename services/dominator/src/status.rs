//! The dominator's live status: the last decision and what led to it,
//! shared between the decision loop and the HTTP server.
//!
//! The loop writes it once a round ([`Board::update`]); readers take a
//! copy under a short read lock (the decision itself is shared, not
//! copied). When the status page is served, the board also keeps the
//! latest state report per host, handed over by the loop only for the
//! hosts whose report changed, so a round pays for what changed only.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex, RwLock};

use dom_model::{Decision, StateReport};
use serde::Serialize;
use tokio::sync::watch;

use crate::metrics::Metrics;

/// What the status page shows.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Status {
    /// The replay of the streams is over and decisions are being made.
    pub caught_up: bool,
    /// This dominator's name (`--id`).
    pub id: String,
    /// Whether it holds the lease and publishes; a standby only follows.
    pub active: bool,
    /// Who holds the lease, when this one stands by and it is known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub active_dominator: Option<String>,
    /// Decision rounds so far.
    pub rounds: u64,
    /// Desired states published by this process.
    pub desired_published: u64,
    /// When the last round ran, RFC 3339.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_round: Option<String>,
    /// Hosts whose latest MDB payload was refused, with why; each keeps
    /// its previous record.
    pub rejected_mdb: BTreeMap<String, String>,
    /// The last decision: every machine, the summary, unmanaged hosts.
    #[serde(
        skip_serializing_if = "Option::is_none",
        serialize_with = "shared_decision"
    )]
    pub decision: Option<Arc<Decision>>,
}

fn shared_decision<S: serde::Serializer>(
    decision: &Option<Arc<Decision>>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    decision.as_deref().serialize(serializer)
}

/// The shared status, with a way to wait for it to change.
#[derive(Debug)]
pub struct Board {
    status: RwLock<Status>,
    changed: watch::Sender<u64>,
    metrics: Metrics,
    /// Whether to keep state reports ([`Board::keeping_reports`]).
    keep_reports: bool,
    reports: Mutex<Reports>,
}

/// The latest state report per host, and the hosts whose report changed
/// since [`Board::take_report_changes`] last ran.
#[derive(Debug, Default)]
struct Reports {
    latest: HashMap<String, Arc<StateReport>>,
    changed: HashSet<String>,
}

impl Default for Board {
    fn default() -> Self {
        Self {
            status: RwLock::default(),
            changed: watch::channel(0).0,
            metrics: Metrics::default(),
            keep_reports: false,
            reports: Mutex::default(),
        }
    }
}

impl Board {
    /// A board that also keeps the latest state report per host, for the
    /// status page.
    pub fn keeping_reports() -> Self {
        Self {
            keep_reports: true,
            ..Self::default()
        }
    }

    /// Whether the loop should hand over state reports.
    pub(crate) fn wants_reports(&self) -> bool {
        self.keep_reports
    }

    /// The metrics the loop keeps.
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// Records the reports of hosts whose report changed (`None`: it is
    /// gone).
    pub(crate) fn put_reports(&self, changes: Vec<(String, Option<StateReport>)>) {
        if changes.is_empty() {
            return;
        }
        let mut reports = self.reports.lock().expect("reports lock");
        for (host, report) in changes {
            match report {
                Some(report) => reports.latest.insert(host.clone(), Arc::new(report)),
                None => reports.latest.remove(&host),
            };
            reports.changed.insert(host);
        }
    }

    /// The latest state report of `host`, if the board keeps reports.
    pub fn report(&self, host: &str) -> Option<Arc<StateReport>> {
        self.reports
            .lock()
            .expect("reports lock")
            .latest
            .get(host)
            .cloned()
    }

    /// The hosts whose report changed since the last call, with their
    /// reports (`None`: gone).
    pub(crate) fn take_report_changes(&self) -> Vec<(String, Option<Arc<StateReport>>)> {
        let mut reports = self.reports.lock().expect("reports lock");
        let changed = std::mem::take(&mut reports.changed);
        changed
            .into_iter()
            .map(|host| {
                let report = reports.latest.get(&host).cloned();
                (host, report)
            })
            .collect()
    }

    /// Every report kept, for a fresh start of the live feed.
    pub(crate) fn all_reports(&self) -> HashMap<String, Arc<StateReport>> {
        let mut reports = self.reports.lock().expect("reports lock");
        reports.changed.clear();
        reports.latest.clone()
    }

    /// The last decision, without copying anything else.
    pub fn decision(&self) -> Option<Arc<Decision>> {
        self.status.read().expect("status lock").decision.clone()
    }

    /// A receiver that sees a new value after every change.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.changed.subscribe()
    }

    /// A copy of the current status.
    pub fn status(&self) -> Status {
        self.status.read().expect("status lock").clone()
    }

    pub(crate) fn update(&self, edit: impl FnOnce(&mut Status)) {
        edit(&mut self.status.write().expect("status lock"));
        self.changed.send_modify(|n| *n += 1);
    }

    /// Waits until `condition` holds for the status.
    pub async fn wait_for(&self, condition: impl Fn(&Status) -> bool) {
        let mut changes = self.changed.subscribe();
        loop {
            if condition(&self.status()) {
                return;
            }
            if changes.changed().await.is_err() {
                return;
            }
        }
    }

    /// The status as JSON.
    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(&*self.status.read().expect("status lock")).expect("status serialises")
    }
}
