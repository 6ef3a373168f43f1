//! The hash cache: the SHA-512 of inodes whose content cannot have changed
//! since they were hashed.
//!
//! An entry is keyed by device and inode number and is trusted only while
//! size, mtime and ctime (to the nanosecond) are what they were. Writing a
//! file changes its mtime and ctime; mtime can be set back by anyone, but
//! ctime only moves forward with the clock, so this is the rule git uses
//! for its index. Files changed shortly before being hashed are not
//! cached: a write in the same clock tick as the hash would leave the times
//! unchanged. How shortly follows the file system's clock: where its times
//! carry nanoseconds, the kernel's clock tick (at most 10 ms) is the bound,
//! and [`FINE_SETTLE`] leaves a wide margin; where they are whole seconds,
//! [`SETTLE`].
//!
//! The agent also [`learn`](HashCache::learn)s what it writes itself: a
//! file it installed from a verified object, right after the rename, so
//! the scan after an update reads none of them.
//!
//! The cache is a plain file (see [`HashCache::save`]), written to a temporary
//! name and renamed, with a checksum: a damaged or foreign file is ignored,
//! never trusted.
//!
//! One cache serves every tree hashed through it (entries are keyed by
//! device and inode, so trees never collide): a build host that adds ten
//! image streams in turn finds each tree's hashes still there. The cache
//! is bounded by size, not by age: a save keeps at most [`MAX_ENTRIES`]
//! entries (about 60 MB on disk), dropping those least recently used, and
//! never an entry the scan just saved used, so a tree larger than the
//! bound is still remembered whole.

use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use dom_model::object::DIGEST_LEN;
use dom_model::ObjectId;
use rustc_hash::FxHashMap as HashMap;

/// How old a change must be before its hash is remembered, on a file
/// system whose times are whole seconds.
pub const SETTLE: Duration = Duration::from_secs(2);
/// The same where times carry nanoseconds.
pub const FINE_SETTLE: Duration = Duration::from_millis(100);
/// Most entries a save keeps, beyond those used since the last save; the
/// least recently used go first.
pub const MAX_ENTRIES: usize = 500_000;
const MAGIC: &[u8; 8] = b"DOMHC01\n";
const SHARDS: usize = 64;

/// What identifies a file's content without reading it: which inode, and
/// the times and size any write changes. Public so that a writer holding
/// a `stat` of its own (not a [`fs::Metadata`]) can [`learn`](HashCache::learn).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Identity {
    pub dev: u64,
    pub ino: u64,
    pub size: u64,
    pub mtime: i64,
    pub mtime_ns: i64,
    pub ctime: i64,
    pub ctime_ns: i64,
}

impl Identity {
    pub fn of(meta: &fs::Metadata) -> Self {
        Self {
            dev: meta.dev(),
            ino: meta.ino(),
            size: meta.size(),
            mtime: meta.mtime(),
            mtime_ns: meta.mtime_nsec(),
            ctime: meta.ctime(),
            ctime_ns: meta.ctime_nsec(),
        }
    }

    fn split(&self) -> (Key, Stamp) {
        (
            Key {
                dev: self.dev,
                ino: self.ino,
            },
            Stamp {
                size: self.size,
                mtime: self.mtime,
                mtime_ns: self.mtime_ns,
                ctime: self.ctime,
                ctime_ns: self.ctime_ns,
            },
        )
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
struct Key {
    dev: u64,
    ino: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Stamp {
    size: u64,
    mtime: i64,
    mtime_ns: i64,
    ctime: i64,
    ctime_ns: i64,
}

impl Stamp {
    /// When the inode last changed: its ctime, which only moves forward.
    fn changed(&self) -> (i64, i64) {
        (self.ctime, self.ctime_ns)
    }
}

#[derive(Clone, Copy)]
struct Value {
    stamp: Stamp,
    id: ObjectId,
    /// The save count when this entry was last used or made.
    seen: u32,
}

/// Hashes of unchanged inodes; shared by the threads of a scan.
pub struct HashCache {
    shards: Vec<Mutex<HashMap<Key, Value>>>,
    saves: AtomicU32,
}

impl Default for HashCache {
    fn default() -> Self {
        Self::new()
    }
}

impl HashCache {
    pub fn new() -> Self {
        Self {
            shards: (0..SHARDS)
                .map(|_| Mutex::new(HashMap::default()))
                .collect(),
            saves: AtomicU32::new(0),
        }
    }

    fn shard(&self, key: &Key) -> &Mutex<HashMap<Key, Value>> {
        let mix = key.ino.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ key.dev;
        &self.shards[(mix >> 58) as usize % SHARDS]
    }

    /// The id of the file `meta` describes, if it was hashed before and has
    /// not changed since.
    pub fn lookup(&self, meta: &fs::Metadata) -> Option<ObjectId> {
        self.lookup_identity(&Identity::of(meta))
    }

    /// The same for a file's identity.
    pub fn lookup_identity(&self, identity: &Identity) -> Option<ObjectId> {
        let (key, stamp) = identity.split();
        let mut shard = self.shard(&key).lock().expect("cache lock");
        let value = shard.get_mut(&key)?;
        if value.stamp != stamp {
            return None;
        }
        value.seen = self.saves.load(Ordering::Relaxed);
        Some(value.id)
    }

    /// Remembers that the file `meta` describes (stat-ed before it was
    /// read) hashed to `id`, unless it changed too recently to be sure.
    pub fn record(&self, meta: &fs::Metadata, id: ObjectId, hashed_at: SystemTime) {
        let (key, stamp) = Identity::of(meta).split();
        let changed = UNIX_EPOCH + Duration::new(stamp.ctime.max(0) as u64, stamp.ctime_ns as u32);
        let settle = if stamp.ctime_ns != 0 {
            FINE_SETTLE
        } else {
            SETTLE
        };
        let settled = hashed_at
            .checked_sub(settle)
            .is_some_and(|limit| changed < limit);
        if settled {
            self.insert(key, stamp, id);
        }
    }

    /// Remembers that the file `identity` describes holds `id`, however
    /// recently it changed: for a writer that knows the content it just
    /// put there (the agent, after installing a verified object), and
    /// looked at the file right after its last change.
    pub fn learn(&self, identity: &Identity, id: ObjectId) {
        let (key, stamp) = identity.split();
        self.insert(key, stamp, id);
    }

    /// Keeps `id` for the inode `key` as `stamp` describes it, unless the
    /// cache knows it as it was after a later change: a slow scan that
    /// stat-ed the file before someone (the agent's own update, say)
    /// changed it must not put back what it saw then.
    fn insert(&self, key: Key, stamp: Stamp, id: ObjectId) {
        let seen = self.saves.load(Ordering::Relaxed);
        let mut shard = self.shard(&key).lock().expect("cache lock");
        if shard
            .get(&key)
            .is_some_and(|known| known.stamp.changed() > stamp.changed())
        {
            return;
        }
        shard.insert(key, Value { stamp, id, seen });
    }

    pub fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.lock().expect("cache lock").len())
            .sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Reads a cache saved by [`save`](Self::save). A missing file gives an
    /// empty cache; so does a damaged one (with a warning): a cache is only
    /// ever an optimisation.
    pub fn load(path: &Path) -> Self {
        let cache = Self::new();
        match fs::read(path) {
            Ok(bytes) => {
                if let Err(reason) = cache.decode(&bytes) {
                    tracing::warn!(path = %path.display(), reason, "ignoring hash cache");
                    return Self::new();
                }
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => tracing::warn!(path = %path.display(), error = %e, "ignoring hash cache"),
        }
        cache
    }

    /// Writes the cache to `path` (via a temporary file and a rename, so a
    /// crash leaves the old cache or the new one; not synced, as a cache
    /// damaged by a power cut fails its checksum and is ignored). Keeps
    /// every entry used since the last save, then the most recently used
    /// others, up to [`MAX_ENTRIES`] in all.
    pub fn save(&self, path: &Path) -> io::Result<()> {
        let bytes = self.encode();
        let dir = path.parent().unwrap_or(Path::new("."));
        fs::create_dir_all(dir)?;
        let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
        tmp.write_all(&bytes)?;
        tmp.persist(path).map_err(|e| e.error)?;
        Ok(())
    }

    const ENTRY_LEN: usize = 8 * 7 + 4 + DIGEST_LEN;

    fn encode(&self) -> Vec<u8> {
        self.encode_bounded(MAX_ENTRIES)
    }

    /// Encodes at most `bound` entries, or more if more were used since
    /// the last save: the least recently used are left out.
    fn encode_bounded(&self, bound: usize) -> Vec<u8> {
        let saves = self.saves.fetch_add(1, Ordering::Relaxed) + 1;
        let mut kept: Vec<(u32, Key, Value)> = Vec::with_capacity(self.len());
        for shard in &self.shards {
            let shard = shard.lock().expect("cache lock");
            // Age in saves: 1 for an entry used since the last save.
            kept.extend(
                shard
                    .iter()
                    .map(|(key, value)| (saves.wrapping_sub(value.seen), *key, *value)),
            );
        }
        let used_now = kept.iter().filter(|(age, ..)| *age <= 1).count();
        let keep = bound.max(used_now);
        if kept.len() > keep {
            kept.select_nth_unstable_by_key(keep, |(age, ..)| *age);
            kept.truncate(keep);
        }
        let mut out = Vec::with_capacity(MAGIC.len() + 4 + kept.len() * Self::ENTRY_LEN + 32);
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&saves.to_le_bytes());
        for (_, key, value) in &kept {
            let s = &value.stamp;
            for n in [key.dev, key.ino, s.size] {
                out.extend_from_slice(&n.to_le_bytes());
            }
            for n in [s.mtime, s.mtime_ns, s.ctime, s.ctime_ns] {
                out.extend_from_slice(&n.to_le_bytes());
            }
            out.extend_from_slice(&value.seen.to_le_bytes());
            out.extend_from_slice(value.id.as_bytes());
        }
        let sum = openssl::sha::sha256(&out);
        out.extend_from_slice(&sum);
        out
    }

    fn decode(&self, bytes: &[u8]) -> Result<(), &'static str> {
        let head = MAGIC.len() + 4;
        if bytes.len() < head + 32 || &bytes[..MAGIC.len()] != MAGIC {
            return Err("not a hash cache file");
        }
        let (body, sum) = bytes.split_at(bytes.len() - 32);
        if openssl::sha::sha256(body) != sum {
            return Err("checksum mismatch");
        }
        let entries = &body[head..];
        if entries.len() % Self::ENTRY_LEN != 0 {
            return Err("truncated entry");
        }
        let saves = u32::from_le_bytes(body[MAGIC.len()..head].try_into().expect("4 bytes"));
        self.saves.store(saves, Ordering::Relaxed);
        for entry in entries.chunks_exact(Self::ENTRY_LEN) {
            let word =
                |i: usize| -> [u8; 8] { entry[i * 8..i * 8 + 8].try_into().expect("8 bytes") };
            let key = Key {
                dev: u64::from_le_bytes(word(0)),
                ino: u64::from_le_bytes(word(1)),
            };
            let stamp = Stamp {
                size: u64::from_le_bytes(word(2)),
                mtime: i64::from_le_bytes(word(3)),
                mtime_ns: i64::from_le_bytes(word(4)),
                ctime: i64::from_le_bytes(word(5)),
                ctime_ns: i64::from_le_bytes(word(6)),
            };
            let seen = u32::from_le_bytes(entry[56..60].try_into().expect("4 bytes"));
            let digest: [u8; DIGEST_LEN] = entry[60..].try_into().expect("digest");
            let value = Value {
                stamp,
                id: ObjectId::from_digest(digest),
                seen,
            };
            self.shard(&key)
                .lock()
                .expect("cache lock")
                .insert(key, value);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A file holding `one`, in a directory of its own.
    fn one_file() -> (tempfile::TempDir, std::path::PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("f");
        fs::write(&file, b"one").unwrap();
        (dir, file)
    }

    fn long_ago() -> SystemTime {
        SystemTime::now() + Duration::from_secs(3600)
    }

    #[test]
    fn unchanged_file_hits_changed_file_misses() {
        let (_dir, file) = one_file();
        let cache = HashCache::new();
        let meta = fs::metadata(&file).unwrap();
        let id = ObjectId::of(b"one");
        cache.record(&meta, id, long_ago());
        assert_eq!(cache.lookup(&fs::metadata(&file).unwrap()), Some(id));
        fs::write(&file, b"two").unwrap();
        assert_eq!(cache.lookup(&fs::metadata(&file).unwrap()), None);
    }

    #[test]
    fn recently_changed_files_are_not_remembered() {
        let (_dir, file) = one_file();
        let cache = HashCache::new();
        let meta = fs::metadata(&file).unwrap();
        cache.record(&meta, ObjectId::of(b"one"), SystemTime::now());
        assert_eq!(cache.lookup(&meta), None);
    }

    #[test]
    fn a_change_a_moment_ago_is_remembered_on_a_fine_grained_clock() {
        let (_dir, file) = one_file();
        let meta = fs::metadata(&file).unwrap();
        let cache = HashCache::new();
        let id = ObjectId::of(b"one");
        let hashed_at = SystemTime::now() + FINE_SETTLE * 2;
        cache.record(&meta, id, hashed_at);
        if meta.ctime_nsec() != 0 {
            assert_eq!(cache.lookup(&meta), Some(id));
        } else {
            // Whole seconds: the long settle applies.
            assert_eq!(cache.lookup(&meta), None);
        }
    }

    #[test]
    fn what_the_agent_wrote_is_learned_at_once_and_forgotten_when_changed() {
        let (_dir, file) = one_file();
        let cache = HashCache::new();
        let id = ObjectId::of(b"one");
        cache.learn(&Identity::of(&fs::metadata(&file).unwrap()), id);
        assert_eq!(cache.lookup(&fs::metadata(&file).unwrap()), Some(id));
        // Same size, same mtime put back: the ctime still moved.
        let mtime = fs::metadata(&file).unwrap().modified().unwrap();
        std::thread::sleep(Duration::from_millis(20));
        fs::write(&file, b"two").unwrap();
        fs::File::options()
            .write(true)
            .open(&file)
            .unwrap()
            .set_modified(mtime)
            .unwrap();
        assert_eq!(cache.lookup(&fs::metadata(&file).unwrap()), None);
    }

    #[test]
    fn what_a_slow_scan_saw_before_a_change_does_not_replace_what_came_after() {
        let (_dir, file) = one_file();
        let seen_early = fs::metadata(&file).unwrap();
        std::thread::sleep(Duration::from_millis(20));
        let mtime = seen_early.modified().unwrap() - Duration::from_secs(60);
        fs::File::options()
            .write(true)
            .open(&file)
            .unwrap()
            .set_modified(mtime)
            .unwrap();
        let now = fs::metadata(&file).unwrap();
        assert_ne!(now.ctime_nsec(), seen_early.ctime_nsec());
        let cache = HashCache::new();
        let id = ObjectId::of(b"one");
        cache.learn(&Identity::of(&now), id);
        cache.record(&seen_early, id, long_ago());
        assert_eq!(cache.lookup(&now), Some(id));
    }

    #[test]
    fn saves_and_loads_and_ignores_damage() {
        let (dir, file) = one_file();
        let meta = fs::metadata(&file).unwrap();
        let cache = HashCache::new();
        cache.record(&meta, ObjectId::of(b"one"), long_ago());
        let saved = dir.path().join("cache/hashes");
        cache.save(&saved).unwrap();
        let loaded = HashCache::load(&saved);
        assert_eq!(loaded.lookup(&meta), Some(ObjectId::of(b"one")));

        let mut bytes = fs::read(&saved).unwrap();
        let last = bytes.len() - 40;
        bytes[last] ^= 1;
        fs::write(&saved, &bytes).unwrap();
        assert!(HashCache::load(&saved).is_empty());
        assert!(HashCache::load(&dir.path().join("missing")).is_empty());
    }

    #[test]
    fn entries_stay_however_many_saves_did_not_use_them() {
        let (dir, file) = one_file();
        let meta = fs::metadata(&file).unwrap();
        let cache = HashCache::new();
        cache.record(&meta, ObjectId::of(b"one"), long_ago());
        let saved = dir.path().join("hashes");
        for _ in 0..100 {
            cache.save(&saved).unwrap();
        }
        let loaded = HashCache::load(&saved);
        assert_eq!(loaded.lookup(&meta), Some(ObjectId::of(b"one")));
    }

    /// Three files, their identities made up: inodes 1, 2 and 3.
    fn made_up(ino: u64) -> Identity {
        Identity {
            dev: 1,
            ino,
            size: 3,
            mtime: 1,
            mtime_ns: 0,
            ctime: 1,
            ctime_ns: 0,
        }
    }

    #[test]
    fn over_the_bound_the_least_recently_used_go_first() {
        let dir = tempfile::tempdir().unwrap();
        let saved = dir.path().join("hashes");
        let id = ObjectId::of(b"one");
        let cache = HashCache::new();
        cache.learn(&made_up(1), id);
        cache.save(&saved).unwrap();
        let cache = HashCache::load(&saved);
        cache.learn(&made_up(2), id);
        cache.save(&saved).unwrap();
        let cache = HashCache::load(&saved);
        cache.learn(&made_up(3), id);
        // Used again now: the most recent, with 3.
        assert_eq!(cache.lookup_identity(&made_up(1)), Some(id));
        fs::write(&saved, cache.encode_bounded(2)).unwrap();
        let loaded = HashCache::load(&saved);
        assert_eq!(loaded.len(), 2);
        assert_eq!(loaded.lookup_identity(&made_up(2)), None);
        assert_eq!(loaded.lookup_identity(&made_up(1)), Some(id));
        assert_eq!(loaded.lookup_identity(&made_up(3)), Some(id));
    }

    #[test]
    fn what_the_last_scan_used_is_kept_even_over_the_bound() {
        let dir = tempfile::tempdir().unwrap();
        let saved = dir.path().join("hashes");
        let cache = HashCache::new();
        for ino in 1..=3 {
            cache.learn(&made_up(ino), ObjectId::of(b"one"));
        }
        fs::write(&saved, cache.encode_bounded(1)).unwrap();
        assert_eq!(HashCache::load(&saved).len(), 3);
    }
}
