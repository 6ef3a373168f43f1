//! `imagetool add`: scan a source, upload the objects the bucket lacks,
//! then publish the image record — only after every object is stored.

use std::collections::HashSet;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use bytes::Bytes;
use dom_bus::{Bus, ImageError};
use dom_model::image::{HealthCheck, IMAGE_RECORD_VERSION};
use dom_model::manifest::Totals;
use dom_model::{Filter, ImageMessage, ImageName, ImageRecord, Manifest, ObjectId, Triggers};
use dom_store::gate::{Pass, Side};
use dom_store::{ContentStore, NatsStore, Store};
use futures::{StreamExt, TryStreamExt};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::metadata::MetadataRequest;
use crate::progress::Progress;
use crate::source::{self, SourceOptions};
use dom_scan::{Content, Counters, HashCache};

/// How many objects are uploaded at once.
const UPLOAD_CONCURRENCY: usize = 48;
/// How many hashed objects may wait for the uploader.
const HANDOVER_QUEUE: usize = 256;

/// What was checked before anything is sent: the inputs of `add`.
pub struct AddRequest {
    pub name: ImageName,
    pub source: std::path::PathBuf,
    pub filter: Option<Filter>,
    pub triggers: Triggers,
    pub expires_in: Option<Duration>,
    /// Where the hash cache lives; `None` hashes everything.
    pub hash_cache: Option<std::path::PathBuf>,
    /// The check machines run after updating to the image.
    pub health_check: Option<HealthCheck>,
    /// Build metadata and tags, and the files they name.
    pub metadata: MetadataRequest,
}

/// `$XDG_CACHE_HOME/imagetool/hashes`, else `~/.cache/imagetool/hashes`.
pub fn default_hash_cache() -> Option<std::path::PathBuf> {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .filter(|v| !v.is_empty())
        .map(std::path::PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".cache")))?;
    Some(base.join("imagetool").join("hashes"))
}

impl AddRequest {
    /// Validates the command-line arguments: name, source, filter and
    /// triggers files. Nothing is sent when this fails.
    pub fn parse(
        name: &str,
        source: &Path,
        filter_file: &str,
        triggers_file: &str,
        expires_in: Option<Duration>,
    ) -> Result<Self> {
        let name = ImageName::parse(name)?;
        if let Err(e) = std::fs::metadata(source) {
            bail!("cannot read source {}: {e}", source.display());
        }
        let filter = if filter_file.is_empty() {
            None
        } else {
            let text = std::fs::read_to_string(filter_file)
                .with_context(|| format!("cannot read filter file {filter_file}"))?;
            Some(Filter::parse(&text).with_context(|| format!("filter file {filter_file}"))?)
        };
        let triggers = if triggers_file.is_empty() {
            Triggers::empty()
        } else {
            let text = std::fs::read_to_string(triggers_file)
                .with_context(|| format!("cannot read triggers file {triggers_file}"))?;
            Triggers::parse(&text).with_context(|| format!("triggers file {triggers_file}"))?
        };
        Ok(Self {
            name,
            source: source.to_path_buf(),
            filter,
            triggers,
            expires_in,
            hash_cache: None,
            health_check: None,
            metadata: MetadataRequest::default(),
        })
    }

    /// The image's build metadata and tags ([`MetadataArgs::parse`]).
    ///
    /// [`MetadataArgs::parse`]: crate::metadata::MetadataArgs::parse
    pub fn with_metadata(self, metadata: MetadataRequest) -> Self {
        Self { metadata, ..self }
    }

    pub fn with_hash_cache(self, hash_cache: Option<std::path::PathBuf>) -> Self {
        Self { hash_cache, ..self }
    }

    /// The image's health check (`--health-command`, `--health-timeout`);
    /// a timeout without a command, an empty command, or a timeout of 0
    /// or over an hour is refused.
    pub fn with_health_check(
        self,
        command: Option<&str>,
        timeout: Option<Duration>,
    ) -> Result<Self> {
        let Some(command) = command else {
            if timeout.is_some() {
                bail!("--health-timeout needs --health-command");
            }
            return Ok(self);
        };
        let timeout_s = match timeout {
            None => None,
            Some(d) if d.is_zero() => {
                bail!("--health-timeout: a timeout of 0 leaves no time to check")
            }
            // Whole seconds on the wire; a fraction rounds up.
            Some(d) => Some(d.as_secs() + u64::from(d.subsec_nanos() > 0)),
        };
        let check = HealthCheck {
            command: command.to_string(),
            timeout_s,
        };
        if let Err(why) = check.validate() {
            let flag = if why.contains("timeout") {
                "--health-timeout"
            } else {
                "--health-command"
            };
            bail!("{flag}: {why}");
        }
        Ok(Self {
            health_check: Some(check),
            ..self
        })
    }
}

/// What `add` did.
#[derive(Debug, Clone)]
pub struct AddSummary {
    pub name: ImageName,
    pub files: u64,
    pub bytes: u64,
    /// Bytes read and hashed; the rest were unchanged since last hashed.
    pub hashed_bytes: u64,
    pub uploaded: u64,
    pub uploaded_bytes: u64,
    pub skipped: u64,
    pub elapsed: Duration,
    /// The image's health check, as recorded.
    pub health_check: Option<HealthCheck>,
}

impl std::fmt::Display for AddSummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "added {}: {} files, {} ({} hashed), {} objects uploaded ({}), {} already stored, in {:.2} s",
            self.name,
            self.files,
            crate::human_bytes(self.bytes),
            crate::human_bytes(self.hashed_bytes),
            self.uploaded,
            crate::human_bytes(self.uploaded_bytes),
            self.skipped,
            self.elapsed.as_secs_f64()
        )?;
        if let Some(check) = &self.health_check {
            write!(f, "; health check: {}", check.command)?;
            if let Some(t) = check.timeout_s {
                write!(f, " (for up to {t} s)")?;
            }
        }
        Ok(())
    }
}

/// Adds an image. On any error nothing is published (objects already
/// uploaded stay; they are content-addressed and harmless).
pub async fn add(bus: &Bus, request: AddRequest, show_progress: bool) -> Result<AddSummary> {
    let started = Instant::now();
    let name = request.name.clone();
    bus.ensure_image_streams().await?;
    // Fail before doing any work; the publish at the end checks again.
    refuse_taken(bus, &name).await?;
    let store = Store::open(bus).await?;
    let pass = enter_gate(bus, &store, show_progress).await?;
    let added = add_entered(bus, &store, &pass, request, show_progress, started).await;
    if let Err(e) = pass.leave().await {
        tracing::warn!(error = %e, "cannot leave the gate; a collection waits until it is stale");
    }
    added
}

/// Enters the gate as an add, so that no collection deletes objects while
/// an image about to be published relies on them. The gate is on NATS,
/// wherever the objects live.
pub(crate) async fn enter_gate(bus: &Bus, store: &Store, show_progress: bool) -> Result<Pass> {
    let gate = match store {
        Store::Nats(nats) => nats.clone(),
        Store::Blob(_) => NatsStore::open(bus).await?,
    };
    let pass = gate
        .enter_gate(Side::Add, &crate::creator(), GATE_PATIENCE, |why| {
            if show_progress {
                eprintln!("imagetool: waiting: {why}");
            }
        })
        .await?;
    Ok(pass)
}

/// How long an add waits for a collection to end.
const GATE_PATIENCE: Duration = Duration::from_secs(300);

/// The add, once in at the gate.
async fn add_entered(
    bus: &Bus,
    store: &Store,
    pass: &Pass,
    request: AddRequest,
    show_progress: bool,
    started: Instant,
) -> Result<AddSummary> {
    let name = request.name.clone();
    let mut listing = {
        let store = store.clone();
        tokio::spawn(async move { store.ids().await })
    };

    let cache = request.hash_cache.as_deref().map(|path| {
        let cache = HashCache::load(path);
        tracing::debug!(path = %path.display(), entries = cache.len(), "loaded hash cache");
        Arc::new(cache)
    });
    let counters = Arc::new(Counters::default());
    let uploaded_bytes = Arc::new(AtomicU64::new(0));
    let progress = Progress::new(show_progress);
    let bar = progress.spinner("scanning");
    let ticker = progress.tick_scan(bar.clone(), counters.clone(), uploaded_bytes.clone());
    let (scanner, mut found_rx) = start_scan(&request, cache.clone(), counters.clone());
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
    let uploaded = upload_missing(store, &existing, found, &uploaded_bytes).await;
    let manifest = scanner.await.context("scanner stopped")??;
    let uploaded = uploaded?;
    ticker.abort();
    bar.finish_and_clear();
    let totals = manifest.totals();
    tracing::info!(elapsed = ?started.elapsed(), files = totals.files, uploaded, "scanned and uploaded");

    let encoded = Bytes::from(manifest.encode());
    let manifest_id = ObjectId::of(&encoded);
    tracing::info!(elapsed = ?started.elapsed(), bytes = encoded.len(), "encoded manifest");
    if !existing.contains(&manifest_id) {
        store.put(manifest_id, encoded).await?;
    }
    request.metadata.upload(store, &existing).await?;
    // Everything the image needs is stored, unless this add's place at
    // the gate lapsed and a collection ran meanwhile.
    pass.check()?;
    let objects = store.location().map(str::to_string);
    bus.publish_image(&image_record(&request, manifest_id, &totals, objects))
        .await?;
    let health_check = request.health_check.clone();
    if let (Some(cache), Some(path)) = (&cache, &request.hash_cache) {
        // Only a speed-up: failing to save it fails nothing.
        if let Err(e) = cache.save(path) {
            tracing::warn!(path = %path.display(), error = %e, "cannot save hash cache");
        }
    }
    Ok(AddSummary {
        name,
        files: totals.files,
        bytes: totals.bytes,
        hashed_bytes: counters.hashed_bytes.load(Ordering::Relaxed),
        uploaded,
        uploaded_bytes: uploaded_bytes.load(Ordering::Relaxed),
        skipped: totals.objects - uploaded,
        elapsed: started.elapsed(),
        health_check,
    })
}

/// Refuses a name that an image has, or had and was deleted.
pub(crate) async fn refuse_taken(bus: &Bus, name: &ImageName) -> Result<()> {
    match bus.image(name).await? {
        Some(stored) if matches!(stored.message, ImageMessage::Deleted(_)) => {
            Err(ImageError::NameDeleted(name.clone()).into())
        }
        Some(_) => Err(ImageError::NameTaken(name.clone()).into()),
        None => Ok(()),
    }
}

/// The scan of a source, running: its manifest when done.
type Scanner = JoinHandle<Result<Manifest, source::SourceError>>;

/// Scans the request's source on a thread of its own, which hands over
/// each object on the channel returned as soon as it is hashed, and closes
/// the channel when the scan ends. The channel is bounded, so a scan
/// faster than the upload waits instead of holding the image in memory.
fn start_scan(
    request: &AddRequest,
    cache: Option<Arc<HashCache>>,
    counters: Arc<Counters>,
) -> (Scanner, mpsc::Receiver<(ObjectId, Content)>) {
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
    let source = request.source.clone();
    let options = SourceOptions {
        filter: request.filter.clone().unwrap_or_else(Filter::empty),
        cache,
        sink: Some(Box::new(sink)),
    };
    let scanner = tokio::task::spawn_blocking(move || {
        let scan = source::scan(&source, options, &counters);
        sender.lock().expect("sender lock").take();
        scan
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

/// The record `add` publishes for the request's image, made now.
fn image_record(
    request: &AddRequest,
    manifest: ObjectId,
    totals: &Totals,
    objects: Option<String>,
) -> ImageRecord {
    let now = time::OffsetDateTime::now_utc();
    let expires = request.expires_in.map(|d| now + d);
    let mut record = ImageRecord {
        health_check: request.health_check.clone(),
        v: IMAGE_RECORD_VERSION,
        name: request.name.clone(),
        manifest,
        sparse: request.filter.is_none(),
        filter: request.filter.as_ref().map(|f| f.lines().to_vec()),
        triggers: request.triggers.list().to_vec(),
        files: totals.files,
        bytes: totals.bytes,
        inodes: totals.inodes,
        created: crate::rfc3339(now),
        creator: crate::creator(),
        expires: expires.map(crate::rfc3339),
        expires_unix: expires.map(|t| t.unix_timestamp()),
        objects,
        metadata: request.metadata.metadata.clone(),
    };
    record.v = record.schema_version();
    record
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
