//! The continuous scan of the machine's root, on threads of its own.
//!
//! Two loops share one hash cache and one rate limit:
//!
//! - the **quick scan** runs over and over, a short pause apart. It trusts
//!   the hash of every inode whose device, number, size, mtime and ctime
//!   are what they were when hashed, so a scan of an unchanged tree reads
//!   no file contents and any edit, chmod or deletion shows up in the next
//!   one;
//! - the **full rehash** hashes everything again into a fresh cache, at the
//!   rate limit, and then replaces the shared cache with it. It catches
//!   content that changed without touching the inode's times (a disk
//!   error, a write to the raw device), which the quick scan would trust.
//!
//! Both leave out the image's filtered paths and the agent's own state.
//! Results go to the agent through a callback; the agent tells the scanner
//! which filter to use ([`ScanSpec`]) and when to scan again at once.

use std::path::PathBuf;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant, SystemTime};

use dom_model::{Filter, Manifest};
use dom_scan::{scan_tree, Counters, HashCache, RateLimit, ScanOptions};

/// Least time between two saves of the hash cache after quick scans.
const CACHE_SAVE_INTERVAL: Duration = Duration::from_secs(60);

/// What to scan with. `epoch` names the filter, so the agent can tell a
/// scan made with the current filter from an older one.
#[derive(Clone, Debug)]
pub struct ScanSpec {
    pub filter: Filter,
    pub epoch: u64,
    pub rate: Option<Arc<RateLimit>>,
}

/// One quick scan.
#[derive(Debug)]
pub struct Scanned {
    pub epoch: u64,
    /// When it started, on the monotonic clock and the wall clock.
    pub started: Instant,
    pub started_at: SystemTime,
    pub duration: Duration,
    /// The tree found, or why the scan failed.
    pub tree: Result<Manifest, String>,
    /// Regular files and their bytes.
    pub files: u64,
    pub bytes: u64,
    /// Bytes actually read (the rest were known unchanged).
    pub hashed_bytes: u64,
}

/// What the scanner tells the agent.
#[derive(Debug)]
pub enum ScanEvent {
    Quick(Scanned),
    /// A full rehash finished; the shared cache now holds its hashes.
    Rehashed {
        duration: Duration,
        error: Option<String>,
    },
}

/// How the scanner runs.
#[derive(Clone, Debug)]
pub struct ScanSettings {
    pub root: PathBuf,
    /// Image paths never entered (the agent's state).
    pub protected: Vec<String>,
    /// Pause after each quick scan.
    pub interval: Duration,
    /// Least time between the starts of two full rehashes.
    pub rehash_interval: Duration,
    pub threads: usize,
    /// Where the hash cache is saved.
    pub cache_path: PathBuf,
}

struct Control {
    spec: ScanSpec,
    stop: bool,
    /// A quick scan was asked for: start one without waiting.
    now: bool,
    /// No scan starts while held (an update is changing the tree).
    held: bool,
}

struct Shared {
    settings: ScanSettings,
    control: Mutex<Control>,
    wake: Condvar,
    cache: Mutex<Arc<HashCache>>,
    report: Box<dyn Fn(ScanEvent) + Send + Sync>,
}

/// A running scanner. Dropping it stops both loops after their current
/// scan.
pub struct Scanner {
    shared: Arc<Shared>,
}

impl Scanner {
    /// Starts both loops with the hash cache saved by an earlier run.
    pub fn start(
        settings: ScanSettings,
        spec: ScanSpec,
        report: impl Fn(ScanEvent) + Send + Sync + 'static,
    ) -> Self {
        let cache = HashCache::load(&settings.cache_path);
        let shared = Arc::new(Shared {
            settings,
            control: Mutex::new(Control {
                spec,
                stop: false,
                now: true,
                held: false,
            }),
            wake: Condvar::new(),
            cache: Mutex::new(Arc::new(cache)),
            report: Box::new(report),
        });
        let quick = shared.clone();
        std::thread::Builder::new()
            .name("subd-scan".into())
            .spawn(move || quick.quick_loop())
            .expect("starting the scan thread");
        let full = shared.clone();
        std::thread::Builder::new()
            .name("subd-rehash".into())
            .spawn(move || full.rehash_loop())
            .expect("starting the rehash thread");
        Self { shared }
    }

    /// Scans with `spec` from now on, starting a quick scan at once.
    pub fn set_spec(&self, spec: ScanSpec) {
        let mut control = self.shared.control.lock().expect("scan control");
        control.spec = spec;
        control.now = true;
        self.shared.wake.notify_all();
    }

    /// Starts a quick scan as soon as the current one (if any) ends.
    pub fn rescan(&self) {
        self.shared.control.lock().expect("scan control").now = true;
        self.shared.wake.notify_all();
    }

    /// Holds new scans back (`true`) while the tree is being changed.
    pub fn hold(&self, held: bool) {
        self.shared.control.lock().expect("scan control").held = held;
        self.shared.wake.notify_all();
    }
}

impl Drop for Scanner {
    fn drop(&mut self) {
        self.shared.control.lock().expect("scan control").stop = true;
        self.shared.wake.notify_all();
    }
}

impl Shared {
    /// Waits until a scan may start: `due` has come or a scan was asked
    /// for, and nothing holds scans back. `None` when stopping.
    fn wait(&self, due: Option<Instant>, quick: bool) -> Option<ScanSpec> {
        let mut control = self.control.lock().expect("scan control");
        loop {
            if control.stop {
                return None;
            }
            let asked = quick && control.now;
            let timeout = match due {
                _ if control.held => None,
                _ if asked => break,
                Some(due) => match due.checked_duration_since(Instant::now()) {
                    None => break,
                    Some(left) => Some(left),
                },
                None => None,
            };
            control = match timeout {
                Some(left) => {
                    self.wake
                        .wait_timeout(control, left)
                        .expect("scan control")
                        .0
                }
                None => self.wake.wait(control).expect("scan control"),
            };
        }
        if quick {
            control.now = false;
        }
        Some(control.spec.clone())
    }

    fn stopped(&self) -> bool {
        self.control.lock().expect("scan control").stop
    }

    fn options(&self, spec: &ScanSpec, cache: Arc<HashCache>) -> ScanOptions {
        ScanOptions {
            filter: spec.filter.clone(),
            protected: self.settings.protected.clone(),
            cache: Some(cache),
            rate: spec.rate.clone(),
            one_file_system: true,
            threads: self.settings.threads,
            skip_unrepresentable: true,
            ..ScanOptions::default()
        }
    }

    fn quick_loop(&self) {
        let mut due = Some(Instant::now());
        let mut first = true;
        let mut saved = Instant::now();
        while let Some(spec) = self.wait(due, true) {
            let cache = self.cache.lock().expect("hash cache").clone();
            let options = self.options(&spec, cache.clone());
            let counters = Counters::default();
            let (started, started_at) = (Instant::now(), SystemTime::now());
            let tree = scan_tree(&self.settings.root, &options, &counters)
                .map(|scan| scan.manifest)
                .map_err(|e| e.to_string());
            let duration = started.elapsed();
            if self.stopped() {
                return;
            }
            let (files, bytes) = counters.counts();
            let hashed_bytes = counters
                .hashed_bytes
                .load(std::sync::atomic::Ordering::Relaxed);
            tracing::debug!(files, bytes, hashed_bytes, ?duration, "scanned");
            // Something hashed is something the cache learned.
            let learned = hashed_bytes > 0;
            if first || (learned && saved.elapsed() >= CACHE_SAVE_INTERVAL) {
                self.save_cache(&cache);
                saved = Instant::now();
                first = false;
            }
            (self.report)(ScanEvent::Quick(Scanned {
                epoch: spec.epoch,
                started,
                started_at,
                duration,
                tree,
                files,
                bytes,
                hashed_bytes,
            }));
            due = Some(Instant::now() + self.settings.interval);
        }
    }

    fn rehash_loop(&self) {
        // The first quick scan hashes whatever the saved cache lacks.
        let mut due = Some(Instant::now() + self.settings.rehash_interval);
        while let Some(spec) = self.wait(due, false) {
            let fresh = Arc::new(HashCache::new());
            let options = self.options(&spec, fresh.clone());
            let started = Instant::now();
            let result = scan_tree(&self.settings.root, &options, &Counters::default());
            if self.stopped() {
                return;
            }
            let error = match result {
                Ok(_) => {
                    *self.cache.lock().expect("hash cache") = fresh.clone();
                    self.save_cache(&fresh);
                    None
                }
                Err(e) => Some(e.to_string()),
            };
            (self.report)(ScanEvent::Rehashed {
                duration: started.elapsed(),
                error,
            });
            // Never back to back faster than a quick-scan pause, so an
            // empty tree cannot spin.
            let next = started + self.settings.rehash_interval;
            due = Some(next.max(Instant::now() + self.settings.interval));
        }
    }

    fn save_cache(&self, cache: &HashCache) {
        if let Err(e) = cache.save(&self.settings.cache_path) {
            tracing::warn!(path = %self.settings.cache_path.display(), error = %e, "cannot save the hash cache");
        }
    }
}
