//! What the inspection commands do before connecting: the commands that
//! need no server at all (merge-filters, merge-triggers, match-triggers
//! with a triggers file, diff of two local sides) run here, and the others
//! check their local inputs (the OUT of get-file-in-image, the sides of
//! diff) so that bad input fails before anything is sent.

use std::io::Write;

use anyhow::Result;
use dom_model::ImageName;

use crate::cli::Command;
use crate::{diff_sides, file_in_image, inspect, match_triggers, merge};

/// What the inspection commands checked before connecting.
pub enum Inspection {
    /// The two sides, and the original's diff TOOL if one was given.
    Diff(diff_sides::Side, diff_sides::Side, Option<String>),
    File(file_in_image::Destination),
    Triggers(match_triggers::TriggersFrom),
    /// The original's `match-triggers IMAGE TRIGGERSFILE`: which of the
    /// file's triggers the image's paths fire.
    TriggersInImage(ImageName, dom_model::Triggers),
}

/// Whether the command is done, or needs the server (with what it checked).
pub enum Prepared {
    Done,
    /// Done, exiting with this status (the original's diff TOOL's).
    Exit(std::process::ExitCode),
    Connect(Option<Inspection>),
}

/// Runs `command` if it needs no server, else checks its local inputs.
pub async fn prepare(command: &Command, out: &mut impl Write) -> Result<Prepared> {
    Ok(match command {
        Command::MergeFilters { files } => {
            merge::merge_filters(files, out)?;
            Prepared::Done
        }
        Command::MergeTriggers { files } => {
            merge::merge_triggers(files, out)?;
            Prepared::Done
        }
        Command::MatchTriggers { name, paths, json } => {
            if let Some((image, triggers)) = match_triggers::original_form(name, paths) {
                return Ok(Prepared::Connect(Some(Inspection::TriggersInImage(
                    image, triggers,
                ))));
            }
            match_triggers::parse_paths(paths)?;
            let from = match_triggers::TriggersFrom::parse(name)?;
            match from.read_file()? {
                Some(triggers) => {
                    match_triggers::print_matches(&triggers, paths, *json, out)?;
                    Prepared::Done
                }
                None => Prepared::Connect(Some(Inspection::Triggers(from))),
            }
        }
        Command::Diff { sides } => {
            let (tool, left, right) = match &sides[..] {
                [left, right] => (None, left, right),
                [tool, left, right] => (Some(tool.clone()), left, right),
                _ => unreachable!("clap takes two or three"),
            };
            let left = diff_sides::Side::parse(left)?;
            let right = diff_sides::Side::parse(right)?;
            if left.is_local() && right.is_local() {
                let (l, r) = diff_sides::manifests(None, &left, &right).await?;
                match tool {
                    Some(tool) => Prepared::Exit(diff_sides::run_tool(&tool, &l, &r)?),
                    None => {
                        inspect::write_changes(&l, &r, out)?;
                        Prepared::Done
                    }
                }
            } else {
                Prepared::Connect(Some(Inspection::Diff(left, right, tool)))
            }
        }
        Command::GetFileInImage {
            name,
            out: to,
            force,
            ..
        }
        | Command::GetBuildLog {
            name,
            out: to,
            force,
        } => {
            ImageName::parse(name)?;
            let to = file_in_image::Destination::parse(to.as_deref(), *force)?;
            Prepared::Connect(Some(Inspection::File(to)))
        }
        _ => Prepared::Connect(None),
    })
}
