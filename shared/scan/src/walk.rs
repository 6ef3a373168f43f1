//! The parallel walk: reading directories, stat-ing entries and hashing
//! files on one pool of threads.

use std::fs;
use std::io::{self, Read};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::SystemTime;

use bytes::Bytes;
use dom_model::object::Hasher;
use dom_model::{path, Filter, ObjectId};
use thiserror::Error;

use crate::{HashCache, RateLimit};

#[derive(Debug, Error)]
pub enum ScanError {
    #[error("cannot read {path}: {reason}")]
    Read { path: PathBuf, reason: String },
    #[error("{0}")]
    Manifest(#[from] dom_model::manifest::ManifestError),
}

/// Where an object's content can be read again.
#[derive(Clone, Debug)]
pub enum Content {
    /// A file on disk of this size (read it again, and check it).
    File(PathBuf, u64),
    /// The bytes themselves.
    Memory(Bytes),
}

/// Called with each object as soon as it is hashed, so uploading can
/// overlap scanning. An object may be reported more than once.
pub type ObjectSink = Box<dyn Fn(ObjectId, Content) + Send + Sync>;

/// What to scan and how.
pub struct ScanOptions {
    /// Paths left out, with everything below them.
    pub filter: Filter,
    /// Image paths never entered (the agent's own state, `/.subd`).
    pub protected: Vec<String>,
    /// Hashes of unchanged inodes to reuse, and to fill.
    pub cache: Option<Arc<HashCache>>,
    /// Reuse the cache's hashes (`true`, the default), or hash every file
    /// and only fill the cache: a full rehash, which corrects what the
    /// cache says about content that changed without touching the times.
    pub trust_cache: bool,
    /// A limit on the bytes read per second while hashing.
    pub rate: Option<Arc<RateLimit>>,
    /// Do not descend into other file systems (mount points are listed,
    /// their content is not).
    pub one_file_system: bool,
    /// Worker threads; 0 picks four per core (reads that miss the page
    /// cache wait on the disk, and a deeper queue keeps both the disk and
    /// the cores busy).
    pub threads: usize,
    /// Where hashed content goes, if anywhere.
    pub sink: Option<ObjectSink>,
    /// Bytes of content that may be held for the sink at once; files that
    /// do not fit are handed over as paths to read again.
    pub memory_budget: u64,
    /// Leave out, instead of failing the scan, what a manifest cannot hold:
    /// names or symlink targets that are not UTF-8, and symlinks that
    /// climb above the root. A machine's scan must go on past them (they
    /// are counted in [`Counters::skipped`]); an image's source must not.
    pub skip_unrepresentable: bool,
}

impl Default for ScanOptions {
    fn default() -> Self {
        Self {
            filter: Filter::empty(),
            protected: Vec::new(),
            cache: None,
            trust_cache: true,
            rate: None,
            one_file_system: false,
            threads: 0,
            sink: None,
            memory_budget: 512 << 20,
            skip_unrepresentable: false,
        }
    }
}

/// Live counts, readable while the scan runs.
#[derive(Debug, Default)]
pub struct Counters {
    /// Regular files found.
    pub files: AtomicU64,
    /// Bytes in those files.
    pub bytes: AtomicU64,
    /// Bytes actually read and hashed (the rest came from the cache).
    pub hashed_bytes: AtomicU64,
    /// Entries left out because a manifest cannot hold them (see
    /// [`ScanOptions::skip_unrepresentable`]).
    pub skipped: AtomicU64,
}

impl Counters {
    /// Files found and their bytes, so far.
    pub fn counts(&self) -> (u64, u64) {
        (
            self.files.load(Ordering::Relaxed),
            self.bytes.load(Ordering::Relaxed),
        )
    }
}

/// One path found.
#[derive(Debug)]
pub struct Found {
    pub path: String,
    pub disk: PathBuf,
    pub meta: fs::Metadata,
    /// For regular files: the content's id and the bytes hashed (which
    /// differ from `meta.len()` only for a file written during the scan).
    pub object: Option<(ObjectId, u64)>,
    /// The target, for symlinks.
    pub link_target: Option<String>,
}

enum Job {
    Dir(String, PathBuf),
    Hash(Box<Found>),
}

struct Queue {
    jobs: Vec<Job>,
    busy: usize,
    failed: Option<ScanError>,
}

struct Walk<'a> {
    options: &'a ScanOptions,
    /// Worker threads.
    threads: usize,
    counters: &'a Counters,
    root_dev: u64,
    started: SystemTime,
    budget: Arc<AtomicI64>,
    queue: Mutex<Queue>,
    wake: Condvar,
    results: Mutex<Vec<Found>>,
}

/// Walks `root`, leaving out filtered and protected paths (and everything
/// below them), and hashes every regular file.
pub fn walk(
    root: &Path,
    options: &ScanOptions,
    counters: &Counters,
) -> Result<Vec<Found>, ScanError> {
    let meta = fs::symlink_metadata(root).map_err(|e| read_error(root, e))?;
    if !meta.is_dir() {
        return Err(ScanError::Read {
            path: root.to_path_buf(),
            reason: "not a directory".into(),
        });
    }
    let threads = match options.threads {
        0 => std::thread::available_parallelism().map_or(2, |n| n.get()) * 4,
        n => n,
    };
    let walk = Walk {
        options,
        threads,
        counters,
        root_dev: meta.dev(),
        started: SystemTime::now(),
        budget: Arc::new(AtomicI64::new(options.memory_budget as i64)),
        queue: Mutex::new(Queue {
            jobs: vec![Job::Dir("/".into(), root.to_path_buf())],
            busy: 0,
            failed: None,
        }),
        wake: Condvar::new(),
        results: Mutex::new(vec![Found {
            path: "/".into(),
            disk: root.to_path_buf(),
            meta,
            object: None,
            link_target: None,
        }]),
    };
    std::thread::scope(|scope| {
        for _ in 0..threads {
            scope.spawn(|| walk.worker());
        }
    });
    let queue = walk.queue.into_inner().expect("no worker panicked");
    if let Some(e) = queue.failed {
        return Err(e);
    }
    Ok(walk.results.into_inner().expect("no worker panicked"))
}

impl Walk<'_> {
    fn worker(&self) {
        let mut buf = vec![0u8; 1 << 20];
        let mut found = Vec::new();
        loop {
            let job = {
                let mut q = self.queue.lock().unwrap();
                loop {
                    if q.failed.is_some() {
                        break None;
                    }
                    if let Some(job) = q.jobs.pop() {
                        q.busy += 1;
                        break Some(job);
                    }
                    if q.busy == 0 {
                        break None;
                    }
                    q = self.wake.wait(q).unwrap();
                }
            };
            let Some(job) = job else {
                self.wake.notify_all();
                break;
            };
            if let Some(rate) = &self.options.rate {
                rate.wait_while_paused();
            }
            let mut new_jobs = Vec::new();
            let outcome = match job {
                Job::Dir(image_path, disk) => {
                    self.read_dir(&image_path, &disk, &mut new_jobs, &mut found)
                }
                Job::Hash(mut file) => match self.hash(&file, &mut buf) {
                    Ok(Some(object)) => {
                        file.object = Some(object);
                        found.push(*file);
                        Ok(())
                    }
                    // Gone since it was listed: a live tree, not an error.
                    Ok(None) => Ok(()),
                    Err(e) => Err(read_error(&file.disk, e)),
                },
            };
            let mut q = self.queue.lock().unwrap();
            q.busy -= 1;
            let added = new_jobs.len();
            let failed = outcome.is_err();
            match outcome {
                Ok(()) => q.jobs.extend(new_jobs),
                Err(e) => {
                    q.failed.get_or_insert(e);
                }
            }
            let finished = q.busy == 0 && q.jobs.is_empty();
            drop(q);
            // Wake as many idle workers as there is new work for; all of
            // them only when the walk is over (or failed), so they can
            // leave.
            if finished || failed {
                self.wake.notify_all();
            } else {
                for _ in 0..added.min(self.threads) {
                    self.wake.notify_one();
                }
            }
        }
        self.results.lock().unwrap().extend(found);
    }

    /// Whether to leave out an entry a manifest cannot hold.
    fn skip(&self, disk: &Path, why: &str) -> bool {
        if self.options.skip_unrepresentable {
            tracing::debug!(path = %disk.display(), why, "left out of the scan");
            self.counters.skipped.fetch_add(1, Ordering::Relaxed);
        }
        self.options.skip_unrepresentable
    }

    fn skipped(&self, image_path: &str) -> bool {
        self.options.filter.matches(image_path)
            || self.options.protected.iter().any(|p| {
                image_path
                    .strip_prefix(p.as_str())
                    .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
            })
    }

    fn read_dir(
        &self,
        image_path: &str,
        disk: &Path,
        jobs: &mut Vec<Job>,
        found: &mut Vec<Found>,
    ) -> Result<(), ScanError> {
        let mut dirs = Vec::new();
        let entries = match fs::read_dir(disk) {
            Ok(entries) => entries,
            Err(e) if e.kind() == io::ErrorKind::NotFound && image_path != "/" => return Ok(()),
            Err(e) => return Err(read_error(disk, e)),
        };
        for child in entries {
            let child = child.map_err(|e| read_error(disk, e))?;
            let child_disk = child.path();
            let Some(name) = child.file_name().to_str().map(str::to_owned) else {
                if self.skip(&child_disk, "name is not UTF-8") {
                    continue;
                }
                return Err(ScanError::Read {
                    path: child_disk,
                    reason: "file name is not UTF-8".into(),
                });
            };
            let child_path = path::join(image_path, &name);
            if self.skipped(&child_path) {
                continue;
            }
            // Relative to the open directory (fstatat), not by full path:
            // the kernel does not walk the path again for every entry.
            let meta = match child.metadata() {
                Ok(meta) => meta,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(read_error(&child_disk, e)),
            };
            let ft = meta.file_type();
            let mut entry = Found {
                path: child_path,
                disk: child_disk,
                meta,
                object: None,
                link_target: None,
            };
            if ft.is_dir() {
                if !self.options.one_file_system || entry.meta.dev() == self.root_dev {
                    dirs.push(Job::Dir(entry.path.clone(), entry.disk.clone()));
                }
                found.push(entry);
            } else if ft.is_file() {
                // Most files of a tree scanned before are known: settled
                // here, without a job of their own.
                match self.known(&entry) {
                    Some(object) => {
                        entry.object = Some(object);
                        found.push(entry);
                    }
                    None => jobs.push(Job::Hash(Box::new(entry))),
                }
            } else {
                if ft.is_symlink() {
                    let target = match fs::read_link(&entry.disk) {
                        Ok(target) => target,
                        Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                        Err(e) => return Err(read_error(&entry.disk, e)),
                    };
                    let Some(target) = target.to_str() else {
                        if self.skip(&entry.disk, "symlink target is not UTF-8") {
                            continue;
                        }
                        return Err(ScanError::Read {
                            path: entry.disk.clone(),
                            reason: "symlink target is not UTF-8".into(),
                        });
                    };
                    entry.link_target = Some(target.to_string());
                }
                found.push(entry);
            }
        }
        // Directories are popped first, so discovery stays ahead of hashing.
        jobs.extend(dirs);
        Ok(())
    }

    /// A file's object as the cache knows it, counted and handed to the
    /// sink; `None` when it must be read.
    fn known(&self, file: &Found) -> Option<(ObjectId, u64)> {
        let id = self
            .options
            .cache
            .as_ref()
            .filter(|_| self.options.trust_cache)?
            .lookup(&file.meta)?;
        let size = file.meta.len();
        self.counters.files.fetch_add(1, Ordering::Relaxed);
        self.counters.bytes.fetch_add(size, Ordering::Relaxed);
        self.hand_over(id, || Content::File(file.disk.clone(), size));
        Some((id, size))
    }

    /// Hashes a file (or finds it in the cache) and hands its object to the
    /// sink. `None` when the file disappeared.
    fn hash(&self, file: &Found, buf: &mut [u8]) -> io::Result<Option<(ObjectId, u64)>> {
        if let Some(known) = self.known(file) {
            return Ok(Some(known));
        }
        let size = file.meta.len();
        self.counters.files.fetch_add(1, Ordering::Relaxed);
        self.counters.bytes.fetch_add(size, Ordering::Relaxed);
        let mut opened = match fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&file.disk)
        {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        let (id, read) = match self.reserve(size) {
            Some(held) => {
                let data = self.read_whole(&mut opened, size)?;
                let id = ObjectId::of(&data);
                let read = data.len() as u64;
                let held = Held {
                    data,
                    budget: self.budget.clone(),
                    held,
                };
                self.hand_over(id, || Content::Memory(Bytes::from_owner(held)));
                (id, read)
            }
            None => {
                let (id, read) = self.read_hashing(&mut opened, buf)?;
                self.hand_over(id, || Content::File(file.disk.clone(), read));
                (id, read)
            }
        };
        if read == size {
            if let Some(cache) = &self.options.cache {
                cache.record(&file.meta, id, self.started);
            }
        }
        Ok(Some((id, read)))
    }

    fn hand_over(&self, id: ObjectId, content: impl FnOnce() -> Content) {
        if let Some(sink) = &self.options.sink {
            sink(id, content());
        }
    }

    /// Takes `size` bytes of the memory budget, if there is a sink to hand
    /// the content to and the budget allows.
    fn reserve(&self, size: u64) -> Option<i64> {
        const WHOLE_MAX: u64 = 64 << 20;
        if self.options.sink.is_none() || size > WHOLE_MAX {
            return None;
        }
        let size = size as i64;
        if self.budget.fetch_sub(size, Ordering::AcqRel) >= size {
            Some(size)
        } else {
            self.budget.fetch_add(size, Ordering::AcqRel);
            None
        }
    }

    fn read_whole(&self, file: &mut fs::File, size: u64) -> io::Result<Vec<u8>> {
        if let Some(rate) = &self.options.rate {
            rate.take(size);
        }
        let mut data = Vec::with_capacity(size as usize);
        file.read_to_end(&mut data)?;
        self.counters
            .hashed_bytes
            .fetch_add(data.len() as u64, Ordering::Relaxed);
        Ok(data)
    }

    fn read_hashing(&self, file: &mut fs::File, buf: &mut [u8]) -> io::Result<(ObjectId, u64)> {
        let mut hasher = Hasher::new();
        let mut read = 0u64;
        loop {
            let n = file.read(buf)?;
            if n == 0 {
                break;
            }
            if let Some(rate) = &self.options.rate {
                rate.take(n as u64);
            }
            hasher.update(&buf[..n]);
            read += n as u64;
            self.counters
                .hashed_bytes
                .fetch_add(n as u64, Ordering::Relaxed);
        }
        Ok((hasher.finish(), read))
    }
}

/// Content held for the sink; gives its bytes back to the budget when the
/// last reference is dropped.
struct Held {
    data: Vec<u8>,
    budget: Arc<AtomicI64>,
    held: i64,
}

impl AsRef<[u8]> for Held {
    fn as_ref(&self) -> &[u8] {
        &self.data
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        self.budget.fetch_add(self.held, Ordering::AcqRel);
    }
}

pub(crate) fn read_error(path: &Path, e: io::Error) -> ScanError {
    ScanError::Read {
        path: path.to_path_buf(),
        reason: e.to_string(),
    }
}
