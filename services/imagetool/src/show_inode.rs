//! `show-inode`: everything an image says about one path's inode, one
//! attribute a line (or as JSON): its type, mode as `ls` shows it and in
//! octal, owner, size, mtime, SHA-512 for a file, target for a symlink,
//! device numbers for a device, and the other paths of a hard link.

use std::io::Write;

use anyhow::{bail, Result};
use dom_model::manifest::listing::mode_string;
use dom_model::{path, Entry, ImageName, Inode, Manifest};
use serde::Serialize;

/// The entry at `image_path` in `manifest`, or an error naming both.
pub fn entry<'a>(name: &ImageName, manifest: &'a Manifest, image_path: &str) -> Result<&'a Entry> {
    let normal = path::normalise(image_path)?;
    match manifest.get(normal) {
        Some(entry) => Ok(entry),
        None => bail!("{image_path} is not in image {name}"),
    }
}

/// What kind of inode this is, in words.
pub fn kind(inode: &Inode) -> &'static str {
    match inode {
        Inode::Dir { .. } => "directory",
        Inode::File { .. } | Inode::Link { .. } => "regular file",
        Inode::Symlink { .. } => "symlink",
        Inode::Char { .. } => "character device",
        Inode::Block { .. } => "block device",
        Inode::Fifo { .. } => "fifo",
    }
}

/// One inode, as `show-inode` prints it.
#[derive(Debug, Serialize)]
pub struct InodeView {
    pub path: String,
    #[serde(rename = "type")]
    pub kind: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mode: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mode_octal: Option<String>,
    pub uid: u32,
    pub gid: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mtime: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sha512: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rdev: Option<String>,
    /// The other paths of the same inode (hard links), sorted.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub links: Vec<String>,
}

impl InodeView {
    /// The view of `entry`, an entry of `manifest`.
    pub fn of(manifest: &Manifest, entry: &Entry) -> Self {
        let inode = manifest.resolve(entry);
        let (uid, gid) = inode.owner().unwrap_or((0, 0));
        let mode = inode.mode();
        Self {
            path: entry.path.clone(),
            kind: kind(inode),
            mode: mode.map(|m| format!("{}{}", inode.type_char(), mode_string(m))),
            mode_octal: mode.map(|m| format!("{m:04o}")),
            uid,
            gid,
            size: match inode {
                Inode::File { size, .. } => Some(*size),
                _ => None,
            },
            mtime: inode
                .mtime()
                .and_then(|(s, _)| time::OffsetDateTime::from_unix_timestamp(s).ok())
                .map(dom_model::text::rfc3339),
            sha512: match inode {
                Inode::File { object, .. } => Some(object.to_hex()),
                _ => None,
            },
            target: match inode {
                Inode::Symlink { target, .. } => Some(target.clone()),
                _ => None,
            },
            rdev: match inode {
                Inode::Char { rdev, .. } | Inode::Block { rdev, .. } => {
                    Some(format!("{},{}", libc::major(*rdev), libc::minor(*rdev)))
                }
                _ => None,
            },
            links: other_links(manifest, entry),
        }
    }

    /// `name: value` lines, in a fixed order.
    pub fn write_text(&self, out: &mut impl Write) -> std::io::Result<()> {
        writeln!(out, "path: {}", self.path)?;
        writeln!(out, "type: {}", self.kind)?;
        if let (Some(mode), Some(octal)) = (&self.mode, &self.mode_octal) {
            writeln!(out, "mode: {mode} ({octal})")?;
        }
        writeln!(out, "uid: {}", self.uid)?;
        writeln!(out, "gid: {}", self.gid)?;
        let optional = [
            ("size", self.size.map(|s| s.to_string())),
            ("mtime", self.mtime.clone()),
            ("sha512", self.sha512.clone()),
            ("target", self.target.clone()),
            ("rdev", self.rdev.clone()),
        ];
        for (label, value) in optional {
            if let Some(value) = value {
                writeln!(out, "{label}: {value}")?;
            }
        }
        if !self.links.is_empty() {
            writeln!(out, "links: {}", self.links.join(" "))?;
        }
        Ok(())
    }
}

/// The other paths naming the same inode as `entry`: the first path of a
/// hard link and every link to it, but `entry`'s own.
fn other_links(manifest: &Manifest, entry: &Entry) -> Vec<String> {
    let first = match &entry.inode {
        Inode::Link { target } => target.as_str(),
        Inode::File { .. } => entry.path.as_str(),
        _ => return Vec::new(),
    };
    let mut links: Vec<String> = manifest
        .entries
        .iter()
        .filter(|e| {
            e.path == first || matches!(&e.inode, Inode::Link { target } if target == first)
        })
        .filter(|e| e.path != entry.path)
        .map(|e| e.path.clone())
        .collect();
    links.sort();
    links
}

/// Prints the inode at `image_path` in image `name`.
pub async fn show_inode(
    bus: &dom_bus::Bus,
    name: &ImageName,
    image_path: &str,
    json: bool,
    out: &mut impl Write,
) -> Result<()> {
    let (_, manifest) = crate::inspect::load(bus, name).await?;
    let view = InodeView::of(&manifest, entry(name, &manifest, image_path)?);
    if json {
        writeln!(out, "{}", serde_json::to_string_pretty(&view)?)?;
    } else {
        view.write_text(out)?;
    }
    Ok(())
}
