//! `imagetool tar`: an image written as a tar archive, every inode as the
//! manifest has it (mode, owner, mtime, symlink target, hard links,
//! devices), every object verified against its SHA-512 as it is read.
//!
//! What `add` reads back from the archive is the same manifest, so
//! `imagetool add X OUT.tar "" ""` gives the image's manifest id again:
//! the root is written as `./`, hard links name their first path, and an
//! mtime with nanoseconds (or before 1970) is carried in a pax header.
//! The archive is written to a temporary name beside OUT and renamed
//! into place only when whole, so no half-written archive is left at OUT.

use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use dom_bus::Bus;
use dom_model::{Entry, ImageName, Inode, Manifest};
use dom_store::{ContentStore, Store};
use futures::StreamExt;
use gzp::deflate::Gzip;
use gzp::par::compress::{ParCompress, ParCompressBuilder};
use gzp::ZWriter;

/// How many objects are read ahead of the one being written.
const READ_AHEAD: usize = 16;
/// The bytes of archive each compression thread takes at a time: large
/// enough that a block compresses as well as one stream would.
const GZIP_BLOCK: usize = 1 << 20;

/// Where the archive goes.
pub enum Output {
    /// Standard output.
    Stdout { gzip: bool },
    /// A file, gzip-compressed when its name ends `.gz` or `.tgz`.
    File { path: PathBuf, force: bool },
}

impl Output {
    /// OUT as given (`-` or nothing: standard output); an existing file is
    /// refused unless `force`. Nothing is sent when this fails.
    pub fn parse(out: Option<&Path>, force: bool, compress: bool) -> Result<Self> {
        match out {
            None => Ok(Output::Stdout { gzip: compress }),
            Some(p) if p == Path::new("-") => Ok(Output::Stdout { gzip: compress }),
            Some(path) => {
                if fs::symlink_metadata(path).is_ok() && !force {
                    bail!(
                        "{} exists; give another name, or --force to replace it",
                        path.display()
                    );
                }
                Ok(Output::File {
                    path: path.to_path_buf(),
                    force,
                })
            }
        }
    }
}

/// The process's umask.
fn umask() -> u32 {
    // SAFETY: umask only swaps a number; it is put back at once.
    let mask = unsafe { libc::umask(0o022) };
    unsafe { libc::umask(mask) };
    mask as u32
}

fn gzip_name(path: &Path) -> bool {
    let name = path.to_string_lossy();
    name.ends_with(".gz") || name.ends_with(".tgz")
}

/// What `tar` wrote.
pub struct TarSummary {
    name: ImageName,
    to: String,
    entries: usize,
    objects: usize,
    bytes: u64,
}

impl std::fmt::Display for TarSummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "wrote {} to {}: {} paths, {} objects verified ({})",
            self.name,
            self.to,
            self.entries,
            self.objects,
            crate::human_bytes(self.bytes)
        )
    }
}

/// Writes image `name` as an archive to `output`.
pub async fn tar(bus: &Bus, name: &ImageName, output: Output) -> Result<TarSummary> {
    bus.ensure_image_streams().await?;
    let record = bus.image_record(name).await?;
    let store = crate::inspect::store_for(bus, &record).await?;
    let manifest = store
        .manifest(record.manifest)
        .await
        .with_context(|| format!("image {name}: manifest"))?
        .manifest;
    let (to, written) = match output {
        Output::Stdout { gzip } => {
            let stdout = io::BufWriter::with_capacity(1 << 20, io::stdout());
            let written = write_archive(&store, &manifest, stdout, gzip).await?;
            ("standard output".to_string(), written)
        }
        Output::File { path, force } => {
            let parent = match path.parent() {
                Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
                _ => PathBuf::from("."),
            };
            let tmp = tempfile::Builder::new()
                .prefix(".imagetool-tar-")
                .tempfile_in(&parent)
                .with_context(|| format!("cannot write in {}", parent.display()))?;
            // The mode a new file gets, not the temporary file's 0600.
            tmp.as_file()
                .set_permissions(fs::Permissions::from_mode(0o666 & !umask()))?;
            let file = io::BufWriter::with_capacity(1 << 20, tmp.as_file().try_clone()?);
            let written = write_archive(&store, &manifest, file, gzip_name(&path)).await?;
            tmp.as_file().sync_all()?;
            let persisted = if force {
                tmp.persist(&path)
            } else {
                tmp.persist_noclobber(&path)
            };
            persisted
                .map_err(|e| anyhow::anyhow!("cannot write {}: {}", path.display(), e.error))?;
            (path.display().to_string(), written)
        }
    };
    Ok(TarSummary {
        name: name.clone(),
        to,
        entries: manifest.entries.len(),
        objects: written.0,
        bytes: written.1,
    })
}

/// Writes the archive to `out` (gzip-compressed if `gzip`); returns the
/// objects read and their bytes.
///
/// Compression runs on threads of its own, one per CPU, each taking
/// GZIP_BLOCK bytes at a time, while objects are still being read: one
/// gzip stream at the default level, as `gzip` writes, in the time of
/// `gzip` divided by the CPUs.
async fn write_archive(
    store: &Store,
    manifest: &Manifest,
    out: impl Write + Send + 'static,
    gzip: bool,
) -> Result<(usize, u64)> {
    if gzip {
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
        let gz: ParCompress<Gzip, _> = ParCompressBuilder::new()
            .num_threads(threads)
            .and_then(|b| b.buffer_size(GZIP_BLOCK))
            .map_err(|e| anyhow::anyhow!("cannot start compressing: {e}"))?
            .compression_level(gzp::Compression::default())
            .from_writer(out);
        let (written, mut gz) = write_entries(store, manifest, gz).await?;
        gz.finish()
            .map_err(|e| anyhow::anyhow!("cannot compress the archive: {e}"))?
            .flush()?;
        Ok(written)
    } else {
        let (written, mut out) = write_entries(store, manifest, out).await?;
        out.flush()?;
        Ok(written)
    }
}

/// Writes every entry in manifest order, reading objects a few ahead.
async fn write_entries<W: Write>(
    store: &Store,
    manifest: &Manifest,
    out: W,
) -> Result<((usize, u64), W)> {
    let mut builder = tar::Builder::new(out);
    builder.mode(tar::HeaderMode::Complete);
    let mut contents = futures::stream::iter(&manifest.entries)
        .map(|entry| async move {
            match &entry.inode {
                Inode::File { object, size, .. } => store
                    .get_sized(*object, *size)
                    .await
                    .map(Some)
                    .with_context(|| format!("{}: object {object}", entry.path)),
                _ => Ok(None),
            }
        })
        .buffered(READ_AHEAD);
    let (mut objects, mut bytes) = (0, 0);
    for entry in &manifest.entries {
        let content = contents.next().await.expect("one a entry")?;
        if let Some(content) = &content {
            objects += 1;
            bytes += content.len() as u64;
        }
        append(&mut builder, entry, content.as_deref())
            .with_context(|| format!("cannot write {} into the archive", entry.path))?;
    }
    Ok(((objects, bytes), builder.into_inner()?))
}

/// The archive's name for an image path: `./` for the root, else the
/// path without its leading `/` (directories end in `/`).
fn archive_name(entry: &Entry) -> String {
    match (&entry.inode, entry.path.as_str()) {
        (_, "/") => "./".to_string(),
        (Inode::Dir { .. }, p) => format!("{}/", &p[1..]),
        (_, p) => p[1..].to_string(),
    }
}

/// Appends one entry.
fn append<W: Write>(
    builder: &mut tar::Builder<W>,
    entry: &Entry,
    content: Option<&[u8]>,
) -> io::Result<()> {
    let name = archive_name(entry);
    let mut header = tar::Header::new_gnu();
    header.set_size(0);
    header.set_mtime(0);
    // A hard link's owner is its target's; the fields still need numbers.
    let (uid, gid) = entry.inode.owner().unwrap_or((0, 0));
    {
        header.set_uid(u64::from(uid));
        header.set_gid(u64::from(gid));
    }
    header.set_mode(entry.inode.mode().unwrap_or(0o777));
    if let Some((secs, nanos)) = entry.inode.mtime() {
        header.set_mtime(secs.max(0) as u64);
        if nanos != 0 || secs < 0 {
            let exact = pax_time(secs, nanos);
            builder.append_pax_extensions([("mtime", exact.as_bytes())])?;
        }
    }
    match &entry.inode {
        Inode::Dir { .. } => {
            header.set_entry_type(tar::EntryType::Directory);
            builder.append_data(&mut header, name, io::empty())
        }
        Inode::File { size, .. } => {
            header.set_entry_type(tar::EntryType::Regular);
            header.set_size(*size);
            builder.append_data(&mut header, name, content.unwrap_or_default())
        }
        Inode::Symlink { target, .. } => {
            header.set_entry_type(tar::EntryType::Symlink);
            // The target exactly as it is (`append_link` would tidy `a//b`
            // and `./a`, and so change the image), unless it is too long
            // for the header, where only the long-name entry holds it.
            if target.len() < header.as_old().linkname.len() {
                header.set_link_name_literal(target.as_bytes())?;
                builder.append_data(&mut header, name, io::empty())
            } else {
                builder.append_link(&mut header, name, target)
            }
        }
        Inode::Link { target } => {
            header.set_entry_type(tar::EntryType::Link);
            builder.append_link(&mut header, name, &target[1..])
        }
        Inode::Char { rdev, .. } | Inode::Block { rdev, .. } => {
            header.set_entry_type(if matches!(entry.inode, Inode::Char { .. }) {
                tar::EntryType::Char
            } else {
                tar::EntryType::Block
            });
            header.set_device_major(libc::major(*rdev as libc::dev_t))?;
            header.set_device_minor(libc::minor(*rdev as libc::dev_t))?;
            builder.append_data(&mut header, name, io::empty())
        }
        Inode::Fifo { .. } => {
            header.set_entry_type(tar::EntryType::Fifo);
            builder.append_data(&mut header, name, io::empty())
        }
    }
}

/// An mtime as a pax header gives it: `SECONDS.NANOSECONDS`, negative
/// times counted down from 1970 (`-1.500000000` is (-2 s, 0.5 s)).
fn pax_time(secs: i64, nanos: u32) -> String {
    if secs < 0 && nanos > 0 {
        format!("-{}.{:09}", -(secs + 1), 1_000_000_000 - nanos)
    } else {
        format!("{secs}.{nanos:09}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pax_times_read_back_as_written() {
        assert_eq!(pax_time(17, 5), "17.000000005");
        assert_eq!(pax_time(-2, 500_000_000), "-1.500000000");
        assert_eq!(pax_time(-3, 0), "-3.000000000");
    }

    #[test]
    fn names_in_the_archive() {
        let dir = Inode::Dir {
            mode: 0o755,
            uid: 0,
            gid: 0,
        };
        let entry = |path: &str, inode: &Inode| Entry {
            path: path.into(),
            inode: inode.clone(),
        };
        assert_eq!(archive_name(&entry("/", &dir)), "./");
        assert_eq!(archive_name(&entry("/etc", &dir)), "etc/");
        let link = Inode::Link {
            target: "/a".into(),
        };
        assert_eq!(archive_name(&entry("/etc/b", &link)), "etc/b");
    }
}
