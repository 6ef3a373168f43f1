//! imagetool: build, inspect and delete images held on NATS JetStream.
//!
//! - [`cli`]: flags, including the original's Go-style ones.
//! - [`source`]: reading a directory or tar archive into a manifest.
//! - [`add`]: uploading missing objects, then publishing the record.
//! - [`inspect`]: list, check, show, show-filter, show-triggers,
//!   show-health-check, diff.
//! - [`get`]: unpacking an image into a directory, verifying every object.
//! - [`usage`]: du and list-unreferenced, what the store holds and for whom.
//! - [`upload`]: what every command that makes an image shares: the gate,
//!   the upload of missing objects, the publish.
//! - [`from_image`]: addi and addrep, images made from an image and archives.
//! - [`archive`]: tar, an image written as a tar archive.
//! - [`estimate`]: estimate-usage, the space a machine needs for an image.
//! - [`adds`]: an image captured from a live machine's agent.
//! - [`file_in_image`], [`show_inode`], [`match_triggers`]: one file, one
//!   inode, the triggers some paths fire.
//! - [`diff_sides`]: an image or a local tree on either side of diff.
//! - [`merge`]: merge-filters and merge-triggers, with no server.
//! - [`offline`]: what the inspection commands do before connecting.
//! - [`metadata`]: build metadata and tags given to a new image;
//!   [`show_metadata`] prints them, [`tag`] changes tags later,
//!   [`find_latest`] finds the newest image of a prefix, and [`copy`]
//!   promotes an image under a new name, uploading nothing; [`release`]
//!   checks their arguments and runs them.
//!
//! The binary is a thin wrapper over [`run`].

pub mod add;
pub mod adds;
pub mod archive;
pub mod cli;
pub mod copy;
pub mod diff_sides;
pub mod estimate;
pub mod file_in_image;
pub mod find_latest;
pub mod from_image;
pub mod get;
pub mod inspect;
pub mod match_triggers;
pub mod merge;
pub mod metadata;
pub mod offline;
pub mod progress;
pub mod release;
pub mod show_inode;
pub mod show_metadata;
pub mod source;
pub mod tag;
pub mod upload;
pub mod usage;

use std::process::ExitCode;

use anyhow::Result;
use dom_bus::Bus;
use dom_model::{ImageName, Tombstone};

pub use cli::{Cli, Command};

/// Runs one command. Output goes to stdout; errors are returned for the
/// caller to print as one line.
pub async fn run(cli: Cli) -> Result<ExitCode> {
    // Validate local inputs before touching the network.
    let add_request = match &cli.command {
        Command::Add {
            name,
            source,
            filter,
            triggers,
            hash_cache,
            no_hash_cache,
            health_command,
            health_timeout,
            metadata,
        } => Some(
            add::AddRequest::parse(name, source, filter, triggers, cli.expires_in)?
                .with_hash_cache(if *no_hash_cache {
                    None
                } else {
                    hash_cache.clone().or_else(add::default_hash_cache)
                })
                .with_health_check(health_command.as_deref(), *health_timeout)?
                .with_metadata(metadata.parse()?),
        ),
        _ => None,
    };
    let from_image_request = match &cli.command {
        Command::Addi {
            name,
            source_image,
            rest,
            metadata,
        } => Some(
            from_image::FromImageRequest::addi(name, source_image, rest, cli.expires_in)?
                .with_metadata(metadata.parse()?),
        ),
        Command::Addrep {
            name,
            source_image,
            tars,
            metadata,
        } => Some(
            from_image::FromImageRequest::addrep(name, source_image, tars, cli.expires_in)?
                .with_metadata(metadata.parse()?),
        ),
        _ => None,
    };
    let adds_request = match &cli.command {
        Command::Adds {
            name,
            host,
            filter,
            triggers,
            metadata,
        } => Some(
            adds::AddsRequest::parse(name, host, filter, triggers, cli.expires_in)?
                .with_metadata(metadata.parse()?),
        ),
        _ => None,
    };
    let tar_output = match &cli.command {
        Command::Tar { out, force, .. } => Some(archive::Output::parse(
            out.as_deref(),
            *force,
            cli.compress,
        )?),
        _ => None,
    };
    let release = release::Release::parse(&cli)?;
    let mut out = dom_bus::output::stdout();
    let inspection = match offline::prepare(&cli.command, &mut out).await? {
        offline::Prepared::Done => return Ok(ExitCode::SUCCESS),
        offline::Prepared::Exit(code) => return Ok(code),
        offline::Prepared::Connect(inspection) => inspection,
    };
    let bus = Bus::connect(&cli.connect_args(), "imagetool").await?;
    match cli.command {
        Command::Add { .. } => {
            let request = add_request.expect("parsed above");
            let summary = add::add(&bus, request, !cli.quiet).await?;
            dom_bus::outln!("{summary}");
        }
        Command::Addi { .. } | Command::Addrep { .. } => {
            let request = from_image_request.expect("parsed above");
            let summary = from_image::add_from_image(&bus, request).await?;
            dom_bus::outln!("{summary}");
        }
        Command::Tar { name, .. } => {
            let output = tar_output.expect("parsed above");
            let to_stdout = matches!(output, archive::Output::Stdout { .. });
            // The archive's compression threads write standard output
            // themselves, so this thread must not hold it.
            drop(out);
            let summary = archive::tar(&bus, &ImageName::parse(&name)?, output).await?;
            if !to_stdout {
                dom_bus::outln!("{summary}");
            } else if !cli.quiet {
                // The archive is on stdout.
                eprintln!("imagetool: {summary}");
            }
        }
        Command::EstimateUsage { name } => {
            estimate::estimate_usage(&bus, &ImageName::parse(&name)?, &mut out).await?
        }
        Command::List { all, tags } => {
            let tags = metadata::parse_tags(&tags)?;
            inspect::list_tagged(&bus, all, &tags, &mut out).await?
        }
        Command::Check { name } => {
            let name = ImageName::parse(&name)?;
            return Ok(if inspect::check(&bus, &name).await? {
                dom_bus::outln!("{name} exists");
                ExitCode::SUCCESS
            } else {
                dom_bus::outln!("{name} does not exist");
                ExitCode::from(1)
            });
        }
        Command::Show { name } => inspect::show(&bus, &ImageName::parse(&name)?, &mut out).await?,
        Command::ShowFilter { name } => {
            inspect::show_filter(&bus, &ImageName::parse(&name)?, &mut out).await?
        }
        Command::ShowTriggers { name } => {
            inspect::show_triggers(&bus, &ImageName::parse(&name)?, &mut out).await?
        }
        Command::ShowHealthCheck { name } => {
            inspect::show_health_check(&bus, &ImageName::parse(&name)?, &mut out).await?
        }
        Command::Diff { .. } => {
            let Some(offline::Inspection::Diff(left, right, tool)) = inspection else {
                unreachable!("sides parsed above")
            };
            let (l, r) = diff_sides::manifests(Some(&bus), &left, &right).await?;
            match tool {
                Some(tool) => return diff_sides::run_tool(&tool, &l, &r),
                None => inspect::write_changes(&l, &r, &mut out)?,
            }
        }
        Command::GetFileInImage { name, path, .. } => {
            let Some(offline::Inspection::File(to)) = inspection else {
                unreachable!("destination checked above")
            };
            let name = ImageName::parse(&name)?;
            file_in_image::get_file_in_image(&bus, &name, &path, to, &mut out).await?
        }
        Command::GetBuildLog { name, .. } => {
            let Some(offline::Inspection::File(to)) = inspection else {
                unreachable!("destination checked above")
            };
            let name = ImageName::parse(&name)?;
            let shown = show_metadata::Shown::BuildLog;
            match to {
                file_in_image::Destination::Stdout => {
                    show_metadata::show_metadata(&bus, &name, shown, &mut out).await?
                }
                file_in_image::Destination::File { path, force } => {
                    let mut log = Vec::new();
                    show_metadata::show_metadata(&bus, &name, shown, &mut log).await?;
                    file_in_image::write_local(&path, &log, 0o644, force)?
                }
            }
        }
        Command::ShowInode { name, path, json } => {
            let name = ImageName::parse(&name)?;
            show_inode::show_inode(&bus, &name, &path, json, &mut out).await?
        }
        Command::MatchTriggers { paths, json, .. } => match inspection {
            Some(offline::Inspection::Triggers(match_triggers::TriggersFrom::Image(name))) => {
                let triggers = match_triggers::image_triggers(&bus, &name).await?;
                match_triggers::print_matches(&triggers, &paths, json, &mut out)?
            }
            Some(offline::Inspection::TriggersInImage(name, triggers)) => {
                let (_, manifest) = inspect::load(&bus, &name).await?;
                match_triggers::print_fired_in(&triggers, &manifest, &mut out)?
            }
            _ => unreachable!("a triggers file was matched above"),
        },
        Command::MergeFilters { .. } | Command::MergeTriggers { .. } => {
            unreachable!("merged above, with no server")
        }
        Command::Get { name, dir } => {
            let summary = get::get(&bus, &ImageName::parse(&name)?, &dir).await?;
            dom_bus::outln!("{summary}");
        }
        Command::ChangeImageExpiration { name, expiry } => {
            let name = ImageName::parse(&name)?;
            let expiry = expiry.unwrap_or(match cli.expires_in {
                Some(d) => cli::Expiry::In(d),
                None => cli::Expiry::Never,
            });
            bus.ensure_image_streams().await?;
            let now = time::OffsetDateTime::now_utc();
            let expires = match expiry {
                cli::Expiry::In(d) => {
                    let at = now + d;
                    Some((rfc3339(at), at.unix_timestamp()))
                }
                cli::Expiry::Never => None,
            };
            let record = bus
                .change_image_expiry(&name, expires, now.unix_timestamp())
                .await?;
            dom_bus::outln!("{}", expiration(&record, now.unix_timestamp()));
        }
        Command::GetImageExpiration { name } => {
            let name = ImageName::parse(&name)?;
            bus.ensure_image_streams().await?;
            let record = bus.image_record(&name).await?;
            let now = time::OffsetDateTime::now_utc().unix_timestamp();
            dom_bus::outln!("{}", expiration(&record, now));
        }
        Command::Du { names } => {
            let names = names
                .iter()
                .map(|name| ImageName::parse(name))
                .collect::<Result<Vec<_>, _>>()?;
            usage::du(&bus, &names, &mut out).await?
        }
        Command::DeleteUnreferenced {
            dry_run,
            older_than,
        } => usage::delete_unreferenced(&bus, dry_run, older_than, &mut out).await?,
        Command::ListUnreferenced { ids } => usage::list_unreferenced(&bus, ids, &mut out).await?,
        Command::Delete { name } => {
            let name = ImageName::parse(&name)?;
            bus.ensure_image_streams().await?;
            bus.delete_image(&Tombstone {
                v: dom_model::image::IMAGE_RECORD_VERSION,
                name: name.clone(),
                deleted: true,
                deleted_at: rfc3339(time::OffsetDateTime::now_utc()),
                by: creator(),
            })
            .await?;
            dom_bus::outln!("deleted {name}; the name stays taken");
        }
        Command::Adds { .. } => {
            let request = adds_request.expect("parsed above");
            let summary = adds::adds(&bus, request, !cli.quiet).await?;
            dom_bus::outln!("{summary}");
        }
        Command::ShowMetadata { .. }
        | Command::Tag { .. }
        | Command::FindLatestImage { .. }
        | Command::Copy { .. } => {
            let release = release.expect("parsed above");
            release.run(&bus, !cli.quiet, &mut out).await?
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `NAME expires at T (in D)`, `NAME expired at T`, or `NAME never expires`.
fn expiration(record: &dom_model::ImageRecord, now: i64) -> String {
    let name = &record.name;
    match (&record.expires, record.expires_unix) {
        (Some(at), Some(unix)) if unix <= now => format!("{name} expired at {at}"),
        (Some(at), Some(unix)) => {
            let left = std::time::Duration::from_secs((unix - now) as u64);
            format!(
                "{name} expires at {at} (in {})",
                humantime::format_duration(left)
            )
        }
        _ => format!("{name} never expires"),
    }
}

pub use dom_model::text::human_bytes;

/// Images record when and by whom they were made.
pub(crate) use dom_bus::stamp::{rfc3339, who as creator};
