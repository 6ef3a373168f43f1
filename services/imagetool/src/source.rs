//! Reading an image's source into a manifest: a directory (scanned by
//! `dom-scan`, in parallel), a `.tar`, or a gzip-compressed tar. Each object
//! is handed to the caller's sink as soon as it is hashed, so uploading can
//! overlap scanning.

use std::fs;
use std::io::{self, BufReader, Read};
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;

use bytes::Bytes;
use dom_model::manifest::{ManifestBuilder, ManifestError};
use dom_model::{path, Filter, Inode, Manifest, ObjectId};
use dom_scan::{Content, Counters, HashCache, ObjectSink, ScanError, ScanOptions};
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

impl From<ScanError> for SourceError {
    fn from(e: ScanError) -> Self {
        match e {
            ScanError::Read { path, reason } => SourceError::Read { path, reason },
            ScanError::Manifest(e) => SourceError::Manifest(e),
        }
    }
}

/// How to read a source.
pub struct SourceOptions {
    pub filter: Filter,
    /// Hashes of unchanged files (directory sources only).
    pub cache: Option<Arc<HashCache>>,
    /// Where each object goes as soon as it is hashed.
    pub sink: Option<ObjectSink>,
}

/// Scans `source`: a directory, or a tar archive (compressed or not).
pub fn scan(
    source: &Path,
    options: SourceOptions,
    counters: &Counters,
) -> Result<Manifest, SourceError> {
    let read_err = |e: io::Error| SourceError::Read {
        path: source.to_path_buf(),
        reason: e.to_string(),
    };
    let meta = fs::metadata(source).map_err(read_err)?;
    if meta.is_dir() {
        let options = ScanOptions {
            filter: options.filter,
            cache: options.cache,
            sink: options.sink,
            ..Default::default()
        };
        Ok(dom_scan::scan_tree(source, &options, counters)?.manifest)
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
                &options,
                counters,
            )
        } else {
            scan_tar(reader, source, &options, counters)
        }
    }
}

fn scan_tar<R: Read>(
    reader: R,
    source: &Path,
    options: &SourceOptions,
    counters: &Counters,
) -> Result<Manifest, SourceError> {
    let filter = &options.filter;
    let mut archive = tar::Archive::new(reader);
    let mut builder = ManifestBuilder::new();
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
                let size = data.len() as u64;
                counters.files.fetch_add(1, Ordering::Relaxed);
                counters.bytes.fetch_add(size, Ordering::Relaxed);
                counters.hashed_bytes.fetch_add(size, Ordering::Relaxed);
                let id = ObjectId::of(&data);
                if let Some(sink) = &options.sink {
                    sink(id, Content::Memory(Bytes::from(data)));
                }
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
    Ok(builder.finish()?)
}
