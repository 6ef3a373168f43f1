//! The release pipelines' commands — show-metadata, tag,
//! find-latest-image and copy — with their arguments checked before
//! anything is sent, and run.

use anyhow::Result;
use dom_bus::Bus;
use dom_model::ImageName;

use crate::cli::{Cli, Command};
use crate::{copy, find_latest, show_metadata, tag};

/// The release pipelines' commands, their inputs checked before
/// connecting.
pub enum Release {
    ShowMetadata(ImageName, show_metadata::Shown),
    Tag(tag::TagRequest),
    FindLatest(find_latest::Wanted),
    Copy(Box<copy::CopyRequest>),
}

impl Release {
    /// The command's checked arguments; `None` for other commands.
    pub fn parse(cli: &Cli) -> Result<Option<Self>> {
        Ok(Some(match &cli.command {
            Command::ShowMetadata {
                name,
                json,
                release_notes,
                build_log,
            } => {
                use show_metadata::Shown;
                let shown = match (json, release_notes, build_log) {
                    (true, _, _) => Shown::Json,
                    (_, true, _) => Shown::ReleaseNotes,
                    (_, _, true) => Shown::BuildLog,
                    _ => Shown::Lines,
                };
                Release::ShowMetadata(ImageName::parse(name)?, shown)
            }
            Command::Tag { name, tags, delete } => {
                Release::Tag(tag::TagRequest::parse(name, tags, delete)?)
            }
            Command::FindLatestImage {
                prefix,
                tags,
                build_commit_id,
                ignore_expiring,
            } => Release::FindLatest(find_latest::Wanted::parse(
                prefix,
                tags,
                build_commit_id.as_deref(),
                *ignore_expiring,
            )?),
            Command::Copy {
                old,
                new,
                filter,
                triggers,
                metadata,
            } => Release::Copy(Box::new(copy::CopyRequest::parse(
                old,
                new,
                filter.as_ref(),
                triggers.as_ref(),
                metadata,
                cli.expires_in,
            )?)),
            _ => return Ok(None),
        }))
    }

    /// Runs the command, printing to `out`.
    pub async fn run(
        self,
        bus: &Bus,
        show_progress: bool,
        out: &mut impl std::io::Write,
    ) -> Result<()> {
        match self {
            Release::ShowMetadata(name, shown) => {
                show_metadata::show_metadata(bus, &name, shown, out).await
            }
            Release::Tag(request) => tag::tag(bus, &request, out).await,
            Release::FindLatest(wanted) => {
                let name = find_latest::find_latest_image(bus, &wanted).await?;
                writeln!(out, "{name}")?;
                Ok(())
            }
            Release::Copy(request) => {
                let summary = copy::copy(bus, &request, show_progress).await?;
                writeln!(out, "{summary}")?;
                Ok(())
            }
        }
    }
}
