//! Command-line flags.

use clap::Parser;
use dom_bus::{ConnectArgs, LogArgs};

fn parse_canary(s: &str) -> Result<dom_model::policy::Canary, String> {
    s.parse()
}

/// The fleet's controller: turns MDB records, images and state reports into
/// each machine's desired state.
///
/// It keeps no state of its own: at start it replays the last message of
/// every MDB, image, state, control and desired-state subject, then follows
/// them, publishing a machine's desired state only when it changes. It
/// holds machines whose image is unknown or deleted, honours per-machine
/// DisableUpdates, pauses and the fleet-wide emergency stop (domtool
/// disable-updates), rolls each image out in waves that halt on failures,
/// caps how many machines update at once and how many
/// run HighImpact triggers at once, and refuses updates that would wipe a
/// machine (the safety shutoff). A live status page, Prometheus metrics,
/// health and a JSON status are served over HTTP.
#[derive(Debug, Parser)]
#[command(name = "dominator", version = dom_version::VERSION)]
pub struct Cli {
    #[command(flatten)]
    pub connect: ConnectArgs,
    /// Serve the live status page, the machine and image pages, /metrics
    /// (Prometheus), /healthz and /status (JSON) on this address; `:PORT`
    /// listens on every interface, `off` (or "") serves nothing.
    #[arg(long, env = "DOM_HTTP", value_name = "ADDR", default_value = ":6970", value_parser = dom_web::parse_flag)]
    pub http: String,
    /// Most machines updating at once.
    #[arg(long, value_name = "N", default_value_t = dom_model::policy::DEFAULT_MAX_UPDATING)]
    pub max_concurrent: usize,
    /// Machines in the first wave of every image's rollout: `N` machines,
    /// or `P%` of those requiring the image. Each wave after it is four
    /// times the one before and starts only once every machine moved so
    /// far carries the image and is healthy; from the first wave as large
    /// as --max-concurrent, machines move as slots free up. `0` turns
    /// waves off.
    #[arg(long, value_name = "N|P%", default_value = "1", value_parser = parse_canary)]
    pub canary: dom_model::policy::Canary,
    /// Halt an image's rollout once this many of the machines it moved
    /// failed (their update, or their health check, failed). `0`: never on
    /// a count. A failure in a wave also halts it once the wave has
    /// nothing left moving, since the next wave could never start.
    #[arg(long, value_name = "N", default_value_t = dom_model::policy::rollout::DEFAULT_HALT_AFTER)]
    pub halt_after: usize,
    /// Halt an image's rollout once this share of the machines it moved
    /// failed, in percent.
    #[arg(long, value_name = "PERCENT", value_parser = clap::value_parser!(u32).range(1..=100))]
    pub halt_rate: Option<u32>,
    /// A machine told to move that has not said it heard this long after
    /// (its state report does not name the image) is taken for down: it
    /// no longer holds the next wave back.
    #[arg(long, value_name = "DURATION", default_value = "5m", value_parser = humantime::parse_duration)]
    pub unresponsive_after: std::time::Duration,
    /// The longest `domtool pause` holds a machine, whatever it asked for.
    #[arg(long, value_name = "DURATION", default_value = "24h", value_parser = humantime::parse_duration)]
    pub max_pause: std::time::Duration,
    /// Most machines running HighImpact triggers at once: agents ask before
    /// such an update, and wait for a grant.
    #[arg(long, value_name = "M", default_value_t = dom_model::policy::DEFAULT_MAX_HIGH_IMPACT)]
    pub max_high_impact: usize,
    /// This dominator's name among several for one fleet (default: the
    /// host name; one per host). All follow the streams; the one holding
    /// the lease on the bus publishes, and another takes over within a few
    /// seconds of it dying. Desired states say who published them.
    #[arg(long, env = "DOM_DOMINATOR_ID", value_name = "NAME")]
    pub id: Option<String>,
    /// How often to measure the object store for /metrics
    /// (`dominator_store`): it reads every live image's manifest, as
    /// `imagetool du` does. `0s` never measures.
    #[arg(long, value_name = "DURATION", default_value = "5m", value_parser = humantime::parse_duration)]
    pub store_every: std::time::Duration,
    #[command(flatten)]
    pub log: LogArgs,
}
