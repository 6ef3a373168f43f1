//! The agent: one machine kept on its image.
//!
//! [`Agent::start`] checks the setup (host name, root, state directory),
//! then runs, on the current tokio runtime, a loop that owns the machine's
//! standing and reacts to three things:
//!
//! - a desired state from the bus ([`crate::link`]): its manifest is read,
//!   kept in the state directory with it, and enforced from then on (a
//!   refused one is reported and changes nothing);
//! - a scan of the root ([`crate::scanner`]): a new tree is a new
//!   generation; it is compared with the image, and when they differ and
//!   updates are allowed, the plan is fetched and applied
//!   ([`crate::enforce`]), after asking the dominator when it fires
//!   HighImpact triggers ([`crate::high_impact`]). A new desired state
//!   asks for an urgent scan (at full speed, whatever the rate limit),
//!   and an update is confirmed by a look at what it changed
//!   ([`crate::confirm`]), so neither waits for background scanning;
//! - a request to stop.
//!
//! Until the bus is reachable the agent enforces the desired state it
//! kept, so a machine that boots without NATS still holds its image.

use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use dom_model::{DesiredState, Filter, Manifest, StateReport, Triggers};
use dom_store::Store;
use thiserror::Error;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tracing::Instrument;

use crate::config::Config;
use crate::converge::Converger;
use crate::link::{Inbound, Link};
use crate::objects::ObjectCache;
use crate::persist::{Applied, StateDir};
use crate::prefetch::Prefetch;
use crate::report::{self, worth_publishing};
use crate::scanner::{ScanEvent, ScanSettings, Scanner};
use crate::web::Observed;

/// How long a stopping or restarting agent waits for its last reports.
const FLUSH_LIMIT: Duration = Duration::from_secs(5);

#[derive(Debug, Error)]
pub enum AgentError {
    #[error("invalid host name {0:?}: use letters, digits, '-', '_' and single dots")]
    Host(String),
    #[error("root {}: {reason}", path.display())]
    Root { path: PathBuf, reason: String },
    #[error("state directory {}: {reason}", path.display())]
    StateDir { path: PathBuf, reason: String },
    #[error("{0}")]
    Http(String),
}

/// Why an agent's loop ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Exit {
    /// It was asked to stop.
    Stopped,
    /// An update changed the agent's own files (its service's triggers
    /// fired): the process should restart itself.
    Restart,
}

/// A running agent.
pub struct Agent {
    stop: watch::Sender<bool>,
    task: JoinHandle<Exit>,
    http: Option<(SocketAddr, JoinHandle<()>)>,
}

impl Agent {
    /// Checks the setup and starts the agent on the current runtime.
    pub fn start(config: Config) -> Result<Self, AgentError> {
        let span = tracing::info_span!("subd", host = %config.host);
        let observed = Arc::new(Observed::new(&config.host));
        let listener = match &config.http {
            Some(flag) => Some(crate::web::bind(flag).map_err(AgentError::Http)?),
            None => None,
        };
        let core = Core::new(config, observed.clone())?;
        let http = listener.map(|(listener, addr)| {
            tracing::info!(%addr, "serving the status page and metrics");
            let server = tokio::spawn(crate::web::serve(listener, observed));
            (addr, server)
        });
        let (stop, stopped) = watch::channel(false);
        let task = tokio::spawn(core.run(stopped).instrument(span));
        Ok(Self { stop, task, http })
    }

    /// Where the status page and metrics are served, if they are.
    pub fn http_address(&self) -> Option<SocketAddr> {
        self.http.as_ref().map(|(addr, _)| *addr)
    }

    /// Stops the agent and waits for its loop to end. Scans under way
    /// finish in the background and are discarded.
    pub async fn stop(self) -> Exit {
        let _ = self.stop.send(true);
        let exit = self.task.await.unwrap_or(Exit::Stopped);
        if let Some((_, server)) = self.http {
            server.abort();
        }
        exit
    }

    /// Waits for the agent to end on its own (to restart itself).
    pub async fn wait(self) -> Exit {
        let Self { stop, task, http } = self;
        let exit = task.await.unwrap_or(Exit::Stopped);
        drop(stop);
        if let Some((_, server)) = http {
            server.abort();
        }
        exit
    }
}

/// Runs an agent until `shutdown` completes or it asks to be restarted.
pub async fn run(config: Config, shutdown: impl Future<Output = ()>) -> Result<Exit, AgentError> {
    let agent = Agent::start(config)?;
    let Agent {
        stop,
        mut task,
        http,
    } = agent;
    let exit = tokio::select! {
        exit = &mut task => exit.unwrap_or(Exit::Stopped),
        () = shutdown => {
            let _ = stop.send(true);
            task.await.unwrap_or(Exit::Stopped)
        }
    };
    if let Some((_, server)) = http {
        server.abort();
    }
    Ok(exit)
}

/// Something for the agent's loop to handle.
enum Work {
    Link(Box<Inbound>),
    Scan(ScanEvent),
    Health(crate::health::Checked),
    /// Time to look at the free space again, for an update refused for
    /// want of it.
    Space,
}

/// The desired state being enforced, with what it needs compiled.
pub(crate) struct Current {
    pub sequence: u64,
    pub state: DesiredState,
    pub manifest: Arc<Manifest>,
    pub filter: Option<Filter>,
    pub triggers: Triggers,
    /// The state carries a HighImpact grant the bus delivered to this run
    /// (see [`crate::high_impact`]).
    pub granted: bool,
}

/// The agent's loop and everything it owns.
pub(crate) struct Core {
    pub config: Config,
    pub started: Instant,
    pub state_dir: StateDir,
    pub converger: Converger,
    /// Image paths the agent never touches: its own state.
    pub protected: Vec<String>,
    pub scanner: Option<Scanner>,
    pub link: Option<Link>,
    pub store: Option<Store>,
    /// The disk's speed the background scans take their share of.
    pub media: crate::media::Media,
    pub current: Option<Current>,
    /// The agent waits for a scan to act on (a new desired state, an update
    /// to confirm): scans are asked for as urgent until one comes.
    pub urgent: bool,
    /// A desired state accepted but not yet enforced: its manifest is
    /// still to be read.
    pub waiting: Option<(u64, DesiredState)>,
    /// The desired state last accepted being kept in the state directory.
    pub keeping: Option<JoinHandle<std::io::Result<()>>>,
    /// Names the filter scans are made with.
    pub epoch: u64,
    pub applied: Applied,
    /// The last scan's tree (or what an update was confirmed to leave).
    pub tree: Option<Arc<Manifest>>,
    /// Serving that tree and its files to captures ([`crate::capture`]).
    pub capture: crate::capture::Capture,
    pub generation: u64,
    pub full_scans: u64,
    /// Whether the machine matched the current image at the last look.
    pub compliant: Option<bool>,
    /// Scans started before this instant may predate the last update.
    pub settled: Instant,
    pub retry_at: Option<Instant>,
    pub retry_delay: Duration,
    pub report: StateReport,
    pub published: Option<StateReport>,
    /// Standing problems, reported in the state report's `error`.
    pub desired_error: Option<String>,
    pub manifest_error: Option<String>,
    pub scan_error: Option<String>,
    /// The update refused for want of space (see [`crate::space`]).
    pub space_error: Option<String>,
    /// Free bytes that update needs.
    pub space_needed: u64,
    pub restart: bool,
    pub prefetch: Prefetch,
    /// What the status page and metrics show.
    pub observed: Arc<Observed>,
    /// The health check under way ([`crate::health`]), and where its
    /// result goes.
    pub checking: crate::health::Checking,
    pub health_results: mpsc::UnboundedSender<crate::health::Checked>,
    health_inbox: Option<mpsc::UnboundedReceiver<crate::health::Checked>>,
}

impl Core {
    fn new(config: Config, observed: Arc<Observed>) -> Result<Self, AgentError> {
        if !dom_model::desired::is_valid_host(&config.host) {
            return Err(AgentError::Host(config.host.clone()));
        }
        let root_error = |reason: String| AgentError::Root {
            path: config.root.clone(),
            reason,
        };
        let root = config
            .root
            .canonicalize()
            .map_err(|e| root_error(e.to_string()))?;
        if !root.is_dir() {
            return Err(root_error("not a directory".into()));
        }
        let state_error = |reason: String| AgentError::StateDir {
            path: config.state_dir.clone(),
            reason,
        };
        let state_dir =
            StateDir::open(&config.state_dir).map_err(|e| state_error(e.to_string()))?;
        let state_path = state_dir
            .path()
            .canonicalize()
            .map_err(|e| state_error(e.to_string()))?;
        if device(&root) != device(&state_path) {
            return Err(state_error(format!(
                "not on the file system of the root {}; objects are installed by rename",
                root.display()
            )));
        }
        let objects =
            ObjectCache::open(state_dir.objects()).map_err(|e| state_error(e.to_string()))?;
        let mut protected = vec![format!("/{}", crate::config::STATE_DIR_NAME)];
        if let Some(inside) = image_path(&root, &state_path) {
            if !protected.contains(&inside) {
                protected.push(inside);
            }
        }
        let applied = state_dir.load_applied();
        let mut report = StateReport::new(&config.host);
        report.agent_version = report::AGENT_VERSION.into();
        report.image = applied.image.clone();
        report.last_update = applied.last_update.clone();
        report.health = applied.health.clone();
        let converger = Converger::new(
            root.clone(),
            objects,
            config.service_command.clone(),
            config.reboot_command.clone(),
        );
        let config = Config { root, ..config };
        let (health_results, health_inbox) = crate::health::results();
        Ok(Self {
            started: Instant::now(),
            state_dir,
            converger,
            protected,
            scanner: None,
            link: None,
            store: None,
            media: crate::media::Media::new(config.media_speed),
            current: None,
            urgent: false,
            waiting: None,
            keeping: None,
            epoch: 0,
            applied,
            tree: None,
            capture: crate::capture::Capture::new(),
            generation: 0,
            full_scans: 0,
            compliant: None,
            settled: Instant::now(),
            retry_at: None,
            retry_delay: config.retry_min,
            report,
            published: None,
            desired_error: None,
            manifest_error: None,
            scan_error: None,
            space_error: None,
            space_needed: 0,
            restart: false,
            prefetch: Prefetch::default(),
            observed,
            checking: crate::health::Checking::default(),
            health_results,
            health_inbox: Some(health_inbox),
            config,
        })
    }

    async fn run(mut self, mut stop: watch::Receiver<bool>) -> Exit {
        let (inbound_tx, mut inbound) = mpsc::unbounded_channel();
        let (scan_tx, mut scans) = mpsc::unbounded_channel();
        let mut health = self.health_inbox.take().expect("the loop runs once");
        let mut space = tokio::time::interval(crate::space::RECHECK);
        space.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        self.link = Some(Link::start(
            self.config.connect.clone(),
            self.config.host.clone(),
            inbound_tx,
        ));
        if let Some(kept) = self.state_dir.load_desired() {
            tracing::info!(image = %kept.state.image, "enforcing the kept desired state");
            let encoded = kept.manifest.encode();
            self.adopt(
                kept.sequence,
                kept.state,
                Arc::new(kept.manifest),
                &encoded,
                false,
            )
            .await;
        }
        let spec = self.scan_spec().await;
        let settings = ScanSettings {
            root: self.config.root.clone(),
            protected: self.protected.clone(),
            interval: self.config.scan_interval,
            rehash_interval: self.config.rehash_interval,
            threads: self.config.scan_threads,
            cache_path: self.state_dir.hash_cache(),
            limit_urgent: self.config.limit_urgent_scans,
        };
        self.scanner = Some(Scanner::start(settings, spec, move |event| {
            let _ = scan_tx.send(event);
        }));
        if self.current.is_some() {
            // The kept desired state is enforced from the first scan on.
            self.scan_urgently();
        }
        self.publish();
        self.resume_health_check().await;
        let exit = loop {
            let work = tokio::select! {
                _ = stop.changed() => break Exit::Stopped,
                Some(message) = inbound.recv() => Work::Link(Box::new(message)),
                Some(event) = scans.recv() => Work::Scan(event),
                Some(checked) = health.recv() => Work::Health(checked),
                _ = space.tick(), if self.space_error.is_some() => Work::Space,
            };
            // Stopping does not wait for a fetch or for the bus; an update
            // already changing the tree is seen through, until its result
            // is recorded in the state directory and reported, so that a
            // restart neither forgets what the machine now carries nor
            // loses the update's event.
            let converger = self.converger.clone();
            let stopped = {
                let handling = self.handle(work);
                tokio::pin!(handling);
                tokio::select! {
                    biased;
                    _ = stop.changed() => {
                        if converger.mid_update() {
                            tracing::info!("stopping once the update under way is recorded");
                            handling.await;
                        }
                        true
                    }
                    () = &mut handling => false,
                }
            };
            if stopped {
                break Exit::Stopped;
            }
            if self.restart {
                break Exit::Restart;
            }
        };
        self.observed.stopped();
        self.kept().await;
        self.converger.idle().await;
        if let Some(link) = &self.link {
            link.flush(FLUSH_LIMIT).await;
        }
        exit
    }

    async fn handle(&mut self, work: Work) {
        match work {
            Work::Link(message) => match *message {
                Inbound::Connected(bus) => self.connected(*bus).await,
                Inbound::Desired(message) => self.desired(*message).await,
            },
            Work::Scan(ScanEvent::Quick(scanned)) => self.scanned(scanned).await,
            Work::Scan(ScanEvent::Rehashing) => self.observed.rehashing(true),
            Work::Scan(ScanEvent::Rehashed { duration, error }) => self.rehashed(duration, error),
            Work::Health(checked) => self.health_done(checked).await,
            Work::Space => self.recheck_space().await,
        }
    }

    async fn connected(&mut self, bus: dom_bus::Bus) {
        self.capture.serve(
            bus.clone(),
            self.config.host.clone(),
            self.config.root.clone(),
        );
        match Store::open(&bus).await {
            Ok(store) => {
                self.store = Some(store);
                // Whatever failed before may have failed for want of it.
                self.retry_at = None;
                self.retry_delay = self.config.retry_min;
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot open the object store");
                return;
            }
        }
        self.load_waiting().await;
    }

    fn rehashed(&mut self, duration: Duration, error: Option<String>) {
        self.observed.rehashing(false);
        match error {
            None => {
                self.full_scans += 1;
                self.report.scan.full_scans = self.full_scans;
                tracing::debug!(?duration, "full rehash done");
            }
            Some(e) => tracing::warn!(error = %e, "full rehash failed"),
        }
    }

    /// Takes `tree` as the machine's, and offers it to captures.
    pub(crate) fn set_tree(&mut self, tree: Manifest) {
        let tree = Arc::new(tree);
        self.capture.share(tree.clone());
        self.tree = Some(tree);
    }

    /// Asks for a scan to act on, at full speed.
    pub(crate) fn scan_urgently(&mut self) {
        self.urgent = true;
        if let Some(scanner) = &self.scanner {
            scanner.urgent();
        }
    }

    pub(crate) fn send_event(&self, event: dom_model::Event) {
        self.observed.event(&event);
        if let Some(link) = &self.link {
            link.send_event(event);
        }
    }

    /// Publishes the state report if it says something new.
    pub(crate) fn publish(&mut self) {
        self.report.error = self
            .desired_error
            .clone()
            .or_else(|| self.manifest_error.clone())
            .or_else(|| self.scan_error.clone())
            .or_else(|| self.space_error.clone());
        self.report.generation = self.generation;
        self.report.image = self.applied.image.clone();
        if !worth_publishing(self.published.as_ref(), &self.report) {
            self.observed.reported(&self.report, false);
            return;
        }
        self.report.uptime_s = self.started.elapsed().as_secs();
        self.report.free_bytes = report::free_bytes(&self.config.root);
        self.report.object_cache_bytes = self.converger.cached_bytes();
        if let Some(link) = &self.link {
            link.send_state(self.report.clone());
        }
        self.observed.reported(&self.report, true);
        self.published = Some(self.report.clone());
    }
}

/// The device a path lives on.
fn device(path: &Path) -> Option<u64> {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(path).ok().map(|m| m.dev())
}

/// `state` as an image path under `root` (`/.subd`), if it is inside.
fn image_path(root: &Path, state: &Path) -> Option<String> {
    let rest = state.strip_prefix(root).ok()?;
    let rest = rest.to_str()?;
    (!rest.is_empty()).then(|| format!("/{rest}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn observed() -> Arc<Observed> {
        Arc::new(Observed::new("h1"))
    }

    #[test]
    fn bad_setups_are_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let missing = Config::new("h1", tmp.path().join("missing"));
        let error = Core::new(missing, observed()).err().unwrap();
        assert!(matches!(error, AgentError::Root { .. }), "{error}");
        let error = Core::new(Config::new("bad host", tmp.path()), observed())
            .err()
            .unwrap();
        assert!(matches!(error, AgentError::Host(_)), "{error}");
        let file = tmp.path().join("file");
        std::fs::write(&file, b"x").unwrap();
        let error = Core::new(Config::new("h1", &file), observed())
            .err()
            .unwrap();
        assert!(!error.to_string().contains('\n'), "{error}");
        let mut config = Config::new("h1", tmp.path());
        config.state_dir = file.join("sub");
        let error = Core::new(config, observed()).err().unwrap();
        assert!(matches!(error, AgentError::StateDir { .. }), "{error}");
    }

    #[test]
    fn state_dir_inside_the_root_is_protected() {
        assert_eq!(
            image_path(Path::new("/srv/m"), Path::new("/srv/m/var/lib/subd")),
            Some("/var/lib/subd".into())
        );
        assert_eq!(
            image_path(Path::new("/srv/m"), Path::new("/srv/other")),
            None
        );
        assert_eq!(
            image_path(Path::new("/"), Path::new("/.subd")),
            Some("/.subd".into())
        );
    }
}
