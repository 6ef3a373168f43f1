//! The dominator's live status: the last decision and what led to it,
//! shared between the decision loop and the HTTP server.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

use dom_model::Decision;
use serde::Serialize;
use tokio::sync::watch;

/// What the status page shows.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Status {
    /// The replay of the streams is over and decisions are being made.
    pub caught_up: bool,
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
}

impl Default for Board {
    fn default() -> Self {
        Self {
            status: RwLock::default(),
            changed: watch::channel(0).0,
        }
    }
}

impl Board {
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
