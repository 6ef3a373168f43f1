//! `imagetool add`: scan a source, upload the objects the bucket lacks,
//! then publish the image record — only after every object is stored.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use dom_bus::{Bus, ImageError};
use dom_model::image::Metadata;
use dom_model::image::{HealthCheck, IMAGE_RECORD_VERSION};
use dom_model::manifest::Totals;
use dom_model::{Filter, ImageMessage, ImageName, ImageRecord, ObjectId, Triggers};
use dom_store::gate::Pass;
use dom_store::Store;

use crate::metadata::MetadataRequest;
use crate::progress::Progress;
use crate::source::{self, SourceOptions};
use crate::upload;
use dom_scan::{Counters, HashCache};

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
        let filter = load_filter(filter_file)?;
        let triggers = load_triggers(triggers_file)?;
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

    /// What the image's record says besides its tree.
    pub(crate) fn spec(&self) -> ImageSpec {
        ImageSpec {
            name: self.name.clone(),
            filter: self.filter.clone(),
            triggers: self.triggers.clone(),
            expires_in: self.expires_in,
            health_check: self.health_check.clone(),
            metadata: self.metadata.metadata.clone(),
        }
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

/// The filter in `filter_file`; `""` is none (a sparse image).
pub fn load_filter(filter_file: &str) -> Result<Option<Filter>> {
    if filter_file.is_empty() {
        return Ok(None);
    }
    let text = std::fs::read_to_string(filter_file)
        .with_context(|| format!("cannot read filter file {filter_file}"))?;
    Ok(Some(
        Filter::parse(&text).with_context(|| format!("filter file {filter_file}"))?,
    ))
}

/// The triggers in `triggers_file`; `""` is none.
pub fn load_triggers(triggers_file: &str) -> Result<Triggers> {
    if triggers_file.is_empty() {
        return Ok(Triggers::empty());
    }
    let text = std::fs::read_to_string(triggers_file)
        .with_context(|| format!("cannot read triggers file {triggers_file}"))?;
    Triggers::parse(&text).with_context(|| format!("triggers file {triggers_file}"))
}

/// What an image's record says besides its tree.
pub(crate) struct ImageSpec {
    pub name: ImageName,
    pub filter: Option<Filter>,
    pub triggers: Triggers,
    pub expires_in: Option<Duration>,
    pub health_check: Option<HealthCheck>,
    pub metadata: Metadata,
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
    let pass = upload::enter_gate(bus, &store, show_progress).await?;
    let added = add_entered(bus, &store, &pass, request, show_progress, started).await;
    upload::leave_gate(pass).await;
    added
}

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
    let listing = upload::start_listing(store);

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
    let scan = {
        let source = request.source.clone();
        let filter = request.filter.clone().unwrap_or_else(Filter::empty);
        let (cache, counters) = (cache.clone(), counters.clone());
        move |sink| {
            let options = SourceOptions {
                filter,
                cache,
                sink: Some(sink),
            };
            source::scan(&source, options, &counters)
        }
    };
    let scanned = upload::scan_and_upload(store, listing, &uploaded_bytes, scan).await?;
    let (manifest, uploaded) = (scanned.value, scanned.uploaded);
    ticker.abort();
    bar.finish_and_clear();
    let totals = manifest.totals();
    tracing::info!(elapsed = ?started.elapsed(), files = totals.files, uploaded, "scanned and uploaded");

    // The notes and the log the record names are stored before it.
    request.metadata.upload(store, &scanned.existing).await?;
    let objects = store.location().map(str::to_string);
    upload::publish(bus, store, pass, &scanned.existing, &manifest, |id| {
        image_record(&request.spec(), id, &totals, objects)
    })
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

/// The record an add publishes for the image, made now.
pub(crate) fn image_record(
    request: &ImageSpec,
    manifest: ObjectId,
    totals: &Totals,
    objects: Option<String>,
) -> ImageRecord {
    let mut record = ImageRecord {
        health_check: request.health_check.clone(),
        sparse: request.filter.is_none(),
        filter: request.filter.as_ref().map(|f| f.lines().to_vec()),
        triggers: request.triggers.list().to_vec(),
        metadata: request.metadata.clone(),
        ..made_now(&request.name, manifest, totals, request.expires_in, objects)
    };
    record.v = record.schema_version();
    record
}

/// The record of a sparse image with no triggers, health check or
/// metadata, made now by this user: what every command that makes an
/// image starts from. Set `v` from [`ImageRecord::schema_version`] once
/// the rest is filled in.
pub(crate) fn made_now(
    name: &ImageName,
    manifest: ObjectId,
    totals: &Totals,
    expires_in: Option<Duration>,
    objects: Option<String>,
) -> ImageRecord {
    let now = time::OffsetDateTime::now_utc();
    let expires = expires_in.map(|d| now + d);
    ImageRecord {
        v: IMAGE_RECORD_VERSION,
        name: name.clone(),
        manifest,
        sparse: true,
        filter: None,
        triggers: vec![],
        files: totals.files,
        bytes: totals.bytes,
        inodes: totals.inodes,
        created: crate::rfc3339(now),
        creator: crate::creator(),
        expires: expires.map(crate::rfc3339),
        expires_unix: expires.map(|t| t.unix_timestamp()),
        objects,
        health_check: None,
        metadata: Default::default(),
    }
}
