//! Manifests: the full tree of an image, every inode with its metadata.
//!
//! A manifest is a list of entries sorted by path (so parents come before
//! their children), starting with the root `/`. It is encoded
//! deterministically (the same tree always gives the same bytes, hence the
//! same object id) as gzip-compressed JSON, and stored as an object. The
//! decoder trusts nothing: every path, link and size is checked, so a
//! manifest published by hand cannot make an agent write outside its root.

use std::collections::BTreeMap;

use rustc_hash::{FxHashMap as HashMap, FxHashSet as HashSet};
use std::io::{Read, Write};

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::object::ObjectId;
use crate::path::{self, PathError};

mod entry;
pub mod listing;

/// Format version written into every manifest.
pub const MANIFEST_VERSION: u32 = 1;
/// Largest decoded manifest accepted (bytes of JSON).
pub const MAX_DECODED_LEN: u64 = 1 << 30;
/// Largest single file size accepted in a manifest (1 PiB).
pub const MAX_FILE_SIZE: u64 = 1 << 50;

/// One inode, and what kind it is. Permission bits (`mode`) include
/// setuid, setgid and sticky (`0o7777`); the file type is the variant.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "t", rename_all = "lowercase")]
pub enum Inode {
    Dir {
        mode: u32,
        uid: u32,
        gid: u32,
    },
    File {
        mode: u32,
        uid: u32,
        gid: u32,
        mtime: i64,
        #[serde(default, skip_serializing_if = "is_zero")]
        mtime_ns: u32,
        size: u64,
        object: ObjectId,
    },
    Symlink {
        uid: u32,
        gid: u32,
        target: String,
    },
    /// A hard link: another name for the inode at `target`, an earlier
    /// path in the same manifest.
    Link {
        target: String,
    },
    Char {
        mode: u32,
        uid: u32,
        gid: u32,
        mtime: i64,
        #[serde(default, skip_serializing_if = "is_zero")]
        mtime_ns: u32,
        rdev: u64,
    },
    Block {
        mode: u32,
        uid: u32,
        gid: u32,
        mtime: i64,
        #[serde(default, skip_serializing_if = "is_zero")]
        mtime_ns: u32,
        rdev: u64,
    },
    Fifo {
        mode: u32,
        uid: u32,
        gid: u32,
        mtime: i64,
        #[serde(default, skip_serializing_if = "is_zero")]
        mtime_ns: u32,
    },
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

impl Inode {
    /// The permission bits, for kinds that carry them.
    pub fn mode(&self) -> Option<u32> {
        match self {
            Inode::Dir { mode, .. }
            | Inode::File { mode, .. }
            | Inode::Char { mode, .. }
            | Inode::Block { mode, .. }
            | Inode::Fifo { mode, .. } => Some(*mode),
            Inode::Symlink { .. } | Inode::Link { .. } => None,
        }
    }

    /// Owner, for kinds that carry one.
    pub fn owner(&self) -> Option<(u32, u32)> {
        match self {
            Inode::Dir { uid, gid, .. }
            | Inode::File { uid, gid, .. }
            | Inode::Symlink { uid, gid, .. }
            | Inode::Char { uid, gid, .. }
            | Inode::Block { uid, gid, .. }
            | Inode::Fifo { uid, gid, .. } => Some((*uid, *gid)),
            Inode::Link { .. } => None,
        }
    }

    /// Modification time (seconds, nanoseconds), for kinds that carry one.
    pub fn mtime(&self) -> Option<(i64, u32)> {
        match self {
            Inode::File {
                mtime, mtime_ns, ..
            }
            | Inode::Char {
                mtime, mtime_ns, ..
            }
            | Inode::Block {
                mtime, mtime_ns, ..
            }
            | Inode::Fifo {
                mtime, mtime_ns, ..
            } => Some((*mtime, *mtime_ns)),
            _ => None,
        }
    }

    /// One letter for the kind, as `ls -l` prints it.
    pub fn type_char(&self) -> char {
        match self {
            Inode::Dir { .. } => 'd',
            Inode::File { .. } | Inode::Link { .. } => '-',
            Inode::Symlink { .. } => 'l',
            Inode::Char { .. } => 'c',
            Inode::Block { .. } => 'b',
            Inode::Fifo { .. } => 'p',
        }
    }
}

/// A path and its inode (read by a reader of its own, in `entry.rs`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Entry {
    pub path: String,
    #[serde(flatten)]
    pub inode: Inode,
}

/// An image's full tree.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    pub v: u32,
    pub entries: Vec<Entry>,
}

#[derive(Debug, Error)]
pub enum ManifestError {
    #[error("manifest is not valid gzip-compressed JSON: {0}")]
    Encoding(String),
    #[error("manifest is larger than {} bytes decoded", MAX_DECODED_LEN)]
    TooLarge,
    #[error("manifest version {0} is not supported")]
    Version(u32),
    #[error("manifest has a bad path: {0}")]
    Path(#[from] PathError),
    #[error("manifest does not start with the root directory")]
    NoRoot,
    #[error("manifest entries are not sorted or repeat a path at {0:?}")]
    Order(String),
    #[error("{0:?}: its parent is not a directory in the manifest")]
    Orphan(String),
    #[error("{path:?}: hard link to {target:?}, which is not an earlier file")]
    BadLink { path: String, target: String },
    #[error("{path:?}: symlink target {target:?} is empty, too long or escapes the root")]
    BadSymlink { path: String, target: String },
    #[error("{0:?}: mode has bits beyond 0o7777")]
    BadMode(String),
    #[error("{path:?}: size {size} is absurd")]
    BadSize { path: String, size: u64 },
    #[error("{0:?} appears twice")]
    Duplicate(String),
    #[error("{path:?}: {reason}")]
    Conflict { path: String, reason: String },
}

impl Manifest {
    /// Encodes deterministically: JSON with a fixed field order, entries
    /// sorted, gzip (fastest level: most of a manifest is hex digests,
    /// which barely compress further) with no timestamp.
    pub fn encode(&self) -> Vec<u8> {
        let json = serde_json::to_vec(self).expect("manifest serialises");
        let mut gz = flate2::GzBuilder::new().mtime(0).write(
            Vec::with_capacity(json.len() / 4),
            flate2::Compression::fast(),
        );
        gz.write_all(&json).expect("writing to memory");
        gz.finish().expect("writing to memory")
    }

    /// Decodes and validates a manifest from untrusted bytes.
    pub fn decode(bytes: &[u8]) -> Result<Self, ManifestError> {
        let mut json = Vec::new();
        flate2::read::GzDecoder::new(bytes)
            .take(MAX_DECODED_LEN + 1)
            .read_to_end(&mut json)
            .map_err(|e| ManifestError::Encoding(e.to_string()))?;
        if json.len() as u64 > MAX_DECODED_LEN {
            return Err(ManifestError::TooLarge);
        }
        let manifest: Manifest =
            serde_json::from_slice(&json).map_err(|e| ManifestError::Encoding(e.to_string()))?;
        manifest.validate()?;
        Ok(manifest)
    }

    /// The object id of the encoded manifest.
    pub fn id(&self) -> ObjectId {
        ObjectId::of(&self.encode())
    }

    /// Checks every rule a manifest must obey.
    pub fn validate(&self) -> Result<(), ManifestError> {
        if self.v != MANIFEST_VERSION {
            return Err(ManifestError::Version(self.v));
        }
        let root = self.entries.first().ok_or(ManifestError::NoRoot)?;
        if root.path != "/" || !matches!(root.inode, Inode::Dir { .. }) {
            return Err(ManifestError::NoRoot);
        }
        let mut dirs: HashSet<&str> = HashSet::default();
        let mut linkable: HashSet<&str> = HashSet::default();
        let mut previous: Option<&str> = None;
        for entry in &self.entries {
            let p = path::normalise(&entry.path)?;
            if let Some(prev) = previous {
                if prev >= p {
                    return Err(ManifestError::Order(p.into()));
                }
                if !dirs.contains(path::parent(p)) {
                    return Err(ManifestError::Orphan(p.into()));
                }
            }
            previous = Some(p);
            if let Some(mode) = entry.inode.mode() {
                if mode & !0o7777 != 0 {
                    return Err(ManifestError::BadMode(p.into()));
                }
            }
            match &entry.inode {
                Inode::Dir { .. } => {
                    dirs.insert(p);
                }
                Inode::File { size, .. } => {
                    if *size > MAX_FILE_SIZE {
                        return Err(ManifestError::BadSize {
                            path: p.into(),
                            size: *size,
                        });
                    }
                    linkable.insert(p);
                }
                Inode::Symlink { target, .. } => {
                    if target.len() > path::MAX_PATH_LEN || !path::symlink_stays_inside(p, target) {
                        return Err(ManifestError::BadSymlink {
                            path: p.into(),
                            target: target.clone(),
                        });
                    }
                }
                Inode::Link { target } => {
                    if !linkable.contains(target.as_str()) {
                        return Err(ManifestError::BadLink {
                            path: p.into(),
                            target: target.clone(),
                        });
                    }
                }
                Inode::Char { .. } | Inode::Block { .. } | Inode::Fifo { .. } => {
                    linkable.insert(p);
                }
            }
        }
        Ok(())
    }

    /// Looks an entry up by path.
    pub fn get(&self, path: &str) -> Option<&Entry> {
        self.entries
            .binary_search_by(|e| e.path.as_str().cmp(path))
            .ok()
            .map(|i| &self.entries[i])
    }

    /// The inode a path names, following a hard link to its target.
    pub fn resolve<'a>(&'a self, entry: &'a Entry) -> &'a Inode {
        match &entry.inode {
            Inode::Link { target } => self.get(target).map(|e| &e.inode).unwrap_or(&entry.inode),
            inode => inode,
        }
    }

    /// Regular files (not counting extra hard links) and their total size.
    pub fn totals(&self) -> Totals {
        let mut totals = Totals::default();
        let mut objects = HashSet::default();
        for entry in &self.entries {
            totals.inodes += 1;
            if let Inode::File { size, object, .. } = &entry.inode {
                totals.files += 1;
                totals.bytes += size;
                if objects.insert(object) {
                    totals.objects += 1;
                    totals.object_bytes += size;
                }
            }
        }
        totals
    }

    /// Every distinct object the manifest needs, with its size.
    pub fn objects(&self) -> Vec<(ObjectId, u64)> {
        let mut seen = HashMap::default();
        for entry in &self.entries {
            if let Inode::File { size, object, .. } = &entry.inode {
                seen.entry(*object).or_insert(*size);
            }
        }
        let mut list: Vec<_> = seen.into_iter().collect();
        list.sort();
        list
    }
}

/// Counts over a manifest.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Totals {
    pub inodes: u64,
    pub files: u64,
    pub bytes: u64,
    pub objects: u64,
    pub object_bytes: u64,
}

/// Collects entries in any order and produces a valid manifest: sorted,
/// with missing parent directories made (0755, root-owned), and hard links
/// pointing at the first of their names.
#[derive(Default)]
pub struct ManifestBuilder {
    /// In the order added; sorted (and repeated paths dropped) by
    /// `finish`, which costs far less than keeping them sorted all along.
    entries: Vec<(String, Inode, Option<u64>)>,
}

impl ManifestBuilder {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds an entry. `link_key` groups names of one inode (such as the
    /// device and inode number on disk); all but the first name, by path
    /// order, become hard links. A repeated path replaces the earlier one,
    /// as extracting a tar archive would.
    pub fn add(
        &mut self,
        path: String,
        inode: Inode,
        link_key: Option<u64>,
    ) -> Result<(), ManifestError> {
        path::normalise(&path)?;
        if let Inode::Symlink { target, .. } = &inode {
            if target.len() > path::MAX_PATH_LEN || !path::symlink_stays_inside(&path, target) {
                return Err(ManifestError::BadSymlink {
                    path,
                    target: target.clone(),
                });
            }
        }
        if let Inode::Link { target } = &inode {
            path::normalise(target).map_err(|_| ManifestError::BadLink {
                path: path.clone(),
                target: target.clone(),
            })?;
        }
        self.entries.push((path, inode, link_key));
        Ok(())
    }

    /// Number of entries added so far.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Sorts, fills in parents, resolves hard links and validates.
    pub fn finish(mut self) -> Result<Manifest, ManifestError> {
        // Sorted by path; of a repeated path, the last added is kept (the
        // sort is stable).
        self.entries.sort_by(|a, b| a.0.cmp(&b.0));
        let mut sorted: Vec<(String, Inode, Option<u64>)> = Vec::with_capacity(self.entries.len());
        for entry in self.entries {
            match sorted.last_mut() {
                Some(last) if last.0 == entry.0 => *last = entry,
                _ => sorted.push(entry),
            }
        }
        // Parents that no entry names become plain root-owned directories.
        let mut missing: Vec<String> = Vec::new();
        {
            let known: HashSet<&str> = sorted.iter().map(|e| e.0.as_str()).collect();
            let mut added: HashSet<String> = HashSet::default();
            for (path, _, _) in &sorted {
                let mut p = path::parent(path);
                while p != "/" && !known.contains(p) && !added.contains(p) {
                    added.insert(p.to_string());
                    missing.push(p.to_string());
                    p = path::parent(p);
                }
            }
            if !known.contains("/") {
                missing.push("/".into());
            }
        }
        if !missing.is_empty() {
            let dir = Inode::Dir {
                mode: 0o755,
                uid: 0,
                gid: 0,
            };
            sorted.extend(missing.into_iter().map(|p| (p, dir.clone(), None)));
            sorted.sort_by(|a, b| a.0.cmp(&b.0));
        }
        {
            let dirs: HashSet<&str> = sorted
                .iter()
                .filter(|e| matches!(e.1, Inode::Dir { .. }))
                .map(|e| e.0.as_str())
                .collect();
            for (path, _, _) in &sorted {
                if path != "/" && !dirs.contains(path::parent(path)) {
                    return Err(ManifestError::Conflict {
                        path: path.clone(),
                        reason: format!("its parent {:?} is not a directory", path::parent(path)),
                    });
                }
            }
        }
        // Hard links by key: the first path (in order) keeps the inode.
        let mut first_of_key: HashMap<u64, String> = HashMap::default();
        let mut entries = Vec::with_capacity(sorted.len());
        for (path, inode, key) in sorted {
            let inode = match key {
                Some(key) if !matches!(inode, Inode::Dir { .. } | Inode::Symlink { .. }) => {
                    match first_of_key.get(&key) {
                        Some(first) => Inode::Link {
                            target: first.clone(),
                        },
                        None => {
                            first_of_key.insert(key, path.clone());
                            inode
                        }
                    }
                }
                _ => inode,
            };
            entries.push(Entry { path, inode });
        }
        // Tar hard links name their target explicitly; point them at the
        // earliest name of that inode so the manifest stays canonical.
        canonicalise_links(&mut entries)?;
        let manifest = Manifest {
            v: MANIFEST_VERSION,
            entries,
        };
        manifest.validate()?;
        Ok(manifest)
    }
}

/// Rewrites explicit hard links (as tar archives have them) so that each
/// group of names shares the earliest path as its target.
fn canonicalise_links(entries: &mut [Entry]) -> Result<(), ManifestError> {
    if !entries
        .iter()
        .any(|e| matches!(e.inode, Inode::Link { .. }))
    {
        return Ok(());
    }
    let index: HashMap<String, usize> = entries
        .iter()
        .enumerate()
        .map(|(i, e)| (e.path.clone(), i))
        .collect();
    // Find, for each link, the inode-carrying entry it ends at.
    let mut owner_of: Vec<Option<usize>> = vec![None; entries.len()];
    for i in 0..entries.len() {
        let mut at = i;
        let mut hops = 0;
        while let Inode::Link { target } = &entries[at].inode {
            hops += 1;
            let next = index.get(target).copied();
            match next {
                Some(n) if hops <= entries.len() => at = n,
                _ => {
                    return Err(ManifestError::BadLink {
                        path: entries[i].path.clone(),
                        target: target.clone(),
                    })
                }
            }
        }
        if i != at {
            if matches!(entries[at].inode, Inode::Dir { .. } | Inode::Symlink { .. }) {
                let Inode::Link { target } = &entries[i].inode else {
                    unreachable!()
                };
                return Err(ManifestError::BadLink {
                    path: entries[i].path.clone(),
                    target: target.clone(),
                });
            }
            owner_of[i] = Some(at);
        }
    }
    // Group names by owner; the smallest index (earliest path) becomes the
    // inode carrier.
    let mut groups: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
    for (i, owner) in owner_of.iter().enumerate() {
        if let Some(owner) = owner {
            groups.entry(*owner).or_default().push(i);
        }
    }
    for (owner, mut names) in groups {
        names.push(owner);
        names.sort_unstable();
        let first = names[0];
        if first != owner {
            let inode = std::mem::replace(
                &mut entries[owner].inode,
                Inode::Link {
                    target: String::new(),
                },
            );
            entries[first].inode = inode;
        }
        let target = entries[first].path.clone();
        for &n in &names[1..] {
            entries[n].inode = Inode::Link {
                target: target.clone(),
            };
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(content: &[u8]) -> Inode {
        Inode::File {
            mode: 0o644,
            uid: 0,
            gid: 0,
            mtime: 1_700_000_000,
            mtime_ns: 5,
            size: content.len() as u64,
            object: ObjectId::of(content),
        }
    }

    fn sample() -> Manifest {
        let mut b = ManifestBuilder::new();
        b.add("/etc/ssh/sshd.conf".into(), file(b"Port 22\n"), Some(1))
            .unwrap();
        b.add(
            "/etc/ssh/sshd.conf.hard".into(),
            file(b"Port 22\n"),
            Some(1),
        )
        .unwrap();
        b.add(
            "/lib".into(),
            Inode::Symlink {
                uid: 0,
                gid: 0,
                target: "usr/lib".into(),
            },
            None,
        )
        .unwrap();
        b.add(
            "/dev/null".into(),
            Inode::Char {
                mode: 0o666,
                uid: 0,
                gid: 0,
                mtime: 0,
                mtime_ns: 0,
                rdev: 0x103,
            },
            None,
        )
        .unwrap();
        b.finish().unwrap()
    }

    #[test]
    fn builder_fills_parents_and_links() {
        let m = sample();
        let paths: Vec<_> = m.entries.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "/",
                "/dev",
                "/dev/null",
                "/etc",
                "/etc/ssh",
                "/etc/ssh/sshd.conf",
                "/etc/ssh/sshd.conf.hard",
                "/lib"
            ]
        );
        assert_eq!(
            m.get("/etc/ssh/sshd.conf.hard").unwrap().inode,
            Inode::Link {
                target: "/etc/ssh/sshd.conf".into()
            }
        );
        let t = m.totals();
        assert_eq!((t.files, t.objects, t.bytes), (1, 1, 8));
    }

    #[test]
    fn encoding_is_deterministic_and_round_trips() {
        let a = sample().encode();
        let b = sample().encode();
        assert_eq!(a, b);
        assert_eq!(Manifest::decode(&a).unwrap(), sample());
        assert_eq!(sample().id(), ObjectId::of(&a));
    }

    #[test]
    fn explicit_links_are_canonicalised() {
        let mut b = ManifestBuilder::new();
        b.add("/z".into(), file(b"x"), None).unwrap();
        b.add(
            "/a".into(),
            Inode::Link {
                target: "/z".into(),
            },
            None,
        )
        .unwrap();
        let m = b.finish().unwrap();
        assert!(matches!(m.get("/a").unwrap().inode, Inode::File { .. }));
        assert_eq!(
            m.get("/z").unwrap().inode,
            Inode::Link {
                target: "/a".into()
            }
        );
    }

    #[test]
    fn builder_rejects_escapes() {
        let mut b = ManifestBuilder::new();
        let escape = Inode::Symlink {
            uid: 0,
            gid: 0,
            target: "../../etc/shadow".into(),
        };
        assert!(matches!(
            b.add("/x".into(), escape, None),
            Err(ManifestError::BadSymlink { .. })
        ));
        assert!(b.add("/a/../b".into(), file(b""), None).is_err());
        let mut b = ManifestBuilder::new();
        b.add(
            "/a".into(),
            Inode::Link {
                target: "/missing".into(),
            },
            None,
        )
        .unwrap();
        assert!(matches!(b.finish(), Err(ManifestError::BadLink { .. })));
    }

    #[test]
    fn builder_rejects_file_under_file() {
        let mut b = ManifestBuilder::new();
        b.add("/a".into(), file(b""), None).unwrap();
        b.add("/a/b".into(), file(b""), None).unwrap();
        assert!(matches!(b.finish(), Err(ManifestError::Conflict { .. })));
    }

    #[test]
    fn decoder_rejects_hostile_manifests() {
        let good = sample();
        let mut cases = Vec::new();
        let mut m = good.clone();
        m.entries.swap(1, 2);
        cases.push(m);
        let mut m = good.clone();
        m.entries[2].path = "/dev/../etc".into();
        cases.push(m);
        let mut m = good.clone();
        m.entries.remove(0);
        cases.push(m);
        let mut m = good.clone();
        m.entries.push(Entry {
            path: "/zz".into(),
            inode: Inode::Symlink {
                uid: 0,
                gid: 0,
                target: "../x".into(),
            },
        });
        cases.push(m);
        let mut m = good.clone();
        m.entries.push(Entry {
            path: "/zz".into(),
            inode: Inode::File {
                mode: 0o644,
                uid: 0,
                gid: 0,
                mtime: 0,
                mtime_ns: 0,
                size: u64::MAX,
                object: ObjectId::of(b""),
            },
        });
        cases.push(m);
        let mut m = good.clone();
        m.entries.push(Entry {
            path: "/zz".into(),
            inode: Inode::Dir {
                mode: 0o40755,
                uid: 0,
                gid: 0,
            },
        });
        cases.push(m);
        for bad in cases {
            assert!(Manifest::decode(&bad.encode()).is_err(), "{bad:?}");
        }
        assert!(Manifest::decode(b"not gzip").is_err());
    }
}
