//! Command-line syntax.

use std::path::PathBuf;

use clap::{Parser, Subcommand};
use dom_bus::{ConnectArgs, LogArgs};

/// The operators' tool for a fleet managed by the dominator.
///
/// Edits the machine database (MDB), shows what every machine carries and
/// why, follows the fleet live, and stops or resumes updates for the whole
/// fleet. Everything it writes is an ordinary message on the bus, so the
/// dominator (and anyone reading the streams) sees it at once.
#[derive(Debug, Parser)]
#[command(name = "domtool", version)]
pub struct Cli {
    #[command(flatten)]
    pub connect: ConnectArgs,
    #[command(flatten)]
    pub log: LogArgs,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Read and edit the machine database.
    #[command(subcommand)]
    Mdb(MdbCommand),
    /// A table of every machine: required and current image, compliance,
    /// last update and error, as the dominator judges them.
    Status,
    /// The machines in the MDB, one a line.
    ListSubs,
    /// Everything known about one machine: MDB record, desired state, state
    /// report, status and recent events.
    Show {
        host: String,
        /// How many recent events to show.
        #[arg(long, default_value_t = 10)]
        events: usize,
    },
    /// Follow the fleet live, until interrupted. On a terminal: a status
    /// screen, the fleet's summary on top and the latest events below,
    /// redrawn as they change. Otherwise (or with --lines): events, state
    /// reports, desired states, MDB changes and controls as they happen,
    /// one line each.
    Watch {
        /// One line per change, even on a terminal.
        #[arg(long, conflicts_with = "once")]
        lines: bool,
        /// Stop after this many lines (implies --lines).
        #[arg(long, value_name = "N", conflicts_with = "once")]
        count: Option<usize>,
        /// Print the status screen once, without terminal control, and exit.
        #[arg(long)]
        once: bool,
    },
    /// Emergency stop: no machine in the fleet changes anything until
    /// `enable-updates`. Recorded with who and why.
    DisableUpdates { reason: String },
    /// Resume updates after `disable-updates`. Recorded with who and why.
    EnableUpdates { reason: String },
    /// Let one update of HOST to its required image past the safety
    /// shutoff (which refuses an update that would wipe most of a machine).
    ClearSafetyShutoff {
        host: String,
        /// The image the update goes to (default: HOST's RequiredImage).
        #[arg(long)]
        image: Option<String>,
        /// Why, for the record.
        #[arg(long, default_value = "")]
        reason: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum MdbCommand {
    /// Set a machine's record: the image it must carry and, optionally, the
    /// one to pre-fetch. Tags already set are kept.
    Set {
        host: String,
        /// The image the machine must carry.
        #[arg(long, value_name = "IMAGE")]
        required: String,
        /// The image it will carry next, fetched ahead of time.
        #[arg(long, value_name = "IMAGE")]
        planned: Option<String>,
        /// Leave the machine as it is: no updates, not even drift fixes.
        #[arg(long)]
        disable_updates: bool,
        /// Set a tag, KEY=VALUE (repeatable), e.g. DisableSafetyCheck=true.
        #[arg(long = "tag", value_name = "KEY=VALUE")]
        tags: Vec<String>,
        /// Set the record even if an image does not exist (yet).
        #[arg(long)]
        force: bool,
    },
    /// Print a machine's record as JSON.
    Get { host: String },
    /// Remove a machine from the MDB.
    Remove { host: String },
    /// Set every record of a Dominator mdb.json file (a JSON array of
    /// records), publishing only those that differ from the MDB.
    Load {
        file: PathBuf,
        /// Also remove machines the file does not list.
        #[arg(long)]
        replace: bool,
    },
    /// Print the whole MDB as a Dominator mdb.json file.
    Export,
}
