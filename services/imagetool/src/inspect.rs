//! Read-only commands: list (by tag, too), check, show, show-filter,
//! show-triggers, diff.

use std::io::Write;

use anyhow::{Context, Result};
use dom_bus::Bus;
use dom_model::diff::Change;
use dom_model::manifest::listing;
use dom_model::{ImageMessage, ImageName, ImageRecord, Manifest};
use dom_store::{ContentStore, Store};

/// Lists images.
pub async fn list(bus: &Bus, all: bool, out: &mut impl Write) -> Result<()> {
    list_tagged(bus, all, &[], out).await
}

/// Lists images; with `tags`, only those carrying all of them.
pub async fn list_tagged(
    bus: &Bus,
    all: bool,
    tags: &[(String, String)],
    out: &mut impl Write,
) -> Result<()> {
    bus.ensure_image_streams().await?;
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    for stored in bus.images().await? {
        let tagged = match &stored.message {
            ImageMessage::Record(r) => r.metadata.matches_tags(tags),
            ImageMessage::Deleted(_) => tags.is_empty(),
        };
        if !tagged {
            continue;
        }
        match &stored.message {
            ImageMessage::Record(r) if !r.is_expired(now) => writeln!(out, "{}", r.name)?,
            ImageMessage::Record(r) if all => writeln!(out, "{} (expired)", r.name)?,
            ImageMessage::Deleted(t) if all => writeln!(out, "{} (deleted)", t.name)?,
            _ => {}
        }
    }
    Ok(())
}

pub async fn check(bus: &Bus, name: &ImageName) -> Result<bool> {
    bus.ensure_image_streams().await?;
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    Ok(matches!(
        bus.image(name).await?,
        Some(stored) if matches!(&stored.message, ImageMessage::Record(r) if !r.is_expired(now))
    ))
}

/// Fetches an image's record and decoded manifest.
pub async fn load(bus: &Bus, name: &ImageName) -> Result<(ImageRecord, Manifest)> {
    bus.ensure_image_streams().await?;
    let record = bus.image_record(name).await?;
    let store = store_for(bus, &record).await?;
    let stored = store
        .manifest(record.manifest)
        .await
        .with_context(|| format!("image {name}: manifest"))?;
    Ok((record, stored.manifest))
}

/// The store this tool was pointed at, if it is where `record`'s objects
/// live; else an error saying where they are.
pub async fn store_for(bus: &Bus, record: &ImageRecord) -> Result<Store> {
    let store = Store::open(bus).await?;
    let place = |at: Option<&str>| match at {
        Some(url) => format!("at {url} (--objects {url})"),
        None => "in the fleet's NATS object bucket (no --objects)".to_string(),
    };
    if record.objects.as_deref() != store.location() {
        anyhow::bail!(
            "image {}'s objects live {}, not {}",
            record.name,
            place(record.objects.as_deref()),
            place(store.location())
        );
    }
    Ok(store)
}

pub async fn show(bus: &Bus, name: &ImageName, out: &mut impl Write) -> Result<()> {
    let (_, manifest) = load(bus, name).await?;
    for line in listing::lines(&manifest) {
        writeln!(out, "{line}")?;
    }
    Ok(())
}

pub async fn show_filter(bus: &Bus, name: &ImageName, out: &mut impl Write) -> Result<()> {
    bus.ensure_image_streams().await?;
    let record = bus.image_record(name).await?;
    for line in record.filter.unwrap_or_default() {
        writeln!(out, "{line}")?;
    }
    Ok(())
}

pub async fn show_triggers(bus: &Bus, name: &ImageName, out: &mut impl Write) -> Result<()> {
    bus.ensure_image_streams().await?;
    let record = bus.image_record(name).await?;
    writeln!(out, "{}", serde_json::to_string_pretty(&record.triggers)?)?;
    Ok(())
}

pub async fn show_health_check(bus: &Bus, name: &ImageName, out: &mut impl Write) -> Result<()> {
    bus.ensure_image_streams().await?;
    let record = bus.image_record(name).await?;
    writeln!(
        out,
        "{}",
        serde_json::to_string_pretty(&record.health_check)?
    )?;
    Ok(())
}

pub async fn diff(
    bus: &Bus,
    left: &ImageName,
    right: &ImageName,
    out: &mut impl Write,
) -> Result<()> {
    let (_, l) = load(bus, left).await?;
    let (_, r) = load(bus, right).await?;
    write_changes(&l, &r, out)
}

/// Prints the paths added (`+`), removed (`-`) and changed (`M`, with
/// what changed) from `left` to `right`.
pub fn write_changes(left: &Manifest, right: &Manifest, out: &mut impl Write) -> Result<()> {
    for change in dom_model::diff::diff(left, right) {
        match change {
            Change::Added(p) => writeln!(out, "+ {p}")?,
            Change::Removed(p) => writeln!(out, "- {p}")?,
            Change::Changed(p, what) => writeln!(out, "M {p} ({})", what.join(", "))?,
        }
    }
    Ok(())
}
