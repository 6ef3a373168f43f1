//! How a plan is worked out: one pass over the image in path order (so a
//! directory is settled before its children and a hard link's target
//! before the link), then one over the machine's paths the image lacks.

use std::collections::{BTreeMap, BTreeSet};

use rustc_hash::{FxHashMap as HashMap, FxHashSet as HashSet};
use std::ops::Bound;

use crate::manifest::{Entry, Inode, Manifest};
use crate::object::ObjectId;
use crate::path;

use super::{
    is_under, Conflict, Desired, DeviceKind, HardLink, Install, MakeDevice, MakeDir, MakeSymlink,
    MetadataChange, Plan,
};

/// The kind of an inode, hard links resolved.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Dir,
    File,
    Symlink,
    Char,
    Block,
    Fifo,
    /// A hard link whose target is missing: replaced by whatever is wanted.
    Dangling,
}

fn kind(inode: &Inode) -> Kind {
    match inode {
        Inode::Dir { .. } => Kind::Dir,
        Inode::File { .. } => Kind::File,
        Inode::Symlink { .. } => Kind::Symlink,
        Inode::Char { .. } => Kind::Char,
        Inode::Block { .. } => Kind::Block,
        Inode::Fifo { .. } => Kind::Fifo,
        Inode::Link { .. } => Kind::Dangling,
    }
}

/// Whether two inodes of one kind hold the same content.
fn same_content(want: &Inode, have: &Inode) -> bool {
    match (want, have) {
        (
            Inode::File {
                object: a,
                size: sa,
                ..
            },
            Inode::File {
                object: b,
                size: sb,
                ..
            },
        ) => a == b && sa == sb,
        (Inode::Char { rdev: a, .. }, Inode::Char { rdev: b, .. })
        | (Inode::Block { rdev: a, .. }, Inode::Block { rdev: b, .. }) => a == b,
        (Inode::Fifo { .. }, Inode::Fifo { .. }) => true,
        _ => false,
    }
}

/// A machine path's inode, hard links followed, and the path that names it
/// first (which identifies the inode among the machine's paths).
#[derive(Clone, Copy)]
struct Found<'a> {
    inode: &'a Inode,
    carrier: &'a str,
}

pub(super) struct Planner<'a> {
    desired: &'a Desired<'a>,
    machine: BTreeMap<&'a str, &'a Inode>,
    /// Machine paths that are filtered or protected.
    unmanaged: HashSet<&'a str>,
    /// Machine inodes (by carrier) that a filtered or protected path
    /// names too: their metadata is not ours to change.
    shared_with_unmanaged: HashSet<&'a str>,
    plan: Plan,
    /// Image paths whose machine inode stays, and that inode's carrier.
    kept: HashMap<&'a str, &'a str>,
    /// Machine inodes (by carrier) already serving an image inode.
    claimed: HashSet<&'a str>,
    /// Image paths whose inode is made afresh.
    remade: HashSet<&'a str>,
    /// Image paths that cannot hold the image's children.
    blocked: HashSet<&'a str>,
    /// Machine paths removed by `clear`.
    cleared: HashSet<&'a str>,
    changed: BTreeSet<&'a str>,
}

impl<'a> Planner<'a> {
    pub(super) fn new(machine: &'a Manifest, desired: &'a Desired<'a>) -> Self {
        let mut planner = Self {
            desired,
            machine: machine
                .entries
                .iter()
                .map(|e| (e.path.as_str(), &e.inode))
                .collect(),
            unmanaged: HashSet::default(),
            shared_with_unmanaged: HashSet::default(),
            plan: Plan::default(),
            kept: HashMap::default(),
            claimed: HashSet::default(),
            remade: HashSet::default(),
            blocked: HashSet::default(),
            cleared: HashSet::default(),
            changed: BTreeSet::new(),
        };
        for &q in planner.machine.keys() {
            if desired.is_unmanaged(q) {
                planner.unmanaged.insert(q);
            }
        }
        for &q in &planner.unmanaged {
            if let Some(found) = planner.find(q) {
                if kind(found.inode) != Kind::Dir {
                    planner.shared_with_unmanaged.insert(found.carrier);
                }
            }
        }
        planner
    }

    pub(super) fn run(mut self) -> Plan {
        for entry in &self.desired.image.entries {
            self.image_entry(entry);
        }
        self.extras();
        self.finish()
    }

    /// The machine's inode at `path`, unless it was cleared.
    fn find(&self, path: &'a str) -> Option<Found<'a>> {
        if self.cleared.contains(path) {
            return None;
        }
        let mut carrier = path;
        let mut inode = *self.machine.get(path)?;
        for _ in 0..self.machine.len() {
            let Inode::Link { target } = inode else {
                break;
            };
            match self.machine.get_key_value(target.as_str()) {
                Some((&at, &next)) if at != carrier => (carrier, inode) = (at, next),
                _ => break,
            }
        }
        Some(Found { inode, carrier })
    }

    fn conflict(&mut self, path: &'a str, reason: String) {
        self.blocked.insert(path);
        self.plan.conflicts.push(Conflict {
            path: path.to_string(),
            reason,
        });
    }

    fn image_entry(&mut self, entry: &'a Entry) {
        let p = entry.path.as_str();
        let here = self.find(p);
        if self.desired.is_unmanaged(p) {
            // Not the image's to change; its children can only be placed
            // if the machine already has a directory here.
            if !here.is_some_and(|h| kind(h.inode) == Kind::Dir) {
                self.blocked.insert(p);
            }
            return;
        }
        if p == "/" {
            return self.root(entry, here);
        }
        let parent = path::parent(p);
        if self.blocked.contains(parent) {
            return self.conflict(p, format!("its parent {parent} cannot be made a directory"));
        }
        if let Inode::Link { target } = &entry.inode {
            if !self.kept.contains_key(target.as_str()) && !self.remade.contains(target.as_str()) {
                return self.conflict(
                    p,
                    format!("hard link to {target}, which is not managed here"),
                );
            }
        }
        let want = self.desired.image.resolve(entry);
        let mut here = here;
        if let Some(h) = here {
            if kind(h.inode) != kind(want) {
                if !self.clear(p, h.inode) {
                    return;
                }
                here = None;
            }
        }
        match &entry.inode {
            Inode::Dir { mode, uid, gid } => match here {
                Some(h) => self.metadata(p, want, h.inode),
                None => {
                    self.changed.insert(p);
                    self.plan.mkdirs.push(MakeDir {
                        path: p.to_string(),
                        mode: *mode,
                        uid: *uid,
                        gid: *gid,
                    });
                }
            },
            Inode::Symlink { uid, gid, target } => match here {
                Some(h) if matches!(h.inode, Inode::Symlink { target: t, .. } if t == target) => {
                    self.metadata(p, want, h.inode)
                }
                _ => {
                    self.changed.insert(p);
                    self.plan.symlinks.push(MakeSymlink {
                        path: p.to_string(),
                        target: target.clone(),
                        uid: *uid,
                        gid: *gid,
                    });
                }
            },
            Inode::Link { target } => self.hard_link(p, target, here),
            _ => self.inode(p, want, here),
        }
    }

    /// The root is never made or removed, only given its metadata.
    fn root(&mut self, entry: &'a Entry, here: Option<Found<'a>>) {
        match here.map(|h| h.inode) {
            Some(have @ Inode::Dir { .. }) => self.metadata("/", &entry.inode, have),
            Some(_) => self.conflict("/", "the machine's root is not a directory".into()),
            None => {
                // A scan always reports the root; without it, assume nothing.
                self.changed.insert("/");
                self.plan.metadata.push(MetadataChange {
                    path: "/".into(),
                    mode: entry.inode.mode(),
                    owner: entry.inode.owner(),
                    mtime: None,
                });
            }
        }
    }

    /// Clears `p` (and, for a directory, everything below it) so another
    /// type of inode can be made there. Refuses, with a conflict, when that
    /// would remove something the rules protect.
    fn clear(&mut self, p: &'a str, have: &Inode) -> bool {
        let mut doomed = Vec::new();
        if kind(have) == Kind::Dir {
            let prefix = format!("{p}/");
            doomed.extend(
                self.machine
                    .range::<str, _>((Bound::Included(prefix.as_str()), Bound::Unbounded))
                    .map(|(q, _)| *q)
                    .take_while(|q| q.starts_with(&prefix)),
            );
            if let Some(kept) = doomed.iter().find(|q| self.unmanaged.contains(*q)) {
                let reason =
                    format!("is a directory holding {kept}, which is filtered or protected");
                self.conflict(p, reason);
                return false;
            }
            if self.desired.sparse && !doomed.is_empty() {
                let reason = format!(
                    "is a directory holding {} paths, and a sparse image deletes nothing",
                    doomed.len()
                );
                self.conflict(p, reason);
                return false;
            }
        }
        doomed.push(p);
        for q in doomed {
            self.cleared.insert(q);
            self.changed.insert(q);
            self.plan.clear.push(q.to_string());
        }
        true
    }

    /// A file, device or fifo that names its own inode in the image.
    fn inode(&mut self, p: &'a str, want: &'a Inode, here: Option<Found<'a>>) {
        if let Some(h) = here {
            if same_content(want, h.inode) && !self.claimed.contains(h.carrier) {
                let change = metadata_change(p, want, h.inode);
                // Changing the metadata of an inode a filtered or protected
                // path also names would change that path too.
                if change.is_none() || !self.shared_with_unmanaged.contains(h.carrier) {
                    self.claimed.insert(h.carrier);
                    self.kept.insert(p, h.carrier);
                    return self.record(p, change);
                }
            }
        }
        // Missing, different, or the machine inode is not this path's alone
        // to keep: make a fresh one.
        self.remade.insert(p);
        self.changed.insert(p);
        let path = p.to_string();
        match *want {
            Inode::File {
                mode,
                uid,
                gid,
                mtime,
                mtime_ns,
                size,
                object,
            } => self.plan.installs.push(Install {
                path,
                object,
                size,
                mode,
                uid,
                gid,
                mtime,
                mtime_ns,
            }),
            Inode::Char {
                mode,
                uid,
                gid,
                mtime,
                mtime_ns,
                rdev,
            } => self.plan.devices.push(MakeDevice {
                path,
                kind: DeviceKind::Char,
                mode,
                uid,
                gid,
                rdev,
                mtime,
                mtime_ns,
            }),
            Inode::Block {
                mode,
                uid,
                gid,
                mtime,
                mtime_ns,
                rdev,
            } => self.plan.devices.push(MakeDevice {
                path,
                kind: DeviceKind::Block,
                mode,
                uid,
                gid,
                rdev,
                mtime,
                mtime_ns,
            }),
            Inode::Fifo {
                mode,
                uid,
                gid,
                mtime,
                mtime_ns,
            } => self.plan.devices.push(MakeDevice {
                path,
                kind: DeviceKind::Fifo,
                mode,
                uid,
                gid,
                rdev: 0,
                mtime,
                mtime_ns,
            }),
            Inode::Dir { .. } | Inode::Symlink { .. } | Inode::Link { .. } => {
                unreachable!("only inodes that can be hard-linked come here")
            }
        }
    }

    /// An image hard link: right when the machine's path names the very
    /// inode kept for its target.
    fn hard_link(&mut self, p: &'a str, target: &'a str, here: Option<Found<'a>>) {
        let right = match self.kept.get(target) {
            Some(carrier) => here.is_some_and(|h| h.carrier == *carrier),
            None => false,
        };
        if !right {
            self.changed.insert(p);
            self.plan.links.push(HardLink {
                path: p.to_string(),
                target: target.to_string(),
            });
        }
    }

    /// Records the metadata fix for an inode of the right kind and content.
    fn metadata(&mut self, p: &'a str, want: &Inode, have: &Inode) {
        let change = metadata_change(p, want, have);
        self.record(p, change);
    }

    fn record(&mut self, p: &'a str, change: Option<MetadataChange>) {
        if let Some(change) = change {
            if !change.is_mtime_only() {
                self.changed.insert(p);
            }
            self.plan.metadata.push(change);
        }
    }

    /// Machine paths the image does not have: deleted for a normal image,
    /// unless filtered, protected, or above such a path.
    fn extras(&mut self) {
        if self.desired.sparse {
            return;
        }
        let mut holds_unmanaged: HashSet<&str> = HashSet::default();
        for &q in &self.unmanaged {
            let mut above = path::parent(q);
            while holds_unmanaged.insert(above) && above != "/" {
                above = path::parent(above);
            }
        }
        let mut deletes = Vec::new();
        for &q in self.machine.keys() {
            let keep = q == "/"
                || self.unmanaged.contains(q)
                || holds_unmanaged.contains(q)
                || self.cleared.contains(q)
                || self.desired.image.get(q).is_some();
            if !keep {
                deletes.push(q);
            }
        }
        for q in deletes {
            self.changed.insert(q);
            self.plan.deletes.push(q.to_string());
        }
    }

    /// Orders removals, decides where each needed object comes from, and
    /// lists the changed paths.
    fn finish(mut self) -> Plan {
        let deepest_first = |a: &String, b: &String| depth(b).cmp(&depth(a)).then_with(|| a.cmp(b));
        self.plan.clear.sort_by(deepest_first);
        self.plan.deletes.sort_by(deepest_first);

        let mut on_machine: HashMap<ObjectId, &str> = HashMap::default();
        for (&q, inode) in &self.machine {
            if let Inode::File { object, .. } = inode {
                if !self.desired.protected.iter().any(|p| is_under(q, p)) {
                    on_machine.entry(*object).or_insert(q);
                }
            }
        }
        let mut fetch = BTreeMap::new();
        for install in &self.plan.installs {
            match on_machine.get(&install.object) {
                Some(source) => {
                    self.plan.reuse.insert(install.object, source.to_string());
                }
                None => {
                    fetch.insert(install.object, install.size);
                }
            }
        }
        self.plan.fetch = fetch.into_iter().collect();
        self.plan.changed = self.changed.iter().map(|p| p.to_string()).collect();
        self.plan
    }
}

/// The metadata to set on `have` to make it `want`, if any differs.
fn metadata_change(p: &str, want: &Inode, have: &Inode) -> Option<MetadataChange> {
    let change = MetadataChange {
        path: p.to_string(),
        mode: want.mode().filter(|_| want.mode() != have.mode()),
        owner: want.owner().filter(|_| want.owner() != have.owner()),
        mtime: want.mtime().filter(|_| want.mtime() != have.mtime()),
    };
    let differs = change.mode.is_some() || change.owner.is_some() || change.mtime.is_some();
    differs.then_some(change)
}

fn depth(path: &str) -> usize {
    path.bytes().filter(|b| *b == b'/').count()
}
