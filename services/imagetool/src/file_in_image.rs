//! `get-file-in-image`: one regular file of an image, fetched and verified
//! against its SHA-512, written to a local file or to stdout.
//!
//! A local file is written to a temporary name beside it and renamed, so
//! that a reader never sees half of it and a failed fetch leaves nothing
//! behind. An existing file is kept unless `--force` says to replace it:
//! a pipeline that writes to the wrong place should fail, not clobber.

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use dom_bus::Bus;
use dom_model::{ImageName, Inode, Manifest};
use dom_store::ContentStore;

/// Where the file goes.
pub enum Destination {
    Stdout,
    File { path: PathBuf, force: bool },
}

impl Destination {
    /// Checks OUT before anything is fetched: it must not exist unless
    /// `force`, and may not be a directory.
    pub fn parse(out: Option<&Path>, force: bool) -> Result<Self> {
        let Some(path) = out else {
            return Ok(Self::Stdout);
        };
        match std::fs::symlink_metadata(path) {
            Ok(meta) if meta.is_dir() => {
                bail!("{} is a directory; give a file name", path.display())
            }
            Ok(_) if !force => bail!("{} exists; give --force to replace it", path.display()),
            _ => {}
        }
        Ok(Self::File {
            path: path.to_path_buf(),
            force,
        })
    }
}

/// The regular file at `path` in `manifest` (following a hard link): its
/// mode, size and object.
pub fn regular_file<'a>(name: &ImageName, manifest: &'a Manifest, path: &str) -> Result<&'a Inode> {
    let entry = crate::show_inode::entry(name, manifest, path)?;
    let inode = manifest.resolve(entry);
    if !matches!(inode, Inode::File { .. }) {
        bail!(
            "{path} in image {name} is a {}, not a regular file",
            crate::show_inode::kind(inode)
        );
    }
    Ok(inode)
}

/// Fetches the file and writes it where `destination` says.
pub async fn get_file_in_image(
    bus: &Bus,
    name: &ImageName,
    path: &str,
    destination: Destination,
    out: &mut impl Write,
) -> Result<()> {
    let (record, manifest) = crate::inspect::load(bus, name).await?;
    let Inode::File {
        object, size, mode, ..
    } = regular_file(name, &manifest, path)?
    else {
        unreachable!("regular_file returns files only");
    };
    let store = crate::inspect::store_for(bus, &record).await?;
    let content = store
        .get_sized(*object, *size)
        .await
        .with_context(|| format!("image {name}: {path}"))?;
    match destination {
        Destination::Stdout => {
            out.write_all(&content)?;
            out.flush()?;
        }
        Destination::File { path: to, force } => write_local(&to, &content, *mode, force)?,
    }
    Ok(())
}

/// Writes `content` to `to` through a temporary file in the same
/// directory. The permission bits are the image's, without setuid,
/// setgid or sticky: a copy for reading is not a program to install.
pub(crate) fn write_local(to: &Path, content: &[u8], mode: u32, force: bool) -> Result<()> {
    let dir = match to.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let mut tmp = tempfile::Builder::new()
        .prefix(".imagetool-")
        .tempfile_in(dir)
        .with_context(|| format!("cannot write in {}", dir.display()))?;
    tmp.write_all(content)
        .with_context(|| format!("cannot write {}", to.display()))?;
    tmp.as_file()
        .set_permissions(std::fs::Permissions::from_mode(mode & 0o777))?;
    if force {
        tmp.persist(to)
            .map_err(|e| anyhow::anyhow!("cannot write {}: {}", to.display(), e.error))?;
    } else {
        // Someone may have made it since it was checked.
        tmp.persist_noclobber(to).map_err(|e| {
            anyhow::anyhow!(
                "cannot write {}: {}; give --force to replace it",
                to.display(),
                e.error
            )
        })?;
    }
    Ok(())
}
