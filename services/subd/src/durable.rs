//! Making many new files durable at once, before they are renamed where
//! they count (an object to its id, a copy into the machine's tree).
//!
//! Flushing each file on its own costs a flush of the disk's write cache
//! per file, which for a whole image's 31,000 objects was most of the
//! fetch's kernel time; one `syncfs` does for all of them. But `syncfs`
//! also writes out everything else waiting on that file system: on a
//! machine with much unwritten data of its own (a database, a large copy
//! just made) a small update would wait for all of it. So a few files
//! (up to [`ONE_BY_ONE_MAX`]) are flushed one by one, from several
//! threads at once, when the machine's unwritten data is large beside
//! theirs; many files (a whole image) always with one `syncfs`, which then
//! costs least whatever else is waiting.

use std::ffi::CStr;
use std::io;
use std::os::fd::{AsRawFd, RawFd};

use crate::update::sys;

/// Unwritten data of others beyond which files are flushed one by one:
/// this much more than the files' own, and at least `OTHERS_MIN`.
const OTHERS_FACTOR: u64 = 2;
const OTHERS_MIN: u64 = 64 << 20;
/// Most files ever flushed one by one.
pub(crate) const ONE_BY_ONE_MAX: usize = 2048;
/// Threads flushing files one by one.
const FLUSHERS: usize = 16;

/// Makes `files` (a directory descriptor and a name in it each, holding
/// `bytes` in all) durable; `fs` is any descriptor on their file system.
pub(crate) fn flush(fs: RawFd, files: &[(RawFd, &CStr)], bytes: u64) -> io::Result<()> {
    if files.is_empty() {
        return Ok(());
    }
    if files.len() <= ONE_BY_ONE_MAX && one_by_one(unwritten(), bytes) {
        flush_each(files)
    } else {
        sys::syncfs(fs)
    }
}

/// Whether files of `bytes` are better flushed one by one, with
/// `unwritten` bytes waiting to be written on the machine (theirs
/// included), if known.
fn one_by_one(unwritten: Option<u64>, bytes: u64) -> bool {
    unwritten.is_some_and(|total| {
        let others = total.saturating_sub(bytes);
        others > OTHERS_MIN.max(bytes.saturating_mul(OTHERS_FACTOR))
    })
}

/// The machine's dirty and under-writeback memory, from `/proc/meminfo`.
fn unwritten() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let kib = |key: &str| -> Option<u64> {
        let line = text.lines().find(|l| l.starts_with(key))?;
        line[key.len()..]
            .trim()
            .trim_end_matches("kB")
            .trim()
            .parse()
            .ok()
    };
    Some((kib("Dirty:")? + kib("Writeback:")?) * 1024)
}

fn flush_each(files: &[(RawFd, &CStr)]) -> io::Result<()> {
    let chunk = files.len().div_ceil(FLUSHERS).max(1);
    std::thread::scope(|scope| {
        let flushers: Vec<_> = files
            .chunks(chunk)
            .map(|part| {
                scope.spawn(move || {
                    part.iter().try_for_each(|(dir, name)| {
                        let file = std::fs::File::from(sys::open_at(
                            *dir,
                            name,
                            libc::O_RDONLY | libc::O_NOFOLLOW,
                            0,
                        )?);
                        sys::fdatasync(file.as_raw_fd())
                    })
                })
            })
            .collect();
        flushers.into_iter().try_for_each(|f| {
            f.join()
                .unwrap_or_else(|_| Err(io::Error::other("a flushing thread panicked")))
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_machine_busy_writing_gets_its_files_flushed_one_by_one() {
        const MIB: u64 = 1 << 20;
        // Little else waiting: one syncfs.
        assert!(!one_by_one(Some(10 * MIB), 8 * MIB));
        assert!(!one_by_one(Some(900 * MIB), 800 * MIB));
        // A gigabyte of someone else's: the files on their own.
        assert!(one_by_one(Some(1024 * MIB + 8 * MIB), 8 * MIB));
        // Unknown: one syncfs.
        assert!(!one_by_one(None, 8 * MIB));
    }

    #[test]
    fn files_are_flushed_either_way() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = sys::open_dir(tmp.path()).unwrap();
        let names: Vec<_> = (0..40)
            .map(|i| {
                let name = sys::cstr(&format!("f{i}")).unwrap();
                std::fs::write(tmp.path().join(format!("f{i}")), b"x").unwrap();
                name
            })
            .collect();
        let files: Vec<_> = names
            .iter()
            .map(|n| (dir.as_raw_fd(), n.as_c_str()))
            .collect();
        flush_each(&files).unwrap();
        flush(dir.as_raw_fd(), &files, 40).unwrap();
    }
}
