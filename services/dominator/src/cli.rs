//! Command-line flags.

use clap::Parser;
use dom_bus::{ConnectArgs, LogArgs};

/// The fleet's controller: turns MDB records, images and state reports into
/// each machine's desired state.
///
/// It keeps no state of its own: at start it replays the last message of
/// every MDB, image, state, control and desired-state subject, then follows
/// them, publishing a machine's desired state only when it changes. It
/// holds machines whose image is unknown or deleted, honours per-machine
/// DisableUpdates and the fleet-wide emergency stop (domtool
/// disable-updates), caps how many machines update at once and how many
/// run HighImpact triggers at once, and refuses updates that would wipe a
/// machine (the safety shutoff). A live status page, Prometheus metrics,
/// health and a JSON status are served over HTTP.
#[derive(Debug, Parser)]
#[command(name = "dominator", version)]
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
