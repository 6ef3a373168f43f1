//! Command-line syntax: modern `--flags` and the original's Go-style
//! single-dash flags (`-imageServerHostname=HOST`), which are rewritten to
//! their double-dash spelling before parsing.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, Subcommand};
use dom_bus::ConnectArgs;

/// Build, inspect and delete images held on NATS JetStream.
///
/// An image is a whole file-system tree: its file contents go, deduplicated
/// by SHA-512, into the object bucket; its record goes onto the image
/// stream. Command lines of the original Dominator imagetool work as
/// written, e.g. `imagetool -imageServerHostname=HOST add sparse.0 path "" ""`.
#[derive(Debug, Parser)]
#[command(name = "imagetool", version)]
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
    /// More logging (repeat for more); RUST_LOG also works.
    #[arg(long, short, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,
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
    },
    /// List images (deleted and expired ones are left out unless --all).
    List {
        /// Also list deleted and expired images.
        #[arg(long)]
        all: bool,
    },
    /// Exit 0 if the image exists, 1 if it does not.
    Check { name: String },
    /// Print the image's tree, one line per path, with SHA-512s.
    Show { name: String },
    /// Print the image's filter lines (nothing for a sparse image).
    ShowFilter { name: String },
    /// Print the image's triggers as JSON.
    ShowTriggers { name: String },
    /// Unpack the image into DIR (new or empty), verifying every object.
    Get { name: String, dir: PathBuf },
    /// Paths added, removed and changed from LEFT to RIGHT.
    Diff { left: String, right: String },
    /// Delete an image; its name stays taken.
    Delete { name: String },
}

/// Go-style flags accepted with a single dash.
const GO_FLAGS: &[&str] = &["imageServerHostname", "imageServerPortNum", "expiresIn"];

/// Rewrites `-imageServerHostname=H` (and `-imageServerHostname H`) to the
/// double-dash form clap parses.
pub fn normalise_args<I: IntoIterator<Item = String>>(args: I) -> Vec<String> {
    args.into_iter()
        .map(|arg| {
            let is_go = arg
                .strip_prefix('-')
                .filter(|rest| !rest.starts_with('-'))
                .map(|rest| rest.split('=').next().unwrap_or(""))
                .is_some_and(|name| GO_FLAGS.contains(&name));
            if is_go {
                format!("-{arg}")
            } else {
                arg
            }
        })
        .collect()
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
        );
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
        );
        let cli = Cli::try_parse_from(args).unwrap();
        assert_eq!(cli.connect_args().server, "nats://a:1");
        assert_eq!(cli.expires_in, Some(Duration::from_secs(7200)));
    }
}
