//! New inodes made ready before any service stops.
//!
//! Every file, symlink and device an update makes is first prepared in the
//! object cache, complete with its mode, owner and mtime: an object gets
//! them where it is, under its id; one used by several installs is first
//! copied (beside it, then flushed with one `syncfs`) for all but the last;
//! symlinks and devices are made under temporary names. The files, tens of
//! thousands for a whole image, are prepared on several threads. The update then only renames them into place,
//! which keeps the services' downtime short, and a path only ever appears
//! complete. What is not placed goes back to the cache (or away) when the
//! staging is dropped.
//!
//! A path on another file system than the cache (a separate `/boot`, say)
//! cannot be reached by rename; its inode is made again beside it, under a
//! temporary name, and renamed there.

use std::collections::HashMap;
use std::ffi::{CStr, CString};
use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, RawFd};

use dom_model::plan::{DeviceKind, Install, MakeDevice, MakeSymlink};
use dom_model::{ObjectId, Plan};

use super::tree::{owner_result, Tree};
use super::{sys, Errors};
use crate::objects::{ObjectCache, Staged};

pub(super) struct Staging<'a> {
    cache: &'a ObjectCache,
    plan: &'a Plan,
    root_user: bool,
    /// Per install, what was staged for it.
    installs: Vec<Option<Staged>>,
    symlinks: Vec<Option<CString>>,
    devices: Vec<Option<CString>>,
}

/// The first install whose object the cache lacks, as an error message.
pub(super) fn missing_object(plan: &Plan, cache: &ObjectCache) -> Option<String> {
    let mut checked = HashMap::new();
    for install in &plan.installs {
        let present = *checked
            .entry(install.object)
            .or_insert_with(|| cache.contains(&install.object));
        if !present {
            return Some(format!(
                "object {} for {} is not in the cache: fetch before updating",
                install.object, install.path
            ));
        }
    }
    None
}

impl<'a> Staging<'a> {
    /// Stages every install, symlink and device of `plan`. One that cannot
    /// be staged is recorded in `errors` and skipped by the update.
    pub(super) fn prepare(plan: &'a Plan, cache: &'a ObjectCache, errors: &mut Errors) -> Self {
        let mut staging = Self {
            cache,
            plan,
            root_user: sys::is_root(),
            installs: Vec::with_capacity(plan.installs.len()),
            symlinks: Vec::with_capacity(plan.symlinks.len()),
            devices: Vec::with_capacity(plan.devices.len()),
        };
        // The last install of each object takes the object itself; the
        // others take copies, made first, while the object is still
        // under its id. Both steps wait on the disk (a copy is flushed),
        // so each runs on several threads.
        let mut last_use: HashMap<ObjectId, usize> = HashMap::new();
        for (i, install) in plan.installs.iter().enumerate() {
            last_use.insert(install.object, i);
        }
        let is_last = |i: usize, install: &Install| last_use.get(&install.object) == Some(&i);
        let root_user = staging.root_user;
        let with_metadata = |staged: io::Result<Staged>, install: &Install| {
            staged.and_then(|staged| {
                match set_file_metadata(staged.dir, &staged.name, install, root_user) {
                    Ok(()) => Ok(staged),
                    Err(e) => {
                        cache.give_back(&staged);
                        Err(e)
                    }
                }
            })
        };
        let mut staged: Vec<Option<io::Result<Staged>>> = parallel(&plan.installs, |i, install| {
            (!is_last(i, install))
                .then(|| with_metadata(cache.stage_copy(&install.object), install))
        });
        // Copies reach their paths by rename: their data must be on disk
        // first, flushed all together.
        let (files, bytes) = staged.iter().zip(&plan.installs).fold(
            (Vec::new(), 0),
            |(mut files, bytes), (slot, install)| match slot {
                Some(Ok(copy)) => {
                    files.push((copy.dir, copy.name.clone()));
                    (files, bytes + install.size)
                }
                _ => (files, bytes),
            },
        );
        let names: Vec<_> = files
            .iter()
            .map(|(dir, name)| (*dir, name.as_c_str()))
            .collect();
        if let Err(e) = crate::durable::flush(cache.fd(), &names, bytes) {
            for slot in staged.iter_mut().filter(|s| matches!(s, Some(Ok(_)))) {
                if let Some(Ok(copy)) = slot.take() {
                    cache.give_back(&copy);
                }
                let failed = io::Error::new(e.kind(), format!("flushing copies: {e}"));
                *slot = Some(Err(failed));
            }
        }
        let copied = std::time::Instant::now();
        let moved = parallel(&plan.installs, |i, install| {
            is_last(i, install).then(|| with_metadata(cache.stage(&install.object), install))
        });
        tracing::debug!(moved = ?copied.elapsed(), "staged");
        for (slot, moved) in staged.iter_mut().zip(moved) {
            if moved.is_some() {
                *slot = moved;
            }
        }
        for (install, result) in plan.installs.iter().zip(staged) {
            let result = result.expect("every install is staged or copied");
            staging
                .installs
                .push(keep(result, errors, "install", &install.path));
        }
        for s in &plan.symlinks {
            let name = cache.temp_name();
            let made = make_symlink(cache.fd(), &name, s, staging.root_user).map(|()| name);
            staging
                .symlinks
                .push(keep(made, errors, "symlink", &s.path));
        }
        for d in &plan.devices {
            let name = cache.temp_name();
            let made = make_device(cache.fd(), &name, d, staging.root_user).map(|()| name);
            staging
                .devices
                .push(keep(made, errors, "make device", &d.path));
        }
        staging
    }

    /// Renames install `i` into place; `None` when it was never staged.
    pub(super) fn install(&mut self, i: usize, tree: &mut Tree) -> Option<io::Result<()>> {
        let staged = self.installs[i].take()?;
        let install = &self.plan.installs[i];
        let placed = self.place(
            tree,
            staged.dir,
            &staged.name,
            &install.path,
            |dir, temp| copy_staged(&staged, dir, temp, install, self.root_user),
        );
        if !matches!(placed, Ok(Placed::Renamed)) {
            self.cache.give_back(&staged);
        }
        Some(placed.map(drop))
    }

    pub(super) fn symlink(&mut self, i: usize, tree: &mut Tree) -> Option<io::Result<()>> {
        let name = self.symlinks[i].take()?;
        let s = &self.plan.symlinks[i];
        let placed = self.place(tree, self.cache.fd(), &name, &s.path, |dir, temp| {
            make_symlink(dir, temp, s, self.root_user)
        });
        if !matches!(placed, Ok(Placed::Renamed)) {
            let _ = sys::unlink_at(self.cache.fd(), &name, false);
        }
        Some(placed.map(drop))
    }

    pub(super) fn device(&mut self, i: usize, tree: &mut Tree) -> Option<io::Result<()>> {
        let name = self.devices[i].take()?;
        let d = &self.plan.devices[i];
        let placed = self.place(tree, self.cache.fd(), &name, &d.path, |dir, temp| {
            make_device(dir, temp, d, self.root_user)
        });
        if !matches!(placed, Ok(Placed::Renamed)) {
            let _ = sys::unlink_at(self.cache.fd(), &name, false);
        }
        Some(placed.map(drop))
    }

    /// Renames the staged `name` (in `from`) to `path`; across file systems, makes the
    /// inode again with `remake` under a temporary name beside the path and
    /// renames that. Unless renamed, the staged name is left for the
    /// caller to clear.
    fn place(
        &self,
        tree: &mut Tree,
        from: RawFd,
        name: &CStr,
        path: &str,
        remake: impl FnOnce(RawFd, &CStr) -> io::Result<()>,
    ) -> io::Result<Placed> {
        match tree.place(from, name, path) {
            Ok(()) => Ok(Placed::Renamed),
            Err(e) if e.raw_os_error() == Some(libc::EXDEV) => {
                let (dir, final_name) = tree.locate(path)?;
                let temp = self.cache.temp_name();
                remake(dir, &temp)
                    .and_then(|()| sys::rename_at(dir, &temp, dir, &final_name))
                    .map(|()| Placed::Remade)
                    .inspect_err(|_| {
                        let _ = sys::unlink_at(dir, &temp, false);
                    })
            }
            Err(e) => Err(e),
        }
    }
}

/// How a staged inode reached its path.
enum Placed {
    /// The staged inode itself was renamed there.
    Renamed,
    /// A copy was made beside the path (another file system).
    Remade,
}

impl Drop for Staging<'_> {
    fn drop(&mut self) {
        for staged in self.installs.drain(..).flatten() {
            self.cache.give_back(&staged);
        }
        for name in self
            .symlinks
            .drain(..)
            .chain(self.devices.drain(..))
            .flatten()
        {
            let _ = sys::unlink_at(self.cache.fd(), &name, false);
        }
    }
}

/// `f` applied to every item (with its index) on a few threads, results
/// in order: for steps that mostly wait on the disk.
fn parallel<T: Sync, R: Send>(items: &[T], f: impl Fn(usize, &T) -> R + Sync) -> Vec<R> {
    const THREADS: usize = 16;
    if items.len() < 64 {
        return items.iter().enumerate().map(|(i, t)| f(i, t)).collect();
    }
    let chunk = items.len().div_ceil(THREADS);
    std::thread::scope(|scope| {
        let f = &f;
        let parts: Vec<_> = items
            .chunks(chunk)
            .enumerate()
            .map(|(n, part)| {
                scope.spawn(move || {
                    let base = n * chunk;
                    part.iter()
                        .enumerate()
                        .map(|(i, t)| f(base + i, t))
                        .collect::<Vec<R>>()
                })
            })
            .collect();
        parts
            .into_iter()
            .flat_map(|p| p.join().expect("a staging thread panicked"))
            .collect()
    })
}

/// The staged item, or `None` with the failure recorded.
fn keep<T>(staged: io::Result<T>, errors: &mut Errors, op: &str, path: &str) -> Option<T> {
    staged.map_err(|e| errors.record(op, path, e)).ok()
}

/// Gives the file `name` in `dir` an install's owner, mode and mtime, in
/// that order (a change of owner clears setuid and setgid).
fn set_file_metadata(dir: RawFd, name: &CStr, i: &Install, root_user: bool) -> io::Result<()> {
    owner_result(root_user, sys::chown_at(dir, name, i.uid, i.gid))?;
    sys::chmod_at(dir, name, i.mode)?;
    sys::set_mtime_at(dir, name, (i.mtime, i.mtime_ns))
}

/// Copies what was staged to a new file `temp` in `dir`, with the
/// install's metadata, flushed.
fn copy_staged(
    staged: &Staged,
    dir: RawFd,
    temp: &CStr,
    install: &Install,
    root_user: bool,
) -> io::Result<()> {
    let src = File::from(sys::open_at(
        staged.dir,
        &staged.name,
        libc::O_RDONLY | libc::O_NOFOLLOW,
        0,
    )?);
    let mut dst = File::from(sys::create_at(dir, temp, 0o600)?);
    io::copy(&mut &src, &mut dst)?;
    dst.sync_data()?;
    owner_result(
        root_user,
        sys::fchown(dst.as_raw_fd(), install.uid, install.gid),
    )?;
    sys::fchmod(dst.as_raw_fd(), install.mode)?;
    sys::set_mtime(dst.as_raw_fd(), (install.mtime, install.mtime_ns))
}

/// Makes symlink `name` in `dir` with its owner.
fn make_symlink(dir: RawFd, name: &CStr, s: &MakeSymlink, root_user: bool) -> io::Result<()> {
    sys::symlink_at(&sys::cstr(&s.target)?, dir, name)?;
    owner_result(root_user, sys::chown_at(dir, name, s.uid, s.gid)).inspect_err(|_| {
        let _ = sys::unlink_at(dir, name, false);
    })
}

/// Makes device node or fifo `name` in `dir` with its metadata.
fn make_device(dir: RawFd, name: &CStr, d: &MakeDevice, root_user: bool) -> io::Result<()> {
    let kind = match d.kind {
        DeviceKind::Char => libc::S_IFCHR,
        DeviceKind::Block => libc::S_IFBLK,
        DeviceKind::Fifo => libc::S_IFIFO,
    };
    sys::mknod_at(dir, name, kind, 0o600, d.rdev)?;
    owner_result(root_user, sys::chown_at(dir, name, d.uid, d.gid))
        .and_then(|()| sys::chmod_at(dir, name, d.mode))
        .and_then(|()| sys::set_mtime_at(dir, name, (d.mtime, d.mtime_ns)))
        .inspect_err(|_| {
            let _ = sys::unlink_at(dir, name, false);
        })
}
