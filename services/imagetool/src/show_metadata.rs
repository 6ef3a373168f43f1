//! `imagetool show-metadata`: what an image is and where it comes from —
//! made when and by whom, its expiry, build commit and repository, its
//! release notes and build log, and its tags — for people and, with
//! `--json`, for release scripts.
//!
//! The release notes and build log are objects in the image's store;
//! their sizes are those of the objects read back and checked against
//! their ids, and `--release-notes` / `--build-log` print the content.

use std::io::Write;

use anyhow::{Context, Result};
use dom_bus::Bus;
use dom_model::{ImageName, ImageRecord, ObjectId};
use dom_store::{ContentStore, Store};
use serde_json::json;

/// What `show-metadata` prints.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Shown {
    /// One line per field, then `tag KEY=VALUE` per tag.
    Lines,
    Json,
    ReleaseNotes,
    BuildLog,
}

pub async fn show_metadata(
    bus: &Bus,
    name: &ImageName,
    shown: Shown,
    out: &mut impl Write,
) -> Result<()> {
    bus.ensure_image_streams().await?;
    let record = bus.image_record(name).await?;
    let metadata = &record.metadata;
    let object = |what: &str, id: Option<ObjectId>| {
        id.with_context(|| format!("image {name} has no {what}"))
    };
    match shown {
        Shown::ReleaseNotes => {
            let id = object(
                "release notes (add it with -releaseNotes FILE)",
                metadata.release_notes,
            )?;
            let store = crate::inspect::store_for(bus, &record).await?;
            return Ok(out.write_all(&read(&store, name, "release notes", id).await?)?);
        }
        Shown::BuildLog => {
            let id = object("build log (add it with -buildLog FILE)", metadata.build_log)?;
            let store = crate::inspect::store_for(bus, &record).await?;
            return Ok(out.write_all(&read(&store, name, "build log", id).await?)?);
        }
        Shown::Lines | Shown::Json => {}
    }
    let sizes = sizes(bus, &record).await?;
    if shown == Shown::Json {
        let object = |id: Option<ObjectId>, size: Option<u64>| {
            id.map(|id| json!({"id": id.to_hex(), "bytes": size}))
        };
        let value = json!({
            "name": record.name,
            "created": record.created,
            "creator": record.creator,
            "expires": record.expires,
            "tags": metadata.tags,
            "build_commit_id": metadata.build_commit_id,
            "build_git_url": metadata.build_git_url,
            "release_notes": object(metadata.release_notes, sizes.0),
            "build_log": object(metadata.build_log, sizes.1),
        });
        writeln!(out, "{}", serde_json::to_string_pretty(&value)?)?;
        return Ok(());
    }
    writeln!(out, "image {}", record.name)?;
    writeln!(out, "created {} by {}", record.created, record.creator)?;
    match &record.expires {
        Some(at) => writeln!(out, "expires {at}")?,
        None => writeln!(out, "expires never")?,
    }
    if let Some(commit) = &metadata.build_commit_id {
        writeln!(out, "build commit {commit}")?;
    }
    if let Some(url) = &metadata.build_git_url {
        writeln!(out, "build git url {url}")?;
    }
    for (what, id, size) in [
        ("release notes", metadata.release_notes, sizes.0),
        ("build log", metadata.build_log, sizes.1),
    ] {
        if let (Some(id), Some(size)) = (id, size) {
            writeln!(out, "{what} {id} ({size} bytes)")?;
        }
    }
    for (key, value) in &metadata.tags {
        writeln!(out, "tag {key}={value}")?;
    }
    Ok(())
}

/// The sizes of the release notes and the build log, read back from the
/// image's store (no store is opened for an image that has neither).
async fn sizes(bus: &Bus, record: &ImageRecord) -> Result<(Option<u64>, Option<u64>)> {
    let metadata = &record.metadata;
    if metadata.release_notes.is_none() && metadata.build_log.is_none() {
        return Ok((None, None));
    }
    let store = crate::inspect::store_for(bus, record).await?;
    let mut out = [None, None];
    for (slot, what, id) in [
        (0, "release notes", metadata.release_notes),
        (1, "build log", metadata.build_log),
    ] {
        if let Some(id) = id {
            out[slot] = Some(read(&store, &record.name, what, id).await?.len() as u64);
        }
    }
    Ok((out[0], out[1]))
}

/// Reads one of the image's metadata objects, verified.
async fn read(store: &Store, name: &ImageName, what: &str, id: ObjectId) -> Result<bytes::Bytes> {
    store
        .get_at_most(id, crate::metadata::MAX_FILE_BYTES)
        .await
        .with_context(|| format!("image {name}: {what}"))
}
