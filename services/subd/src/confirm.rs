//! Confirming an update without scanning the whole tree again: a
//! stat-only look at every path the update changed, against the image.
//!
//! The plan was made from a scan, so every image path it leaves alone
//! already matched the image; what the update changed is all there is to
//! check. A file counts as right when its type, mode, owner, size and
//! mtime are the image's and the hash cache, which the update taught what
//! it installed, knows its inode as holding the image's object. So the
//! report that says compliant can go out right after the update, and the
//! scans after it, finding the same tree, change nothing.
//!
//! Anything unexpected (a path that is not what the image says, a removed
//! path still there) means "not confirmed": the agent then scans at once
//! and judges from that, as it always could.

use std::collections::{BTreeSet, HashSet};
use std::fs;
use std::io;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;

use dom_model::plan::Plan;
use dom_model::{Entry, Inode, Manifest};
use dom_scan::HashCache;

/// The tree after `plan` turned `before` into `image`, if a look at every
/// path it changed finds what the image says; else the first difference.
///
/// The tree is what a scan would find: the image's entries, and the
/// scanned paths outside the image that the plan did not remove (a sparse
/// image's extra files, directories kept for their filtered content).
pub(crate) fn confirm(
    root: &Path,
    plan: &Plan,
    image: &Manifest,
    cache: &HashCache,
    before: &Manifest,
) -> Result<Manifest, String> {
    if !plan.conflicts.is_empty() {
        return Err(format!("{} conflicts remain", plan.conflicts.len()));
    }
    let removed: HashSet<&str> = plan
        .clear
        .iter()
        .chain(&plan.deletes)
        .map(String::as_str)
        .collect();
    for p in &removed {
        match fs::symlink_metadata(disk(root, p)) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(format!("{p}: {e}")),
            // Made again by the update (another type of inode)?
            Ok(_) if image.get(p).is_some() => {}
            Ok(_) => return Err(format!("{p} is still there")),
        }
    }
    let changed = changed_paths(plan);
    for entry in &image.entries {
        let linked_to_changed = matches!(&entry.inode,
            Inode::Link { target } if changed.contains(target.as_str()));
        if changed.contains(entry.path.as_str()) || linked_to_changed {
            check(root, image, entry, cache)?;
        }
    }
    for p in &changed {
        if image.get(p).is_none() {
            return Err(format!("{p} was changed but is not in the image"));
        }
    }
    let mut entries = image.entries.clone();
    entries.extend(
        before
            .entries
            .iter()
            .filter(|e| !removed.contains(e.path.as_str()) && image.get(&e.path).is_none())
            .cloned(),
    );
    entries.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(Manifest {
        v: before.v,
        entries,
    })
}

/// Every image path the plan makes or changes.
fn changed_paths(plan: &Plan) -> BTreeSet<&str> {
    let mut paths = BTreeSet::new();
    paths.extend(plan.mkdirs.iter().map(|d| d.path.as_str()));
    paths.extend(plan.installs.iter().map(|i| i.path.as_str()));
    paths.extend(plan.symlinks.iter().map(|s| s.path.as_str()));
    paths.extend(plan.devices.iter().map(|d| d.path.as_str()));
    paths.extend(plan.links.iter().map(|l| l.path.as_str()));
    paths.extend(plan.metadata.iter().map(|m| m.path.as_str()));
    paths
}

fn disk(root: &Path, p: &str) -> std::path::PathBuf {
    root.join(p.trim_start_matches('/'))
}

/// Whether the machine's `entry.path` is what the image says.
fn check(root: &Path, image: &Manifest, entry: &Entry, cache: &HashCache) -> Result<(), String> {
    let p = entry.path.as_str();
    let meta = fs::symlink_metadata(disk(root, p)).map_err(|e| format!("{p}: {e}"))?;
    let differs = |what: &str| Err(format!("{p}: {what} is not the image's"));
    let ft = meta.file_type();
    let inode = match &entry.inode {
        Inode::Link { target } => {
            let other =
                fs::symlink_metadata(disk(root, target)).map_err(|e| format!("{target}: {e}"))?;
            if (meta.dev(), meta.ino()) != (other.dev(), other.ino()) {
                return differs("the inode it names");
            }
            image.resolve(entry)
        }
        inode => inode,
    };
    let kind_ok = match inode {
        Inode::Dir { .. } => ft.is_dir(),
        Inode::File { .. } => ft.is_file(),
        Inode::Symlink { .. } => ft.is_symlink(),
        Inode::Char { .. } => ft.is_char_device(),
        Inode::Block { .. } => ft.is_block_device(),
        Inode::Fifo { .. } => ft.is_fifo(),
        Inode::Link { .. } => false,
    };
    if !kind_ok {
        return differs("the type");
    }
    if let Some(mode) = inode.mode() {
        if meta.mode() & 0o7777 != mode {
            return differs("the mode");
        }
    }
    if inode.owner() != Some((meta.uid(), meta.gid())) {
        return differs("the owner");
    }
    if let Some(mtime) = inode.mtime() {
        if (meta.mtime(), meta.mtime_nsec()) != (mtime.0, i64::from(mtime.1)) {
            return differs("the mtime");
        }
    }
    match inode {
        Inode::File { size, object, .. } => {
            if meta.len() != *size {
                return differs("the size");
            }
            if cache.lookup(&meta) != Some(*object) {
                return Err(format!("{p}: content not known to be the image's"));
            }
        }
        Inode::Symlink { target, .. } => {
            let found = fs::read_link(disk(root, p)).map_err(|e| format!("{p}: {e}"))?;
            if found.to_str() != Some(target.as_str()) {
                return differs("the symlink target");
            }
        }
        Inode::Char { rdev, .. } | Inode::Block { rdev, .. } if meta.rdev() != *rdev => {
            return differs("the device number");
        }
        _ => {}
    }
    Ok(())
}
