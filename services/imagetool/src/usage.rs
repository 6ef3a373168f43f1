//! What the store holds and what it is for: `du` (per image, and for the
//! whole store), `list-unreferenced` (objects no live image needs, see
//! [`dom_store::usage`]) and `delete-unreferenced`, the collection.

use std::io::Write;
use std::time::Duration;

use anyhow::Result;
use dom_bus::Bus;
use dom_model::{ImageMessage, ImageName, Tombstone};
use dom_store::gate::{Pass, Side};
use dom_store::usage::{ImageUsage, Unreferenced, Usage};
use dom_store::{NatsStore, Store};
use futures::{StreamExt, TryStreamExt};

use crate::human_bytes;

/// `du [NAME…]`: the named images (every live one if none is named), then
/// the store's totals.
pub async fn du(bus: &Bus, names: &[ImageName], out: &mut impl Write) -> Result<()> {
    let usage = Usage::measure(bus).await?;
    for name in names {
        if !usage.images.iter().any(|image| &image.name == name) {
            bus.image_record(name).await?;
            anyhow::bail!("image {name} has expired");
        }
    }
    let shown: Vec<&ImageUsage> = usage
        .images
        .iter()
        .filter(|image| names.is_empty() || names.contains(&image.name))
        .collect();
    let width = shown
        .iter()
        .map(|image| image.name.as_str().len())
        .max()
        .unwrap_or(0)
        .max(5);
    writeln!(
        out,
        "{:width$}  {:>8}  {:>10}  {:>8}  {:>10}  {:>10}",
        "image", "files", "bytes", "objects", "stored", "own"
    )?;
    for image in shown {
        writeln!(
            out,
            "{:width$}  {:>8}  {:>10}  {:>8}  {:>10}  {:>10}",
            image.name.as_str(),
            image.files,
            human_bytes(image.bytes),
            image.objects,
            human_bytes(image.object_bytes),
            human_bytes(image.own_bytes),
        )?;
    }
    let held = match &usage.location {
        None => format!("the server's stream {}", human_bytes(usage.stream_bytes)),
        Some(at) => format!("{} listed at {at}", human_bytes(usage.stream_bytes)),
    };
    writeln!(
        out,
        "store: {} objects, {}; unreferenced {} objects, {}; {held}",
        usage.objects,
        human_bytes(usage.bytes),
        usage.unreferenced.len(),
        human_bytes(usage.unreferenced_bytes()),
    )?;
    Ok(())
}

/// `list-unreferenced [--ids]`: how many objects no live image needs and
/// their bytes, with `ids` each one's id and size first.
pub async fn list_unreferenced(bus: &Bus, ids: bool, out: &mut impl Write) -> Result<()> {
    let usage = Usage::measure(bus).await?;
    if ids {
        for object in &usage.unreferenced {
            writeln!(out, "{} {}", object.id.to_hex(), object.size)?;
        }
    }
    writeln!(
        out,
        "{} unreferenced objects, {} ({} bytes)",
        usage.unreferenced.len(),
        human_bytes(usage.unreferenced_bytes()),
        usage.unreferenced_bytes()
    )?;
    Ok(())
}

/// How long a collection waits for adds under way to end.
const COLLECT_PATIENCE: Duration = Duration::from_secs(60);
/// How many objects are deleted at once.
const DELETE_CONCURRENCY: usize = 16;

/// `delete-unreferenced [--dry-run] [--older-than D]`: tombstones the
/// expired images for good, then deletes the objects no live image needs
/// (stored more than `older_than` ago, if given). Only the operator may.
/// It runs with no add under way (the gate, `dom_store::gate`); a dry run
/// changes nothing and needs no gate.
pub async fn delete_unreferenced(
    bus: &Bus,
    dry_run: bool,
    older_than: Option<Duration>,
    out: &mut impl Write,
) -> Result<()> {
    bus.ensure_image_streams().await?;
    let store = Store::open(bus).await?;
    if dry_run {
        return collect(bus, &store, None, older_than, out).await;
    }
    // The gate is in the NATS bucket, wherever the objects live. Refused
    // before anything changes, to all but the operator.
    let gate = match &store {
        Store::Nats(nats) => nats.clone(),
        Store::Blob(_) => NatsStore::open(bus).await?,
    };
    gate.may_delete().await?;
    let pass = gate
        .enter_gate(Side::Collect, &crate::creator(), COLLECT_PATIENCE, |why| {
            eprintln!("imagetool: waiting: {why}")
        })
        .await?;
    let collected = collect(bus, &store, Some(&pass), older_than, out).await;
    if let Err(e) = pass.leave().await {
        tracing::warn!(error = %e, "cannot leave the gate; adds wait until it is stale");
    }
    collected
}

/// The collection itself; with no `pass`, a dry run.
async fn collect(
    bus: &Bus,
    store: &Store,
    pass: Option<&Pass>,
    older_than: Option<Duration>,
    out: &mut impl Write,
) -> Result<()> {
    let now = time::OffsetDateTime::now_utc();
    let mut expired = Vec::new();
    for image in bus.images().await? {
        if let ImageMessage::Record(record) = image.message {
            if record.is_expired(now.unix_timestamp()) {
                expired.push(record.name);
            }
        }
    }
    if pass.is_some() {
        for name in &expired {
            bus.delete_image(&Tombstone {
                v: dom_model::image::IMAGE_RECORD_VERSION,
                name: name.clone(),
                deleted: true,
                deleted_at: crate::rfc3339(now),
                by: format!("{} (expired)", crate::creator()),
            })
            .await?;
        }
    }
    let usage = Usage::measure(bus).await?;
    let cutoff = older_than.map(|age| now - age);
    let chosen: Vec<&Unreferenced> = usage
        .unreferenced
        .iter()
        .filter(|object| match (cutoff, object.stored) {
            (Some(cutoff), Some(stored)) => stored < cutoff,
            _ => true,
        })
        .collect();
    let bytes: u64 = chosen.iter().map(|object| object.size).sum();
    // What a collection cut short left: chunks whose metadata it removed.
    let orphans = match store {
        Store::Nats(nats) => nats.orphaned_chunks(&usage.ids).await?,
        Store::Blob(_) => Vec::new(),
    };
    let orphan_bytes: u64 = orphans.iter().map(|(_, size)| size).sum();
    let Some(pass) = pass else {
        for object in &chosen {
            writeln!(out, "would delete {} {}", object.id.to_hex(), object.size)?;
        }
        writeln!(
            out,
            "would delete {} unreferenced objects, {}; {} expired images would be tombstoned",
            chosen.len(),
            human_bytes(bytes),
            expired.len()
        )?;
        if !orphans.is_empty() {
            writeln!(
                out,
                "would delete the content of {} objects a collection cut short left, {}",
                orphans.len(),
                human_bytes(orphan_bytes)
            )?;
        }
        return Ok(());
    };
    futures::stream::iter(chosen.iter().copied())
        .map(|object| async move {
            pass.check()?;
            store.delete(object).await?;
            anyhow::Ok(())
        })
        .buffer_unordered(DELETE_CONCURRENCY)
        .try_collect::<()>()
        .await?;
    writeln!(
        out,
        "deleted {} unreferenced objects, {}; tombstoned {} expired images",
        chosen.len(),
        human_bytes(bytes),
        expired.len()
    )?;
    if let (Store::Nats(nats), false) = (store, orphans.is_empty()) {
        for (id, _) in &orphans {
            pass.check()?;
            nats.purge_chunk(*id).await?;
        }
        writeln!(
            out,
            "deleted the content of {} objects a collection cut short left, {}",
            orphans.len(),
            human_bytes(orphan_bytes)
        )?;
    }
    Ok(())
}
