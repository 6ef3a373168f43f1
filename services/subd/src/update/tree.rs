//! The machine's tree as the update writes it: every path reached from the
//! root one real directory at a time, never through a symlink.
//!
//! Directories are opened with `O_NOFOLLOW | O_DIRECTORY` component by
//! component and kept open for the whole update, so each is resolved once
//! however many files it receives, and every change is made with an
//! `*at()` call relative to its parent's descriptor. A symlink (or any
//! non-directory) where a parent directory should be stops the work below
//! it with an error; nothing is ever written where it points.

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::{CStr, CString};
use std::io;
use std::ops::Bound;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::path::Path;

use dom_model::path;
use dom_model::plan::{HardLink, MakeDir, MetadataChange};
use dom_scan::cache::Identity;

use super::sys;
use crate::objects::ObjectCache;

/// What removing a path did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Removed {
    Gone,
    /// A directory that still holds something: left in place.
    Kept,
    /// Nothing was there.
    Absent,
}

pub(super) struct Tree {
    root: OwnedFd,
    /// Directories opened so far, by image path.
    dirs: BTreeMap<String, OwnedFd>,
    /// Directories whose entries (or entries' metadata) changed.
    dirty: BTreeSet<String>,
    root_user: bool,
}

impl Tree {
    pub(super) fn open(root: &Path) -> io::Result<Self> {
        Ok(Self {
            root: sys::open_dir(root)?,
            dirs: BTreeMap::new(),
            dirty: BTreeSet::new(),
            root_user: sys::is_root(),
        })
    }

    /// The real directory at image path `dir`.
    fn dir(&mut self, dir: &str) -> io::Result<RawFd> {
        if dir == "/" {
            return Ok(self.root.as_raw_fd());
        }
        if let Some(fd) = self.dirs.get(dir) {
            return Ok(fd.as_raw_fd());
        }
        let parent = self.dir(path::parent(dir))?;
        let name = sys::cstr(base_name(dir))?;
        let fd = sys::open_dir_at(parent, &name).map_err(|e| not_a_dir(dir, parent, &name, e))?;
        let raw = fd.as_raw_fd();
        self.dirs.insert(dir.to_string(), fd);
        Ok(raw)
    }

    /// The directory holding `p` and `p`'s name in it; the root is `.` in
    /// itself.
    pub(super) fn locate(&mut self, p: &str) -> io::Result<(RawFd, CString)> {
        path::normalise(p).map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        if p == "/" {
            return Ok((self.root.as_raw_fd(), sys::cstr(".")?));
        }
        let dir = self.dir(path::parent(p))?;
        Ok((dir, sys::cstr(base_name(p))?))
    }

    /// Forgets the directories at and below `p`, which is going away.
    fn forget(&mut self, p: &str) {
        self.dirs.remove(p);
        let prefix = format!("{p}/");
        let below: Vec<String> = self
            .dirs
            .range::<str, _>((Bound::Included(prefix.as_str()), Bound::Unbounded))
            .map(|(k, _)| k)
            .take_while(|k| k.starts_with(&prefix))
            .cloned()
            .collect();
        for k in below {
            self.dirs.remove(&k);
        }
    }

    /// Removes `p`: unlinks a non-directory, removes an empty directory,
    /// and keeps a directory that still holds something. Never recursive.
    pub(super) fn remove(&mut self, p: &str) -> io::Result<Removed> {
        if p == "/" {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "the root is never removed",
            ));
        }
        let (dir, name) = match self.locate(p) {
            Ok(found) => found,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Removed::Absent),
            Err(e) => return Err(e),
        };
        self.changed_in(p);
        match sys::unlink_at(dir, &name, false) {
            Ok(()) => Ok(Removed::Gone),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Removed::Absent),
            Err(e) if e.raw_os_error() == Some(libc::EISDIR) => {
                self.forget(p);
                match sys::unlink_at(dir, &name, true) {
                    Ok(()) => Ok(Removed::Gone),
                    Err(e) if matches!(e.raw_os_error(), Some(libc::ENOTEMPTY | libc::EEXIST)) => {
                        Ok(Removed::Kept)
                    }
                    Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Removed::Absent),
                    Err(e) => Err(e),
                }
            }
            Err(e) => Err(e),
        }
    }

    /// Makes a directory with its mode and owner (or gives them to the
    /// directory already there).
    pub(super) fn mkdir(&mut self, d: &MakeDir) -> io::Result<()> {
        let (parent, name) = self.locate(&d.path)?;
        self.changed_in(&d.path);
        match sys::mkdir_at(parent, &name, 0o700) {
            Ok(()) => {}
            Err(e) if e.raw_os_error() == Some(libc::EEXIST) => {}
            Err(e) => return Err(e),
        }
        let fd =
            sys::open_dir_at(parent, &name).map_err(|e| not_a_dir(&d.path, parent, &name, e))?;
        self.owner_result(sys::fchown(fd.as_raw_fd(), d.uid, d.gid))?;
        sys::fchmod(fd.as_raw_fd(), d.mode)?;
        self.dirs.insert(d.path.clone(), fd);
        Ok(())
    }

    /// Renames `name` from directory `from` to `p`, replacing what is there.
    pub(super) fn place(&mut self, from: RawFd, name: &CStr, p: &str) -> io::Result<()> {
        let (dir, final_name) = self.locate(p)?;
        self.changed_in(p);
        sys::rename_at(from, name, dir, &final_name)
    }

    /// The status of `p` itself, if it can be had.
    pub(super) fn stat(&mut self, p: &str) -> Option<libc::stat> {
        let (dir, name) = self.locate(p).ok()?;
        sys::stat_at(dir, &name).ok()
    }

    /// Makes `l.path` another name for the inode at `l.target`: linked under
    /// a temporary name, then renamed over whatever is at the path. A new
    /// name changes the inode's ctime: `touched` gets the file's identity
    /// before and after.
    pub(super) fn link(
        &mut self,
        cache: &ObjectCache,
        l: &HardLink,
        touched: &mut Vec<(Identity, Identity)>,
    ) -> io::Result<()> {
        let (target_dir, target) = self.locate(&l.target)?;
        let before = sys::stat_at(target_dir, &target).ok();
        let (dir, name) = self.locate(&l.path)?;
        self.changed_in(&l.path);
        let temp = cache.temp_name();
        let staged_in = match sys::link_at(target_dir, &target, cache.fd(), &temp) {
            Ok(()) => cache.fd(),
            // The target is on another file system than the cache: link
            // beside the path instead.
            Err(e) if e.raw_os_error() == Some(libc::EXDEV) => {
                sys::link_at(target_dir, &target, dir, &temp)?;
                dir
            }
            Err(e) => return Err(e),
        };
        let renamed = sys::rename_at(staged_in, &temp, dir, &name);
        // Renaming one name of an inode over another name of the same inode
        // does nothing and succeeds: the temporary name is still there.
        if renamed.is_err() || sys::stat_at(staged_in, &temp).is_ok() {
            let _ = sys::unlink_at(staged_in, &temp, false);
        }
        renamed?;
        if let (Some(before), Ok(after)) = (before, sys::stat_at(dir, &name)) {
            touched.extend(same_file(&before, &after));
        }
        Ok(())
    }

    /// Sets what `m` changes, never following a symlink: owner first (a
    /// change of owner clears setuid and setgid), then mode, then mtime.
    /// For a regular file, `touched` gets its identity before and after.
    pub(super) fn set_metadata(
        &mut self,
        m: &MetadataChange,
        touched: &mut Vec<(Identity, Identity)>,
    ) -> io::Result<()> {
        let (dir, name) = self.locate(&m.path)?;
        self.changed_in(&m.path);
        let before = sys::stat_at(dir, &name)?;
        if let Some((uid, gid)) = m.owner {
            self.owner_result(sys::chown_at(dir, &name, uid, gid))?;
            let special = before.st_mode & (libc::S_ISUID | libc::S_ISGID) as libc::mode_t;
            let is_link = before.st_mode & libc::S_IFMT == libc::S_IFLNK;
            if m.mode.is_none() && special != 0 && !is_link {
                sys::chmod_at(dir, &name, before.st_mode & 0o7777)?;
            }
        }
        if let Some(mode) = m.mode {
            sys::chmod_at(dir, &name, mode)?;
        }
        if let Some(mtime) = m.mtime {
            sys::set_mtime_at(dir, &name, mtime)?;
        }
        if let Ok(after) = sys::stat_at(dir, &name) {
            touched.extend(same_file(&before, &after));
        }
        Ok(())
    }

    /// Notes that the directory holding `p` changed.
    fn changed_in(&mut self, p: &str) {
        let dir = path::parent(p);
        if !self.dirty.contains(dir) {
            self.dirty.insert(dir.to_string());
        }
    }

    /// Flushes every directory that changed (and is still there) to
    /// stable storage. The flushes are issued from several threads at
    /// once: the disk (and a journalling file system, which commits the
    /// waiting flushes together) serves them in a fraction of the time
    /// one after the other takes, which for a whole image's 1,500
    /// directories was seconds.
    pub(super) fn sync(&self) -> io::Result<()> {
        const FLUSHERS: usize = 16;
        let fds: Vec<RawFd> = self
            .dirty
            .iter()
            .filter_map(|dir| match dir.as_str() {
                "/" => Some(self.root.as_raw_fd()),
                d => self.dirs.get(d).map(|fd| fd.as_raw_fd()),
            })
            .collect();
        let chunk = fds.len().div_ceil(FLUSHERS).max(1);
        let results: Vec<io::Result<()>> = std::thread::scope(|scope| {
            let flushers: Vec<_> = fds
                .chunks(chunk)
                .map(|fds| scope.spawn(move || flush_all(fds)))
                .collect();
            flushers
                .into_iter()
                .map(|f| {
                    f.join()
                        .unwrap_or_else(|_| Err(io::Error::other("flush panicked")))
                })
                .collect()
        });
        results.into_iter().collect()
    }

    /// A failed change of owner counts only for root: anyone else cannot
    /// give files away, and keeps their own.
    pub(super) fn owner_result(&self, result: io::Result<()>) -> io::Result<()> {
        owner_result(self.root_user, result)
    }
}

/// The identities of one regular file before and after a change that left
/// its content alone; `None` when the two are not the same file.
fn same_file(before: &libc::stat, after: &libc::stat) -> Option<(Identity, Identity)> {
    let same = sys::is_file(before)
        && sys::is_file(after)
        && (before.st_dev, before.st_ino, before.st_size)
            == (after.st_dev, after.st_ino, after.st_size);
    same.then(|| (sys::identity(before), sys::identity(after)))
}

/// Flushes each of `fds`, all of them even when one fails: the first
/// failure is the result.
fn flush_all(fds: &[RawFd]) -> io::Result<()> {
    let mut result = Ok(());
    for fd in fds {
        if let Err(e) = sys::fsync(*fd) {
            result = result.and(Err(e));
        }
    }
    result
}

/// A failed change of owner counts only when `root_user`.
pub(super) fn owner_result(root_user: bool, result: io::Result<()>) -> io::Result<()> {
    match result {
        Err(e) if !root_user && e.raw_os_error() == Some(libc::EPERM) => Ok(()),
        other => other,
    }
}

/// The last component of a normalised path other than the root.
fn base_name(p: &str) -> &str {
    p.rsplit('/').next().unwrap_or(p)
}

/// Says why `dir` could not be opened as a directory, naming it.
fn not_a_dir(dir: &str, parent: RawFd, name: &CStr, e: io::Error) -> io::Error {
    let what = match e.raw_os_error() {
        Some(libc::ELOOP) => "is a symlink, which is never followed".to_string(),
        Some(libc::ENOTDIR) => match sys::stat_at(parent, name) {
            Ok(st) if st.st_mode & libc::S_IFMT == libc::S_IFLNK => {
                "is a symlink, which is never followed".to_string()
            }
            _ => "is not a directory".to_string(),
        },
        _ => return io::Error::new(e.kind(), format!("{dir}: {e}")),
    };
    io::Error::new(e.kind(), format!("{dir} {what}"))
}
