//! How fast the machine's disk reads, so background scans can take their
//! share (2% by default, as the original). Measured once, by reading the
//! largest files near the top of the root after asking the kernel to drop
//! their cached pages, and remembered in the state directory. A root too
//! small to measure (a machine about to get its first image) gets a
//! default, and is measured again after each update until it can be. The
//! speed only paces background verification: nothing an operator waits
//! for depends on it (DESIGN section 9).

use std::collections::VecDeque;
use std::fs;
use std::io::Read;
use std::os::fd::AsRawFd;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::persist::StateDir;

/// Assumed when the root holds too little to measure.
pub const DEFAULT_MEDIA_SPEED: u64 = 100 << 20;
/// Most bytes read to measure.
const SAMPLE_BYTES: u64 = 256 << 20;
/// Most time spent reading.
const SAMPLE_TIME: Duration = Duration::from_secs(5);
/// Fewer bytes than this say nothing about the disk.
const MIN_SAMPLE: u64 = 16 << 20;
/// Entries looked at while searching for files to read.
const SEARCH_ENTRIES: usize = 20_000;
/// Files smaller than this are not worth the seek.
const MIN_FILE: u64 = 256 << 10;

/// The disk's read speed in bytes per second: `configured`, else the one
/// measured before, else measured now (and remembered). `None` when the
/// root holds too little to measure: the caller assumes
/// [`DEFAULT_MEDIA_SPEED`] and may try again once it holds more
/// ([`measure_and_keep`]).
pub fn media_speed(configured: Option<u64>, root: &Path, state: &StateDir) -> Option<u64> {
    configured
        .or_else(|| state.load_media_speed())
        .or_else(|| measure_and_keep(root, state))
}

/// Measures the disk's speed and remembers it in the state directory;
/// `None` when the root holds too little to measure.
pub fn measure_and_keep(root: &Path, state: &StateDir) -> Option<u64> {
    match measure(root) {
        Some(speed) => {
            tracing::info!(bytes_per_second = speed, "measured the disk's read speed");
            if let Err(e) = state.save_media_speed(speed) {
                tracing::warn!(error = %e, "cannot remember the disk's read speed");
            }
            Some(speed)
        }
        None => {
            tracing::info!(
                bytes_per_second = DEFAULT_MEDIA_SPEED,
                "too little to read to measure the disk's speed; assuming a default until an update brings more"
            );
            None
        }
    }
}

/// What the agent knows of its disk's speed: configured, remembered,
/// measured, or assumed for now (and measured again in the background
/// after an update, until it can be).
pub(crate) struct Media {
    speed: Option<u64>,
    assumed: bool,
    measuring: Option<tokio::task::JoinHandle<Option<u64>>>,
}

impl Media {
    pub(crate) fn new(configured: Option<u64>) -> Self {
        Self {
            speed: configured,
            assumed: false,
            measuring: None,
        }
    }

    /// The speed; found out (remembered, or measured now, which reads the
    /// disk for up to a few seconds) on first use.
    pub(crate) async fn speed(&mut self, root: &Path, state: &StateDir) -> u64 {
        if let Some(speed) = self.speed {
            return speed;
        }
        let (root, state) = (root.to_path_buf(), state.clone());
        let known = tokio::task::spawn_blocking(move || media_speed(None, &root, &state))
            .await
            .ok()
            .flatten();
        self.assumed = known.is_none();
        *self.speed.insert(known.unwrap_or(DEFAULT_MEDIA_SPEED))
    }

    /// After an update: while the speed is only assumed, measures again in
    /// the background.
    pub(crate) fn measure_again(&mut self, root: &Path, state: &StateDir) {
        if !self.assumed || self.measuring.is_some() {
            return;
        }
        let (root, state) = (root.to_path_buf(), state.clone());
        self.measuring = Some(tokio::task::spawn_blocking(move || {
            measure_and_keep(&root, &state)
        }));
    }

    /// The speed a measurement under way found, once it is done: `Some`
    /// when it changes what background scans may read.
    pub(crate) async fn measured(&mut self) -> Option<u64> {
        if !self.measuring.as_ref().is_some_and(|m| m.is_finished()) {
            return None;
        }
        let speed = self.measuring.take()?.await.ok().flatten()?;
        self.speed = Some(speed);
        self.assumed = false;
        Some(speed)
    }
}

/// Reads up to [`SAMPLE_BYTES`] of the largest files found near the top of
/// `root` (on its file system), uncached, and times it.
pub fn measure(root: &Path) -> Option<u64> {
    let mut files = large_files(root);
    files.sort_by_key(|(_, size)| std::cmp::Reverse(*size));
    let mut buf = vec![0u8; 1 << 20];
    let (mut read, started) = (0u64, Instant::now());
    for (path, _) in files {
        if read >= SAMPLE_BYTES || started.elapsed() >= SAMPLE_TIME {
            break;
        }
        let Ok(mut file) = fs::File::open(&path) else {
            continue;
        };
        // SAFETY: advice on a descriptor we own; no memory is involved.
        unsafe { libc::posix_fadvise(file.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED) };
        while read < SAMPLE_BYTES && started.elapsed() < SAMPLE_TIME {
            match file.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => read += n as u64,
            }
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    (read >= MIN_SAMPLE && seconds > 0.0).then(|| (read as f64 / seconds) as u64)
}

/// Regular files of at least [`MIN_FILE`] bytes, breadth first.
fn large_files(root: &Path) -> Vec<(PathBuf, u64)> {
    let Ok(dev) = fs::symlink_metadata(root).map(|m| m.dev()) else {
        return Vec::new();
    };
    let mut queue = VecDeque::from([root.to_path_buf()]);
    let (mut seen, mut found) = (0usize, Vec::new());
    while let Some(dir) = queue.pop_front() {
        let Ok(entries) = fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            seen += 1;
            if seen > SEARCH_ENTRIES {
                return found;
            }
            let Ok(meta) = entry.metadata() else { continue };
            if meta.dev() != dev {
                continue;
            }
            if meta.is_dir() {
                queue.push_back(entry.path());
            } else if meta.is_file() && meta.len() >= MIN_FILE {
                found.push((entry.path(), meta.len()));
            }
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tree_too_small_to_measure_gives_the_default_and_is_not_remembered() {
        let tmp = tempfile::tempdir().unwrap();
        fs::write(tmp.path().join("small"), b"x").unwrap();
        let state = StateDir::open(&tmp.path().join(".subd")).unwrap();
        assert_eq!(measure(tmp.path()), None);
        assert_eq!(media_speed(None, tmp.path(), &state), None);
        assert_eq!(state.load_media_speed(), None);
        assert_eq!(media_speed(Some(5), tmp.path(), &state), Some(5));
    }

    #[test]
    fn measures_large_files() {
        let tmp = tempfile::tempdir().unwrap();
        let sub = tmp.path().join("d");
        fs::create_dir(&sub).unwrap();
        fs::write(sub.join("big"), vec![7u8; (MIN_SAMPLE + 1) as usize]).unwrap();
        let speed = measure(tmp.path()).unwrap();
        assert!(speed > 0);
    }
}
