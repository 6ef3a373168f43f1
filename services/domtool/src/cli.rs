//! Command-line syntax.

use std::path::PathBuf;

use clap::{Parser, Subcommand};
use dom_bus::{ConnectArgs, LogArgs};

/// The operators' tool for a fleet managed by the dominator.
///
/// Edits the machine database (MDB), shows what every machine carries and
/// why, follows the fleet live, stops or resumes updates for the whole
/// fleet, pauses single machines, sets the agents' settings and the
/// default image, waits for machines to carry an image, and follows,
/// resumes or aborts rollouts. Everything it writes is an ordinary message
/// on the bus, so the dominator (and anyone reading the streams) sees it at
/// once.
#[derive(Debug, Parser)]
#[command(name = "domtool", version = dom_version::VERSION)]
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
        /// Clear it even if the image named does not resolve.
        #[arg(long)]
        force: bool,
    },
    /// Hold one machine: nothing changes on it until the time is up or
    /// `resume`. At least a minute, at most a day (the dominator's
    /// `--max-pause`).
    Pause {
        /// The machine to hold.
        host: String,
        /// How long, e.g. 30m, 2h.
        #[arg(long = "for", value_name = "DURATION", value_parser = humantime::parse_duration)]
        duration: std::time::Duration,
        /// Why, for the record and the status page.
        reason: String,
        /// Pause a machine that is not in the MDB (yet).
        #[arg(long)]
        force: bool,
    },
    /// Let a paused machine update again.
    Resume {
        /// The paused machine.
        host: String,
    },
    /// Set the agents' settings, for the fleet or (with --host) one
    /// machine, over the fleet's. Settings not named are kept.
    ConfigureSubs {
        /// The one machine they are for.
        #[arg(long)]
        host: Option<String>,
        /// Share of the disk's read bandwidth the scan may use, e.g. 2 or
        /// 0.1 (percent).
        #[arg(long, value_name = "PERCENT")]
        scan_speed_percent: Option<dom_model::desired::ScanPercent>,
        /// Most bytes per second to fetch objects at.
        #[arg(long, value_name = "BYTES", value_parser = clap::value_parser!(u64).range(1..))]
        fetch_rate: Option<u64>,
        /// Drop the settings (the fleet's, or the machine's own), back to
        /// the agents' defaults (or the fleet's).
        #[arg(long, conflicts_with_all = ["scan_speed_percent", "fetch_rate"])]
        clear: bool,
    },
    /// The agents' settings: the fleet's, and every machine's own, with
    /// who set them and when.
    GetSubsConfiguration,
    /// The image of machines whose MDB record names none.
    SetDefaultImage {
        /// The image; "" (or --none) for no default.
        #[arg(required_unless_present = "none")]
        image: Option<String>,
        /// No default image: machines without a RequiredImage are left alone.
        #[arg(long, conflicts_with = "image")]
        none: bool,
        /// Set it even if the image does not resolve.
        #[arg(long)]
        force: bool,
    },
    /// The default image, with who set it and when.
    GetDefaultImage,
    /// Wait until every HOST carries IMAGE and is healthy. Exits 0 when
    /// they do, 1 when an update to IMAGE or its health check failed on
    /// one of them, 3 at the timeout.
    Wait {
        /// The machines to wait for.
        #[arg(required = true, value_name = "HOST")]
        hosts: Vec<String>,
        /// The image they must carry.
        #[arg(long)]
        image: String,
        /// How long to wait, e.g. 90s, 5m.
        #[arg(long, value_name = "DURATION", default_value = "5m", value_parser = humantime::parse_duration)]
        timeout: std::time::Duration,
        /// Count only the results of updates and health checks that start
        /// after waiting began (by default a failure already reported
        /// counts: it is where the machine stands).
        #[arg(long)]
        ignore_earlier: bool,
    },
    /// Move one machine now, past its rollout's waves: optionally set its
    /// RequiredImage first, then wait for it to carry the image and be
    /// healthy (exit status as `wait`).
    FastUpdate {
        /// The machine to move.
        host: String,
        /// Require this image in the machine's MDB record first (its other
        /// fields are kept); default: the image the record requires.
        #[arg(long)]
        image: Option<String>,
        /// How long to wait, e.g. 90s, 5m.
        #[arg(long, value_name = "DURATION", default_value = "5m", value_parser = humantime::parse_duration)]
        timeout: std::time::Duration,
        /// Ask for it and return at once.
        #[arg(long)]
        no_wait: bool,
        /// Set an image that does not resolve.
        #[arg(long)]
        force: bool,
    },
    /// Follow an image's rollout, set its canary, resume or abort it.
    #[command(subcommand)]
    Rollout(RolloutCommand),
}

#[derive(Debug, Subcommand)]
pub enum RolloutCommand {
    /// Where each rollout stands (or IMAGE's): phase, wave, counts, the
    /// machines that failed and why, and the last operator or dominator
    /// control.
    Status {
        /// Only this image's rollout.
        image: Option<String>,
    },
    /// Let a halted or aborted rollout go on; the failures that stopped it
    /// are forgiven.
    Resume {
        /// The image whose rollout goes on.
        image: String,
        /// Why, for the record.
        #[arg(long, default_value = "")]
        reason: String,
    },
    /// Give IMAGE's rollout a canary of its own, over the dominator's
    /// --canary: `N` machines or `P%` of those requiring it (`0`: no
    /// waves). Set it before the MDB points machines at the image.
    Canary {
        /// The image whose rollout it is for.
        image: String,
        /// `N` or `P%`.
        canary: String,
    },
    /// Stop a rollout for good (until resumed): nothing more moves to
    /// IMAGE.
    Abort {
        /// The image whose rollout stops.
        image: String,
        /// Also send the machines it reached and that are not done back to
        /// the image each carried before.
        #[arg(long)]
        revert: bool,
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
        /// Set the record even if an image does not resolve (not added
        /// yet, deleted or expired).
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
        /// Load records naming images that do not resolve.
        #[arg(long)]
        force: bool,
    },
    /// Print the whole MDB as a Dominator mdb.json file.
    Export,
}
