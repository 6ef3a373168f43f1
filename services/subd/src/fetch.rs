//! Filling the object cache with the objects an update needs (DESIGN §5
//! step 4).
//!
//! An object the machine already holds somewhere (the plan's `reuse`) is
//! copied from there; one that changed since the scan, or that the machine
//! lacks, comes from the content store. Every object is checked against its
//! SHA-512 before it enters the cache, so a corrupt object is refused and
//! can never be installed; the check runs on the thread that writes the
//! object, not on the runtime reading the network. Many objects are in
//! flight at once, within a memory budget and, when one is set, a
//! byte-rate limit.
//!
//! Objects are written into one [`Batch`]: the cache's file system is
//! flushed once for many objects, and only then are they named by their
//! ids (see `objects/batch.rs`). The fetch commits the batch before it
//! returns, whether or not every object came, so each object it reports
//! is durable under its id before an update can install it.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use dom_model::{ObjectId, Plan};
use dom_scan::RateLimit;
use dom_store::{ContentStore, StoreError, Unverified};
use futures::StreamExt;
use thiserror::Error;
use tokio::sync::Semaphore;

use crate::objects::{Batch, ObjectCache};

#[derive(Debug, Error)]
pub enum FetchError {
    #[error("object {id} is corrupt: its content hashes to {actual}")]
    Corrupt { id: ObjectId, actual: Box<ObjectId> },
    #[error("object {0} is not in the store")]
    Missing(ObjectId),
    #[error("object {id} holds {actual} bytes where the image says {expected}")]
    WrongSize {
        id: ObjectId,
        expected: u64,
        actual: u64,
    },
    #[error("{first}; {others} more objects not fetched")]
    Several {
        /// The first failure.
        first: Box<FetchError>,
        /// How many more objects failed.
        others: u64,
    },
    #[error("fetching object {id}: {reason}")]
    Store { id: ObjectId, reason: String },
    #[error("{} changed since it was scanned", path.display())]
    Changed { path: PathBuf },
    #[error("cannot read {}: {source}", path.display())]
    Read { path: PathBuf, source: io::Error },
    #[error("cannot flush the object cache {} to disk: {source}", dir.display())]
    Flush { dir: PathBuf, source: io::Error },
    #[error("cannot write object {id} to the cache {}: {source}", dir.display())]
    Cache {
        id: ObjectId,
        dir: PathBuf,
        source: io::Error,
    },
}

impl FetchError {
    pub(crate) fn from_store(id: ObjectId, e: StoreError) -> Self {
        match e {
            StoreError::Corrupt { id, actual } => Self::Corrupt {
                id,
                actual: Box::new(actual),
            },
            StoreError::Missing(id) => Self::Missing(id),
            StoreError::WrongSize {
                id,
                expected,
                actual,
            } => Self::WrongSize {
                id,
                expected,
                actual,
            },
            other => Self::Store {
                id,
                reason: other.to_string(),
            },
        }
    }
}

/// How to fetch.
#[derive(Clone, Debug)]
pub struct FetchOptions {
    /// At most this many bytes per second from the store.
    pub rate: Option<Arc<RateLimit>>,
    /// Objects in flight at once.
    pub concurrency: usize,
    /// Bytes of fetched content held in memory at once (a larger object
    /// still goes through, alone).
    pub memory_budget: u64,
}

impl Default for FetchOptions {
    fn default() -> Self {
        Self {
            rate: None,
            concurrency: 128,
            memory_budget: 256 << 20,
        }
    }
}

/// Live counts, readable while a fetch runs.
#[derive(Debug, Default)]
pub struct FetchProgress {
    /// Objects verified and written to the cache, from the store or the
    /// machine (under their ids once their batch commits).
    pub objects: AtomicU64,
    /// Their bytes.
    pub bytes: AtomicU64,
}

/// What a fetch did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FetchStats {
    /// Objects read from the store.
    pub objects: u64,
    /// Their bytes.
    pub bytes: u64,
    /// Objects copied from files already on the machine.
    pub reused: u64,
    pub reused_bytes: u64,
}

/// The objects `plan`'s installs need that `cache` lacks, with their sizes;
/// sorted, distinct.
pub fn missing(plan: &Plan, cache: &ObjectCache) -> Vec<(ObjectId, u64)> {
    let wanted: BTreeSet<(ObjectId, u64)> =
        plan.installs.iter().map(|i| (i.object, i.size)).collect();
    let mut seen = BTreeSet::new();
    wanted
        .into_iter()
        .filter(|(id, _)| seen.insert(*id) && !cache.contains(id))
        .collect()
}

/// Brings every object `plan`'s installs need into `cache`: copied from the
/// machine (under `root`) where the plan says it holds the content, else
/// from `store`. Objects the cache holds already are skipped.
///
/// Every object is attempted; the first failure is returned, counting the
/// others ([`FetchError::Several`]). A corrupt object is never cached, so
/// an update that needs it cannot run.
pub async fn fetch<S: ContentStore>(
    store: &S,
    cache: &ObjectCache,
    root: &Path,
    plan: &Plan,
    options: &FetchOptions,
    progress: &FetchProgress,
) -> Result<FetchStats, FetchError> {
    let wanted = missing(plan, cache);
    fetch_objects(store, cache, root, &wanted, &plan.reuse, options, progress).await
}

/// As [`fetch`], for a list of objects (such as a planned image's, fetched
/// ahead of time) and where the machine holds any of them: image-style
/// paths under `root`.
pub async fn fetch_objects<S: ContentStore>(
    store: &S,
    cache: &ObjectCache,
    root: &Path,
    objects: &[(ObjectId, u64)],
    reuse: &BTreeMap<ObjectId, String>,
    options: &FetchOptions,
    progress: &FetchProgress,
) -> Result<FetchStats, FetchError> {
    let budget_kib = (options.memory_budget / 1024).clamp(1, u32::MAX as u64);
    let fetcher = Fetcher {
        store,
        cache,
        batch: Arc::new(cache.batch()),
        options,
        memory: Semaphore::new(budget_kib as usize),
        budget_kib,
    };
    let todo: Vec<_> = objects
        .iter()
        .filter(|(id, _)| !cache.contains(id))
        .collect();
    // What the store can read together first (see dom_store's `bulk.rs`),
    // then the rest one by one.
    let from_store = todo
        .iter()
        .filter(|(id, _)| !reuse.contains_key(id))
        .map(|&&object| object)
        .collect();
    let concurrency = options.concurrency.max(1);
    // Filled by the bulk reads, all of which end before the first
    // single read starts.
    let taken = std::sync::Mutex::new(HashSet::new());
    let bulk = store
        .get_bulk(from_store)
        .map(|content| {
            taken.lock().expect("never poisoned").insert(content.id());
            fetcher.take(content)
        })
        .buffer_unordered(concurrency);
    let jobs = futures::stream::iter(todo)
        .filter(|(id, _)| {
            let taken = taken.lock().expect("never poisoned");
            std::future::ready(!taken.contains(id))
        })
        .map(|&(id, size)| {
            let local = reuse.get(&id).map(|p| root.join(p.trim_start_matches('/')));
            fetcher.one(id, size, local)
        })
        .buffer_unordered(concurrency);
    let mut results = Box::pin(bulk.chain(jobs));
    let mut stats = FetchStats::default();
    let mut first_error = None;
    let mut failures = 0u64;
    while let Some(result) = results.next().await {
        match result {
            Ok(Got { size, reused }) => {
                if reused {
                    stats.reused += 1;
                    stats.reused_bytes += size;
                } else {
                    stats.objects += 1;
                    stats.bytes += size;
                }
                progress.objects.fetch_add(1, Ordering::Relaxed);
                progress.bytes.fetch_add(size, Ordering::Relaxed);
            }
            Err(e) => {
                // The caller logs the one error returned, which counts
                // the others: a store that went away fails every object
                // in flight at once, and a line for each says nothing
                // more.
                tracing::debug!(error = %e, "object not fetched");
                failures += 1;
                first_error.get_or_insert(e);
            }
        }
    }
    drop(results);

    // Whatever failed, what was fetched is kept: made durable and named by
    // its id before the update that needs it can run.
    let batch = fetcher.batch.clone();
    let committed = tokio::task::spawn_blocking(move || batch.commit())
        .await
        .unwrap_or_else(|e| {
            Err(FetchError::Flush {
                dir: cache.dir().to_path_buf(),
                source: io::Error::other(e.to_string()),
            })
        });
    if let Err(e) = committed {
        tracing::warn!(error = %e, "fetched objects not kept");
        first_error.get_or_insert(e);
    }
    match first_error {
        None => Ok(stats),
        Some(e) if failures > 1 => Err(FetchError::Several {
            first: Box::new(e),
            others: failures - 1,
        }),
        Some(e) => Err(e),
    }
}

/// One object brought into the cache.
struct Got {
    size: u64,
    reused: bool,
}

struct Fetcher<'a, S> {
    store: &'a S,
    cache: &'a ObjectCache,
    /// Where objects are written, to be made durable together.
    batch: Arc<Batch>,
    options: &'a FetchOptions,
    /// Kibibytes of content that may be in memory at once.
    memory: Semaphore,
    budget_kib: u64,
}

impl<S: ContentStore> Fetcher<'_, S> {
    async fn one(
        &self,
        id: ObjectId,
        size: u64,
        local: Option<PathBuf>,
    ) -> Result<Got, FetchError> {
        if let Some(src) = local {
            let batch = self.batch.clone();
            let copied = tokio::task::spawn_blocking(move || {
                let result = batch.insert_from_file(&id, &src);
                (src, result)
            })
            .await;
            match copied {
                Ok((_, Ok(()))) => return Ok(Got { size, reused: true }),
                // Changed or gone since the scan: the store has it.
                Ok((src, Err(e))) => {
                    tracing::debug!(path = %src.display(), error = %e, "cannot reuse local copy")
                }
                Err(e) => tracing::debug!(error = %e, "local copy failed"),
            }
        }
        let _memory = self.admit(size).await;
        let content = self.get(id, size).await?;
        self.write(content).await?;
        Ok(Got {
            size,
            reused: false,
        })
    }

    /// Writes an object the store read in bulk, once memory and the rate
    /// limit allow.
    async fn take(&self, content: Unverified) -> Result<Got, FetchError> {
        let size = content.len();
        let _memory = self.admit(size).await;
        self.write(content).await?;
        Ok(Got {
            size,
            reused: false,
        })
    }

    /// Waits until `size` more bytes may be held in memory and the rate
    /// limit lets them through; they may be held while the permit lives.
    async fn admit(&self, size: u64) -> tokio::sync::SemaphorePermit<'_> {
        let kib = size.div_ceil(1024).clamp(1, self.budget_kib) as u32;
        let memory = self
            .memory
            .acquire_many(kib)
            .await
            .expect("the semaphore is never closed");
        if let Some(rate) = &self.options.rate {
            let rate = rate.clone();
            let _ = tokio::task::spawn_blocking(move || rate.take(size)).await;
        }
        memory
    }

    /// Checks `content` against its id and writes it into the batch.
    async fn write(&self, content: Unverified) -> Result<(), FetchError> {
        let id = content.id();
        let batch = self.batch.clone();
        // Checked against its id on the writing thread, off the runtime
        // that reads the network.
        tokio::task::spawn_blocking(move || batch.insert(content))
            .await
            .map_err(|e| FetchError::Cache {
                id,
                dir: self.cache.dir().to_path_buf(),
                source: io::Error::other(e.to_string()),
            })?
    }

    /// The one place objects are read from the store.
    async fn get(&self, id: ObjectId, size: u64) -> Result<Unverified, FetchError> {
        self.store
            .get_unverified(id, size)
            .await
            .map_err(|e| FetchError::from_store(id, e))
    }
}
