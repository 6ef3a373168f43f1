//! The convergence plan: what an agent must do to turn the tree it scanned
//! into its required image.
//!
//! [`plan`] compares the machine's tree (the agent's scan, expressed as a
//! [`Manifest`], hard links as
//! [`Inode::Link`](crate::manifest::Inode::Link) like in images) with the
//! image, and lists the work in the order the agent performs it (DESIGN
//! §5 step 5): clear paths whose type is wrong, make directories, install
//! files, make symlinks, devices and hard links, delete extra paths, fix
//! metadata. It also says which objects to fetch and which the machine
//! already holds somewhere, and which paths change, for the triggers.
//!
//! The rules it enforces (DESIGN §4):
//!
//! - A path the image's filter matches, or one under a protected prefix
//!   (the agent's own `/.subd`), is never created, changed or deleted, and
//!   neither is a directory above one: it stays, holding only that content.
//! - A sparse image never deletes: not extra paths, and not the contents of
//!   a directory the image wants to be something else. Those are reported
//!   as [`Conflict`]s instead.
//! - Hard links are compared by the inode they name. A machine inode serves
//!   at most one image inode; any other image path naming it is made afresh,
//!   so writing one name can never change another's content.
//! - Content that is already right is never fetched or rewritten: a file
//!   whose mode, owner or mtime differ gets a metadata change, and a file
//!   that moved or is duplicated is copied from where it already is.
//!
//! Every removal (`clear` and `deletes`) names one path, deepest first, so
//! the agent can use `unlink`/`rmdir` and never remove a tree recursively: a
//! directory that still holds something the scan did not report then fails
//! to go rather than losing that content.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::filter::Filter;
use crate::manifest::Manifest;
use crate::object::ObjectId;
use crate::text::human_bytes;

mod planner;
#[cfg(test)]
mod tests;

use planner::Planner;

/// What the machine should look like.
#[derive(Clone, Copy, Debug)]
pub struct Desired<'a> {
    /// The image's tree (a validated manifest).
    pub image: &'a Manifest,
    /// A sparse image only adds and updates; it never deletes.
    pub sparse: bool,
    /// The image's filter: paths it matches belong to the machine, not the
    /// image. `None` for a sparse image.
    pub filter: Option<&'a Filter>,
    /// Path prefixes never touched whatever the image says, such as the
    /// agent's own state directory `/.subd`. A prefix covers itself and
    /// everything below it.
    pub protected: &'a [String],
}

impl<'a> Desired<'a> {
    /// A normal image: the machine becomes exactly the image, except the
    /// filtered paths.
    pub fn normal(image: &'a Manifest, filter: &'a Filter) -> Self {
        Self {
            image,
            sparse: false,
            filter: Some(filter),
            protected: &[],
        }
    }

    /// A sparse image: only its paths are pushed.
    pub fn sparse(image: &'a Manifest) -> Self {
        Self {
            image,
            sparse: true,
            filter: None,
            protected: &[],
        }
    }

    /// The same, never touching anything under `prefixes`.
    pub fn protecting(self, prefixes: &'a [String]) -> Self {
        Self {
            protected: prefixes,
            ..self
        }
    }

    /// Whether `path` is outside the image's care: filtered or protected.
    pub fn is_unmanaged(&self, path: &str) -> bool {
        self.filter.is_some_and(|f| f.matches(path))
            || self.protected.iter().any(|p| is_under(path, p))
    }
}

/// Whether `path` is `prefix` or below it.
fn is_under(path: &str, prefix: &str) -> bool {
    let prefix = match prefix.trim_end_matches('/') {
        "" => return true,
        p => p,
    };
    path.strip_prefix(prefix)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
}

/// A directory to make.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MakeDir {
    pub path: String,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
}

/// A regular file to make from an object, with all its metadata. The agent
/// writes it under a temporary name and renames it over whatever non-
/// directory is at `path`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Install {
    pub path: String,
    pub object: ObjectId,
    pub size: u64,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub mtime: i64,
    pub mtime_ns: u32,
}

/// A symlink to make (or to replace, when its target is wrong).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MakeSymlink {
    pub path: String,
    pub target: String,
    pub uid: u32,
    pub gid: u32,
}

/// Which kind of special file.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DeviceKind {
    Char,
    Block,
    Fifo,
}

/// A device node or fifo to make (or to replace, when its number is
/// wrong). `rdev` is 0 for a fifo.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MakeDevice {
    pub path: String,
    pub kind: DeviceKind,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub rdev: u64,
    pub mtime: i64,
    pub mtime_ns: u32,
}

/// A hard link to make at `path`, naming the inode at `target` (which is
/// right by the time links are made). Replaces whatever non-directory is at
/// `path`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HardLink {
    pub path: String,
    pub target: String,
}

/// Metadata to set on an inode whose content is right. Only the fields that
/// differ are present. Symlinks only ever get `owner` (set with `lchown`);
/// directories never get `mtime`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MetadataChange {
    pub path: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<u32>,
    /// `(uid, gid)`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<(u32, u32)>,
    /// `(seconds, nanoseconds)`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mtime: Option<(i64, u32)>,
}

impl MetadataChange {
    /// Whether only the mtime differs (which fires no trigger).
    pub fn is_mtime_only(&self) -> bool {
        self.mode.is_none() && self.owner.is_none()
    }
}

/// An image path that cannot be made right without touching something the
/// rules protect. It stays as it is and keeps the machine non-compliant.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Conflict {
    pub path: String,
    pub reason: String,
}

/// The work that brings a machine to its image, in execution order.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Plan {
    /// Paths to remove first because the image has another type of inode
    /// there; a directory comes with everything below it. Deepest first.
    pub clear: Vec<String>,
    /// Directories to make, parents before children.
    pub mkdirs: Vec<MakeDir>,
    /// Regular files to make from objects, in path order.
    pub installs: Vec<Install>,
    pub symlinks: Vec<MakeSymlink>,
    pub devices: Vec<MakeDevice>,
    /// Hard links, made after the inodes they name.
    pub links: Vec<HardLink>,
    /// Paths the image does not have (normal images only). Deepest first.
    pub deletes: Vec<String>,
    /// Metadata fixes for inodes that are otherwise right.
    pub metadata: Vec<MetadataChange>,
    /// Objects the installs need that the machine does not hold anywhere,
    /// with their sizes; sorted, distinct.
    pub fetch: Vec<(ObjectId, u64)>,
    /// Objects the installs need that the machine already holds: one
    /// machine path with that content, to copy instead of fetching.
    pub reuse: BTreeMap<ObjectId, String>,
    /// Every path created, replaced, deleted, or whose mode or owner
    /// changes: what the triggers are matched against. Sorted.
    pub changed: Vec<String>,
    /// Image paths left as they are; see [`Conflict`].
    pub conflicts: Vec<Conflict>,
}

/// How much a plan does.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    pub clear: usize,
    pub mkdirs: usize,
    pub installs: usize,
    pub symlinks: usize,
    pub devices: usize,
    pub links: usize,
    pub deletes: usize,
    pub metadata: usize,
    pub fetch: usize,
    pub fetch_bytes: u64,
    pub reuse: usize,
    pub changed: usize,
    pub conflicts: usize,
    /// Paths that differ from the image (see [`Plan::deviations`]).
    pub deviations: u64,
}

impl Plan {
    /// Whether the machine already matches the image: nothing to do and
    /// nothing in conflict.
    pub fn is_empty(&self) -> bool {
        self.clear.is_empty()
            && self.mkdirs.is_empty()
            && self.installs.is_empty()
            && self.symlinks.is_empty()
            && self.devices.is_empty()
            && self.links.is_empty()
            && self.deletes.is_empty()
            && self.metadata.is_empty()
            && self.conflicts.is_empty()
    }

    /// The number of distinct paths that differ from the image: changed
    /// paths, mtime-only differences and conflicts.
    pub fn deviations(&self) -> u64 {
        let mut paths: BTreeSet<&str> = self.changed.iter().map(String::as_str).collect();
        paths.extend(self.metadata.iter().map(|m| m.path.as_str()));
        paths.extend(self.conflicts.iter().map(|c| c.path.as_str()));
        paths.len() as u64
    }

    /// Total size of the objects to fetch.
    pub fn fetch_bytes(&self) -> u64 {
        self.fetch.iter().map(|(_, size)| size).sum()
    }

    pub fn counts(&self) -> Counts {
        Counts {
            clear: self.clear.len(),
            mkdirs: self.mkdirs.len(),
            installs: self.installs.len(),
            symlinks: self.symlinks.len(),
            devices: self.devices.len(),
            links: self.links.len(),
            deletes: self.deletes.len(),
            metadata: self.metadata.len(),
            fetch: self.fetch.len(),
            fetch_bytes: self.fetch_bytes(),
            reuse: self.reuse.len(),
            changed: self.changed.len(),
            conflicts: self.conflicts.len(),
            deviations: self.deviations(),
        }
    }

    /// One line for logs and events, e.g. `4 deviations: 1 dir, 2 files
    /// (1 object to fetch, 12 B), 1 delete`, or `in sync`.
    pub fn summary(&self) -> String {
        self.to_string()
    }
}

impl fmt::Display for Plan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_empty() {
            return f.write_str("in sync");
        }
        let c = self.counts();
        let mut parts = Vec::new();
        count(&mut parts, c.clear, "to clear", "to clear");
        count(&mut parts, c.mkdirs, "dir", "dirs");
        count(&mut parts, c.installs, "file", "files");
        if c.fetch > 0 {
            let objects = if c.fetch == 1 { "object" } else { "objects" };
            let bytes = human_bytes(c.fetch_bytes);
            if let Some(files) = parts.last_mut() {
                files.push_str(&format!(" ({} {objects} to fetch, {bytes})", c.fetch));
            }
        }
        count(&mut parts, c.symlinks, "symlink", "symlinks");
        count(&mut parts, c.devices, "device", "devices");
        count(&mut parts, c.links, "hard link", "hard links");
        count(&mut parts, c.deletes, "delete", "deletes");
        count(
            &mut parts,
            c.metadata,
            "metadata change",
            "metadata changes",
        );
        count(&mut parts, c.conflicts, "conflict", "conflicts");
        let noun = if c.deviations == 1 {
            "deviation"
        } else {
            "deviations"
        };
        write!(f, "{} {noun}: {}", c.deviations, parts.join(", "))
    }
}

/// Adds `n thing(s)` to a summary, unless `n` is 0.
fn count(parts: &mut Vec<String>, n: usize, one: &str, many: &str) {
    if n > 0 {
        parts.push(format!("{n} {}", if n == 1 { one } else { many }));
    }
}

/// The plan that turns `machine` into `desired`.
///
/// `machine` is the agent's scan of its root; its entries need not obey
/// every manifest rule (a hard link whose target is missing is simply
/// replaced), but each path must appear once. `desired.image` must be a
/// validated manifest.
pub fn plan(machine: &Manifest, desired: &Desired<'_>) -> Plan {
    Planner::new(machine, desired).run()
}
