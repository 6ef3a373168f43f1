//! What every command that makes an image shares (`add`, `addi`,
//! `addrep`): the place at the collection gate, the upload of the objects
//! the store lacks while a source is still being read, and the publish of
//! the record, only once every object the image needs is stored.

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use bytes::Bytes;
use dom_bus::Bus;
use dom_model::{ImageRecord, Manifest, ObjectId};
use dom_scan::{Content, ObjectSink};
use dom_store::gate::{Pass, Side};
use dom_store::{ContentStore, NatsStore, Store, StoreError};
use futures::{StreamExt, TryStreamExt};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::source::SourceError;

/// How many objects are uploaded at once.
const UPLOAD_CONCURRENCY: usize = 48;
/// How many hashed objects may wait for the uploader.
const HANDOVER_QUEUE: usize = 256;
/// How long an add waits for a collection to end.
const GATE_PATIENCE: Duration = Duration::from_secs(300);

/// Takes a place at the collection gate, so that no collection deletes
/// objects while the image being made relies on them. The gate is on
/// NATS, wherever the objects live.
pub(crate) async fn enter_gate(bus: &Bus, store: &Store, show_progress: bool) -> Result<Pass> {
    let gate = match store {
        Store::Nats(nats) => nats.clone(),
        Store::Blob(_) => NatsStore::open(bus).await?,
    };
    Ok(gate
        .enter_gate(Side::Add, &crate::creator(), GATE_PATIENCE, |why| {
            if show_progress {
                eprintln!("imagetool: waiting: {why}");
            }
        })
        .await?)
}

/// Gives the place at the gate up; failing to is only logged.
pub(crate) async fn leave_gate(pass: Pass) {
    if let Err(e) = pass.leave().await {
        tracing::warn!(error = %e, "cannot leave the gate; a collection waits until it is stale");
    }
}

/// The listing of every object the store holds, started now.
pub(crate) fn start_listing(store: &Store) -> JoinHandle<Result<HashSet<ObjectId>, StoreError>> {
    let store = store.clone();
    tokio::spawn(async move { store.ids().await })
}

/// What a scan found, with what the store held and what was uploaded.
pub(crate) struct Scanned<T> {
    /// What the scan returned.
    pub value: T,
    /// The objects the store held before.
    pub existing: HashSet<ObjectId>,
    /// How many objects were uploaded.
    pub uploaded: u64,
}

/// Runs `scan` on a thread of its own, handing it a sink for each object
/// it hashes, and uploads each object the store lacks (by `listing`) once,
/// while the scan goes on. Bytes uploaded are counted in `uploaded_bytes`.
pub(crate) async fn scan_and_upload<T: Send + 'static>(
    store: &Store,
    mut listing: JoinHandle<Result<HashSet<ObjectId>, StoreError>>,
    uploaded_bytes: &Arc<AtomicU64>,
    scan: impl FnOnce(ObjectSink) -> Result<T, SourceError> + Send + 'static,
) -> Result<Scanned<T>> {
    let started = Instant::now();
    let (scanner, mut found_rx) = start_scan(scan);
    // Objects found while the bucket is still being listed wait here, so
    // that the listing (a large bucket takes a while) never holds up the
    // scan; once it is known what is stored, the queue's back-pressure
    // paces the scan to the upload again.
    let mut found_early = Vec::new();
    let existing = loop {
        tokio::select! {
            listed = &mut listing => break listed.context("listing objects stopped")??,
            Some(found) = found_rx.recv() => found_early.push(found),
        }
    };
    tracing::info!(
        elapsed = ?started.elapsed(),
        objects = existing.len(),
        found_meanwhile = found_early.len(),
        "listed bucket"
    );
    let found = futures::stream::iter(found_early)
        .chain(futures::stream::poll_fn(|cx| found_rx.poll_recv(cx)));
    let uploaded = upload_missing(store, &existing, found, uploaded_bytes).await;
    let value = scanner.await.context("scanner stopped")??;
    Ok(Scanned {
        value,
        existing,
        uploaded: uploaded?,
    })
}

/// Stores the manifest (unless the store has it), checks the gate was not
/// lost meanwhile, then publishes the record `record` makes of the
/// manifest's id. Returns that id.
pub(crate) async fn publish(
    bus: &Bus,
    store: &Store,
    pass: &Pass,
    existing: &HashSet<ObjectId>,
    manifest: &Manifest,
    record: impl FnOnce(ObjectId) -> ImageRecord,
) -> Result<ObjectId> {
    let encoded = Bytes::from(manifest.encode());
    let manifest_id = ObjectId::of(&encoded);
    if !existing.contains(&manifest_id) {
        store.put(manifest_id, encoded).await?;
    }
    // Everything the image needs is stored, unless this place at the gate
    // lapsed and a collection ran meanwhile.
    pass.check()?;
    bus.publish_image(&record(manifest_id)).await?;
    Ok(manifest_id)
}

/// The scan, running: what it returns when done.
type Scanner<T> = JoinHandle<Result<T, SourceError>>;

/// Runs `scan` on a thread of its own, which hands over each object on
/// the channel returned as soon as it is hashed, and closes the channel
/// when the scan ends. The channel is bounded, so a scan faster than the
/// upload waits instead of holding the image in memory.
fn start_scan<T: Send + 'static>(
    scan: impl FnOnce(ObjectSink) -> Result<T, SourceError> + Send + 'static,
) -> (Scanner<T>, mpsc::Receiver<(ObjectId, Content)>) {
    let (found_tx, found_rx) = mpsc::channel(HANDOVER_QUEUE);
    let sender = Arc::new(std::sync::Mutex::new(Some(found_tx)));
    let sink = {
        let sender = sender.clone();
        move |id, content| {
            if let Some(tx) = &*sender.lock().expect("sender lock") {
                let _ = tx.blocking_send((id, content));
            }
        }
    };
    let scanner = tokio::task::spawn_blocking(move || {
        let scanned = scan(Box::new(sink));
        sender.lock().expect("sender lock").take();
        scanned
    });
    (scanner, found_rx)
}

/// Uploads each object found that the bucket lacks, once, several at a
/// time; returns how many it uploaded and counts their bytes.
async fn upload_missing(
    store: &Store,
    existing: &HashSet<ObjectId>,
    found: impl futures::Stream<Item = (ObjectId, Content)>,
    uploaded_bytes: &Arc<AtomicU64>,
) -> Result<u64> {
    let mut queued = HashSet::new();
    found
        .filter(|(id, _)| futures::future::ready(!existing.contains(id) && queued.insert(*id)))
        .map(|(id, content)| {
            let store = store.clone();
            let uploaded_bytes = uploaded_bytes.clone();
            async move {
                let bytes = read_content(id, content).await?;
                let len = bytes.len() as u64;
                store.put(id, bytes).await?;
                uploaded_bytes.fetch_add(len, Ordering::Relaxed);
                anyhow::Ok(())
            }
        })
        .buffer_unordered(UPLOAD_CONCURRENCY)
        .try_fold(0u64, |n, ()| futures::future::ready(Ok(n + 1)))
        .await
}

/// Reads an object's content for upload, checking it still hashes to its
/// id (a file changed since the scan must not be stored under the old id).
async fn read_content(id: ObjectId, content: Content) -> Result<Bytes> {
    match content {
        Content::Memory(bytes) => Ok(bytes),
        Content::File(path, _) => {
            let bytes = tokio::task::spawn_blocking(move || {
                let data = std::fs::read(&path)
                    .with_context(|| format!("cannot read {}", path.display()))?;
                if ObjectId::of(&data) != id {
                    bail!(
                        "{} changed while the image was being added; try again",
                        path.display()
                    );
                }
                Ok(Bytes::from(data))
            })
            .await??;
            Ok(bytes)
        }
    }
}
