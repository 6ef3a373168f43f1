//! From what the walk found to a manifest.

use rustc_hash::FxHashMap as HashMap;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;

use dom_model::manifest::ManifestBuilder;
use dom_model::{Inode, Manifest};

use crate::walk::{self, Counters, ScanError, ScanOptions};

/// A scanned tree.
#[derive(Debug)]
pub struct TreeScan {
    pub manifest: Manifest,
}

/// Scans the tree at `root` into a manifest: every directory, file (with
/// its SHA-512), symlink, device and fifo, hard links grouped by inode.
/// Sockets are left out: they belong to running programs, not images.
pub fn scan_tree(
    root: &Path,
    options: &ScanOptions,
    counters: &Counters,
) -> Result<TreeScan, ScanError> {
    let found = walk::walk(root, options, counters)?;
    tracing::debug!(paths = found.len(), root = %root.display(), "walked and hashed tree");
    let mut builder = ManifestBuilder::new();
    let mut link_keys: HashMap<(u64, u64), u64> = HashMap::default();
    for f in found {
        let meta = &f.meta;
        let ft = meta.file_type();
        let (mode, uid, gid) = (meta.mode() & 0o7777, meta.uid(), meta.gid());
        let (mtime, mtime_ns) = (meta.mtime(), meta.mtime_nsec() as u32);
        let link_key = if meta.nlink() > 1 && !ft.is_dir() {
            let next = link_keys.len() as u64;
            Some(*link_keys.entry((meta.dev(), meta.ino())).or_insert(next))
        } else {
            None
        };
        let inode = if ft.is_dir() {
            Inode::Dir { mode, uid, gid }
        } else if let Some((object, size)) = f.object {
            Inode::File {
                mode,
                uid,
                gid,
                mtime,
                mtime_ns,
                size,
                object,
            }
        } else if let Some(target) = f.link_target {
            if options.skip_unrepresentable
                && !dom_model::path::symlink_stays_inside(&f.path, &target)
            {
                tracing::debug!(path = %f.path, target, "symlink climbs above the root; left out");
                counters
                    .skipped
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                continue;
            }
            Inode::Symlink { uid, gid, target }
        } else if ft.is_char_device() {
            Inode::Char {
                mode,
                uid,
                gid,
                mtime,
                mtime_ns,
                rdev: meta.rdev(),
            }
        } else if ft.is_block_device() {
            Inode::Block {
                mode,
                uid,
                gid,
                mtime,
                mtime_ns,
                rdev: meta.rdev(),
            }
        } else if ft.is_fifo() {
            Inode::Fifo {
                mode,
                uid,
                gid,
                mtime,
                mtime_ns,
            }
        } else {
            continue;
        };
        builder.add(f.path, inode, link_key)?;
    }
    Ok(TreeScan {
        manifest: builder.finish()?,
    })
}
