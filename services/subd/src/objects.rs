//! The agent's private object cache, `<state-dir>/objects`: one file per
//! object, named by its lowercase hex id, in a subdirectory named by the
//! id's first two hex digits (`objects/3f/3f9a…`).
//!
//! The subdirectories are there for speed: creating and renaming files
//! takes the directory's lock, and with every object in one directory a
//! whole-image fetch spent most of its time waiting on it and in the file
//! system's inode allocator (docs/BENCHMARKS.md). A cache written by an
//! older agent, with its objects at the top, is moved into subdirectories
//! when it is opened.
//!
//! The cache lives on the same file system as the root it serves, so an
//! object is installed by renaming it into place. It only ever holds whole,
//! verified objects under their id: content is written to a temporary name
//! (`.subd-tmp.*`, in its subdirectory), checked against its SHA-512,
//! flushed to disk and only then renamed to its id. A fetch writes many
//! objects and flushes them together ([`Batch`]); a single insert flushes
//! its own. Temporary names left by a crash are removed when the cache is
//! opened.
//!
//! An update gives each object it installs its final mode, owner and mtime
//! where it is, under its id, before it starts changing the tree, and then
//! renames it into place; an object installed at several paths is copied
//! first (under temporary names in its subdirectory) for all but one. An
//! object with its final metadata is still whole, so one left by a crash
//! stays a good object. (Older agents moved such objects to staged names,
//! `.subd-staged.<id>` at the top; those go back under their ids when the
//! cache is opened.)

use std::collections::HashSet;
use std::ffi::{CStr, CString};
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use dom_model::object::Hasher;
use dom_model::ObjectId;

use crate::fetch::FetchError;
use crate::update::sys;

mod batch;

pub use batch::{Batch, COMMIT_AFTER, COMMIT_BYTES, COMMIT_OBJECTS};

/// Prefix of names being written; never a whole object.
pub const TEMP_PREFIX: &str = ".subd-tmp.";
/// What an update staged for one install: a name in one of the cache's
/// directories (`dir`, a descriptor the cache keeps open), and the object
/// when the name is the object's own rather than a copy's.
pub(crate) struct Staged {
    pub dir: RawFd,
    pub name: CString,
    pub object: Option<ObjectId>,
}

/// Prefix of whole objects an older agent moved aside to install.
pub const STAGED_PREFIX: &str = ".subd-staged.";

/// Size of the buffer content is copied through while being hashed.
const COPY_BUFFER: usize = 1 << 20;

/// The object cache. Cheap to clone; clones share one directory handle.
#[derive(Clone)]
pub struct ObjectCache {
    inner: Arc<Inner>,
}

struct Inner {
    dir: PathBuf,
    fd: OwnedFd,
    /// The subdirectories, by an id's first byte; each opened when first
    /// used (and made when missing).
    shards: [OnceLock<OwnedFd>; 256],
    /// Numbers temporary names, so concurrent writers never collide.
    counter: AtomicU64,
}

impl std::fmt::Debug for ObjectCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ObjectCache")
            .field("dir", &self.inner.dir)
            .finish()
    }
}

impl ObjectCache {
    /// Opens the cache at `dir`, creating it (mode 0700) when missing, and
    /// tidies what a crash left behind: partial writes are removed, staged
    /// objects go back under their ids.
    pub fn open(dir: impl Into<PathBuf>) -> io::Result<Self> {
        let dir = dir.into();
        std::fs::create_dir_all(&dir)?;
        let fd = sys::open_dir(&dir)?;
        // Staged objects carry their final modes, setuid ones included:
        // nobody but the agent may reach them.
        sys::fchmod(fd.as_raw_fd(), 0o700)?;
        let cache = Self {
            inner: Arc::new(Inner {
                dir,
                fd,
                shards: std::array::from_fn(|_| OnceLock::new()),
                counter: AtomicU64::new(0),
            }),
        };
        for entry in std::fs::read_dir(&cache.inner.dir)? {
            let entry = entry?;
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            if name.starts_with(TEMP_PREFIX) {
                cache.remove_top(name)?;
            } else if let Some(hex) = name.strip_prefix(STAGED_PREFIX) {
                match hex.parse::<ObjectId>() {
                    Ok(id) => cache.unstage_top(&sys::cstr(name)?, id),
                    Err(_) => cache.remove_top(name)?,
                }
            } else if let Ok(id) = name.parse::<ObjectId>() {
                // Kept at the top by an older agent.
                let shard = cache.shard(&id)?;
                sys::rename_at(cache.fd(), &sys::cstr(name)?, shard, &object_name(&id))?;
            } else if let Some(shard) = shard_index(name) {
                cache.tidy_shard(shard)?;
            }
        }
        Ok(cache)
    }

    /// The cache's directory.
    pub fn dir(&self) -> &Path {
        &self.inner.dir
    }

    /// Where object `id` is (or would be) kept.
    pub fn path(&self, id: &ObjectId) -> PathBuf {
        let hex = id.to_hex();
        self.inner.dir.join(&hex[..2]).join(hex)
    }

    /// Whether object `id` is held.
    pub fn contains(&self, id: &ObjectId) -> bool {
        // A query makes no subdirectory.
        self.shard_at(id.as_bytes()[0], false).is_ok_and(|shard| {
            sys::stat_at(shard, &object_name(id))
                .is_ok_and(|st| st.st_mode & libc::S_IFMT == libc::S_IFREG)
        })
    }

    /// Every object held.
    pub fn ids(&self) -> io::Result<HashSet<ObjectId>> {
        Ok(self.objects()?.into_iter().map(|(id, _)| id).collect())
    }

    /// Bytes held in objects.
    pub fn total_bytes(&self) -> io::Result<u64> {
        Ok(self.objects()?.iter().map(|(_, size)| size).sum())
    }

    /// Removes every object not in `keep`. Returns how many objects went,
    /// and their bytes.
    pub fn retain(&self, keep: &HashSet<ObjectId>) -> io::Result<(u64, u64)> {
        let (mut count, mut bytes) = (0, 0);
        for (id, size) in self.objects()? {
            if !keep.contains(&id) {
                match self.remove(&id) {
                    Ok(()) => {
                        count += 1;
                        bytes += size;
                    }
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                    Err(e) => return Err(e),
                }
            }
        }
        Ok((count, bytes))
    }

    /// Stores `content` as object `id`, after checking that it hashes to
    /// `id`; content that does not is refused and nothing is written.
    pub fn insert_bytes(&self, id: &ObjectId, content: &[u8]) -> Result<(), FetchError> {
        let actual = ObjectId::of(content);
        if actual != *id {
            return Err(FetchError::Corrupt {
                id: *id,
                actual: Box::new(actual),
            });
        }
        self.insert_checked(id, content)
    }

    /// Stores `content` as object `id` when it has already been checked to
    /// hash to `id`, as everything a [`dom_store::ContentStore`] returns
    /// has: hashing it a second time would double the fetch's hashing.
    pub fn insert_checked(&self, id: &ObjectId, content: &[u8]) -> Result<(), FetchError> {
        if self.contains(id) {
            return Ok(());
        }
        self.write_object(id, |file| {
            file.write_all(content).map_err(|e| self.cache_error(id, e))
        })
    }

    /// Copies object `id` from the machine file `src`, checking its content
    /// on the way: a file that no longer hashes to `id` (it changed since
    /// it was scanned) is refused with [`FetchError::Changed`] and nothing
    /// is stored. Only regular files are read, and a symlink at `src` is not
    /// followed.
    pub fn insert_from_file(&self, id: &ObjectId, src: &Path) -> Result<(), FetchError> {
        if self.contains(id) {
            return Ok(());
        }
        let (mut input, _) = open_machine_file(src)?;
        self.write_object(id, |file| self.copy_verified(id, &mut input, src, file))
    }

    /// Copies the machine file `src`, open as `input`, into `file`, hashing
    /// it on the way: content that no longer hashes to `id` (the file
    /// changed since it was scanned) is refused with
    /// [`FetchError::Changed`].
    fn copy_verified(
        &self,
        id: &ObjectId,
        input: &mut File,
        src: &Path,
        file: &mut File,
    ) -> Result<(), FetchError> {
        let mut hasher = Hasher::new();
        let mut buffer = vec![0u8; COPY_BUFFER];
        loop {
            let n = match input.read(&mut buffer) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(source) => {
                    return Err(FetchError::Read {
                        path: src.to_path_buf(),
                        source,
                    })
                }
            };
            hasher.update(&buffer[..n]);
            file.write_all(&buffer[..n])
                .map_err(|e| self.cache_error(id, e))?;
        }
        if hasher.finish() != *id {
            return Err(FetchError::Changed {
                path: src.to_path_buf(),
            });
        }
        Ok(())
    }

    /// Object `id` as it is, for an update to give its metadata and
    /// rename into place. Fails if the object is missing.
    pub(crate) fn stage(&self, id: &ObjectId) -> io::Result<Staged> {
        let dir = self.shard(id)?;
        let name = object_name(id);
        let st = sys::stat_at(dir, &name)?;
        if !sys::is_file(&st) {
            return Err(io::Error::new(io::ErrorKind::NotFound, "not an object"));
        }
        Ok(Staged {
            dir,
            name,
            object: Some(*id),
        })
    }

    /// A private copy of object `id` under a temporary name beside it, for
    /// an update that installs one object at several paths. Shares blocks
    /// with the original where the file system can. Not flushed: the
    /// update flushes all its copies at once before it renames any into
    /// place.
    pub(crate) fn stage_copy(&self, id: &ObjectId) -> io::Result<Staged> {
        let dir = self.shard(id)?;
        let src = File::from(sys::open_at(
            dir,
            &object_name(id),
            libc::O_RDONLY | libc::O_NOFOLLOW,
            0,
        )?);
        let name = self.temp_name();
        let mut dst = File::from(sys::create_at(dir, &name, 0o600)?);
        let copied = (|| {
            if !sys::reflink(src.as_raw_fd(), dst.as_raw_fd()) {
                io::copy(&mut &src, &mut dst)?;
            }
            Ok::<(), io::Error>(())
        })();
        match copied {
            Ok(()) => Ok(Staged {
                dir,
                name,
                object: None,
            }),
            Err(e) => {
                let _ = sys::unlink_at(dir, &name, false);
                Err(e)
            }
        }
    }

    /// Takes back what an update staged and did not use: an object stays
    /// under its id (its mode back to the cache's own), a copy is removed.
    /// Best effort: what goes wrong here is fetched again when needed.
    pub(crate) fn give_back(&self, staged: &Staged) {
        match staged.object {
            Some(_) => {
                let _ = sys::chmod_at(staged.dir, &staged.name, 0o600);
            }
            None => {
                let _ = sys::unlink_at(staged.dir, &staged.name, false);
            }
        }
    }

    /// Puts an object an older agent left at its staged name at the top
    /// back under its id (unless the cache holds it again already).
    fn unstage_top(&self, name: &CStr, id: ObjectId) {
        if !self.contains(&id) {
            if let Ok(shard) = self.shard(&id) {
                if sys::chmod_at(self.fd(), name, 0o600).is_ok()
                    && sys::rename_at(self.fd(), name, shard, &object_name(&id)).is_ok()
                {
                    return;
                }
            }
        }
        let _ = sys::unlink_at(self.fd(), name, false);
    }

    /// A fresh temporary name in the cache directory.
    pub(crate) fn temp_name(&self) -> CString {
        let n = self.inner.counter.fetch_add(1, Ordering::Relaxed);
        sys::cstr(&format!("{TEMP_PREFIX}{}.{n}", std::process::id())).expect("no NUL")
    }

    /// The cache directory's descriptor.
    pub(crate) fn fd(&self) -> RawFd {
        self.inner.fd.as_raw_fd()
    }

    /// The descriptor of the subdirectory holding object `id`, made when
    /// missing.
    fn shard(&self, id: &ObjectId) -> io::Result<RawFd> {
        self.shard_at(id.as_bytes()[0], true)
    }

    /// The descriptor of subdirectory `index`; with `make`, the
    /// subdirectory is made when missing, else that is an error.
    fn shard_at(&self, index: u8, make: bool) -> io::Result<RawFd> {
        let slot = &self.inner.shards[usize::from(index)];
        if let Some(fd) = slot.get() {
            return Ok(fd.as_raw_fd());
        }
        let name = sys::cstr(&format!("{index:02x}"))?;
        if make {
            match sys::mkdir_at(self.fd(), &name, 0o700) {
                Err(e) if e.kind() != io::ErrorKind::AlreadyExists => return Err(e),
                _ => {}
            }
        }
        let fd = sys::open_dir_at(self.fd(), &name)?;
        // Another thread may have opened it meanwhile; either is the same.
        Ok(slot.get_or_init(|| fd).as_raw_fd())
    }

    /// Removes the partial writes a crash left in subdirectory `index`.
    fn tidy_shard(&self, index: u8) -> io::Result<()> {
        let shard = self.shard_at(index, false)?;
        for entry in std::fs::read_dir(self.inner.dir.join(format!("{index:02x}")))? {
            let name = entry?.file_name();
            let Some(name) = name.to_str().filter(|n| n.starts_with(TEMP_PREFIX)) else {
                continue;
            };
            match sys::unlink_at(shard, &sys::cstr(name)?, false) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
                _ => {}
            }
        }
        Ok(())
    }

    /// Writes an object through `fill` to a temporary name, flushes it and
    /// renames it to its id; the temporary file is removed on any failure.
    fn write_object(
        &self,
        id: &ObjectId,
        fill: impl FnOnce(&mut File) -> Result<(), FetchError>,
    ) -> Result<(), FetchError> {
        let (shard, name, mut file) = self.create_temp(id)?;
        let result = fill(&mut file).and_then(|()| {
            file.sync_data()
                .and_then(|()| sys::rename_at(shard, &name, shard, &object_name(id)))
                .map_err(|e| self.cache_error(id, e))
        });
        if result.is_err() {
            let _ = sys::unlink_at(shard, &name, false);
        }
        result
    }

    /// A new file under a temporary name in object `id`'s subdirectory,
    /// so that writers of different objects seldom wait for the same
    /// directory: the subdirectory's descriptor, the name and the file.
    fn create_temp(&self, id: &ObjectId) -> Result<(RawFd, CString, File), FetchError> {
        let shard = self.shard(id).map_err(|e| self.cache_error(id, e))?;
        let name = self.temp_name();
        let fd = sys::create_at(shard, &name, 0o600).map_err(|e| self.cache_error(id, e))?;
        Ok((shard, name, File::from(fd)))
    }

    fn cache_error(&self, id: &ObjectId, source: io::Error) -> FetchError {
        FetchError::Cache {
            id: *id,
            dir: self.inner.dir.clone(),
            source,
        }
    }

    fn remove(&self, id: &ObjectId) -> io::Result<()> {
        sys::unlink_at(self.shard(id)?, &object_name(id), false)
    }

    fn remove_top(&self, name: &str) -> io::Result<()> {
        sys::unlink_at(self.fd(), &sys::cstr(name)?, false)
    }

    /// Every object file and its size.
    fn objects(&self) -> io::Result<Vec<(ObjectId, u64)>> {
        let mut list = Vec::new();
        for shard in std::fs::read_dir(&self.inner.dir)? {
            let shard = shard?;
            let Some(index) = shard.file_name().to_str().and_then(shard_index) else {
                continue;
            };
            if !shard.file_type()?.is_dir() {
                continue;
            }
            for entry in std::fs::read_dir(shard.path())? {
                let entry = entry?;
                let Some(id) = entry
                    .file_name()
                    .to_str()
                    .and_then(|n| n.parse::<ObjectId>().ok())
                    .filter(|id| id.as_bytes()[0] == index)
                else {
                    continue;
                };
                match entry.metadata() {
                    Ok(meta) if meta.is_file() => list.push((id, meta.size())),
                    Ok(_) => {}
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                    Err(e) => return Err(e),
                }
            }
        }
        Ok(list)
    }
}

/// Object `id`'s name in its subdirectory.
fn object_name(id: &ObjectId) -> CString {
    sys::cstr(&id.to_hex()).expect("hex has no NUL")
}

/// The first byte of the ids a subdirectory named `name` holds, if `name`
/// is one (two lowercase hex digits).
fn shard_index(name: &str) -> Option<u8> {
    let lower_hex = |b: u8| b.is_ascii_digit() || (b'a'..=b'f').contains(&b);
    if name.len() == 2 && name.bytes().all(lower_hex) {
        u8::from_str_radix(name, 16).ok()
    } else {
        None
    }
}

/// Opens the machine file `src` to copy an object from, with its size:
/// only a regular file, never through a symlink, and without blocking (a
/// fifo put there since the scan cannot stall the fetch).
fn open_machine_file(src: &Path) -> Result<(File, u64), FetchError> {
    let read_error = |source| FetchError::Read {
        path: src.to_path_buf(),
        source,
    };
    let input = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(src)
        .map_err(read_error)?;
    let meta = input.metadata().map_err(read_error)?;
    if !meta.is_file() {
        return Err(FetchError::Changed {
            path: src.to_path_buf(),
        });
    }
    Ok((input, meta.len()))
}
