//! Images made from images: an archive's entries laid over an image's tree
//! (`imagetool addi`), or put in place of some of its files
//! (`imagetool addrep`).
//!
//! A *layer* is the list of entries an archive names itself, in its order,
//! without the parent directories a manifest builder would make up: a
//! layer that holds only `etc/motd` must not reset the image's `/etc` to a
//! made-up `0755 root`. Both functions are pure: the caller reads the
//! archive, uploads its objects, and publishes the manifest returned.

use rustc_hash::{FxHashMap as HashMap, FxHashSet as HashSet};
use thiserror::Error;

use crate::filter::Filter;
use crate::manifest::{Inode, Manifest, ManifestBuilder, ManifestError};
use crate::path;

/// One entry of a layer: an image path and its inode. A hard link names
/// another path of the layer (or, for [`overlay`], of the image below).
pub type LayerEntry = (String, Inode);

#[derive(Debug, Error)]
pub enum OverlayError {
    #[error("{0} is not in the source image; addrep only replaces paths the image has")]
    NotInImage(String),
    #[error("{path} is a {was} in the source image, not a {now}; a replacement keeps the kind")]
    KindChanged {
        path: String,
        was: &'static str,
        now: &'static str,
    },
    #[error("{first} and {second} are one inode in the source image but differ in the archive")]
    SplitLink { first: String, second: String },
    #[error("hard link {path} to {target}, which is filtered or not an earlier file")]
    BadLink { path: String, target: String },
    #[error("{0}")]
    Manifest(#[from] ManifestError),
}

/// What kind of inode, in words.
pub fn kind(inode: &Inode) -> &'static str {
    match inode {
        Inode::Dir { .. } => "directory",
        Inode::File { .. } | Inode::Link { .. } => "file",
        Inode::Symlink { .. } => "symlink",
        Inode::Char { .. } => "character device",
        Inode::Block { .. } => "block device",
        Inode::Fifo { .. } => "fifo",
    }
}

/// Whether `path` or a directory above it matches `filter` (the root is
/// never filtered).
fn filtered(filter: &Filter, p: &str) -> bool {
    let mut at = p;
    while at != "/" {
        if filter.matches(at) {
            return true;
        }
        at = path::parent(at);
    }
    false
}

/// `base`'s tree with `layer` laid over it, then `filter` applied to the
/// whole:
///
/// - a layer path replaces the image's: a file, symlink or device there
///   replaces whatever the image had, with all that was below it; a
///   directory replaces the image's directory's owner and mode, and its
///   contents merge with the image's;
/// - a later entry for the same path replaces an earlier one, as
///   unpacking the archive would;
/// - parents neither names are made as `add` makes them (0755, root);
///   a layer path below an image file is refused;
/// - other names of an image inode whose first name the layer replaced
///   keep the image's inode, as on a disk where the archive was unpacked;
/// - a path that matches the filter, or lies below one that does, is
///   left out (the root never is).
pub fn overlay(
    base: &Manifest,
    layer: &[LayerEntry],
    filter: &Filter,
) -> Result<Manifest, OverlayError> {
    let layer: Vec<&LayerEntry> = layer
        .iter()
        .filter(|(p, _)| p == "/" || !filtered(filter, p))
        .collect();
    for (p, inode) in &layer {
        if let Inode::Link { target } = inode {
            if filtered(filter, target) {
                return Err(OverlayError::BadLink {
                    path: p.clone(),
                    target: target.clone(),
                });
            }
        }
    }
    // Image paths whose subtree the layer replaces with a non-directory.
    let cut: HashSet<&str> = layer
        .iter()
        .filter(|(_, inode)| !matches!(inode, Inode::Dir { .. }))
        .map(|(p, _)| p.as_str())
        .collect();
    let mut builder = ManifestBuilder::new();
    // Image directories left out, so that what is below them goes too.
    let mut gone: HashSet<&str> = HashSet::default();
    for (index, entry) in base.entries.iter().enumerate() {
        let p = entry.path.as_str();
        let below_gone = p != "/" && gone.contains(path::parent(p));
        let left_out = below_gone || (p != "/" && filter.matches(p));
        if left_out || cut.contains(p) {
            if matches!(entry.inode, Inode::Dir { .. }) {
                gone.insert(p);
            }
            if left_out {
                continue;
            }
        }
        // Each name carries its inode, keyed by the inode's first name,
        // so that whichever names survive stay one inode.
        let (inode, key) = match &entry.inode {
            Inode::Link { target } => (base.resolve(entry).clone(), carrier(base, target)),
            inode => (inode.clone(), Some(index as u64)),
        };
        builder.add(entry.path.clone(), inode, key)?;
    }
    for (p, inode) in layer {
        builder.add(p.clone(), inode.clone(), None)?;
    }
    Ok(builder.finish()?)
}

/// The index in `base` of the first name of the inode at `target`.
fn carrier(base: &Manifest, target: &str) -> Option<u64> {
    base.entries
        .binary_search_by(|e| e.path.as_str().cmp(target))
        .ok()
        .map(|i| i as u64)
}

/// `base` with the files, symlinks and devices of `layer` put in place of
/// the image's, as the original's `addrep` does:
///
/// - every non-directory of the layer must be in the image already, as
///   the same kind; directories of the layer are ignored;
/// - replacing one name of a hard-linked inode replaces the inode, so
///   every name of it sees the new content;
/// - paths matching `filter` (the image's own) are ignored.
///
/// The tree's shape never changes: same paths, same kinds.
pub fn replace(
    base: &Manifest,
    layer: &[LayerEntry],
    filter: &Filter,
) -> Result<Manifest, OverlayError> {
    // The last entry of each path is what the archive leaves there.
    let mut last: HashMap<&str, usize> = HashMap::default();
    for (i, (p, _)) in layer.iter().enumerate() {
        last.insert(p.as_str(), i);
    }
    let mut replaced = base.clone();
    // Which layer path set each image inode (by its first name's index).
    let mut set_by: HashMap<usize, &str> = HashMap::default();
    for (i, (p, inode)) in layer.iter().enumerate() {
        if last[p.as_str()] != i || matches!(inode, Inode::Dir { .. }) || filtered(filter, p) {
            continue;
        }
        let inode = match inode {
            Inode::Link { target } => match last.get(target.as_str()).map(|&t| &layer[t].1) {
                Some(
                    inode @ (Inode::File { .. }
                    | Inode::Char { .. }
                    | Inode::Block { .. }
                    | Inode::Fifo { .. }),
                ) => inode,
                _ => {
                    return Err(OverlayError::BadLink {
                        path: p.clone(),
                        target: target.clone(),
                    })
                }
            },
            inode => inode,
        };
        let Some(entry) = base.get(p) else {
            return Err(OverlayError::NotInImage(p.clone()));
        };
        let at = match &entry.inode {
            Inode::Link { target } => carrier(base, target).expect("a valid manifest") as usize,
            _ => carrier(base, p).expect("the entry is there") as usize,
        };
        let was = &base.entries[at].inode;
        if std::mem::discriminant(was) != std::mem::discriminant(inode) {
            return Err(OverlayError::KindChanged {
                path: p.clone(),
                was: kind(was),
                now: kind(inode),
            });
        }
        if let Some(first) = set_by.insert(at, p) {
            if replaced.entries[at].inode != *inode {
                return Err(OverlayError::SplitLink {
                    first: first.to_string(),
                    second: p.clone(),
                });
            }
        }
        replaced.entries[at].inode = inode.clone();
    }
    replaced.validate()?;
    Ok(replaced)
}

#[cfg(test)]
mod tests;
