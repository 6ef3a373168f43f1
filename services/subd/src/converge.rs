//! One convergence step, as the agent runs it: fetch the objects a plan
//! needs into the object cache, then apply the plan on a blocking thread.
//!
//! Without a bus the fetch still copies what the machine already holds;
//! anything else fails with a clear "NATS unreachable", and the update
//! does not start.

use std::collections::{BTreeMap, HashSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use dom_model::{ObjectId, Plan, Triggers};
use dom_scan::RateLimit;
use dom_store::{ContentStore, Store, StoreError};

use crate::fetch::{self, FetchOptions, FetchProgress, FetchStats};
use crate::objects::ObjectCache;
use crate::services::{RebootCommand, ServiceCommand};
use crate::update::{self, UpdateContext, UpdateOutcome};

/// What every update of one agent shares.
#[derive(Clone)]
pub struct Converger {
    pub root: PathBuf,
    pub objects: ObjectCache,
    pub services: ServiceCommand,
    pub reboot: Option<RebootCommand>,
    /// Held while an update changes the tree.
    applying: Arc<Mutex<()>>,
}

impl Converger {
    pub fn new(
        root: PathBuf,
        objects: ObjectCache,
        services: ServiceCommand,
        reboot: Option<RebootCommand>,
    ) -> Self {
        Self {
            root,
            objects,
            services,
            reboot,
            applying: Arc::new(Mutex::new(())),
        }
    }

    /// Waits until no update is changing the tree: an update runs to its
    /// end even when the agent stops while waiting for it.
    pub async fn idle(&self) {
        let applying = self.applying.clone();
        let _ = tokio::task::spawn_blocking(move || drop(applying.lock())).await;
    }

    /// Brings every object `plan` installs into the cache, from the
    /// machine or the store, at most `rate` bytes per second. The error
    /// is one line.
    pub async fn fetch(
        &self,
        plan: Arc<Plan>,
        store: Option<Store>,
        rate: Option<u64>,
    ) -> Result<FetchStats, String> {
        let wanted = fetch::missing(&plan, &self.objects);
        self.fetch_objects(wanted, plan.reuse.clone(), store, rate)
            .await
    }

    /// Brings `objects` into the cache: copied from the machine paths
    /// `reuse` names, else read from the store.
    pub async fn fetch_objects(
        &self,
        objects: Vec<(ObjectId, u64)>,
        reuse: BTreeMap<ObjectId, String>,
        store: Option<Store>,
        rate: Option<u64>,
    ) -> Result<FetchStats, String> {
        let options = FetchOptions {
            rate: rate.map(|r| Arc::new(RateLimit::new(r))),
            ..FetchOptions::default()
        };
        // The fetch's future cannot be proven `Send` (its stream of
        // per-object futures trips a compiler limitation), so it is driven
        // on a blocking thread of its own rather than spawned with the
        // agent's loop. Its I/O still runs on the runtime.
        let (this, runtime) = (self.clone(), tokio::runtime::Handle::current());
        let run = tokio::task::spawn_blocking(move || {
            let progress = FetchProgress::default();
            let (cache, root) = (&this.objects, &this.root);
            runtime.block_on(async {
                match &store {
                    Some(store) => {
                        fetch::fetch_objects(
                            store, cache, root, &objects, &reuse, &options, &progress,
                        )
                        .await
                    }
                    None => {
                        fetch::fetch_objects(
                            &Unreachable,
                            cache,
                            root,
                            &objects,
                            &reuse,
                            &options,
                            &progress,
                        )
                        .await
                    }
                }
            })
        });
        match run.await {
            Ok(fetched) => fetched.map_err(|e| e.to_string()),
            Err(e) => Err(format!("the fetch stopped unexpectedly: {e}")),
        }
    }

    /// Applies `plan`, stopping what `old` names and starting what `new`
    /// names for the changed paths (`old` is `None` on the first update).
    pub async fn apply(
        &self,
        plan: Arc<Plan>,
        old: Option<Triggers>,
        new: Triggers,
    ) -> UpdateOutcome {
        let this = self.clone();
        let run = tokio::task::spawn_blocking(move || {
            let _applying = this.applying.lock().unwrap_or_else(|e| e.into_inner());
            let ctx = UpdateContext {
                root: this.root.clone(),
                objects: &this.objects,
                old_triggers: old.as_ref(),
                new_triggers: &new,
                services: &this.services,
                reboot: this.reboot.as_ref(),
            };
            update::apply(&plan, &ctx)
        });
        run.await.unwrap_or_else(|e| UpdateOutcome {
            error: Some(format!("the update stopped unexpectedly: {e}")),
            ..UpdateOutcome::default()
        })
    }

    /// Drops cached objects other than `keep` (after an update used what it
    /// needed).
    pub fn tidy(&self, keep: &HashSet<ObjectId>) {
        if let Err(e) = self.objects.retain(keep) {
            tracing::warn!(error = %e, "cannot tidy the object cache");
        }
    }

    /// Bytes held in the object cache.
    pub fn cached_bytes(&self) -> u64 {
        self.objects.total_bytes().unwrap_or(0)
    }
}

/// The store while the bus is down: holds nothing.
struct Unreachable;

impl ContentStore for Unreachable {
    async fn ids(&self) -> Result<HashSet<ObjectId>, StoreError> {
        Err(unreachable())
    }

    async fn put(&self, _id: ObjectId, _content: Bytes) -> Result<(), StoreError> {
        Err(unreachable())
    }

    async fn get(&self, _id: ObjectId) -> Result<Bytes, StoreError> {
        Err(unreachable())
    }
}

fn unreachable() -> StoreError {
    StoreError::Backend("NATS unreachable".into())
}
