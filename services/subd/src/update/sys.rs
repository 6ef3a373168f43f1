//! Safe wrappers over the `*at()` system calls the update is built on.
//!
//! Every call names its file by a directory descriptor and one final name,
//! never by a path that the kernel would resolve through symlinks, and none
//! of them follows a symlink in that final name. The object cache uses the
//! same calls for its own directory.

use std::ffi::{CStr, CString};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// Turns one file name into a C string.
pub(crate) fn cstr(name: &str) -> io::Result<CString> {
    CString::new(name).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL in name"))
}

fn check(ret: libc::c_int) -> io::Result<libc::c_int> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

/// Runs `f` again while it fails with `EINTR`.
fn retry(mut f: impl FnMut() -> libc::c_int) -> io::Result<libc::c_int> {
    loop {
        match check(f()) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            other => return other,
        }
    }
}

fn owned(fd: libc::c_int) -> OwnedFd {
    // SAFETY: `fd` was just returned by a successful open and is ours.
    unsafe { OwnedFd::from_raw_fd(fd) }
}

/// Opens the directory at `path` (symlinks followed: the operator chose it).
pub(crate) fn open_dir(path: &Path) -> io::Result<OwnedFd> {
    let c = CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL in path"))?;
    let fd = retry(|| unsafe {
        libc::open(
            c.as_ptr(),
            libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC,
        )
    })?;
    Ok(owned(fd))
}

/// Opens `name` in `dir`, which must be a real directory, not a symlink.
pub(crate) fn open_dir_at(dir: RawFd, name: &CStr) -> io::Result<OwnedFd> {
    open_at(
        dir,
        name,
        libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW,
        0,
    )
}

/// Opens `name` in `dir` with `flags` (plus `O_CLOEXEC`).
pub(crate) fn open_at(
    dir: RawFd,
    name: &CStr,
    flags: libc::c_int,
    mode: libc::mode_t,
) -> io::Result<OwnedFd> {
    let fd = retry(|| unsafe {
        libc::openat(
            dir,
            name.as_ptr(),
            flags | libc::O_CLOEXEC,
            mode as libc::c_uint,
        )
    })?;
    Ok(owned(fd))
}

/// Creates a new file `name` in `dir` for writing; fails if it exists.
pub(crate) fn create_at(dir: RawFd, name: &CStr, mode: libc::mode_t) -> io::Result<OwnedFd> {
    open_at(
        dir,
        name,
        libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL | libc::O_NOFOLLOW,
        mode,
    )
}

pub(crate) fn mkdir_at(dir: RawFd, name: &CStr, mode: u32) -> io::Result<()> {
    check(unsafe { libc::mkdirat(dir, name.as_ptr(), mode as libc::mode_t) }).map(drop)
}

/// Renames `from` in `from_dir` to `to` in `to_dir`, replacing what is
/// there (a non-directory, or an empty directory when `from` is one).
pub(crate) fn rename_at(from_dir: RawFd, from: &CStr, to_dir: RawFd, to: &CStr) -> io::Result<()> {
    check(unsafe { libc::renameat(from_dir, from.as_ptr(), to_dir, to.as_ptr()) }).map(drop)
}

/// Removes `name` from `dir`: a non-directory, or with `dir_too` an empty
/// directory.
pub(crate) fn unlink_at(dir: RawFd, name: &CStr, dir_too: bool) -> io::Result<()> {
    let flags = if dir_too { libc::AT_REMOVEDIR } else { 0 };
    check(unsafe { libc::unlinkat(dir, name.as_ptr(), flags) }).map(drop)
}

pub(crate) fn symlink_at(target: &CStr, dir: RawFd, name: &CStr) -> io::Result<()> {
    check(unsafe { libc::symlinkat(target.as_ptr(), dir, name.as_ptr()) }).map(drop)
}

/// A new name `to` for the inode at `from` (a symlink there is linked
/// itself, not followed).
pub(crate) fn link_at(from_dir: RawFd, from: &CStr, to_dir: RawFd, to: &CStr) -> io::Result<()> {
    check(unsafe { libc::linkat(from_dir, from.as_ptr(), to_dir, to.as_ptr(), 0) }).map(drop)
}

/// Makes a device node or fifo; `kind` is `S_IFCHR`, `S_IFBLK` or
/// `S_IFIFO`.
pub(crate) fn mknod_at(
    dir: RawFd,
    name: &CStr,
    kind: libc::mode_t,
    mode: u32,
    rdev: u64,
) -> io::Result<()> {
    let mode = kind | (mode & 0o7777) as libc::mode_t;
    check(unsafe { libc::mknodat(dir, name.as_ptr(), mode, rdev as libc::dev_t) }).map(drop)
}

/// Sets the owner of `name` itself (a symlink is not followed).
pub(crate) fn chown_at(dir: RawFd, name: &CStr, uid: u32, gid: u32) -> io::Result<()> {
    check(unsafe {
        libc::fchownat(
            dir,
            name.as_ptr(),
            uid as libc::uid_t,
            gid as libc::gid_t,
            libc::AT_SYMLINK_NOFOLLOW,
        )
    })
    .map(drop)
}

/// Sets the permission bits of `name`, never through a symlink: the inode
/// is pinned with `O_PATH | O_NOFOLLOW` and changed through `/proc`, which
/// names exactly that inode. A symlink has no mode; asking for one is an
/// error (`ELOOP`).
pub(crate) fn chmod_at(dir: RawFd, name: &CStr, mode: u32) -> io::Result<()> {
    let mode = (mode & 0o7777) as libc::mode_t;
    let fd = open_at(dir, name, libc::O_PATH | libc::O_NOFOLLOW, 0)?;
    let st = fstat(fd.as_raw_fd())?;
    if st.st_mode & libc::S_IFMT == libc::S_IFLNK {
        return Err(io::Error::from_raw_os_error(libc::ELOOP));
    }
    let proc = CString::new(format!("/proc/self/fd/{}", fd.as_raw_fd())).expect("no NUL");
    match check(unsafe { libc::chmod(proc.as_ptr(), mode) }) {
        Ok(_) => Ok(()),
        // No /proc: the inode was checked above, and nothing but the
        // machine's own administrator can swap it in the meantime.
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {
            check(unsafe { libc::fchmodat(dir, name.as_ptr(), mode, 0) }).map(drop)
        }
        Err(e) => Err(e),
    }
}

fn timespecs(mtime: (i64, u32)) -> [libc::timespec; 2] {
    [
        libc::timespec {
            tv_sec: 0,
            tv_nsec: libc::UTIME_OMIT,
        },
        libc::timespec {
            tv_sec: mtime.0 as libc::time_t,
            tv_nsec: mtime.1 as _,
        },
    ]
}

/// Sets the modification time of `name` itself (seconds, nanoseconds); the
/// access time is left alone.
pub(crate) fn set_mtime_at(dir: RawFd, name: &CStr, mtime: (i64, u32)) -> io::Result<()> {
    let times = timespecs(mtime);
    check(unsafe {
        libc::utimensat(
            dir,
            name.as_ptr(),
            times.as_ptr(),
            libc::AT_SYMLINK_NOFOLLOW,
        )
    })
    .map(drop)
}

pub(crate) fn fchown(fd: RawFd, uid: u32, gid: u32) -> io::Result<()> {
    check(unsafe { libc::fchown(fd, uid as libc::uid_t, gid as libc::gid_t) }).map(drop)
}

pub(crate) fn fchmod(fd: RawFd, mode: u32) -> io::Result<()> {
    check(unsafe { libc::fchmod(fd, (mode & 0o7777) as libc::mode_t) }).map(drop)
}

pub(crate) fn set_mtime(fd: RawFd, mtime: (i64, u32)) -> io::Result<()> {
    let times = timespecs(mtime);
    check(unsafe { libc::futimens(fd, times.as_ptr()) }).map(drop)
}

pub(crate) fn fstat(fd: RawFd) -> io::Result<libc::stat> {
    let mut st = std::mem::MaybeUninit::<libc::stat>::uninit();
    check(unsafe { libc::fstat(fd, st.as_mut_ptr()) })?;
    // SAFETY: fstat succeeded and filled it in.
    Ok(unsafe { st.assume_init() })
}

/// The status of `name` itself (a symlink is not followed).
pub(crate) fn stat_at(dir: RawFd, name: &CStr) -> io::Result<libc::stat> {
    let mut st = std::mem::MaybeUninit::<libc::stat>::uninit();
    check(unsafe {
        libc::fstatat(
            dir,
            name.as_ptr(),
            st.as_mut_ptr(),
            libc::AT_SYMLINK_NOFOLLOW,
        )
    })?;
    // SAFETY: fstatat succeeded and filled it in.
    Ok(unsafe { st.assume_init() })
}

/// What the hash cache knows a file by, from its status.
pub(crate) fn identity(st: &libc::stat) -> dom_scan::cache::Identity {
    dom_scan::cache::Identity {
        dev: st.st_dev,
        ino: st.st_ino,
        size: st.st_size as u64,
        mtime: st.st_mtime,
        mtime_ns: st.st_mtime_nsec,
        ctime: st.st_ctime,
        ctime_ns: st.st_ctime_nsec,
    }
}

/// Whether a status is a regular file's.
pub(crate) fn is_file(st: &libc::stat) -> bool {
    st.st_mode & libc::S_IFMT == libc::S_IFREG
}

/// Makes `dst` share `src`'s blocks where the file system can (btrfs, XFS);
/// `false` when it cannot and the caller must copy.
pub(crate) fn reflink(src: RawFd, dst: RawFd) -> bool {
    unsafe { libc::ioctl(dst, libc::FICLONE, src) == 0 }
}

/// Flushes the file (or directory) `fd` to stable storage.
pub(crate) fn fsync(fd: RawFd) -> io::Result<()> {
    retry(|| unsafe { libc::fsync(fd) }).map(drop)
}

/// Flushes the file `fd`'s data (and what it takes to read it back).
pub(crate) fn fdatasync(fd: RawFd) -> io::Result<()> {
    retry(|| unsafe { libc::fdatasync(fd) }).map(drop)
}

/// Flushes the whole file system holding `fd` to stable storage.
pub(crate) fn syncfs(fd: RawFd) -> io::Result<()> {
    // SAFETY: a plain system call on a descriptor the caller owns.
    check(unsafe { libc::syncfs(fd) }).map(drop)
}

/// Whether this process may give files away to other owners.
pub(crate) fn is_root() -> bool {
    unsafe { libc::geteuid() == 0 }
}
