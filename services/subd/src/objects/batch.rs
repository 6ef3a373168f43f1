//! Filling the object cache with many objects and one flush to disk for
//! all of them.
//!
//! An object may only appear under its id once its content is on disk: the
//! update renames cache objects into the machine's tree, and a renamed file
//! whose data never reached the disk can be empty after a power loss.
//! Flushing each object on its own (an `fdatasync` a file, each one a
//! flush of the disk's write cache) cost a whole-image fetch most of its
//! kernel time. A [`Batch`] instead writes each verified object to a
//! temporary name; a commit then flushes the cache's file system once
//! (`syncfs`) and only after that renames the objects to their ids.
//! (Starting each object's write-back as soon as it was written, with
//! `sync_file_range`, cost more CPU than it saved: at a commit the kernel
//! writes many files back in one go, where each call on its own notified
//! the disk once a file.) So what a crash or power loss can leave is as
//! before: whole objects under their ids, and temporary names, which
//! opening the cache removes.
//!
//! A batch commits by itself once it holds [`COMMIT_BYTES`] or
//! [`COMMIT_OBJECTS`], or its oldest object has waited [`COMMIT_AFTER`],
//! so that a crash loses little of a long fetch; the fetch commits what is
//! left before it returns, so every object it reports is durable under its
//! id before any update can install it. Objects a batch still holds when
//! it is dropped uncommitted (a fetch abandoned midway) are removed.
//!
//! `syncfs` flushes everything waiting on that file system, not only the
//! cache's objects: a commit can take longer on a machine that has much
//! else to write.

use std::ffi::CString;
use std::fs::File;
use std::io::Write;
use std::os::fd::RawFd;
use std::path::Path;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use dom_model::ObjectId;
use dom_store::Unverified;

use super::{object_name, ObjectCache};
use crate::fetch::FetchError;
use crate::update::sys;

/// Bytes written that make a batch commit.
pub const COMMIT_BYTES: u64 = 64 << 20;
/// Objects written that make a batch commit.
pub const COMMIT_OBJECTS: usize = 16 * 1024;
/// How long a written object may wait for its commit.
pub const COMMIT_AFTER: Duration = Duration::from_secs(5);

/// Objects written to the cache under temporary names, to be made durable
/// and named by their ids together. Shared by the fetch's writers.
pub struct Batch {
    cache: ObjectCache,
    pending: Mutex<Pending>,
}

#[derive(Default)]
struct Pending {
    objects: Vec<Written>,
    bytes: u64,
    oldest: Option<Instant>,
}

/// One object under its temporary name.
struct Written {
    id: ObjectId,
    shard: RawFd,
    name: CString,
}

impl ObjectCache {
    /// A batch writing into this cache.
    pub fn batch(&self) -> Batch {
        Batch {
            cache: self.clone(),
            pending: Mutex::new(Pending::default()),
        }
    }
}

impl Batch {
    /// Writes `content` as object `id` after checking that it hashes to
    /// `id`; content that does not is refused and nothing is written. The
    /// object is under its id once the batch commits.
    pub fn insert_bytes(&self, id: &ObjectId, content: &[u8]) -> Result<(), FetchError> {
        let actual = ObjectId::of(content);
        if actual != *id {
            return Err(FetchError::Corrupt {
                id: *id,
                actual: Box::new(actual),
            });
        }
        self.write(id, content.len() as u64, |file| {
            file.write_all(content)
                .map_err(|e| self.cache.cache_error(id, e))
        })
    }

    /// Writes `content` as its object after checking, on this thread,
    /// that it hashes to the object's id; content that does not is refused
    /// and nothing is written.
    pub fn insert(&self, content: Unverified) -> Result<(), FetchError> {
        let id = content.id();
        let content = content
            .verify()
            .map_err(|e| FetchError::from_store(id, e))?;
        let size = content.parts().iter().map(|p| p.len() as u64).sum();
        self.write(&id, size, |file| {
            for part in content.parts() {
                file.write_all(part)
                    .map_err(|e| self.cache.cache_error(&id, e))?;
            }
            Ok(())
        })
    }

    /// Copies object `id` from the machine file `src`, as
    /// [`ObjectCache::insert_from_file`] does, into the batch.
    pub fn insert_from_file(&self, id: &ObjectId, src: &Path) -> Result<(), FetchError> {
        let (mut input, size) = super::open_machine_file(src)?;
        self.write(id, size, |file| {
            self.cache.copy_verified(id, &mut input, src, file)
        })
    }

    /// Makes every object written so far durable and puts it under its id.
    /// On failure the objects not yet under their ids are removed.
    pub fn commit(&self) -> Result<(), FetchError> {
        let pending = std::mem::take(&mut *self.pending());
        self.flush(pending.objects, pending.bytes)
    }

    /// Objects written and not yet committed.
    pub fn len(&self) -> usize {
        self.pending().objects.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Writes one object of `size` bytes through `fill` to a temporary
    /// name and adds it to the batch, committing when the batch is full.
    fn write(
        &self,
        id: &ObjectId,
        size: u64,
        fill: impl FnOnce(&mut File) -> Result<(), FetchError>,
    ) -> Result<(), FetchError> {
        let cache = &self.cache;
        let (shard, name, mut file) = cache.create_temp(id)?;
        if let Err(e) = fill(&mut file) {
            let _ = sys::unlink_at(shard, &name, false);
            return Err(e);
        }
        drop(file);
        let full = {
            let mut pending = self.pending();
            pending.objects.push(Written {
                id: *id,
                shard,
                name,
            });
            pending.bytes += size;
            let oldest = *pending.oldest.get_or_insert_with(Instant::now);
            pending.bytes >= COMMIT_BYTES
                || pending.objects.len() >= COMMIT_OBJECTS
                || oldest.elapsed() >= COMMIT_AFTER
        };
        if full {
            self.commit()?;
        }
        Ok(())
    }

    /// Makes `objects` (`bytes` in all) durable, then renames them to
    /// their ids.
    fn flush(&self, objects: Vec<Written>, bytes: u64) -> Result<(), FetchError> {
        if objects.is_empty() {
            return Ok(());
        }
        let cache = &self.cache;
        let files: Vec<_> = objects
            .iter()
            .map(|w| (w.shard, w.name.as_c_str()))
            .collect();
        if let Err(source) = crate::durable::flush(cache.fd(), &files, bytes) {
            remove(&objects);
            return Err(FetchError::Flush {
                dir: cache.dir().to_path_buf(),
                source,
            });
        }
        let mut first_error = None;
        for written in objects {
            let named = sys::rename_at(
                written.shard,
                &written.name,
                written.shard,
                &object_name(&written.id),
            );
            if let Err(e) = named {
                let _ = sys::unlink_at(written.shard, &written.name, false);
                first_error.get_or_insert_with(|| cache.cache_error(&written.id, e));
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    fn pending(&self) -> MutexGuard<'_, Pending> {
        self.pending.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Drop for Batch {
    fn drop(&mut self) {
        remove(&self.pending().objects);
    }
}

fn remove(objects: &[Written]) {
    for written in objects {
        let _ = sys::unlink_at(written.shard, &written.name, false);
    }
}
