//! Read-only commands: list, check, show, show-filter, show-triggers, diff.

use std::io::Write;

use anyhow::{Context, Result};
use dom_bus::Bus;
use dom_model::diff::Change;
use dom_model::{ImageMessage, ImageName, ImageRecord, Inode, Manifest};
use dom_store::{ContentStore, NatsStore};

pub async fn list(bus: &Bus, all: bool, out: &mut impl Write) -> Result<()> {
    bus.ensure_image_streams().await?;
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    for stored in bus.images().await? {
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
    let store = NatsStore::open(bus).await?;
    let stored = store
        .manifest(record.manifest)
        .await
        .with_context(|| format!("image {name}: manifest"))?;
    Ok((record, stored.manifest))
}

pub async fn show(bus: &Bus, name: &ImageName, out: &mut impl Write) -> Result<()> {
    let (_, manifest) = load(bus, name).await?;
    for entry in &manifest.entries {
        writeln!(out, "{}", show_line(&manifest, entry))?;
    }
    Ok(())
}

/// One `show` line: mode, owner, size, mtime, SHA-512, path, link target.
pub fn show_line(manifest: &Manifest, entry: &dom_model::Entry) -> String {
    let inode = manifest.resolve(entry);
    let mode = inode
        .mode()
        .map_or_else(|| "rwxrwxrwx".to_string(), mode_string);
    let (uid, gid) = inode.owner().unwrap_or((0, 0));
    let size = match inode {
        Inode::File { size, .. } => size.to_string(),
        Inode::Char { rdev, .. } | Inode::Block { rdev, .. } => {
            format!("{},{}", libc::major(*rdev), libc::minor(*rdev))
        }
        _ => "0".to_string(),
    };
    let mtime = inode
        .mtime()
        .and_then(|(s, _)| time::OffsetDateTime::from_unix_timestamp(s).ok())
        .map_or_else(|| "-".to_string(), crate::rfc3339);
    let hash = match inode {
        Inode::File { object, .. } => object.to_hex(),
        _ => "-".to_string(),
    };
    let tail = match &entry.inode {
        Inode::Symlink { target, .. } => format!(" -> {target}"),
        Inode::Link { target } => format!(" => {target}"),
        _ => String::new(),
    };
    format!(
        "{}{mode} {uid}:{gid} {size} {mtime} {hash} {}{tail}",
        inode.type_char(),
        entry.path
    )
}

/// `rwxr-xr-x`, with setuid/setgid/sticky as `ls` shows them.
pub fn mode_string(mode: u32) -> String {
    let mut s: Vec<char> = "rwxrwxrwx"
        .chars()
        .enumerate()
        .map(|(i, c)| if mode & (0o400 >> i) != 0 { c } else { '-' })
        .collect();
    for (bit, pos, set, unset) in [
        (0o4000, 2, 's', 'S'),
        (0o2000, 5, 's', 'S'),
        (0o1000, 8, 't', 'T'),
    ] {
        if mode & bit != 0 {
            s[pos] = if s[pos] == 'x' { set } else { unset };
        }
    }
    s.into_iter().collect()
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

pub async fn diff(
    bus: &Bus,
    left: &ImageName,
    right: &ImageName,
    out: &mut impl Write,
) -> Result<()> {
    let (_, l) = load(bus, left).await?;
    let (_, r) = load(bus, right).await?;
    for change in dom_model::diff::diff(&l, &r) {
        match change {
            Change::Added(p) => writeln!(out, "+ {p}")?,
            Change::Removed(p) => writeln!(out, "- {p}")?,
            Change::Changed(p, what) => writeln!(out, "M {p} ({})", what.join(", "))?,
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::mode_string;

    #[test]
    fn modes() {
        assert_eq!(mode_string(0o755), "rwxr-xr-x");
        assert_eq!(mode_string(0o4755), "rwsr-xr-x");
        assert_eq!(mode_string(0o1777), "rwxrwxrwt");
        assert_eq!(mode_string(0o2644), "rw-r-Sr--");
    }
}
