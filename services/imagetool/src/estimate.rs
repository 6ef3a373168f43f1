//! `imagetool estimate-usage`: the space a machine's file system needs
//! for an image, estimated as the original does it.
//!
//! Each inode is counted once (the names of a hard-linked file share it):
//! a regular file takes its size rounded up to whole 4 KiB blocks, a
//! directory one block, a symlink 64 bytes; devices and fifos take no data
//! blocks. Inode tables and file-system metadata are not counted. The
//! distinct objects (what a machine fetches) are reported beside it.

use std::io::Write;

use anyhow::Result;
use dom_bus::Bus;
use dom_model::{ImageName, Inode, Manifest};

use crate::human_bytes;

/// The block a file's size is rounded up to, and a directory takes.
pub const BLOCK: u64 = 4096;
/// What a symlink is counted as.
pub const SYMLINK: u64 = 64;

/// An image's estimated usage, in parts.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Estimate {
    /// Regular-file inodes (hard links counted once).
    pub files: u64,
    /// Their content.
    pub file_bytes: u64,
    /// Their content in whole blocks.
    pub file_blocks: u64,
    pub dirs: u64,
    pub symlinks: u64,
    /// Devices and fifos.
    pub specials: u64,
    /// Distinct objects and their bytes.
    pub objects: u64,
    pub object_bytes: u64,
}

impl Estimate {
    pub fn of(manifest: &Manifest) -> Self {
        let mut estimate = Estimate::default();
        for entry in &manifest.entries {
            match &entry.inode {
                Inode::File { size, .. } => {
                    estimate.files += 1;
                    estimate.file_bytes += size;
                    estimate.file_blocks += size.div_ceil(BLOCK) * BLOCK;
                }
                Inode::Dir { .. } => estimate.dirs += 1,
                Inode::Symlink { .. } => estimate.symlinks += 1,
                Inode::Link { .. } => {}
                Inode::Char { .. } | Inode::Block { .. } | Inode::Fifo { .. } => {
                    estimate.specials += 1
                }
            }
        }
        let totals = manifest.totals();
        estimate.objects = totals.objects;
        estimate.object_bytes = totals.object_bytes;
        estimate
    }

    /// The estimate: file blocks, directory blocks and symlinks.
    pub fn total(&self) -> u64 {
        self.file_blocks + self.dirs * BLOCK + self.symlinks * SYMLINK
    }
}

/// `human (N bytes)`.
fn both(n: u64) -> String {
    format!("{} ({n} bytes)", human_bytes(n))
}

/// Prints the estimate for image `name`.
pub async fn estimate_usage(bus: &Bus, name: &ImageName, out: &mut impl Write) -> Result<()> {
    let (_, manifest) = crate::inspect::load(bus, name).await?;
    let e = Estimate::of(&manifest);
    writeln!(out, "estimated usage of {name}: {}", both(e.total()))?;
    writeln!(
        out,
        "files: {} (hard links counted once), {} of content, {} in 4 KiB blocks",
        e.files,
        both(e.file_bytes),
        both(e.file_blocks)
    )?;
    writeln!(out, "directories: {}, {}", e.dirs, both(e.dirs * BLOCK))?;
    writeln!(
        out,
        "symlinks: {}, {}",
        e.symlinks,
        both(e.symlinks * SYMLINK)
    )?;
    writeln!(out, "devices and fifos: {}, no data", e.specials)?;
    writeln!(
        out,
        "objects to fetch: {} distinct, {}",
        e.objects,
        both(e.object_bytes)
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use dom_model::manifest::ManifestBuilder;
    use dom_model::ObjectId;

    fn file(content: &[u8]) -> Inode {
        Inode::File {
            mode: 0o644,
            uid: 0,
            gid: 0,
            mtime: 0,
            mtime_ns: 0,
            size: content.len() as u64,
            object: ObjectId::of(content),
        }
    }

    #[test]
    fn blocks_per_inode_links_once() {
        let mut b = ManifestBuilder::new();
        b.add("/a".into(), file(&[1; 4097]), Some(1)).unwrap();
        b.add("/a.hard".into(), file(&[1; 4097]), Some(1)).unwrap();
        b.add("/d/empty".into(), file(b""), None).unwrap();
        b.add("/d/copy".into(), file(&[1; 4097]), None).unwrap();
        b.add(
            "/l".into(),
            Inode::Symlink {
                uid: 0,
                gid: 0,
                target: "a".into(),
            },
            None,
        )
        .unwrap();
        let e = Estimate::of(&b.finish().unwrap());
        assert_eq!((e.files, e.file_bytes, e.file_blocks), (3, 8194, 16384));
        assert_eq!((e.dirs, e.symlinks, e.objects), (2, 1, 2));
        assert_eq!(e.total(), 16384 + 2 * 4096 + 64);
    }
}
