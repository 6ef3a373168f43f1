//! `imagetool copy OLD NEW`: promote an image under a new name without
//! uploading anything. The original's order, `copy NEW OLD`, works too.
//!
//! NEW is OLD's record made again: the same manifest, filter, triggers,
//! health check, metadata and objects location, created now by this
//! user, with `-expiresIn`'s expiry. Metadata flags add to or override
//! OLD's; `-filter` and `-triggers` replace those two. The copy passes
//! the gate as an add does, and checks OLD is still live inside it, so no
//! collection deletes the objects NEW needs before it is published.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result};
use dom_bus::{Bus, ImageError};
use dom_model::{Filter, ImageName, ImageRecord, Triggers};
use dom_store::ContentStore;

use crate::metadata::{MetadataArgs, MetadataRequest};

/// The checked arguments of `copy`.
#[derive(Clone, Debug)]
pub struct CopyRequest {
    pub old: ImageName,
    pub new: ImageName,
    /// A new filter, replacing OLD's (and making a sparse image normal).
    pub filter: Option<Filter>,
    pub triggers: Option<Triggers>,
    pub metadata: MetadataRequest,
    pub expires_in: Option<Duration>,
}

impl CopyRequest {
    /// Checks names, files and flags before anything is sent.
    pub fn parse(
        old: &str,
        new: &str,
        filter: Option<&PathBuf>,
        triggers: Option<&PathBuf>,
        metadata: &MetadataArgs,
        expires_in: Option<Duration>,
    ) -> Result<Self> {
        let filter = match filter {
            None => None,
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .with_context(|| format!("cannot read filter file {}", path.display()))?;
                Some(
                    Filter::parse(&text)
                        .with_context(|| format!("filter file {}", path.display()))?,
                )
            }
        };
        let triggers = match triggers {
            None => None,
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .with_context(|| format!("cannot read triggers file {}", path.display()))?;
                Some(
                    Triggers::parse(&text)
                        .with_context(|| format!("triggers file {}", path.display()))?,
                )
            }
        };
        Ok(Self {
            old: ImageName::parse(old)?,
            new: ImageName::parse(new)?,
            filter,
            triggers,
            metadata: metadata.parse()?,
            expires_in,
        })
    }
}

/// What `copy` did.
#[derive(Debug)]
pub struct CopySummary {
    /// The image copied.
    pub from: ImageName,
    /// The new image's record, as published.
    pub record: ImageRecord,
    /// Objects stored: only new release notes or build logs.
    pub uploaded: u64,
}

impl std::fmt::Display for CopySummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let r = &self.record;
        write!(
            f,
            "copied {} to {}: {} files, {}, {} objects uploaded",
            self.from,
            r.name,
            r.files,
            crate::human_bytes(r.bytes),
            self.uploaded
        )
    }
}

pub async fn copy(bus: &Bus, request: &CopyRequest, show_progress: bool) -> Result<CopySummary> {
    bus.ensure_image_streams().await?;
    let request = &in_working_order(bus, request).await?;
    crate::add::refuse_taken(bus, &request.new).await?;
    let old = live_record(bus, &request.old).await?;
    let store = crate::inspect::store_for(bus, &old).await?;
    let pass = crate::upload::enter_gate(bus, &store, show_progress).await?;
    let copied = async {
        // Inside the gate: while OLD is live, no collection has deleted
        // its objects, and none runs until this copy leaves.
        let old = live_record(bus, &request.old).await?;
        let record = new_record(request, &old)?;
        let uploaded = if request.metadata.files.is_empty() {
            0
        } else {
            let existing = store.ids().await?;
            request.metadata.upload(&store, &existing).await?
        };
        pass.check()?;
        bus.publish_image(&record).await?;
        anyhow::Ok(CopySummary {
            from: request.old.clone(),
            record,
            uploaded,
        })
    }
    .await;
    crate::upload::leave_gate(pass).await;
    copied
}

/// The request with its names in the order that can work. The original
/// spells it `copy NEW OLD`, this tool `copy OLD NEW`; NEW must never have
/// been used and OLD must exist, so when the first name is unused and the
/// second is not, the original's order was meant.
async fn in_working_order(bus: &Bus, request: &CopyRequest) -> Result<CopyRequest> {
    let first_unused = bus.image(&request.old).await?.is_none();
    if first_unused && bus.image(&request.new).await?.is_some() {
        tracing::info!(old = %request.new, new = %request.old, "copy NEW OLD, as the original spells it");
        return Ok(CopyRequest {
            old: request.new.clone(),
            new: request.old.clone(),
            ..request.clone()
        });
    }
    Ok(request.clone())
}

/// OLD's record, refused when deleted, unknown or expired.
async fn live_record(bus: &Bus, name: &ImageName) -> Result<ImageRecord> {
    let record = bus.image_record(name).await?;
    if record.is_expired(time::OffsetDateTime::now_utc().unix_timestamp()) {
        return Err(ImageError::Expired(name.clone()).into());
    }
    Ok(record)
}

/// NEW's record: OLD's, made now, with what the request changes.
fn new_record(request: &CopyRequest, old: &ImageRecord) -> Result<ImageRecord> {
    let now = time::OffsetDateTime::now_utc();
    let expires = request.expires_in.map(|d| now + d);
    let mut record = ImageRecord {
        name: request.new.clone(),
        created: crate::rfc3339(now),
        creator: crate::creator(),
        expires: expires.map(crate::rfc3339),
        expires_unix: expires.map(|t| t.unix_timestamp()),
        metadata: request.metadata.over(&old.metadata)?,
        ..old.clone()
    };
    if let Some(filter) = &request.filter {
        record.sparse = false;
        record.filter = Some(filter.lines().to_vec());
    }
    if let Some(triggers) = &request.triggers {
        record.triggers = triggers.list().to_vec();
    }
    record.v = record.schema_version();
    Ok(record)
}
