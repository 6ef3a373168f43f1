//! The agent's private object cache, `<state-dir>/objects`: one file per
//! object, named by its lowercase hex id.
//!
//! The cache lives on the same file system as the root it serves, so an
//! object is installed by renaming it into place. It only ever holds whole,
//! verified objects under their id: content is written to a temporary name
//! (`.subd-tmp.*`), checked against its SHA-512, flushed to disk and only
//! then renamed to its id. Temporary names left by a crash are removed when
//! the cache is opened.
//!
//! An update moves the objects it needs aside to staged names
//! (`.subd-staged.<id>`) before it starts changing the tree, gives them
//! their final mode, owner and mtime there, and renames them into place.
//! A staged object is still whole (only its metadata changed), so one left
//! by a crash goes back under its id when the cache is next opened.

use std::collections::HashSet;
use std::ffi::{CStr, CString};
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use dom_model::object::Hasher;
use dom_model::ObjectId;

use crate::fetch::FetchError;
use crate::update::sys;

/// Prefix of names being written; never a whole object.
pub const TEMP_PREFIX: &str = ".subd-tmp.";
/// Prefix of whole objects an update has moved aside to install.
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
                counter: AtomicU64::new(0),
            }),
        };
        for entry in std::fs::read_dir(&cache.inner.dir)? {
            let entry = entry?;
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            if name.starts_with(TEMP_PREFIX) {
                cache.remove(name)?;
            } else if let Some(hex) = name.strip_prefix(STAGED_PREFIX) {
                match hex.parse::<ObjectId>() {
                    Ok(id) => cache.give_back(&sys::cstr(name)?, Some(id)),
                    Err(_) => cache.remove(name)?,
                }
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
        self.inner.dir.join(id.to_hex())
    }

    /// Whether object `id` is held.
    pub fn contains(&self, id: &ObjectId) -> bool {
        let name = sys::cstr(&id.to_hex()).expect("hex has no NUL");
        sys::stat_at(self.fd(), &name).is_ok_and(|st| st.st_mode & libc::S_IFMT == libc::S_IFREG)
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
                match self.remove(&id.to_hex()) {
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
        let read_error = |source| FetchError::Read {
            path: src.to_path_buf(),
            source,
        };
        // Non-blocking, so a fifo put there since the scan cannot stall us.
        let mut input = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_NOCTTY)
            .open(src)
            .map_err(read_error)?;
        if !input.metadata().map_err(read_error)?.is_file() {
            return Err(FetchError::Changed {
                path: src.to_path_buf(),
            });
        }
        self.write_object(id, |file| {
            let mut hasher = Hasher::new();
            let mut buffer = vec![0u8; COPY_BUFFER];
            loop {
                let n = match input.read(&mut buffer) {
                    Ok(0) => break,
                    Ok(n) => n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => return Err(read_error(e)),
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
        })
    }

    /// Moves object `id` aside to its staged name, for an update to give
    /// its metadata and rename into place. Fails if the object is missing.
    pub(crate) fn stage(&self, id: &ObjectId) -> io::Result<CString> {
        let hex = id.to_hex();
        let staged = sys::cstr(&format!("{STAGED_PREFIX}{hex}"))?;
        sys::rename_at(self.fd(), &sys::cstr(&hex)?, self.fd(), &staged)?;
        Ok(staged)
    }

    /// A private copy of object `id` under a temporary name, flushed to
    /// disk, for an update that installs one object at several paths.
    /// Shares blocks with the original where the file system can.
    pub(crate) fn stage_copy(&self, id: &ObjectId) -> io::Result<CString> {
        let src = File::from(sys::open_at(
            self.fd(),
            &sys::cstr(&id.to_hex())?,
            libc::O_RDONLY | libc::O_NOFOLLOW,
            0,
        )?);
        let name = self.temp_name();
        let mut dst = File::from(sys::create_at(self.fd(), &name, 0o600)?);
        let copied = (|| {
            if !sys::reflink(src.as_raw_fd(), dst.as_raw_fd()) {
                io::copy(&mut &src, &mut dst)?;
            }
            dst.sync_data()
        })();
        match copied {
            Ok(()) => Ok(name),
            Err(e) => {
                let _ = sys::unlink_at(self.fd(), &name, false);
                Err(e)
            }
        }
    }

    /// Puts back what an update staged and did not use: a staged object
    /// under its id (unless the cache holds it again already), anything
    /// else removed. Best effort: what cannot be put back is fetched again
    /// when needed.
    pub(crate) fn give_back(&self, name: &CStr, object: Option<ObjectId>) {
        if let Some(id) = object {
            let staged = format!("{STAGED_PREFIX}{}", id.to_hex());
            if name.to_bytes() == staged.as_bytes() && !self.contains(&id) {
                let hex = sys::cstr(&id.to_hex()).expect("hex has no NUL");
                if sys::chmod_at(self.fd(), name, 0o600).is_ok()
                    && sys::rename_at(self.fd(), name, self.fd(), &hex).is_ok()
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

    /// Writes an object through `fill` to a temporary name, flushes it and
    /// renames it to its id; the temporary file is removed on any failure.
    fn write_object(
        &self,
        id: &ObjectId,
        fill: impl FnOnce(&mut File) -> Result<(), FetchError>,
    ) -> Result<(), FetchError> {
        let name = self.temp_name();
        let mut file = File::from(
            sys::create_at(self.fd(), &name, 0o600).map_err(|e| self.cache_error(id, e))?,
        );
        let result = fill(&mut file).and_then(|()| {
            let hex = sys::cstr(&id.to_hex()).expect("hex has no NUL");
            file.sync_data()
                .and_then(|()| sys::rename_at(self.fd(), &name, self.fd(), &hex))
                .map_err(|e| self.cache_error(id, e))
        });
        if result.is_err() {
            let _ = sys::unlink_at(self.fd(), &name, false);
        }
        result
    }

    fn cache_error(&self, id: &ObjectId, source: io::Error) -> FetchError {
        FetchError::Cache {
            id: *id,
            dir: self.inner.dir.clone(),
            source,
        }
    }

    fn remove(&self, name: &str) -> io::Result<()> {
        sys::unlink_at(self.fd(), &sys::cstr(name)?, false)
    }

    /// Every object file and its size.
    fn objects(&self) -> io::Result<Vec<(ObjectId, u64)>> {
        let mut list = Vec::new();
        for entry in std::fs::read_dir(&self.inner.dir)? {
            let entry = entry?;
            let Some(id) = entry.file_name().to_str().and_then(|n| n.parse().ok()) else {
                continue;
            };
            match entry.metadata() {
                Ok(meta) if meta.is_file() => list.push((id, meta.size())),
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
        Ok(list)
    }
}
