//! Command-line syntax: modern `--flags` and the original's Go-style
//! single-dash flags (`-imageServerHostname=HOST`), which are rewritten to
//! their double-dash spelling before parsing.

use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

use clap::{CommandFactory, Parser, Subcommand};

pub use crate::metadata::MetadataArgs;
use dom_bus::{ConnectArgs, LogArgs};
use thiserror::Error;

/// Build, inspect and delete images held on NATS JetStream.
///
/// An image is a whole file-system tree: its file contents go, deduplicated
/// by SHA-512, into the object bucket; its record goes onto the image
/// stream. Command lines of the original Dominator imagetool work as
/// written, e.g. `imagetool -imageServerHostname=HOST add sparse.0 path "" ""`.
#[derive(Debug, Parser)]
#[command(name = "imagetool", version = dom_version::VERSION)]
pub struct Cli {
    #[command(flatten)]
    pub connect: ConnectArgs,
    /// Image server host (the original's flag); overrides --server.
    #[arg(long = "imageServerHostname", value_name = "HOST", global = true)]
    pub image_server_hostname: Option<String>,
    /// Image server port, used with -imageServerHostname.
    #[arg(
        long = "imageServerPortNum",
        value_name = "PORT",
        default_value_t = 4222,
        global = true
    )]
    pub image_server_port: u16,
    /// Expire a new image after this long (e.g. 30m, 12h, 7d).
    #[arg(long = "expiresIn", value_name = "DURATION", value_parser = humantime::parse_duration, global = true)]
    pub expires_in: Option<Duration>,
    /// No progress display.
    #[arg(long, short, global = true)]
    pub quiet: bool,
    /// Compress `tar` output to standard output with gzip (a file named
    /// .gz or .tgz always is).
    #[arg(long, global = true)]
    pub compress: bool,
    #[command(flatten)]
    pub log: LogArgs,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Add an image from a directory, .tar or .tar.gz/.tgz.
    ///
    /// FILTERFILE "" makes a sparse image (only its files are pushed,
    /// nothing is deleted); a filter file (regexes, one a line) makes a
    /// normal image that owns the whole tree except matching paths.
    /// TRIGGERSFILE "" means no triggers; otherwise a JSON list of
    /// {"MatchLines": [...], "Service": "...", ...}.
    Add {
        name: String,
        source: PathBuf,
        #[arg(value_name = "FILTERFILE")]
        filter: String,
        #[arg(value_name = "TRIGGERSFILE")]
        triggers: String,
        /// Where to remember the SHA-512 of files hashed before, so that
        /// adding a tree again only reads what changed since (a file is
        /// trusted unchanged while its inode, size, mtime and ctime are).
        /// Default: $XDG_CACHE_HOME/imagetool/hashes or
        /// ~/.cache/imagetool/hashes.
        #[arg(long, value_name = "PATH", env = "IMAGETOOL_HASH_CACHE")]
        hash_cache: Option<PathBuf>,
        /// Hash every file, and neither read nor write the hash cache.
        #[arg(long, conflicts_with = "hash_cache")]
        no_hash_cache: bool,
        /// A check machines run (with `sh -c`) after updating to this
        /// image, until it exits 0; their own --health-command runs too.
        #[arg(long, value_name = "CMD")]
        health_command: Option<String>,
        /// How long machines try the image's health check (default: the
        /// agent's --health-timeout); at most 1h.
        #[arg(long, value_name = "DURATION", requires = "health_command",
              value_parser = humantime::parse_duration)]
        health_timeout: Option<Duration>,
        #[command(flatten)]
        metadata: MetadataArgs,
    },
    /// Add an image: SOURCE_IMAGE with an archive laid over it.
    ///
    /// A path in the archive replaces the image's (a file in place of a
    /// directory takes the directory's subtree); directories merge, an
    /// archive directory giving its owner and mode; other names of a hard
    /// link the archive replaced keep the old content. The archive's
    /// entries obey the rules `add` applies to an archive. FILTERFILE
    /// ("" sparse) applies to the whole result; TRIGGERSFILE ("" none)
    /// gives the triggers. Without TARFILE, as the original's addi: the
    /// source's tree under a new filter and triggers. Only the archive's
    /// objects the store lacks are uploaded; the source's objects must be
    /// in this store.
    #[command(
        override_usage = "imagetool addi NAME SOURCE_IMAGE [TARFILE] FILTERFILE TRIGGERSFILE"
    )]
    Addi {
        name: String,
        source_image: String,
        /// [TARFILE] FILTERFILE TRIGGERSFILE
        #[arg(value_name = "ARGS", num_args = 2..=3, required = true)]
        rest: Vec<String>,
        #[command(flatten)]
        metadata: MetadataArgs,
    },
    /// Add an image: SOURCE_IMAGE with files replaced from archives.
    ///
    /// Each TARFILE is applied in turn.
    /// Every file, symlink or device in an archive must be in the image
    /// already, as the same kind (a path the image lacks is refused,
    /// naming it); archive directories are ignored. Replacing one name of
    /// a hard link replaces the content of every name. The new image keeps
    /// the source's filter (archive paths it matches are ignored),
    /// triggers, health check and build metadata. Only the archives'
    /// objects the store lacks are uploaded.
    Addrep {
        name: String,
        source_image: String,
        #[arg(value_name = "TARFILE", required = true)]
        tars: Vec<PathBuf>,
        #[command(flatten)]
        metadata: MetadataArgs,
    },
    /// Write the image as a tar archive.
    ///
    /// OUT is a .tar, or gzip for .tar.gz or .tgz; "-" or none: standard
    /// output (-compress gzips it).
    /// Modes, owners, mtimes (to the nanosecond, in pax headers), symlinks,
    /// hard links and devices are as in the image, and every object is
    /// verified as it is read, so `imagetool add NEW OUT.tar "" ""` gives
    /// the same manifest id. The archive is written beside OUT under a
    /// temporary name and renamed when whole; an existing OUT is refused
    /// unless --force.
    Tar {
        name: String,
        #[arg(value_name = "OUT")]
        out: Option<PathBuf>,
        /// Replace OUT if it exists.
        #[arg(long)]
        force: bool,
    },
    /// Estimate the space a machine needs for the image.
    ///
    /// Each inode is counted once (hard links share one): a regular file
    /// takes its size rounded up to whole 4 KiB blocks, a directory one
    /// 4 KiB block, a symlink 64 bytes, devices and fifos nothing; the
    /// sum is printed human-readable and in bytes, then its parts and the
    /// distinct objects a machine fetches.
    EstimateUsage { name: String },
    /// List images (deleted and expired ones are left out unless --all).
    List {
        /// Also list deleted and expired images.
        #[arg(long)]
        all: bool,
        /// Only images carrying this tag (KEY=VALUE; repeatable: all of
        /// them).
        #[arg(long = "tag", visible_alias = "tagsToMatch", value_name = "KEY=VALUE")]
        tags: Vec<String>,
    },
    /// Exit 0 if the image exists, 1 if it does not.
    Check { name: String },
    /// Print the image's tree, one line per path, with SHA-512s.
    Show { name: String },
    /// Print the image's filter lines (nothing for a sparse image).
    ShowFilter { name: String },
    /// Print the image's triggers as JSON.
    ShowTriggers { name: String },
    /// Print the image's health check as JSON (`null`: none).
    ShowHealthCheck { name: String },
    /// Unpack the image into DIR (new or empty), verifying every object.
    Get { name: String, dir: PathBuf },
    /// Paths added, removed and changed from LEFT to RIGHT.
    ///
    /// Each side is an image, or a local directory, .tar or .tar.gz/.tgz
    /// scanned on the spot (nothing is uploaded). An argument is local
    /// when it exists on disk or starts with /, ./ or ../; otherwise it
    /// names an image (a missing x.tar is looked up as an image, and the
    /// error says when it is neither). Against an image, a local tree is
    /// read through that image's filter, as `add` would read it.
    ///
    /// The original's form, `diff TOOL LEFT RIGHT`, writes both sides'
    /// listings (as `show` prints them) to temporary files and runs TOOL
    /// on them (`diff`, `diff -u`, `vimdiff`: words split on spaces),
    /// exiting with its status.
    #[command(override_usage = "imagetool diff [TOOL] LEFT RIGHT")]
    Diff {
        /// [TOOL] LEFT RIGHT
        #[arg(value_name = "ARGS", num_args = 2..=3, required = true)]
        sides: Vec<String>,
    },
    /// Write the image's build log to OUT, or to stdout (the original's
    /// get-build-log; also `show-metadata NAME --build-log`).
    ///
    /// The log is read from the image's store and checked against its
    /// SHA-512; OUT is written under a temporary name and renamed, and an
    /// existing OUT is refused unless --force.
    GetBuildLog {
        name: String,
        out: Option<PathBuf>,
        /// Replace OUT if it exists.
        #[arg(long)]
        force: bool,
    },
    /// Write one regular file of an image to OUT, or to stdout.
    ///
    /// The content is verified against its SHA-512 before any of it is
    /// written. OUT is written under a temporary name beside it, then
    /// renamed; an existing OUT is refused unless --force. A path that
    /// is not in the image, or not a regular file, is an error.
    GetFileInImage {
        name: String,
        path: String,
        out: Option<PathBuf>,
        /// Replace OUT if it exists.
        #[arg(long)]
        force: bool,
    },
    /// Print one path's inode in an image.
    ///
    /// Type, mode (as ls shows it, and in octal), uid, gid, and as they
    /// apply: size, mtime, SHA-512, symlink target, device numbers
    /// (major,minor), and the other paths of a hard link.
    ShowInode {
        name: String,
        path: String,
        /// Print it as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Which services a change to PATHs would restart or reload.
    ///
    /// Matched as machines match them during an update, by the triggers
    /// of image NAME, or of a triggers file if NAME is an existing file
    /// (then no server is needed). One line per fired trigger, in the
    /// order they run: SERVICE, restart or reload, then high-impact and
    /// reboot where they apply.
    ///
    /// The original's form, `match-triggers IMAGE TRIGGERSFILE` (one
    /// argument after the image, a local file holding triggers), prints
    /// as JSON the file's triggers that some path of the image fires.
    MatchTriggers {
        #[arg(value_name = "NAME|TRIGGERSFILE")]
        name: String,
        #[arg(required = true)]
        paths: Vec<String>,
        /// Print the fired triggers as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Print the union of filter files, each line once, in order.
    ///
    /// Every file is checked; an invalid regex names the file and line.
    /// Needs no server.
    MergeFilters {
        #[arg(required = true, value_name = "FILTERFILE")]
        files: Vec<PathBuf>,
    },
    /// Print triggers files merged into one, as JSON.
    ///
    /// Triggers of the same service (and the same DoReload) become one:
    /// their match lines are united and sorted, DoReboot and HighImpact
    /// set if any set them, the first SortName kept. Ordered by service,
    /// a reload before a restart. Every file is checked; bad JSON or an
    /// invalid regex names the file. Needs no server.
    MergeTriggers {
        #[arg(required = true, value_name = "TRIGGERSFILE")]
        files: Vec<PathBuf>,
    },
    /// Delete an image; its name stays taken.
    Delete { name: String },
    /// Set when a live image expires: DURATION from now (30m, 12h, 7d),
    /// or "never"; without it, -expiresIn (none: never).
    ///
    /// The record is published again with only its expiry changed; the
    /// image stream keeps the earlier one. An image that has expired
    /// already is refused: add it again under a new name.
    ChangeImageExpiration {
        name: String,
        #[arg(value_name = "DURATION|never", value_parser = expiry)]
        expiry: Option<Expiry>,
    },
    /// Print when an image expires, or that it never does.
    GetImageExpiration { name: String },
    /// Space per image and for the whole store.
    ///
    /// Per image (each NAME, or every live image): its files and their
    /// bytes, the distinct objects it needs and their bytes, and "own",
    /// the bytes of objects no other live image needs. Then the store:
    /// objects and bytes, those no live image needs, and what the
    /// bucket's stream takes on the server.
    Du { names: Vec<String> },
    /// Delete the objects no live image needs, after tombstoning for good
    /// the images that have expired (operator only).
    ///
    /// It waits (up to a minute) for adds under way to end, and adds
    /// started meanwhile wait for it, so an add never publishes an image
    /// whose objects it deleted. A machine fetching a live image loses
    /// nothing: only objects no live image needs are deleted.
    #[command(visible_alias = "delete-unreferenced-objects")]
    DeleteUnreferenced {
        /// Print what would be deleted; change nothing.
        #[arg(long)]
        dry_run: bool,
        /// Only objects stored longer ago than this (e.g. 7d).
        #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
        older_than: Option<Duration>,
    },
    /// Count the objects no live image needs (deleted and expired images
    /// need none), and their bytes.
    #[command(visible_aliases = ["list-unreferenced-objects", "listunrefobj"])]
    ListUnreferenced {
        /// Also print each one's id and size in bytes, one a line.
        #[arg(long)]
        ids: bool,
    },
    /// Add an image captured from a live machine, through its agent.
    ///
    /// HOST's agent (subd) sends the tree of its last scan (its root
    /// without its own state and the paths its current image filters),
    /// then the contents of the files the bucket lacks, which are checked
    /// and stored here; the agent writes nothing. FILTERFILE and
    /// TRIGGERSFILE are as for add (default "": a sparse image, no
    /// triggers); the filter leaves matching paths out of the image.
    /// Only an operator's credential may ask an agent.
    Adds {
        /// The new image's name.
        name: String,
        /// The machine to capture, named as its agent's --hostname.
        host: String,
        /// Regexes, one a line, of paths to leave out ("": none, sparse).
        #[arg(value_name = "FILTERFILE", default_value = "")]
        filter: String,
        /// The image's triggers, Dominator JSON ("": none).
        #[arg(value_name = "TRIGGERSFILE", default_value = "")]
        triggers: String,
        #[command(flatten)]
        metadata: MetadataArgs,
    },
    // Release pipelines: metadata, tags, finding and promoting images.
    /// Print an image's build metadata and tags, or its release notes or
    /// build log.
    ///
    /// One line each: created (and by whom), expiry, build commit, git
    /// URL, release notes and build log (object id and size), then `tag
    /// KEY=VALUE` per tag. --json prints the same as one JSON object.
    /// --release-notes or --build-log prints that object's content, read
    /// from the image's store and checked against its SHA-512.
    ShowMetadata {
        name: String,
        /// As JSON, for scripts.
        #[arg(long, conflicts_with_all = ["release_notes", "build_log"])]
        json: bool,
        /// Print the release notes themselves.
        #[arg(long, alias = "releaseNotes", conflicts_with = "build_log")]
        release_notes: bool,
        /// Print the build log itself.
        #[arg(long, alias = "buildLog")]
        build_log: bool,
    },
    /// Add or change tags on a live image (KEY=VALUE...), or remove them
    /// (-delete KEY).
    ///
    /// The record is published again with only its tags changed; the
    /// image stream keeps the earlier one. Manifest, filter and triggers
    /// never change, so machines on the image are not updated again.
    Tag {
        name: String,
        /// Tags to add, or to change the value of.
        #[arg(value_name = "KEY=VALUE")]
        tags: Vec<String>,
        /// Remove the tag KEY (repeatable).
        #[arg(long = "delete", visible_alias = "remove", value_name = "KEY")]
        delete: Vec<String>,
    },
    /// Print the name of the newest live image whose name starts with
    /// PREFIX; exit 1 if none does.
    ///
    /// Newest by creation time, then by name. PREFIX is a plain string
    /// prefix, as the original's: `web/prod/` matches `web/prod/1` but
    /// not `web/production/1`; `web/prod` matches both. Deleted and
    /// expired images never match.
    FindLatestImage {
        /// The start of the names looked for, e.g. web/prod/.
        prefix: String,
        /// Only images carrying this tag (KEY=VALUE; repeatable: all of
        /// them).
        #[arg(long = "tagsToMatch", visible_aliases = ["tag", "tags-to-match"], value_name = "KEY=VALUE")]
        tags: Vec<String>,
        /// Only images built from this commit.
        #[arg(
            long = "buildCommitId",
            visible_alias = "build-commit-id",
            value_name = "ID"
        )]
        build_commit_id: Option<String>,
        /// Skip images that have an expiry at all.
        #[arg(long = "ignoreExpiring", visible_alias = "ignore-expiring")]
        ignore_expiring: bool,
    },
    /// Promote an image: a new image NEW with OLD's content, uploading
    /// nothing.
    ///
    /// NEW gets OLD's manifest, filter, triggers, health check, metadata
    /// and objects location, made now by this user; -expiresIn gives it
    /// an expiry (none: never). -tag and the other metadata flags add to
    /// or override OLD's metadata; -filter FILE and -triggers FILE
    /// replace those two (a filter on a sparse image makes it normal; the
    /// tree stays as it was added). The original's order, `copy NEW OLD`,
    /// is taken too: of the two names, the one that exists is the source.
    Copy {
        /// The live image to copy.
        old: String,
        /// The new image's name, never used before.
        new: String,
        /// Give NEW this filter file instead of OLD's filter.
        #[arg(long, value_name = "FILE")]
        filter: Option<PathBuf>,
        /// Give NEW this triggers file instead of OLD's triggers.
        #[arg(long, value_name = "FILE")]
        triggers: Option<PathBuf>,
        #[command(flatten)]
        metadata: MetadataArgs,
    },
}

/// A new expiry: after a while, or never.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Expiry {
    In(Duration),
    Never,
}

fn expiry(text: &str) -> Result<Expiry, String> {
    if text == "never" {
        return Ok(Expiry::Never);
    }
    match humantime::parse_duration(text) {
        Ok(d) if d.is_zero() => Err("a duration of 0 would expire the image now".into()),
        Ok(d) => Ok(Expiry::In(d)),
        Err(e) => Err(format!(
            "{e} (expected a duration such as 12h or 7d, or never)"
        )),
    }
}

/// Go-style flags accepted with a single dash.
const GO_FLAGS: &[&str] = &[
    "imageServerHostname",
    "imageServerPortNum",
    "expiresIn",
    "compress",
    // Image metadata and release pipelines.
    "tag",
    "buildCommitId",
    "buildGitUrl",
    "releaseNotes",
    "buildLog",
    "tagsToMatch",
    "ignoreExpiring",
    "filter",
    "triggers",
    "delete",
];

/// A single-dash flag that is neither one of the original's Go-style
/// flags nor a group of short flags (`-qv`).
#[derive(Debug, Error, PartialEq, Eq)]
#[error("unknown flag {flag}{}", .suggestion.as_ref().map(|s| format!(" (did you mean {s}?)")).unwrap_or_default())]
pub struct UnknownFlag {
    pub flag: String,
    /// The closest known spelling, if one is close.
    pub suggestion: Option<String>,
}

/// Rewrites `-imageServerHostname=H` (and `-imageServerHostname H`) to the
/// double-dash form clap parses. Any other single-dash word before `--`
/// must be short flags; otherwise clap would read `-imageServerHostName`
/// as `-i -m -a ...`, so it is refused here, with the spelling meant.
pub fn normalise_args<I, T>(args: I) -> Result<Vec<OsString>, UnknownFlag>
where
    I: IntoIterator<Item = T>,
    T: Into<OsString>,
{
    let mut out = Vec::new();
    let mut flags_end = false;
    for (i, arg) in args.into_iter().enumerate() {
        let arg = arg.into();
        let word = arg.to_str().filter(|_| i > 0 && !flags_end);
        let Some(name) = word.and_then(single_dash_name) else {
            flags_end |= arg == "--";
            out.push(arg);
            continue;
        };
        if GO_FLAGS.contains(&name) {
            out.push(format!("-{}", arg.to_string_lossy()).into());
        } else if !name.contains('=') && name.chars().all(|c| SHORT_FLAGS.contains(c)) {
            out.push(arg);
        } else {
            return Err(UnknownFlag {
                flag: format!("-{name}"),
                suggestion: suggest(name),
            });
        }
    }
    Ok(out)
}

/// The short flags there are: `-q`, `-v`, `-h`, `-V`.
const SHORT_FLAGS: &str = "qvhV";

/// `name` in `-name` or `-name=value`, for words of more than one letter
/// after a single dash.
fn single_dash_name(word: &str) -> Option<&str> {
    let rest = word.strip_prefix('-').filter(|r| !r.starts_with('-'))?;
    let name = rest.split('=').next().unwrap_or("");
    (name.len() > 1 || rest.contains('=')).then_some(name)
}

/// The known flag closest to `name` (same letters in another case, or at
/// most two edits away), spelt as it is accepted.
fn suggest(name: &str) -> Option<String> {
    let longs: Vec<String> = {
        let command = Cli::command();
        let mut longs: Vec<String> = command
            .get_arguments()
            .chain(command.get_subcommands().flat_map(|c| c.get_arguments()))
            .filter_map(|a| a.get_long())
            .filter(|long| !GO_FLAGS.contains(long))
            .map(|long| format!("--{long}"))
            .collect();
        longs.extend(GO_FLAGS.iter().map(|go| format!("-{go}")));
        longs
    };
    let wanted = name.to_lowercase();
    longs
        .into_iter()
        .map(|spelling| {
            let known = spelling.trim_start_matches('-').to_lowercase();
            (edits(&wanted, &known), spelling)
        })
        .filter(|(distance, _)| *distance <= 2)
        .min_by_key(|(distance, _)| *distance)
        .map(|(_, spelling)| spelling)
}

/// The Levenshtein distance between `a` and `b`.
fn edits(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut previous = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let substituted = previous + usize::from(ca != *cb);
            previous = row[j + 1];
            row[j + 1] = substituted.min(row[j] + 1).min(previous + 1);
        }
    }
    row[b.len()]
}

impl Cli {
    /// Connection options with the Go-style host flags applied.
    pub fn connect_args(&self) -> ConnectArgs {
        let mut args = self.connect.clone();
        if let Some(host) = &self.image_server_hostname {
            args.server = format!("nats://{host}:{}", self.image_server_port);
        }
        args
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_style_flags() {
        let args = normalise_args(
            [
                "imagetool",
                "-imageServerHostname=h",
                "-imageServerPortNum",
                "4333",
                "add",
                "x",
                "p",
                "",
                "",
            ]
            .map(String::from),
        )
        .unwrap();
        let cli = Cli::try_parse_from(args).unwrap();
        assert_eq!(cli.connect_args().server, "nats://h:4333");
        assert!(matches!(cli.command, Command::Add { .. }));
    }

    #[test]
    fn modern_flags_and_expiry() {
        let args = normalise_args(
            [
                "imagetool",
                "--server",
                "nats://a:1",
                "-expiresIn=2h",
                "list",
            ]
            .map(String::from),
        )
        .unwrap();
        let cli = Cli::try_parse_from(args).unwrap();
        assert_eq!(cli.connect_args().server, "nats://a:1");
        assert_eq!(cli.expires_in, Some(Duration::from_secs(7200)));
    }

    fn unknown(args: &[&str]) -> UnknownFlag {
        normalise_args(std::iter::once("imagetool").chain(args.iter().copied())).unwrap_err()
    }

    #[test]
    fn a_misspelt_go_flag_is_named_with_its_spelling() {
        let err = unknown(&["-imageServerHostName=h", "list"]);
        assert_eq!(
            err.to_string(),
            "unknown flag -imageServerHostName (did you mean -imageServerHostname?)"
        );
        assert_eq!(
            unknown(&["-sever", "x", "list"]).suggestion.as_deref(),
            Some("--server")
        );
        assert_eq!(
            unknown(&["-nothinglikeit", "list"]).to_string(),
            "unknown flag -nothinglikeit"
        );
    }

    #[test]
    fn short_flags_and_operands_pass() {
        let args = ["imagetool", "-qvv", "add", "x", "-", "", "", "--", "-odd"];
        let out = normalise_args(args).unwrap();
        assert_eq!(out, args.map(OsString::from));
    }
}
