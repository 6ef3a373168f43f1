//! `imagetool addi` and `addrep`: images made from an image already
//! published and archives laid over it (see `dom_model::overlay` for the
//! rules).
//!
//! The source image's objects are in the store already, so only the
//! archives' objects the new image needs and the store lacks are uploaded;
//! the source's are never fetched. The archives are read twice: once to
//! make the new tree, so that an archive the image refuses changes nothing
//! on the server, then to upload. As `add` does, the record is published only once
//! every object is stored, from inside the collection gate.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use dom_bus::Bus;
use dom_model::image::{HealthCheck, Metadata};
use dom_model::overlay::{self, LayerEntry};
use dom_model::{Filter, ImageName, ImageRecord, Manifest, ObjectId, Triggers};
use dom_scan::Counters;
use dom_store::gate::Pass;
use dom_store::{ContentStore, Store};

use crate::metadata::MetadataRequest;
use crate::source::{self, SourceOptions};
use crate::upload;

/// How the archives make the new image of the source image.
pub enum How {
    /// `addi`: laid over the source's tree; the new image has this filter
    /// (`None`: sparse) and these triggers.
    Overlay {
        filter: Option<Filter>,
        triggers: Triggers,
    },
    /// `addrep`: put in place of the source's files; the new image keeps
    /// the source's filter, triggers, health check and build metadata.
    Replace,
}

/// What was checked before anything is sent.
pub struct FromImageRequest {
    pub name: ImageName,
    pub source: ImageName,
    /// Read in this order; each is a `.tar`, `.tar.gz`/`.tgz` or directory.
    pub layers: Vec<PathBuf>,
    pub how: How,
    pub expires_in: Option<Duration>,
    /// Build metadata and tags given for the new image: all it has for
    /// `addi`, over the source's for `addrep`.
    pub metadata: MetadataRequest,
}

impl FromImageRequest {
    /// `addi NAME SOURCE [TARFILE] FILTERFILE TRIGGERSFILE`: with no
    /// TARFILE, as the original's `addi`, the source's tree under a new
    /// filter and triggers.
    pub fn addi(
        name: &str,
        source: &str,
        rest: &[String],
        expires_in: Option<Duration>,
    ) -> Result<Self> {
        let (layers, filter_file, triggers_file) = match rest {
            [filter, triggers] => (vec![], filter, triggers),
            [tar, filter, triggers] => (vec![PathBuf::from(tar)], filter, triggers),
            _ => bail!("addi takes NAME SOURCE_IMAGE [TARFILE] FILTERFILE TRIGGERSFILE"),
        };
        Self::new(
            name,
            source,
            layers,
            How::Overlay {
                filter: crate::add::load_filter(filter_file)?,
                triggers: crate::add::load_triggers(triggers_file)?,
            },
            expires_in,
        )
    }

    /// `addrep NAME SOURCE TARFILE...`.
    pub fn addrep(
        name: &str,
        source: &str,
        layers: &[PathBuf],
        expires_in: Option<Duration>,
    ) -> Result<Self> {
        Self::new(name, source, layers.to_vec(), How::Replace, expires_in)
    }

    fn new(
        name: &str,
        source: &str,
        layers: Vec<PathBuf>,
        how: How,
        expires_in: Option<Duration>,
    ) -> Result<Self> {
        let name = ImageName::parse(name)?;
        let source = ImageName::parse(source)?;
        for layer in &layers {
            if let Err(e) = std::fs::metadata(layer) {
                bail!("cannot read archive {}: {e}", layer.display());
            }
        }
        Ok(Self {
            name,
            source,
            layers,
            how,
            expires_in,
            metadata: MetadataRequest::default(),
        })
    }

    /// The new image's build metadata and tags (`-tag`, `-buildCommitId`,
    /// ...).
    pub fn with_metadata(self, metadata: MetadataRequest) -> Self {
        Self { metadata, ..self }
    }
}

/// What `addi` or `addrep` did.
pub struct FromImageSummary {
    name: ImageName,
    source: ImageName,
    files: u64,
    bytes: u64,
    uploaded: u64,
    uploaded_bytes: u64,
    stored: u64,
    elapsed: Duration,
}

impl std::fmt::Display for FromImageSummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "added {} from {}: {} files, {}, {} objects uploaded ({}), {} already stored, in {:.2} s",
            self.name,
            self.source,
            self.files,
            crate::human_bytes(self.bytes),
            self.uploaded,
            crate::human_bytes(self.uploaded_bytes),
            self.stored,
            self.elapsed.as_secs_f64()
        )
    }
}

/// Makes the image. On any error nothing is published.
pub async fn add_from_image(bus: &Bus, request: FromImageRequest) -> Result<FromImageSummary> {
    let started = Instant::now();
    bus.ensure_image_streams().await?;
    crate::add::refuse_taken(bus, &request.name).await?;
    let source = bus.image_record(&request.source).await?;
    if source.is_expired(time::OffsetDateTime::now_utc().unix_timestamp()) {
        bail!(
            "image {} has expired; make the new image from a live one",
            source.name
        );
    }
    // The new image's objects live where the source's do.
    let store = crate::inspect::store_for(bus, &source).await?;
    let base = store
        .manifest(source.manifest)
        .await
        .with_context(|| format!("image {}: manifest", source.name))?
        .manifest;
    let pass = upload::enter_gate(bus, &store, false).await?;
    let made = entered(bus, &store, &pass, &request, &source, &base, started).await;
    upload::leave_gate(pass).await;
    made
}

/// The work, once in at the gate.
async fn entered(
    bus: &Bus,
    store: &Store,
    pass: &Pass,
    request: &FromImageRequest,
    source: &ImageRecord,
    base: &Manifest,
    started: Instant,
) -> Result<FromImageSummary> {
    let filter = match &request.how {
        How::Overlay { filter, .. } => filter.clone().unwrap_or_else(Filter::empty),
        How::Replace => match &source.filter {
            Some(lines) => Filter::parse(&lines.join("\n"))
                .with_context(|| format!("image {}: filter", source.name))?,
            None => Filter::empty(),
        },
    };
    // First the archives are only read, so that one the image refuses
    // (a path addrep cannot replace, a link to a filtered path) changes
    // nothing on the server; then read again, uploading only the objects
    // the new image needs that the store lacks.
    let (paths, _spooled) = spool_streams(&request.layers)?;
    let layers = {
        let (paths, filter) = (paths.clone(), filter.clone());
        tokio::task::spawn_blocking(move || read_layers(&paths, &filter, Box::new(|_, _| {})))
            .await
            .context("reading the archives stopped")??
    };
    let mut manifest = base.clone();
    for (path, layer) in request.layers.iter().zip(&layers) {
        let made = match &request.how {
            How::Overlay { .. } => overlay::overlay(&manifest, layer, &filter),
            How::Replace => overlay::replace(&manifest, layer, &filter),
        };
        manifest = made.with_context(|| format!("archive {}", path.display()))?;
    }
    if request.layers.is_empty() {
        // `addi` with no archive: the source's tree under the new filter.
        manifest = overlay::overlay(&manifest, &[], &filter)?;
    }
    let in_base: HashSet<ObjectId> = base.objects().into_iter().map(|(id, _)| id).collect();
    let needed: Arc<HashSet<ObjectId>> = Arc::new(
        manifest
            .objects()
            .into_iter()
            .map(|(id, _)| id)
            .filter(|id| !in_base.contains(id))
            .collect(),
    );
    let uploaded_bytes = Arc::new(AtomicU64::new(0));
    let scan = {
        let (paths, filter, needed) = (paths.clone(), filter.clone(), needed.clone());
        move |sink: dom_scan::ObjectSink| {
            let wanted = move |id, content| {
                if needed.contains(&id) {
                    sink(id, content)
                }
            };
            read_layers(&paths, &filter, Box::new(wanted))
        }
    };
    let listing = upload::start_listing(store);
    let scanned = upload::scan_and_upload(store, listing, &uploaded_bytes, scan).await?;
    let missing = needed
        .iter()
        .filter(|id| !scanned.existing.contains(id))
        .count() as u64;
    if scanned.uploaded != missing || scanned.value != layers {
        bail!("an archive changed while it was being read; try again");
    }
    let totals = manifest.totals();
    let metadata = match &request.how {
        How::Overlay { .. } => request.metadata.over(&Metadata::default())?,
        How::Replace => request.metadata.over(&source.metadata)?,
    };
    // The notes and the log the record names are stored before it.
    request.metadata.upload(store, &scanned.existing).await?;
    let record = |manifest_id| {
        let (sparse, filter, triggers, health_check, metadata) = match &request.how {
            How::Overlay { filter, triggers } => (
                filter.is_none(),
                filter.as_ref().map(|f| f.lines().to_vec()),
                triggers.list().to_vec(),
                None::<HealthCheck>,
                metadata,
            ),
            How::Replace => (
                source.sparse,
                source.filter.clone(),
                source.triggers.clone(),
                source.health_check.clone(),
                metadata,
            ),
        };
        let objects = store.location().map(str::to_string);
        let made = crate::add::made_now(
            &request.name,
            manifest_id,
            &totals,
            request.expires_in,
            objects,
        );
        let mut record = ImageRecord {
            sparse,
            filter,
            triggers,
            health_check,
            metadata,
            ..made
        };
        record.v = record.schema_version();
        record
    };
    upload::publish(bus, store, pass, &scanned.existing, &manifest, record).await?;
    Ok(FromImageSummary {
        name: request.name.clone(),
        source: request.source.clone(),
        files: totals.files,
        bytes: totals.bytes,
        uploaded: scanned.uploaded,
        uploaded_bytes: uploaded_bytes.load(std::sync::atomic::Ordering::Relaxed),
        stored: totals.objects.saturating_sub(scanned.uploaded),
        elapsed: started.elapsed(),
    })
}

/// The layers as paths that can be read twice: a pipe (`<(...)`, a fifo)
/// is copied to a temporary file first, which lives as long as the files
/// returned with it.
fn spool_streams(layers: &[PathBuf]) -> Result<(Vec<PathBuf>, Vec<tempfile::NamedTempFile>)> {
    let mut spooled = Vec::new();
    let mut paths = Vec::with_capacity(layers.len());
    for layer in layers {
        let meta = std::fs::metadata(layer)
            .with_context(|| format!("cannot read archive {}", layer.display()))?;
        if meta.is_file() || meta.is_dir() {
            paths.push(layer.clone());
            continue;
        }
        let mut tmp = tempfile::NamedTempFile::new().context("cannot make a temporary file")?;
        let mut from = std::fs::File::open(layer)
            .with_context(|| format!("cannot read archive {}", layer.display()))?;
        std::io::copy(&mut from, &mut tmp)
            .with_context(|| format!("cannot read archive {}", layer.display()))?;
        paths.push(tmp.path().to_path_buf());
        spooled.push(tmp);
    }
    Ok((paths, spooled))
}

/// Reads every layer in turn, handing each object to `sink`.
fn read_layers(
    layers: &[PathBuf],
    filter: &Filter,
    sink: dom_scan::ObjectSink,
) -> Result<Vec<Vec<LayerEntry>>, source::SourceError> {
    let sink: Arc<dom_scan::ObjectSink> = Arc::new(sink);
    let counters = Counters::default();
    layers
        .iter()
        .map(|layer: &PathBuf| {
            let sink = sink.clone();
            let options = SourceOptions {
                filter: filter.clone(),
                cache: None,
                sink: Some(Box::new(move |id, content| sink(id, content))),
            };
            source::scan_layer(Path::new(layer), options, &counters)
        })
        .collect()
}
