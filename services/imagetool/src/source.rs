//! Reading an image's source into a manifest: a directory (scanned by
//! `dom-scan`, in parallel), a `.tar`, or a gzip-compressed tar. Each object
//! is handed to the caller's sink as soon as it is hashed, so uploading can
//! overlap scanning.

use std::fs;
use std::io::{self, BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;

use bytes::Bytes;
use dom_model::manifest::{ManifestBuilder, ManifestError};
use dom_model::overlay::LayerEntry;
use dom_model::{path, Filter, Inode, Manifest, ObjectId};
use dom_scan::{Content, Counters, HashCache, ObjectSink, ScanError, ScanOptions};
use thiserror::Error;

#[derive(Debug, Error)]
pub enum SourceError {
    #[error("cannot read source {path}: {reason}")]
    Read { path: PathBuf, reason: String },
    #[error("{} is neither a directory nor a .tar or .tar.gz archive", path.display())]
    NotArchive { path: PathBuf },
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

/// Most bytes reserved for a tar entry before reading it.
const PREALLOCATE_MAX: u64 = 16 << 20;

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
        let reader = BufReader::with_capacity(1 << 20, file);
        scan_archive(reader, source, &options, counters)
    }
}

/// Reads a tar archive, gzip-compressed or not (told apart by its first
/// bytes), into a manifest. `source` names the archive in errors. Entries
/// that would land outside the image root (absolute paths, `..`, links
/// escaping it) are refused; nothing is written anywhere.
pub fn scan_archive<R: BufRead>(
    reader: R,
    source: &Path,
    options: &SourceOptions,
    counters: &Counters,
) -> Result<Manifest, SourceError> {
    let mut builder = ManifestBuilder::new();
    read_tar(
        archive_reader(reader, source)?,
        source,
        options,
        counters,
        &mut |path, inode| builder.add(path, inode, None),
    )?;
    Ok(builder.finish()?)
}

/// Reads a layer to lay over an image (see `dom_model::overlay`): the
/// entries a `.tar` or `.tar.gz` names itself, in its order, or those
/// of a directory's tree below its root. Filtered entries are left out
/// and their content is not handed to the sink; each entry obeys the rules
/// `add` applies to it.
pub fn scan_layer(
    source: &Path,
    options: SourceOptions,
    counters: &Counters,
) -> Result<Vec<LayerEntry>, SourceError> {
    let read_err = |e: io::Error| SourceError::Read {
        path: source.to_path_buf(),
        reason: e.to_string(),
    };
    if fs::metadata(source).map_err(read_err)?.is_dir() {
        let manifest = scan(source, options, counters)?;
        return Ok(manifest
            .entries
            .into_iter()
            .filter(|entry| entry.path != "/")
            .map(|entry| (entry.path, entry.inode))
            .collect());
    }
    let file = fs::File::open(source).map_err(read_err)?;
    let reader = archive_reader(BufReader::with_capacity(1 << 20, file), source)?;
    let mut entries = Vec::new();
    read_tar(reader, source, &options, counters, &mut |path, inode| {
        // The checks the manifest builder makes of one entry.
        ManifestBuilder::new().add(path.clone(), inode.clone(), None)?;
        entries.push((path, inode));
        Ok(())
    })?;
    Ok(entries)
}

/// The tar stream of an archive, gunzipped if it starts as gzip does.
fn archive_reader<'a, R: BufRead + 'a>(
    mut reader: R,
    source: &Path,
) -> Result<Box<dyn Read + 'a>, SourceError> {
    let gzip = reader
        .fill_buf()
        .map_err(|e| SourceError::Read {
            path: source.to_path_buf(),
            reason: e.to_string(),
        })?
        .starts_with(&[0x1f, 0x8b]);
    Ok(if gzip {
        Box::new(tar_start(
            flate2::read::MultiGzDecoder::new(reader),
            source,
        )?)
    } else {
        Box::new(tar_start(reader, source)?)
    })
}

/// Size of a tar header block.
const BLOCK: usize = 512;

/// Checks that `reader` starts with a tar header (or the empty archive's
/// zero block), so that a file that is no archive is named as such rather
/// than failing somewhere in the tar reader; returns the same stream.
fn tar_start<R: Read>(mut reader: R, source: &Path) -> Result<impl Read, SourceError> {
    let mut head = Vec::with_capacity(BLOCK);
    (&mut reader)
        .take(BLOCK as u64)
        .read_to_end(&mut head)
        .map_err(|e| SourceError::Read {
            path: source.to_path_buf(),
            reason: e.to_string(),
        })?;
    if !is_tar_header(&head) {
        return Err(SourceError::NotArchive {
            path: source.to_path_buf(),
        });
    }
    Ok(io::Cursor::new(head).chain(reader))
}

/// Whether `block` is a whole tar header whose checksum is right, or all
/// zeros (the end of an archive with nothing in it).
fn is_tar_header(block: &[u8]) -> bool {
    if block.len() != BLOCK {
        return false;
    }
    if block.iter().all(|b| *b == 0) {
        return true;
    }
    let header = tar::Header::from_byte_slice(block);
    let Ok(stored) = header.cksum() else {
        return false;
    };
    // The checksum is the sum of the header's bytes, its own field
    // counted as spaces.
    let sum: u32 = block
        .iter()
        .enumerate()
        .map(|(i, b)| {
            if (148..156).contains(&i) {
                32
            } else {
                u32::from(*b)
            }
        })
        .sum();
    stored == sum
}

/// Hands each entry of a tar stream that the filter keeps to `each`, as
/// an image path and its inode.
fn read_tar<R: Read>(
    reader: R,
    source: &Path,
    options: &SourceOptions,
    counters: &Counters,
    each: &mut dyn FnMut(String, Inode) -> Result<(), ManifestError>,
) -> Result<(), SourceError> {
    let mut archive = tar::Archive::new(reader);
    let read_err = |e: io::Error| SourceError::Read {
        path: source.to_path_buf(),
        reason: e.to_string(),
    };
    for entry in archive.entries().map_err(read_err)? {
        let mut entry = entry.map_err(read_err)?;
        let raw = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
        let errors = EntryErrors { raw: &raw, source };
        let image_path = path::from_relative(&raw).map_err(|e| errors.tar(e.to_string()))?;
        if image_path != "/" && options.filter.matches(&image_path) {
            continue;
        }
        let inode = tar_inode(&mut entry, &errors, options, counters)?;
        each(image_path, inode).map_err(|e| match e {
            ManifestError::BadSymlink { target, .. } => {
                errors.tar(format!("symlink target {target:?} escapes the image root"))
            }
            other => errors.tar(other.to_string()),
        })?;
    }
    Ok(())
}

/// The errors of one archive entry, named as the archive names it.
struct EntryErrors<'a> {
    raw: &'a str,
    source: &'a Path,
}

impl EntryErrors<'_> {
    /// The entry is not what an image can hold.
    fn tar(&self, reason: String) -> SourceError {
        SourceError::Tar {
            entry: self.raw.to_string(),
            reason,
        }
    }

    /// The archive could not be read.
    fn read(&self, e: io::Error) -> SourceError {
        SourceError::Read {
            path: self.source.to_path_buf(),
            reason: e.to_string(),
        }
    }
}

/// The inode of an archive entry; a regular file's content is read,
/// counted and handed to the sink.
fn tar_inode<R: Read>(
    entry: &mut tar::Entry<'_, R>,
    errors: &EntryErrors<'_>,
    options: &SourceOptions,
    counters: &Counters,
) -> Result<Inode, SourceError> {
    let tar_err = |reason: String| errors.tar(reason);
    let exact_mtime = pax_mtime(entry);
    let header = entry.header();
    let kind = header.entry_type();
    let mode = header.mode().map_err(|e| tar_err(e.to_string()))? & 0o7777;
    let uid = header.uid().map_err(|e| tar_err(e.to_string()))? as u32;
    let gid = header.gid().map_err(|e| tar_err(e.to_string()))? as u32;
    let (mtime, mtime_ns) = match exact_mtime {
        Some(exact) => exact,
        None => (
            header.mtime().map_err(|e| tar_err(e.to_string()))? as i64,
            0,
        ),
    };
    let major = header.device_major().ok().flatten().unwrap_or(0);
    let minor = header.device_minor().ok().flatten().unwrap_or(0);
    let rdev = libc::makedev(major, minor);
    let link_name = |entry: &tar::Entry<'_, R>| -> Result<String, SourceError> {
        let bytes = entry
            .link_name_bytes()
            .ok_or_else(|| tar_err("link without a target".into()))?;
        String::from_utf8(bytes.into_owned())
            .map_err(|_| tar_err("link target is not UTF-8".into()))
    };
    Ok(match kind {
        tar::EntryType::Directory => Inode::Dir { mode, uid, gid },
        tar::EntryType::Regular | tar::EntryType::Continuous => {
            let (size, object) = tar_file(entry, errors, options, counters)?;
            Inode::File {
                mode,
                uid,
                gid,
                mtime,
                mtime_ns,
                size,
                object,
            }
        }
        tar::EntryType::Symlink => Inode::Symlink {
            uid,
            gid,
            target: link_name(entry)?,
        },
        tar::EntryType::Link => {
            let target = path::from_relative(&link_name(entry)?)
                .map_err(|e| tar_err(format!("hard link target: {e}")))?;
            if options.filter.matches(&target) {
                return Err(tar_err(format!("hard link to filtered path {target}")));
            }
            Inode::Link { target }
        }
        tar::EntryType::Char => Inode::Char {
            mode,
            uid,
            gid,
            mtime,
            mtime_ns,
            rdev,
        },
        tar::EntryType::Block => Inode::Block {
            mode,
            uid,
            gid,
            mtime,
            mtime_ns,
            rdev,
        },
        tar::EntryType::Fifo => Inode::Fifo {
            mode,
            uid,
            gid,
            mtime,
            mtime_ns,
        },
        // Extended headers are consumed by the tar reader; anything else
        // (sockets, sparse-file extensions we cannot represent) is an
        // error rather than a silently different image.
        other => return Err(tar_err(format!("unsupported entry type {other:?}"))),
    })
}

/// The mtime a pax extended header gives to the nanosecond
/// (`mtime=1764000000.123456789`, `imagetool tar` writes it when the
/// header's whole seconds would lose something), if it gives one.
fn pax_mtime<R: Read>(entry: &mut tar::Entry<'_, R>) -> Option<(i64, u32)> {
    let extensions = entry.pax_extensions().ok()??;
    let value = extensions
        .filter_map(Result::ok)
        .find(|ext| ext.key() == Ok("mtime"))?
        .value()
        .ok()?
        .to_string();
    parse_pax_time(&value)
}

/// `SECONDS[.FRACTION]`, perhaps negative, as whole seconds (rounded
/// down) and nanoseconds.
fn parse_pax_time(value: &str) -> Option<(i64, u32)> {
    let (negative, digits) = match value.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, value),
    };
    let (whole, fraction) = digits.split_once('.').unwrap_or((digits, ""));
    if whole.is_empty() || !fraction.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let whole: i64 = whole.parse().ok()?;
    let mut nanos: u32 = 0;
    for (i, digit) in fraction.bytes().take(9).enumerate() {
        nanos += u32::from(digit - b'0') * 10u32.pow(8 - i as u32);
    }
    Some(match (negative, nanos) {
        (false, _) => (whole, nanos),
        (true, 0) => (-whole, 0),
        (true, n) => (-whole - 1, 1_000_000_000 - n),
    })
}

/// Reads a regular file's content from the archive, counts it and hands
/// it to the sink; returns its size and object id.
fn tar_file<R: Read>(
    entry: &mut tar::Entry<'_, R>,
    errors: &EntryErrors<'_>,
    options: &SourceOptions,
    counters: &Counters,
) -> Result<(u64, ObjectId), SourceError> {
    // The header's size is the archive's claim, not a fact: reserve at
    // most PREALLOCATE_MAX up front, and name the file when the archive
    // ends before it does.
    let declared = entry.size();
    let mut data = Vec::with_capacity(declared.min(PREALLOCATE_MAX) as usize);
    entry.read_to_end(&mut data).map_err(|e| errors.read(e))?;
    let size = data.len() as u64;
    if size != declared {
        return Err(errors.tar(format!(
            "the archive ends after {size} of the file's {declared} bytes"
        )));
    }
    counters.files.fetch_add(1, Ordering::Relaxed);
    counters.bytes.fetch_add(size, Ordering::Relaxed);
    counters.hashed_bytes.fetch_add(size, Ordering::Relaxed);
    let id = ObjectId::of(&data);
    if let Some(sink) = &options.sink {
        sink(id, Content::Memory(Bytes::from(data)));
    }
    Ok((size, id))
}

#[cfg(test)]
mod tests {
    //! Archives `imagetool add` must refuse without crashing, several found
    //! by the `tar` fuzz target (see docs/FUZZING.md).

    use std::io::Cursor;

    use super::*;

    fn read(archive: &[u8]) -> Result<Manifest, SourceError> {
        let options = SourceOptions {
            filter: Filter::parse("/tmp/.*").unwrap(),
            cache: None,
            sink: None,
        };
        scan_archive(
            Cursor::new(archive),
            Path::new("test.tar"),
            &options,
            &Counters::default(),
        )
    }

    /// One ustar header block for a regular file `name` whose size field
    /// holds `size` as is (octal digits or base-256), then two zero blocks.
    fn archive_with_size_field(name: &str, size: [u8; 12]) -> Vec<u8> {
        let mut header = [0u8; 512];
        header[..name.len()].copy_from_slice(name.as_bytes());
        header[100..108].copy_from_slice(b"0000644\0");
        header[108..116].copy_from_slice(b"0000000\0");
        header[116..124].copy_from_slice(b"0000000\0");
        header[124..136].copy_from_slice(&size);
        header[136..148].copy_from_slice(b"00000000000\0");
        header[156] = b'0';
        header[257..263].copy_from_slice(b"ustar\0");
        header[263..265].copy_from_slice(b"00");
        header[148..156].fill(b' ');
        let sum: u32 = header.iter().map(|b| u32::from(*b)).sum();
        header[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
        let mut archive = header.to_vec();
        archive.resize(512 * 3, 0);
        archive
    }

    fn builder_archive(add: impl FnOnce(&mut tar::Builder<Vec<u8>>)) -> Vec<u8> {
        let mut builder = tar::Builder::new(Vec::new());
        add(&mut builder);
        builder.into_inner().unwrap()
    }

    fn header(kind: tar::EntryType, size: u64) -> tar::Header {
        let mut header = tar::Header::new_gnu();
        header.set_entry_type(kind);
        header.set_mode(0o644);
        header.set_uid(0);
        header.set_gid(0);
        header.set_mtime(1_764_000_000);
        header.set_size(size);
        header
    }

    #[test]
    fn reads_a_small_archive_plain_and_compressed() {
        let archive = builder_archive(|b| {
            b.append_data(
                &mut header(tar::EntryType::Directory, 0),
                "etc",
                io::empty(),
            )
            .unwrap();
            b.append_data(
                &mut header(tar::EntryType::Regular, 5),
                "etc/hostname",
                &b"web1\n"[..],
            )
            .unwrap();
        });
        let manifest = read(&archive).unwrap();
        assert_eq!(manifest.entries.len(), 3);
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        std::io::Write::write_all(&mut gz, &archive).unwrap();
        assert_eq!(read(&gz.finish().unwrap()).unwrap(), manifest);
    }

    /// A 1.5 KiB archive whose header claims a 4 EiB file made the reader
    /// reserve that much memory up front and abort the process.
    #[test]
    fn a_file_larger_than_the_archive_is_refused_not_allocated() {
        let mut size = [0u8; 12];
        size[0] = 0x80; // base-256: 2^62 bytes
        size[4] = 0x40;
        let err = read(&archive_with_size_field("big", size)).unwrap_err();
        assert!(err.to_string().contains("archive ends after"), "{err}");
        // 8 GiB in octal: a claim, not an allocation.
        let err = read(&archive_with_size_field("big", *b"77777777777\0")).unwrap_err();
        assert!(err.to_string().contains("archive ends after"), "{err}");
    }

    /// A truncated archive is refused at the file it cuts, naming it.
    #[test]
    fn an_archive_cut_inside_a_file_is_refused() {
        let archive = builder_archive(|b| {
            b.append_data(
                &mut header(tar::EntryType::Regular, 1000),
                "data",
                &[7u8; 1000][..],
            )
            .unwrap();
        });
        let err = read(&archive[..512 + 600]).unwrap_err();
        assert!(
            err.to_string()
                .contains("after 600 of the file's 1000 bytes"),
            "{err}"
        );
    }

    #[test]
    fn pax_times_to_the_nanosecond() {
        assert_eq!(parse_pax_time("17"), Some((17, 0)));
        assert_eq!(parse_pax_time("17.5"), Some((17, 500_000_000)));
        assert_eq!(parse_pax_time("17.000000001"), Some((17, 1)));
        assert_eq!(parse_pax_time("-1.5"), Some((-2, 500_000_000)));
        assert_eq!(parse_pax_time("-3"), Some((-3, 0)));
        assert_eq!(parse_pax_time("x"), None);
        assert_eq!(parse_pax_time(".5"), None);
    }

    #[test]
    fn entries_outside_the_root_are_refused() {
        let hostile: [(&str, tar::EntryType, &str); 5] = [
            ("../escape", tar::EntryType::Regular, ""),
            ("/etc/passwd", tar::EntryType::Regular, ""),
            ("up", tar::EntryType::Symlink, "../../etc/shadow"),
            ("up", tar::EntryType::Link, "../etc/shadow"),
            ("up", tar::EntryType::Link, "/etc/shadow"),
        ];
        for (name, kind, target) in hostile {
            let mut h = tar::Header::new_old();
            h.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
            h.as_old_mut().linkname[..target.len()].copy_from_slice(target.as_bytes());
            h.set_entry_type(kind);
            h.set_mode(0o644);
            h.set_size(0);
            h.set_cksum();
            let mut archive = h.as_bytes().to_vec();
            archive.resize(512 * 3, 0);
            assert!(read(&archive).is_err(), "{name} -> {target} was accepted");
        }
    }
}
