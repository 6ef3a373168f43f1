//! One convergence step, as the agent runs it: fetch the objects a plan
//! needs into the object cache, then apply the plan on a blocking thread.
//!
//! Without a bus the fetch still copies what the machine already holds;
//! anything else fails with a clear "NATS unreachable", and the update
//! does not start.

use std::collections::{BTreeMap, HashSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
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
    /// Set from the moment an update starts changing the tree until the
    /// agent has recorded its result ([`Converger::recorded`]).
    unrecorded: Arc<AtomicBool>,
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
            unrecorded: Arc::new(AtomicBool::new(false)),
        }
    }

    /// Whether an update is changing the tree, or has and the agent has
    /// not recorded its result yet: a stopping agent sees it through, so
    /// that what the machine carries, and the update's report, are not
    /// lost with the process.
    pub fn mid_update(&self) -> bool {
        self.unrecorded.load(Ordering::SeqCst)
    }

    /// The agent recorded the result of the last update [`apply`] ran.
    ///
    /// [`apply`]: Converger::apply
    pub fn recorded(&self) {
        self.unrecorded.store(false, Ordering::SeqCst);
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
        let (cancel, cancelled) = tokio::sync::oneshot::channel::<()>();
        let _given_up = GivenUp {
            _cancel: cancel,
            rate: options.rate.clone(),
        };
        let run = tokio::task::spawn_blocking(move || {
            let progress = FetchProgress::default();
            let (cache, root) = (&this.objects, &this.root);
            runtime.block_on(async {
                let fetch = async {
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
                };
                tokio::select! {
                    fetched = fetch => Some(fetched),
                    _ = cancelled => None,
                }
            })
        });
        match run.await {
            Ok(Some(fetched)) => fetched.map_err(|e| e.to_string()),
            Ok(None) => Err("the fetch was cancelled".to_string()),
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
        self.unrecorded.store(true, Ordering::SeqCst);
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

/// Held by the caller of a fetch for as long as it waits. Dropped with
/// the caller's future (the agent stopping in the middle of a fetch), it
/// ends the fetch on its own thread too, and lets go of whatever waits
/// its turn at the fetch's rate limit, so that no thread holds the
/// process's exit up. Objects half written go with their batch; the tree
/// is untouched.
struct GivenUp {
    /// Dropped, it tells the fetch's thread to stop.
    _cancel: tokio::sync::oneshot::Sender<()>,
    rate: Option<Arc<RateLimit>>,
}

impl Drop for GivenUp {
    fn drop(&mut self) {
        // The limit is this fetch's own: lifting it frees its waiters at
        // once, and nothing else.
        if let Some(rate) = &self.rate {
            rate.lift(true);
        }
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
