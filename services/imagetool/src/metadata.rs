//! An image's build metadata and tags, as given on the command line.
//!
//! [`MetadataArgs`] are the flags every image-making command takes (`add`,
//! `copy`): `-tag KEY=VALUE`, `-buildCommitId`, `-buildGitUrl`,
//! `-releaseNotes FILE`, `-buildLog FILE`. [`MetadataArgs::parse`] checks
//! them and reads the two files before anything is sent; the files become
//! objects in the image's store, uploaded before its record is published,
//! and the record names them by id.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use bytes::Bytes;
use clap::Args;
use dom_model::image::{parse_tag, Metadata};
use dom_model::ObjectId;
use dom_store::{ContentStore, Store};

/// Largest release notes or build log accepted.
pub const MAX_FILE_BYTES: u64 = 64 << 20;

/// Build metadata and tags for a new image.
#[derive(Clone, Debug, Default, Args)]
pub struct MetadataArgs {
    /// Tag the image KEY=VALUE (repeatable; each key once).
    #[arg(long = "tag", value_name = "KEY=VALUE")]
    pub tags: Vec<String>,
    /// The commit the image was built from.
    #[arg(long = "buildCommitId", alias = "build-commit-id", value_name = "ID")]
    pub build_commit_id: Option<String>,
    /// The repository the image was built from.
    #[arg(long = "buildGitUrl", alias = "build-git-url", value_name = "URL")]
    pub build_git_url: Option<String>,
    /// A file of release notes, stored with the image
    /// (`show-metadata NAME --release-notes` prints it).
    #[arg(long = "releaseNotes", alias = "release-notes", value_name = "FILE")]
    pub release_notes: Option<PathBuf>,
    /// The build's log, stored with the image (`show-metadata NAME
    /// --build-log` prints it).
    #[arg(long = "buildLog", alias = "build-log", value_name = "FILE")]
    pub build_log: Option<PathBuf>,
}

/// Checked metadata: what goes into the record, and the objects it names
/// that have to be stored first.
#[derive(Clone, Debug, Default)]
pub struct MetadataRequest {
    /// Only what was given; [`MetadataRequest::over`] adds it to a base.
    pub metadata: Metadata,
    /// The release notes and build log, by id.
    pub files: Vec<(ObjectId, Bytes)>,
}

impl MetadataArgs {
    /// Checks the flags and reads the files. A malformed or repeated tag,
    /// a build commit or URL that no record may hold, or a file that
    /// cannot be read is one error, before anything is sent.
    pub fn parse(&self) -> Result<MetadataRequest> {
        let mut metadata = Metadata {
            tags: parse_tags(&self.tags)?.into_iter().collect(),
            build_commit_id: self.build_commit_id.clone(),
            build_git_url: self.build_git_url.clone(),
            ..Metadata::default()
        };
        metadata
            .validate()
            .map_err(|why| anyhow::anyhow!("{why}"))?;
        let mut files = Vec::new();
        for (flag, path, slot) in [
            (
                "-releaseNotes",
                &self.release_notes,
                &mut metadata.release_notes,
            ),
            ("-buildLog", &self.build_log, &mut metadata.build_log),
        ] {
            if let Some(path) = path {
                let content = read_file(flag, path)?;
                let id = ObjectId::of(&content);
                *slot = Some(id);
                files.push((id, content));
            }
        }
        Ok(MetadataRequest { metadata, files })
    }
}

/// Parses `KEY=VALUE` tags; a key given twice is refused.
pub fn parse_tags(texts: &[String]) -> Result<Vec<(String, String)>> {
    let mut seen = BTreeMap::new();
    let mut out = Vec::new();
    for text in texts {
        let (key, value) = parse_tag(text)?;
        if seen.insert(key.clone(), ()).is_some() {
            bail!("tag key {key:?} is given twice; give each key once");
        }
        out.push((key, value));
    }
    Ok(out)
}

fn read_file(flag: &str, path: &Path) -> Result<Bytes> {
    let size = std::fs::metadata(path)
        .with_context(|| format!("{flag}: cannot read {}", path.display()))?
        .len();
    if size > MAX_FILE_BYTES {
        bail!(
            "{flag}: {} is {} long; at most {} is stored with an image",
            path.display(),
            crate::human_bytes(size),
            crate::human_bytes(MAX_FILE_BYTES)
        );
    }
    let content =
        std::fs::read(path).with_context(|| format!("{flag}: cannot read {}", path.display()))?;
    Ok(Bytes::from(content))
}

impl MetadataRequest {
    /// `base` with this request's tags added (replacing those of the same
    /// key) and its other fields, where given, in place of `base`'s.
    pub fn over(&self, base: &Metadata) -> Result<Metadata> {
        let given = &self.metadata;
        let mut out = base.clone();
        out.tags
            .extend(given.tags.iter().map(|(k, v)| (k.clone(), v.clone())));
        for (slot, value) in [
            (&mut out.build_commit_id, &given.build_commit_id),
            (&mut out.build_git_url, &given.build_git_url),
        ] {
            if value.is_some() {
                slot.clone_from(value);
            }
        }
        for (slot, value) in [
            (&mut out.release_notes, given.release_notes),
            (&mut out.build_log, given.build_log),
        ] {
            if value.is_some() {
                *slot = value;
            }
        }
        out.validate().map_err(|why| anyhow::anyhow!("{why}"))?;
        Ok(out)
    }

    /// Stores the files `existing` lacks; returns how many it stored.
    pub async fn upload(&self, store: &Store, existing: &HashSet<ObjectId>) -> Result<u64> {
        let mut stored = 0;
        let mut done = HashSet::new();
        for (id, content) in &self.files {
            if existing.contains(id) || !done.insert(*id) {
                continue;
            }
            store
                .put(*id, content.clone())
                .await
                .with_context(|| format!("storing object {id}"))?;
            stored += 1;
        }
        Ok(stored)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(tags: &[&str]) -> MetadataArgs {
        MetadataArgs {
            tags: tags.iter().map(|t| t.to_string()).collect(),
            ..MetadataArgs::default()
        }
    }

    #[test]
    fn tags_parse_and_a_repeated_key_is_refused() {
        let request = args(&["stage=prod", "team=web"]).parse().unwrap();
        assert_eq!(request.metadata.tags.len(), 2);
        assert!(request.files.is_empty());
        let err = args(&["a=1", "a=2"]).parse().unwrap_err().to_string();
        assert_eq!(err, r#"tag key "a" is given twice; give each key once"#);
        let err = args(&["novalue"]).parse().unwrap_err().to_string();
        assert_eq!(err, r#"tag "novalue" is not KEY=VALUE"#);
    }

    #[test]
    fn given_fields_override_and_tags_merge() {
        let mut base = Metadata::default();
        base.tags.insert("stage".into(), "qa".into());
        base.tags.insert("team".into(), "web".into());
        base.build_commit_id = Some("abc".into());
        let request = args(&["stage=prod"]).parse().unwrap();
        let out = request.over(&base).unwrap();
        assert_eq!(out.tags["stage"], "prod");
        assert_eq!(out.tags["team"], "web");
        assert_eq!(out.build_commit_id.as_deref(), Some("abc"));
    }

    #[test]
    fn a_missing_file_is_named() {
        let request = MetadataArgs {
            release_notes: Some("/nonexistent/notes".into()),
            ..MetadataArgs::default()
        };
        let err = format!("{:#}", request.parse().unwrap_err());
        assert!(
            err.starts_with("-releaseNotes: cannot read /nonexistent/notes"),
            "{err}"
        );
    }
}
