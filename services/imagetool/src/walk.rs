//! Parallel walk of a source directory: reading directories, stat-ing
//! entries and hashing files all run on one pool of threads, so hashing
//! starts as soon as the first file is found and a cold metadata cache is
//! read with many requests in flight.

use std::fs;
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::{Condvar, Mutex};

use dom_model::object::Hasher;
use dom_model::{path, Filter, ObjectId};

use crate::source::{Content, ScanProgress, SourceError};

/// One path found in the source.
pub struct Found {
    pub path: String,
    pub disk: PathBuf,
    pub meta: fs::Metadata,
    /// The content's id, for regular files.
    pub object: Option<ObjectId>,
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
    failed: Option<SourceError>,
}

/// Walks `root`, leaving out paths `filter` matches (and everything below a
/// matching directory), and hashes every regular file.
pub fn walk(
    root: &Path,
    filter: &Filter,
    progress: &ScanProgress,
) -> Result<Vec<Found>, SourceError> {
    let meta = fs::symlink_metadata(root).map_err(|e| read_error(root, e))?;
    let root_found = Found {
        path: "/".into(),
        disk: root.to_path_buf(),
        meta,
        object: None,
        link_target: None,
    };
    let queue = Mutex::new(Queue {
        jobs: vec![Job::Dir("/".into(), root.to_path_buf())],
        busy: 0,
        failed: None,
    });
    let wake = Condvar::new();
    let results = Mutex::new(vec![root_found]);
    // More threads than cores: reads that miss the page cache wait on the
    // disk, and a deeper queue keeps both the disk and the cores busy.
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get()) * 4;
    std::thread::scope(|scope| {
        for _ in 0..threads {
            scope.spawn(|| worker(&queue, &wake, &results, filter, progress));
        }
    });
    let queue = queue.into_inner().expect("no worker panicked");
    if let Some(e) = queue.failed {
        return Err(e);
    }
    Ok(results.into_inner().expect("no worker panicked"))
}

fn worker(
    queue: &Mutex<Queue>,
    wake: &Condvar,
    results: &Mutex<Vec<Found>>,
    filter: &Filter,
    progress: &ScanProgress,
) {
    let mut buf = vec![0u8; 1 << 20];
    let mut found = Vec::new();
    loop {
        let job = {
            let mut q = queue.lock().unwrap();
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
                q = wake.wait(q).unwrap();
            }
        };
        let Some(job) = job else {
            wake.notify_all();
            break;
        };
        let mut new_jobs = Vec::new();
        let outcome = match job {
            Job::Dir(image_path, disk) => {
                read_dir(&image_path, &disk, filter, &mut new_jobs, &mut found)
            }
            Job::Hash(mut file) => match hash_and_hand_over(&file, &mut buf, progress) {
                Ok(id) => {
                    file.object = Some(id);
                    found.push(*file);
                    Ok(())
                }
                Err(e) => Err(read_error(&file.disk, e)),
            },
        };
        let mut q = queue.lock().unwrap();
        q.busy -= 1;
        match outcome {
            Ok(()) => q.jobs.extend(new_jobs),
            Err(e) => {
                q.failed.get_or_insert(e);
            }
        }
        drop(q);
        wake.notify_all();
    }
    results.lock().unwrap().extend(found);
}

fn read_dir(
    image_path: &str,
    disk: &Path,
    filter: &Filter,
    jobs: &mut Vec<Job>,
    found: &mut Vec<Found>,
) -> Result<(), SourceError> {
    let mut dirs = Vec::new();
    for child in fs::read_dir(disk).map_err(|e| read_error(disk, e))? {
        let child = child.map_err(|e| read_error(disk, e))?;
        let child_disk = child.path();
        let Some(name) = child.file_name().to_str().map(str::to_owned) else {
            return Err(SourceError::Read {
                path: child_disk,
                reason: "file name is not UTF-8".into(),
            });
        };
        let child_path = path::join(image_path, &name);
        if filter.matches(&child_path) {
            continue;
        }
        let meta = fs::symlink_metadata(&child_disk).map_err(|e| read_error(&child_disk, e))?;
        let ft = meta.file_type();
        let mut entry = Found {
            path: child_path,
            disk: child_disk,
            meta,
            object: None,
            link_target: None,
        };
        if ft.is_dir() {
            dirs.push(Job::Dir(entry.path.clone(), entry.disk.clone()));
            found.push(entry);
        } else if ft.is_file() {
            jobs.push(Job::Hash(Box::new(entry)));
        } else {
            if ft.is_symlink() {
                let target = fs::read_link(&entry.disk).map_err(|e| read_error(&entry.disk, e))?;
                let target = target.to_str().ok_or_else(|| SourceError::Read {
                    path: entry.disk.clone(),
                    reason: "symlink target is not UTF-8".into(),
                })?;
                entry.link_target = Some(target.to_string());
            }
            found.push(entry);
        }
    }
    // Directories are popped first, so discovery stays ahead of hashing.
    jobs.extend(dirs);
    Ok(())
}

/// Files up to this size are read whole, so the bytes just hashed can be
/// uploaded without reading (and verifying) the file a second time.
const HAND_OVER_MAX: u64 = 4 << 20;

/// Hashes a file and hands its object to the scan's sink: small files as
/// the bytes read, bigger ones as a path to read again.
fn hash_and_hand_over(
    file: &Found,
    buf: &mut [u8],
    progress: &ScanProgress,
) -> io::Result<ObjectId> {
    if progress.on_object.is_none() || file.meta.len() > HAND_OVER_MAX {
        let id = hash_file(&file.disk, buf, progress)?;
        progress.hashed(id, || Content::File(file.disk.clone(), file.meta.len()));
        return Ok(id);
    }
    let mut data = Vec::with_capacity(file.meta.len() as usize);
    fs::File::open(&file.disk)?.read_to_end(&mut data)?;
    let id = ObjectId::of(&data);
    progress
        .bytes
        .fetch_add(data.len() as u64, Ordering::Relaxed);
    progress.files.fetch_add(1, Ordering::Relaxed);
    progress.hashed(id, || Content::Memory(data.into()));
    Ok(id)
}

pub(crate) fn hash_file(
    path: &Path,
    buf: &mut [u8],
    progress: &ScanProgress,
) -> io::Result<ObjectId> {
    let mut file = fs::File::open(path)?;
    let mut hasher = Hasher::new();
    loop {
        let n = file.read(buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        progress.bytes.fetch_add(n as u64, Ordering::Relaxed);
    }
    progress.files.fetch_add(1, Ordering::Relaxed);
    Ok(hasher.finish())
}

pub(crate) fn read_error(path: &Path, e: io::Error) -> SourceError {
    SourceError::Read {
        path: path.to_path_buf(),
        reason: e.to_string(),
    }
}
