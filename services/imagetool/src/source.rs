//! Reading an image's source into a manifest: a directory, a `.tar`, or a
//! gzip-compressed tar. File contents are hashed in parallel; for each
//! distinct object the scan remembers where its content can be read again
//! for upload.

use std::collections::HashMap;
use std::fs;
use std::io::{self, BufReader, Read};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use dom_model::manifest::{ManifestBuilder, ManifestError};
use dom_model::{path, Filter, Inode, Manifest, ObjectId};
use thiserror::Error;

#[derive(Debug, Error)]
pub enum SourceError {
    #[error("cannot read source {path}: {reason}")]
    Read { path: PathBuf, reason: String },
    #[error("tar entry {entry:?}: {reason}")]
    Tar { entry: String, reason: String },
    #[error("{0}")]
    Manifest(#[from] ManifestError),
}

/// Where an object's content can be read again.
#[derive(Clone, Debug)]
pub enum Content {
    /// A file on disk of this size.
    File(PathBuf, u64),
    /// Held in memory (from a tar archive).
    Memory(Bytes),
}

/// A scanned source.
pub struct Scan {
    pub manifest: Manifest,
    pub contents: HashMap<ObjectId, Content>,
}

/// Called with each object as soon as it is hashed, so uploading can
/// overlap scanning. An object may be reported more than once.
pub type ObjectSink = Box<dyn Fn(ObjectId, Content) + Send + Sync>;

/// Counts shown while scanning, and where hashed objects go.
#[derive(Default)]
pub struct ScanProgress {
    pub bytes: AtomicU64,
    pub files: AtomicU64,
    pub on_object: Option<ObjectSink>,
}

impl ScanProgress {
    /// Files and bytes hashed so far.
    pub fn counts(&self) -> (u64, u64) {
        (
            self.files.load(Ordering::Relaxed),
            self.bytes.load(Ordering::Relaxed),
        )
    }

    pub(crate) fn hashed(&self, id: ObjectId, content: impl FnOnce() -> Content) {
        if let Some(sink) = &self.on_object {
            sink(id, content());
        }
    }
}

/// Scans `source`: a directory, or a tar archive (compressed or not).
pub fn scan(source: &Path, filter: &Filter, progress: &ScanProgress) -> Result<Scan, SourceError> {
    let read_err = |e: io::Error| SourceError::Read {
        path: source.to_path_buf(),
        reason: e.to_string(),
    };
    let meta = fs::metadata(source).map_err(read_err)?;
    if meta.is_dir() {
        scan_dir(source, filter, progress)
    } else {
        let file = fs::File::open(source).map_err(read_err)?;
        let mut reader = BufReader::with_capacity(1 << 20, file);
        let gzip = {
            use std::io::BufRead;
            let head = reader.fill_buf().map_err(read_err)?;
            head.starts_with(&[0x1f, 0x8b])
        };
        if gzip {
            scan_tar(
                flate2::read::MultiGzDecoder::new(reader),
                source,
                filter,
                progress,
            )
        } else {
            scan_tar(reader, source, filter, progress)
        }
    }
}

fn scan_dir(root: &Path, filter: &Filter, progress: &ScanProgress) -> Result<Scan, SourceError> {
    let found = crate::walk::walk(root, filter, progress)?;
    tracing::debug!(paths = found.len(), "walked and hashed source tree");
    let mut builder = ManifestBuilder::new();
    let mut contents = HashMap::new();
    let mut link_keys: HashMap<(u64, u64), u64> = HashMap::new();
    for f in found {
        let meta = &f.meta;
        let ft = meta.file_type();
        let (mode, uid, gid) = (meta.mode() & 0o7777, meta.uid(), meta.gid());
        let (mtime, mtime_ns) = (meta.mtime(), meta.mtime_nsec() as u32);
        let link_key = if meta.nlink() > 1 && !ft.is_dir() {
            let next = link_keys.len() as u64;
            Some(*link_keys.entry((meta.dev(), meta.ino())).or_insert(next))
        } else {
            None
        };
        let inode = if ft.is_dir() {
            Inode::Dir { mode, uid, gid }
        } else if let Some(object) = f.object {
            contents
                .entry(object)
                .or_insert_with(|| Content::File(f.disk.clone(), meta.size()));
            Inode::File {
                mode,
                uid,
                gid,
                mtime,
                mtime_ns,
                size: meta.size(),
                object,
            }
        } else if let Some(target) = f.link_target {
            Inode::Symlink { uid, gid, target }
        } else if ft.is_char_device() {
            Inode::Char {
                mode,
                uid,
                gid,
                mtime,
                mtime_ns,
                rdev: meta.rdev(),
            }
        } else if ft.is_block_device() {
            Inode::Block {
                mode,
                uid,
                gid,
                mtime,
                mtime_ns,
                rdev: meta.rdev(),
            }
        } else if ft.is_fifo() {
            Inode::Fifo {
                mode,
                uid,
                gid,
                mtime,
                mtime_ns,
            }
        } else {
            // Sockets belong to running programs, not images.
            continue;
        };
        builder.add(f.path, inode, link_key)?;
    }
    Ok(Scan {
        manifest: builder.finish()?,
        contents,
    })
}

fn scan_tar<R: Read>(
    reader: R,
    source: &Path,
    filter: &Filter,
    progress: &ScanProgress,
) -> Result<Scan, SourceError> {
    let mut archive = tar::Archive::new(reader);
    let mut builder = ManifestBuilder::new();
    let mut contents = HashMap::new();
    let read_err = |e: io::Error| SourceError::Read {
        path: source.to_path_buf(),
        reason: e.to_string(),
    };
    for entry in archive.entries().map_err(read_err)? {
        let mut entry = entry.map_err(read_err)?;
        let raw = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
        let tar_err = |reason: String| SourceError::Tar {
            entry: raw.clone(),
            reason,
        };
        let image_path = path::from_relative(&raw).map_err(|e| tar_err(e.to_string()))?;
        if image_path != "/" && filter.matches(&image_path) {
            continue;
        }
        let header = entry.header();
        let mode = header.mode().map_err(|e| tar_err(e.to_string()))? & 0o7777;
        let uid = header.uid().map_err(|e| tar_err(e.to_string()))? as u32;
        let gid = header.gid().map_err(|e| tar_err(e.to_string()))? as u32;
        let mtime = header.mtime().map_err(|e| tar_err(e.to_string()))? as i64;
        let rdev = || -> Result<u64, SourceError> {
            let major = header.device_major().ok().flatten().unwrap_or(0) as u64;
            let minor = header.device_minor().ok().flatten().unwrap_or(0) as u64;
            Ok(libc::makedev(major as u32, minor as u32))
        };
        let link_name = || -> Result<String, SourceError> {
            let bytes = entry
                .link_name_bytes()
                .ok_or_else(|| tar_err("link without a target".into()))?;
            String::from_utf8(bytes.into_owned())
                .map_err(|_| tar_err("link target is not UTF-8".into()))
        };
        let inode = match header.entry_type() {
            tar::EntryType::Directory => Inode::Dir { mode, uid, gid },
            tar::EntryType::Regular | tar::EntryType::Continuous => {
                let mut data = Vec::with_capacity(entry.size() as usize);
                entry.read_to_end(&mut data).map_err(read_err)?;
                progress
                    .bytes
                    .fetch_add(data.len() as u64, Ordering::Relaxed);
                progress.files.fetch_add(1, Ordering::Relaxed);
                let id = ObjectId::of(&data);
                let size = data.len() as u64;
                let data = Bytes::from(data);
                progress.hashed(id, || Content::Memory(data.clone()));
                contents.entry(id).or_insert_with(|| Content::Memory(data));
                Inode::File {
                    mode,
                    uid,
                    gid,
                    mtime,
                    mtime_ns: 0,
                    size,
                    object: id,
                }
            }
            tar::EntryType::Symlink => Inode::Symlink {
                uid,
                gid,
                target: link_name()?,
            },
            tar::EntryType::Link => {
                let target = path::from_relative(&link_name()?)
                    .map_err(|e| tar_err(format!("hard link target: {e}")))?;
                if filter.matches(&target) {
                    return Err(tar_err(format!("hard link to filtered path {target}")));
                }
                Inode::Link { target }
            }
            tar::EntryType::Char => Inode::Char {
                mode,
                uid,
                gid,
                mtime,
                mtime_ns: 0,
                rdev: rdev()?,
            },
            tar::EntryType::Block => Inode::Block {
                mode,
                uid,
                gid,
                mtime,
                mtime_ns: 0,
                rdev: rdev()?,
            },
            tar::EntryType::Fifo => Inode::Fifo {
                mode,
                uid,
                gid,
                mtime,
                mtime_ns: 0,
            },
            // Extended headers are consumed by the tar reader; anything else
            // (sockets, sparse-file extensions we cannot represent) is an
            // error rather than a silently different image.
            other => return Err(tar_err(format!("unsupported entry type {other:?}"))),
        };
        builder.add(image_path, inode, None).map_err(|e| match e {
            ManifestError::BadSymlink { target, .. } => {
                tar_err(format!("symlink target {target:?} escapes the image root"))
            }
            other => tar_err(other.to_string()),
        })?;
    }
    Ok(Scan {
        manifest: builder.finish()?,
        contents,
    })
}
