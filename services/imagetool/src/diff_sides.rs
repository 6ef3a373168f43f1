//! The two sides of `diff`: each an image, or a local source (a directory,
//! `.tar` or `.tar.gz`/`.tgz`) scanned into a manifest on the spot, with
//! nothing uploaded, so a pipeline can see what an `add` would change
//! before it makes the image.
//!
//! An argument is a local source when it exists on disk or starts with
//! `/`, `./` or `../`; otherwise it is an image name. A name ending in
//! `.tar`, `.tar.gz` or `.tgz` is both a valid image name and an archive's
//! usual name: an existing file wins, and if there is neither the file nor
//! the image, the error says so. When one side is an image and the other local, the
//! image's filter is applied to the local scan, as `add` would apply it,
//! so that a tree diffed against the image made from it shows nothing.
//! A directory is scanned through the hash cache `add` uses.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use dom_bus::Bus;
use dom_model::{Filter, ImageName, Manifest};
use dom_scan::{Counters, HashCache};

use crate::source::{self, SourceOptions};

/// One side of a diff.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Side {
    Image(ImageName),
    Local(PathBuf),
}

impl Side {
    /// Tells a local source from an image name, by the rule above.
    pub fn parse(arg: &str) -> Result<Self> {
        let path = Path::new(arg);
        let looks_local = arg.starts_with('/') || arg.starts_with("./") || arg.starts_with("../");
        if path.exists() {
            return Ok(Self::Local(path.to_path_buf()));
        }
        if looks_local {
            bail!("{arg}: no such directory or archive");
        }
        match ImageName::parse(arg) {
            Ok(name) => Ok(Self::Image(name)),
            Err(e) => {
                bail!("{arg:?} is neither an image name ({e}) nor a directory or archive on disk")
            }
        }
    }

    pub fn is_local(&self) -> bool {
        matches!(self, Self::Local(_))
    }
}

/// The manifests of both sides, for [`crate::inspect::write_changes`].
/// `bus` is `None` when both sides are local.
pub async fn manifests(
    bus: Option<&Bus>,
    left: &Side,
    right: &Side,
) -> Result<(Manifest, Manifest)> {
    let mut images = Vec::new();
    for side in [left, right] {
        if let Side::Image(name) = side {
            let bus = bus.expect("a bus for an image side");
            let loaded = crate::inspect::load(bus, name).await;
            let archive_like = [".tar", ".tar.gz", ".tgz"]
                .iter()
                .any(|ext| name.as_str().ends_with(ext));
            images.push(Some(match loaded {
                Err(e) if archive_like => {
                    bail!("{name} is neither an archive on disk nor an image: {e:#}")
                }
                loaded => loaded?,
            }));
        } else {
            images.push(None);
        }
    }
    // The filter of the image side, if exactly one side is an image.
    let filter = match (&images[0], &images[1]) {
        (Some((record, _)), None) | (None, Some((record, _))) => record
            .filter
            .as_ref()
            .map(|lines| Filter::new(lines))
            .transpose()
            .with_context(|| format!("image {}: filter", record.name))?,
        _ => None,
    };
    let mut manifests = Vec::with_capacity(2);
    for (side, image) in [left, right].into_iter().zip(images) {
        manifests.push(match (side, image) {
            (_, Some((_, manifest))) => manifest,
            (Side::Local(path), None) => scan(path, filter.clone()).await?,
            (Side::Image(_), None) => unreachable!("image sides are loaded"),
        });
    }
    let right = manifests.pop().expect("two sides");
    let left = manifests.pop().expect("two sides");
    Ok((left, right))
}

/// Scans a local source, uploading nothing.
async fn scan(path: &Path, filter: Option<Filter>) -> Result<Manifest> {
    let cache_path = crate::add::default_hash_cache();
    let path = path.to_path_buf();
    tokio::task::spawn_blocking(move || {
        let cache = cache_path.as_deref().map(|p| Arc::new(HashCache::load(p)));
        let options = SourceOptions {
            filter: filter.unwrap_or_else(Filter::empty),
            cache: cache.clone(),
            sink: None,
        };
        let manifest = source::scan(&path, options, &Counters::default())?;
        if let (Some(cache), Some(cache_path)) = (cache, cache_path) {
            if let Err(e) = cache.save(&cache_path) {
                tracing::warn!(path = %cache_path.display(), error = %e, "cannot save hash cache");
            }
        }
        anyhow::Ok(manifest)
    })
    .await
    .context("scan stopped")?
}

/// The original's `diff TOOL LEFT RIGHT`: each side's listing, as `show`
/// prints it, in a temporary file, and TOOL (split on spaces: `diff -u`)
/// run on the two; its exit status is returned.
pub fn run_tool(tool: &str, left: &Manifest, right: &Manifest) -> Result<ExitCode> {
    let mut words = tool.split_whitespace();
    let Some(program) = words.next() else {
        bail!("the diff tool is empty; give a program such as diff");
    };
    let dir = tempfile::tempdir().context("cannot make a temporary directory")?;
    let mut files = Vec::new();
    for (side, manifest) in [("left", left), ("right", right)] {
        let path = dir.path().join(side);
        let mut text = String::new();
        for line in dom_model::manifest::listing::lines(manifest) {
            text.push_str(&line);
            text.push('\n');
        }
        std::fs::write(&path, text).with_context(|| format!("cannot write {}", path.display()))?;
        files.push(path);
    }
    let status = std::process::Command::new(program)
        .args(words)
        .args(&files)
        .status()
        .with_context(|| format!("cannot run the diff tool {program}"))?;
    Ok(match status.code() {
        Some(code) => ExitCode::from(u8::try_from(code).unwrap_or(1)),
        None => ExitCode::FAILURE,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_and_archives_are_local_names_are_images() {
        let dir = tempfile::tempdir().unwrap();
        let here = dir.path().to_str().unwrap();
        assert_eq!(Side::parse(here).unwrap(), Side::Local(here.into()));
        assert_eq!(
            Side::parse("image.0").unwrap(),
            Side::Image(ImageName::parse("image.0").unwrap())
        );
        assert_eq!(
            Side::parse("web/prod/1").unwrap(),
            Side::Image(ImageName::parse("web/prod/1").unwrap())
        );
        assert_eq!(
            Side::parse("release.tar").unwrap(),
            Side::Image(ImageName::parse("release.tar").unwrap())
        );
        for missing in ["./no-such-tree", "/no/such/tree", "../nope", "./x.tar"] {
            let err = Side::parse(missing).unwrap_err().to_string();
            assert_eq!(err, format!("{missing}: no such directory or archive"));
        }
        let err = Side::parse("bad name!").unwrap_err().to_string();
        assert!(err.contains("neither an image name"), "{err}");
    }
}
