//! The dominator: the fleet's controller.
//!
//! It reads the MDB (which image each machine should carry), the image
//! records, the machines' state reports, the operators' controls and the
//! desired states it published before, all from the bus, and publishes
//! each machine's desired state whenever the policy
//! ([`dom_model::policy`]) says it changed. It keeps no state of its own,
//! so it can be restarted at any time.
//!
//! - [`herd`]: the decision loop, over the fleet's view
//!   ([`dom_bus::view`], the same `domtool` builds).
//! - [`notices`]: the events the dominator publishes about machines.
//! - [`status`]: the live status, shared by the loop and the HTTP side.
//! - [`http`], [`live`], [`pages`], [`metrics`]: the status page, its
//!   live feed, the machine and image pages, and Prometheus metrics.
//! - [`history`]: the last hour of the fleet's counts, for the page's
//!   chart.

pub mod cli;
pub mod herd;
pub mod history;
pub mod http;
pub mod live;
pub mod metrics;
pub mod notices;
pub mod pages;
pub mod status;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use dom_bus::{Bus, BusError};
use tokio::task::JoinHandle;

pub use cli::Cli;
pub use herd::Settings;
pub use status::{Board, Status};

/// A running dominator: its decision loop and, if asked for, its HTTP
/// server. Dropping it stops both.
pub struct Dominator {
    board: Arc<Board>,
    http: Option<SocketAddr>,
    herd: JoinHandle<Result<(), BusError>>,
    /// Frees the lease when stopped cleanly.
    release: Option<dom_bus::lease::Release>,
    server: Option<JoinHandle<()>>,
    feed: Option<JoinHandle<()>>,
}

impl Dominator {
    /// Starts deciding for the fleet on `bus`, and serving the status on
    /// `http` if given (`127.0.0.1:0` picks a free port: see
    /// [`Dominator::http_addr`]).
    pub async fn start(bus: Bus, settings: Settings, http: Option<&str>) -> anyhow::Result<Self> {
        let (board, server, feed, addr) = match http {
            Some(flag) => {
                let listener = dom_web::bind(flag).await?;
                let addr = listener.local_addr()?;
                // The page shows state reports: the board keeps them.
                let board = Arc::new(Board::keeping_reports());
                let feed = live::Feed::new(board.clone(), settings.history_every);
                let app = Arc::new(http::App {
                    board: board.clone(),
                    feed: feed.clone(),
                    bus: bus.clone(),
                });
                let router = http::router(app);
                let server = tokio::spawn(async move {
                    if let Err(e) = dom_web::serve(listener, router, std::future::pending()).await {
                        tracing::error!(error = %e, "the HTTP server stopped");
                    }
                });
                let feed = tokio::spawn(feed.run());
                if !settings.store_every.is_zero() {
                    tokio::spawn(measure_store(
                        bus.clone(),
                        Arc::downgrade(&board),
                        settings.store_every,
                    ));
                }
                (board, Some(server), Some(feed), Some(addr))
            }
            None => (Arc::new(Board::default()), None, None, None),
        };
        let (lease, release) = bus.hold_lease(herd::LEASE, &settings.id);
        let herd = tokio::spawn(herd::run(bus, settings, board.clone(), lease));
        Ok(Self {
            board,
            http: addr,
            herd,
            release: Some(release),
            server,
            feed,
        })
    }

    /// Stops deciding and, if this dominator is the active one, hands the
    /// lease on, so that a standby takes over at its next try instead of
    /// once the lease expires. Dropping a `Dominator` instead stops it as
    /// a crash would.
    pub async fn stop(mut self) {
        self.herd.abort();
        let _ = (&mut self.herd).await;
        if let Some(release) = self.release.take() {
            release.release().await;
        }
    }

    /// The live status.
    pub fn board(&self) -> &Arc<Board> {
        &self.board
    }

    /// Where the HTTP server listens.
    pub fn http_addr(&self) -> Option<SocketAddr> {
        self.http
    }

    /// Runs until the decision loop fails.
    pub async fn wait(&mut self) -> anyhow::Result<()> {
        match (&mut self.herd).await {
            Ok(result) => Ok(result?),
            Err(e) => Err(anyhow::anyhow!("decision loop failed: {e}")),
        }
    }
}

impl Drop for Dominator {
    fn drop(&mut self) {
        self.herd.abort();
        for task in [&self.server, &self.feed].into_iter().flatten() {
            task.abort();
        }
    }
}

/// Runs the dominator the command line describes, until `shutdown`
/// completes (the binary passes [`dom_bus::shutdown::signalled`]) or it
/// fails.
pub async fn run(cli: Cli, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
    let bus = Bus::connect(&cli.connect, "dominator").await?;
    let settings = Settings {
        max_concurrent: cli.max_concurrent,
        max_high_impact: cli.max_high_impact,
        rollout: dom_model::policy::RolloutPolicy {
            canary: cli.canary,
            halt_after: cli.halt_after,
            halt_rate: cli.halt_rate,
            unresponsive_after_s: cli.unresponsive_after.as_secs(),
        },
        max_pause: cli.max_pause,
        id: cli.id.clone().unwrap_or_else(dom_bus::stamp::host),
        store_every: cli.store_every,
        ..Settings::default()
    };
    let http = dom_web::serves(&cli.http);
    let dominator = Dominator::start(bus, settings, http).await?;
    if let Some(addr) = dominator.http_addr() {
        tracing::info!(%addr, "serving the status page, /metrics, /healthz and /status");
    }
    let mut dominator = dominator;
    let failed = tokio::select! {
        result = dominator.wait() => Some(result),
        () = shutdown => None,
    };
    match failed {
        Some(result) => result,
        None => {
            dominator.stop().await;
            Ok(())
        }
    }
}

/// Measures the object store and the fleet's streams every `every` for
/// `/metrics`, for as long as the board (the dominator) lives.
async fn measure_store(bus: Bus, board: std::sync::Weak<Board>, every: std::time::Duration) {
    loop {
        let measured = dom_store::usage::Usage::measure(&bus).await;
        let streams = bus.stream_usage().await;
        let Some(board) = board.upgrade() else { return };
        match measured {
            Ok(usage) => board.metrics().store(&usage),
            Err(e) => tracing::warn!(error = %e, "cannot measure the object store"),
        }
        match streams {
            Ok(streams) => board.metrics().streams(&streams),
            Err(e) => tracing::warn!(error = %e, "cannot measure the streams"),
        }
        drop(board);
        tokio::time::sleep(every).await;
    }
}

/// Logging as every tool sets it up (quiet by default, `-v`, `-vv`).
pub use dom_bus::init_logging;

pub(crate) use dom_bus::stamp::{now_rfc3339, now_unix};
