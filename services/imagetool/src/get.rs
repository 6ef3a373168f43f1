//! `imagetool get`: unpack an image into a directory, verifying every
//! object against its SHA-512 before it is written.

use std::collections::HashMap;
use std::ffi::CString;
use std::fs;
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, UNIX_EPOCH};

use anyhow::{bail, Context, Result};
use dom_bus::Bus;
use dom_model::{ImageName, Inode, Manifest, ObjectId};
use dom_store::{ContentStore, Store};
use futures::{StreamExt, TryStreamExt};

const FETCH_CONCURRENCY: usize = 16;

pub struct GetSummary {
    name: ImageName,
    dir: PathBuf,
    inodes: usize,
    objects: usize,
    elapsed: Duration,
    owners_kept: bool,
}

impl std::fmt::Display for GetSummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "unpacked {} into {}: {} paths, {} objects verified, in {:.2} s{}",
            self.name,
            self.dir.display(),
            self.inodes,
            self.objects,
            self.elapsed.as_secs_f64(),
            if self.owners_kept {
                ""
            } else {
                " (owners not set: not running as root)"
            }
        )
    }
}

fn under(dir: &Path, image_path: &str) -> PathBuf {
    dir.join(image_path.trim_start_matches('/'))
}

pub async fn get(bus: &Bus, name: &ImageName, dir: &Path) -> Result<GetSummary> {
    let started = Instant::now();
    refuse_unless_new_or_empty(dir)?;
    let (record, manifest) = crate::inspect::load(bus, name).await?;
    fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let as_root = unsafe { libc::geteuid() } == 0;

    // Directories first, writable by us until the end.
    for entry in &manifest.entries {
        if let Inode::Dir { .. } = entry.inode {
            let p = under(dir, &entry.path);
            fs::create_dir_all(&p).with_context(|| format!("cannot create {}", p.display()))?;
            fs::set_permissions(&p, fs::Permissions::from_mode(0o700))?;
        }
    }
    let store = crate::inspect::store_for(bus, &record).await?;
    let objects = write_files(&store, &manifest, dir).await?;
    for entry in &manifest.entries {
        make_special(dir, entry)?;
    }
    // Owners, then modes and mtimes; directories last, deepest first, so a
    // read-only directory does not stop its own contents being written.
    for entry in manifest.entries.iter().rev() {
        set_metadata(dir, entry, as_root)?;
    }
    Ok(GetSummary {
        name: name.clone(),
        dir: dir.to_path_buf(),
        inodes: manifest.entries.len(),
        objects,
        elapsed: started.elapsed(),
        owners_kept: as_root,
    })
}

/// Refuses to unpack into anything but a new or empty directory.
fn refuse_unless_new_or_empty(dir: &Path) -> Result<()> {
    if fs::metadata(dir).is_ok_and(|meta| !meta.is_dir()) {
        bail!(
            "{} is not a directory; give a new or empty directory",
            dir.display()
        );
    }
    if let Ok(mut entries) = fs::read_dir(dir) {
        if entries.next().is_some() {
            bail!(
                "{} is not empty; give a new or empty directory",
                dir.display()
            );
        }
    }
    Ok(())
}

/// Writes the regular files: each object fetched once, verified, then
/// written at every path that carries it (to a temporary name, then
/// renamed). Returns how many objects it fetched.
async fn write_files(store: &Store, manifest: &Manifest, dir: &Path) -> Result<usize> {
    let mut by_object: HashMap<ObjectId, Vec<&dom_model::Entry>> = HashMap::new();
    for entry in &manifest.entries {
        if let Inode::File { object, .. } = &entry.inode {
            by_object.entry(*object).or_default().push(entry);
        }
    }
    let objects = by_object.len();
    futures::stream::iter(by_object)
        .map(|(id, entries)| {
            let store = store.clone();
            async move {
                let size = match entries.first().map(|e| &e.inode) {
                    Some(Inode::File { size, .. }) => *size,
                    _ => unreachable!("only files are grouped by object"),
                };
                let content = store.get_sized(id, size).await?;
                let writes: Vec<(PathBuf, Inode)> = entries
                    .iter()
                    .map(|e| (under(dir, &e.path), e.inode.clone()))
                    .collect();
                tokio::task::spawn_blocking(move || -> Result<()> {
                    for (path, inode) in writes {
                        write_file(&path, &content, &inode)?;
                    }
                    Ok(())
                })
                .await??;
                anyhow::Ok(())
            }
        })
        .buffer_unordered(FETCH_CONCURRENCY)
        .try_collect::<()>()
        .await?;
    Ok(objects)
}

/// Makes a symlink, hard link or device node; other entries are made
/// elsewhere.
fn make_special(dir: &Path, entry: &dom_model::Entry) -> Result<()> {
    let p = under(dir, &entry.path);
    let fail =
        |what: &str, e: std::io::Error| anyhow::anyhow!("cannot {what} {}: {e}", p.display());
    match &entry.inode {
        Inode::Symlink { target, .. } => {
            std::os::unix::fs::symlink(target, &p).map_err(|e| fail("make symlink", e))?
        }
        Inode::Link { target } => {
            fs::hard_link(under(dir, target), &p).map_err(|e| fail("make hard link", e))?
        }
        Inode::Char { mode, rdev, .. } => mknod(&p, libc::S_IFCHR | mode, *rdev)?,
        Inode::Block { mode, rdev, .. } => mknod(&p, libc::S_IFBLK | mode, *rdev)?,
        Inode::Fifo { mode, .. } => mknod(&p, libc::S_IFIFO | mode, 0)?,
        _ => {}
    }
    Ok(())
}

/// Sets an entry's owner (as root), mode and mtime (a file's was set when
/// it was written).
fn set_metadata(dir: &Path, entry: &dom_model::Entry, as_root: bool) -> Result<()> {
    let p = under(dir, &entry.path);
    if as_root {
        if let Some((uid, gid)) = entry.inode.owner() {
            std::os::unix::fs::lchown(&p, Some(uid), Some(gid))
                .with_context(|| format!("cannot chown {}", p.display()))?;
        }
    }
    match &entry.inode {
        Inode::Dir { mode, .. }
        | Inode::File { mode, .. }
        | Inode::Char { mode, .. }
        | Inode::Block { mode, .. }
        | Inode::Fifo { mode, .. } => fs::set_permissions(&p, fs::Permissions::from_mode(*mode))?,
        _ => {}
    }
    if let (Some((secs, nanos)), false) = (
        entry.inode.mtime(),
        matches!(entry.inode, Inode::File { .. }),
    ) {
        set_mtime(&p, secs, nanos)?;
    }
    Ok(())
}

fn write_file(path: &Path, content: &[u8], inode: &Inode) -> Result<()> {
    let Inode::File {
        mode,
        mtime,
        mtime_ns,
        ..
    } = inode
    else {
        return Ok(());
    };
    let parent = path.parent().unwrap_or(Path::new("."));
    let mut tmp = tempfile::Builder::new()
        .prefix(".imagetool-")
        .tempfile_in(parent)
        .with_context(|| format!("cannot write in {}", parent.display()))?;
    tmp.write_all(content)?;
    tmp.as_file()
        .set_permissions(fs::Permissions::from_mode(*mode))?;
    tmp.as_file().set_modified(system_time(*mtime, *mtime_ns))?;
    tmp.persist(path)
        .map_err(|e| anyhow::anyhow!("cannot write {}: {}", path.display(), e.error))?;
    Ok(())
}

fn system_time(secs: i64, nanos: u32) -> std::time::SystemTime {
    if secs >= 0 {
        UNIX_EPOCH + Duration::new(secs as u64, nanos)
    } else {
        UNIX_EPOCH - Duration::from_secs(secs.unsigned_abs()) + Duration::from_nanos(nanos as u64)
    }
}

fn c_path(path: &Path) -> Result<CString> {
    CString::new(path.as_os_str().as_bytes()).context("path contains NUL")
}

fn mknod(path: &Path, mode: u32, rdev: u64) -> Result<()> {
    let c = c_path(path)?;
    // SAFETY: c is a valid NUL-terminated path.
    let rc = unsafe { libc::mknod(c.as_ptr(), mode as libc::mode_t, rdev as libc::dev_t) };
    if rc != 0 {
        bail!(
            "cannot make device or fifo {}: {}",
            path.display(),
            std::io::Error::last_os_error()
        );
    }
    Ok(())
}

fn set_mtime(path: &Path, secs: i64, nanos: u32) -> Result<()> {
    let c = c_path(path)?;
    let times = [
        libc::timespec {
            tv_sec: 0,
            tv_nsec: libc::UTIME_OMIT,
        },
        libc::timespec {
            tv_sec: secs as libc::time_t,
            tv_nsec: nanos as libc::c_long,
        },
    ];
    // SAFETY: c is a valid path and times has two entries.
    let rc = unsafe {
        libc::utimensat(
            libc::AT_FDCWD,
            c.as_ptr(),
            times.as_ptr(),
            libc::AT_SYMLINK_NOFOLLOW,
        )
    };
    if rc != 0 {
        bail!(
            "cannot set mtime of {}: {}",
            path.display(),
            std::io::Error::last_os_error()
        );
    }
    Ok(())
}
