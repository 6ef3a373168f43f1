//! The continuous scan of the machine's root, on threads of its own.
//!
//! Two loops share one hash cache:
//!
//! - the **quick scan** runs over and over, a short pause apart. It trusts
//!   the hash of every inode whose device, number, size, mtime and ctime
//!   are what they were when hashed, so a scan of an unchanged tree reads
//!   no file contents and any edit, chmod or deletion shows up in the next
//!   one;
//! - the **full rehash** hashes everything again, trusting nothing, and
//!   corrects the cache as it goes. It catches content that changed
//!   without touching the inode's times (a disk error, a write to the raw
//!   device), which the quick scan would trust.
//!
//! The rate limit is for background verification only (DESIGN section
//! 11). A quick scan the agent needs to act on a desired state or to
//! report an update is **urgent**: it reads at full speed, and one under
//! way when the agent asks is released from the limit on the spot. The
//! full rehash steps aside (it pauses) while any quick scan runs and while
//! an update is under way, so it never delays either; since it never
//! reads at the same time as a quick scan, the two together stay within
//! the limit.
//!
//! What an update wrote is [learned](Scanner::learn) by the cache, so the
//! scans after it read none of it.
//!
//! Both loops leave out the image's filtered paths and the agent's own
//! state. Results go to the agent through a callback; the agent tells the
//! scanner which filter to use ([`ScanSpec`]) and when to scan again.

use std::path::PathBuf;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant, SystemTime};

use dom_model::{Filter, Manifest, ObjectId};
use dom_scan::cache::Identity;
use dom_scan::{scan_tree, Counters, HashCache, RateLimit, ScanOptions};

/// Least time between two saves of the hash cache after quick scans.
const CACHE_SAVE_INTERVAL: Duration = Duration::from_secs(60);

/// What to scan with. `epoch` names the filter, so the agent can tell a
/// scan made with the current filter from an older one.
#[derive(Clone, Debug)]
pub struct ScanSpec {
    pub filter: Filter,
    pub epoch: u64,
    /// Bytes per second background scans may read; `None`: no limit.
    pub rate: Option<u64>,
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
    /// It read at full speed, for the agent to act on (see
    /// [`Scanner::urgent`]).
    pub urgent: bool,
}

/// What the scanner tells the agent.
#[derive(Debug)]
pub enum ScanEvent {
    Quick(Scanned),
    /// A full rehash started.
    Rehashing,
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
    /// Hold urgent scans to the rate limit too (an operator's choice; by
    /// default only background scans are limited).
    pub limit_urgent: bool,
}

struct Control {
    spec: ScanSpec,
    stop: bool,
    /// A quick scan was asked for: start one without waiting.
    now: bool,
    /// The next quick scan is urgent.
    urgent_next: bool,
    /// A quick scan is under way, and whether it was made urgent.
    quick_running: bool,
    running_urgent: bool,
    /// No scan starts while held (an update is changing the tree).
    held: bool,
    /// An update is under way (fetching or changing the tree).
    updating: bool,
    /// The limits made from `spec.rate`: one for quick scans (lifted
    /// while urgent), one for the rehash (paused while it must step
    /// aside). Every scan holds them, lifted while there is no limit, so
    /// a limit set while a scan runs holds it from then on.
    quick_rate: Arc<RateLimit>,
    rehash_rate: Arc<RateLimit>,
    /// `spec.rate` is a limit.
    limited: bool,
    /// Hold urgent scans to the limit too ([`ScanSettings::limit_urgent`]).
    limit_urgent: bool,
}

impl Control {
    fn new(spec: ScanSpec, limit_urgent: bool) -> Self {
        let mut control = Control {
            spec,
            stop: false,
            now: true,
            urgent_next: false,
            quick_running: false,
            running_urgent: false,
            held: false,
            updating: false,
            quick_rate: Arc::new(RateLimit::new(u64::MAX)),
            rehash_rate: Arc::new(RateLimit::new(u64::MAX)),
            limited: false,
            limit_urgent,
        };
        control.set_rate(control.spec.rate);
        control
    }

    /// The limit from now on, for scans under way too.
    fn set_rate(&mut self, rate: Option<u64>) {
        match rate {
            Some(r) => {
                self.quick_rate.set_bytes_per_second(r);
                self.rehash_rate.set_bytes_per_second(r);
                if !self.limited {
                    self.limited = true;
                    let urgent = self.running_urgent && !self.limit_urgent;
                    self.quick_rate
                        .lift(self.quick_running && (urgent || self.held));
                    self.rehash_rate.lift(false);
                }
            }
            None => {
                self.limited = false;
                self.quick_rate.lift(true);
                self.rehash_rate.lift(true);
            }
        }
        self.pace_rehash();
    }

    /// With a limit, the rehash reads only while no quick scan runs and
    /// no update is under way.
    fn pace_rehash(&self) {
        let aside = self.quick_running || self.updating || self.held;
        self.rehash_rate.pause(aside && self.limited && !self.stop);
    }
}

struct Shared {
    settings: ScanSettings,
    control: Mutex<Control>,
    wake: Condvar,
    cache: Arc<HashCache>,
    saving: Mutex<()>,
    report: Box<dyn Fn(ScanEvent) + Send + Sync>,
}

/// What a scan starts with.
struct Start {
    spec: ScanSpec,
    rate: Option<Arc<RateLimit>>,
    urgent: bool,
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
        let control = Control::new(spec, settings.limit_urgent);
        let shared = Arc::new(Shared {
            settings,
            control: Mutex::new(control),
            wake: Condvar::new(),
            cache: Arc::new(cache),
            saving: Mutex::new(()),
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

    /// Scans with `spec` from now on; with another filter (a new epoch),
    /// starts a quick scan at once.
    pub fn set_spec(&self, spec: ScanSpec) {
        let mut control = self.control();
        if control.spec.epoch != spec.epoch {
            control.now = true;
        }
        control.set_rate(spec.rate);
        control.spec = spec;
        self.shared.wake.notify_all();
    }

    /// Starts a quick scan as soon as the current one (if any) ends.
    pub fn rescan(&self) {
        self.control().now = true;
        self.shared.wake.notify_all();
    }

    /// The agent needs a scan to act on: the quick scan under way, if
    /// any, goes on at full speed and serves; otherwise one starts at
    /// once, at full speed.
    pub fn urgent(&self) {
        let mut control = self.control();
        if control.quick_running {
            control.running_urgent = true;
            if !self.shared.settings.limit_urgent {
                control.quick_rate.lift(true);
            }
        }
        // A scan already asked for (with a new filter, say) is urgent too.
        if !control.quick_running || control.now {
            control.now = true;
            control.urgent_next = true;
        }
        self.shared.wake.notify_all();
    }

    /// Holds new scans back (`true`) while the tree is being changed. A
    /// quick scan under way will be of no use (it started before the
    /// change), so it finishes at full speed rather than read the files
    /// the update installs at the limit.
    pub fn hold(&self, held: bool) {
        let mut control = self.control();
        control.held = held;
        if held && control.quick_running {
            control.quick_rate.lift(true);
        }
        control.pace_rehash();
        self.shared.wake.notify_all();
    }

    /// Tells the scanner an update is under way (`true`) or over: the
    /// rehash pauses meanwhile.
    pub fn updating(&self, updating: bool) {
        let mut control = self.control();
        control.updating = updating;
        control.pace_rehash();
    }

    /// Teaches the hash cache what an update wrote: files installed from
    /// verified objects (`installed`), and files whose content it left
    /// alone but whose inode it changed (`touched`, before and after: a
    /// new mode, owner or mtime, another hard link). A touched file is
    /// learned only if the cache knew it as it was before, so a write by
    /// anyone else in between still shows.
    pub fn learn(&self, installed: &[(Identity, ObjectId)], touched: &[(Identity, Identity)]) {
        let cache = &self.shared.cache;
        for (identity, id) in installed {
            cache.learn(identity, *id);
        }
        for (before, after) in touched {
            if let Some(id) = cache.lookup_identity(before) {
                cache.learn(after, id);
            }
        }
    }

    /// The hash cache the scans share.
    pub fn cache(&self) -> Arc<HashCache> {
        self.shared.cache.clone()
    }

    /// Saves the hash cache on a thread of its own, so the caller does
    /// not wait for the disk.
    pub fn save_cache_soon(&self) {
        let shared = self.shared.clone();
        let spawned = std::thread::Builder::new()
            .name("subd-save-hashes".into())
            .spawn(move || shared.save_cache(&shared.cache));
        if let Err(e) = spawned {
            tracing::warn!(error = %e, "cannot save the hash cache");
        }
    }

    fn control(&self) -> std::sync::MutexGuard<'_, Control> {
        self.shared.control.lock().expect("scan control")
    }
}

impl Drop for Scanner {
    fn drop(&mut self) {
        let mut control = self.control();
        control.stop = true;
        // Readers waiting on a limit or a pause let go, so both loops end.
        for rate in [&control.quick_rate, &control.rehash_rate] {
            rate.lift(true);
            rate.pause(false);
        }
        self.shared.wake.notify_all();
    }
}

impl Shared {
    /// Waits until a scan may start: `due` has come or a scan was asked
    /// for, and nothing holds scans back. `None` when stopping.
    fn wait(&self, due: Option<Instant>, quick: bool) -> Option<Start> {
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
        let mut start = Start {
            spec: control.spec.clone(),
            rate: Some(control.rehash_rate.clone()),
            urgent: false,
        };
        if quick {
            control.now = false;
            start.urgent = std::mem::take(&mut control.urgent_next);
            control.running_urgent = start.urgent;
            start.rate = Some(control.quick_rate.clone());
            let urgent = start.urgent && !self.settings.limit_urgent;
            control.quick_rate.lift(urgent || !control.limited);
            control.quick_running = true;
            control.pace_rehash();
        }
        Some(start)
    }

    /// A quick scan ended: whether it was urgent.
    fn quick_done(&self) -> bool {
        let mut control = self.control.lock().expect("scan control");
        control.quick_running = false;
        control.pace_rehash();
        let urgent = std::mem::take(&mut control.running_urgent);
        control.quick_rate.lift(!control.limited);
        urgent
    }

    fn stopped(&self) -> bool {
        self.control.lock().expect("scan control").stop
    }

    fn options(&self, start: &Start, trust_cache: bool) -> ScanOptions {
        ScanOptions {
            filter: start.spec.filter.clone(),
            protected: self.settings.protected.clone(),
            cache: Some(self.cache.clone()),
            trust_cache,
            rate: start.rate.clone(),
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
        while let Some(start) = self.wait(due, true) {
            let options = self.options(&start, true);
            let counters = Counters::default();
            let (started, started_at) = (Instant::now(), SystemTime::now());
            let tree = scan_tree(&self.settings.root, &options, &counters)
                .map(|scan| scan.manifest)
                .map_err(|e| e.to_string());
            let duration = started.elapsed();
            let urgent = self.quick_done();
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
                self.save_cache(&self.cache);
                saved = Instant::now();
                first = false;
            }
            (self.report)(ScanEvent::Quick(Scanned {
                epoch: start.spec.epoch,
                started,
                started_at,
                duration,
                tree,
                files,
                bytes,
                hashed_bytes,
                urgent,
            }));
            due = Some(Instant::now() + self.settings.interval);
        }
    }

    fn rehash_loop(&self) {
        // The first quick scan hashes whatever the saved cache lacks.
        let mut due = Some(Instant::now() + self.settings.rehash_interval);
        while let Some(start) = self.wait(due, false) {
            let options = self.options(&start, false);
            let started = Instant::now();
            (self.report)(ScanEvent::Rehashing);
            let result = scan_tree(&self.settings.root, &options, &Counters::default());
            if self.stopped() {
                return;
            }
            let error = match result {
                Ok(_) => {
                    self.save_cache(&self.cache);
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
        // One writer at a time: both loops and the agent save.
        let _saving = self.saving.lock().unwrap_or_else(|e| e.into_inner());
        if let Err(e) = cache.save(&self.settings.cache_path) {
            tracing::warn!(path = %self.settings.cache_path.display(), error = %e, "cannot save the hash cache");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn control(rate: Option<u64>) -> Control {
        let spec = ScanSpec {
            filter: Filter::empty(),
            epoch: 0,
            rate,
        };
        Control::new(spec, false)
    }

    #[test]
    fn a_limit_set_during_an_unlimited_scan_holds_it_from_then_on() {
        let mut c = control(None);
        assert!(c.quick_rate.is_lifted() && c.rehash_rate.is_lifted());
        // A background scan under way, held by no limit.
        c.quick_running = true;
        let scan = c.quick_rate.clone();
        c.set_rate(Some(1000));
        assert!(!scan.is_lifted(), "the scan under way keeps to the limit");
        assert_eq!(scan.bytes_per_second(), 1000);
        assert!(!c.rehash_rate.is_lifted());
        c.set_rate(Some(50));
        assert_eq!(scan.bytes_per_second(), 50, "changed in place");
        c.set_rate(None);
        assert!(scan.is_lifted() && c.rehash_rate.is_lifted());
    }

    #[test]
    fn an_urgent_scan_stays_at_full_speed_when_a_limit_comes() {
        let mut c = control(None);
        c.quick_running = true;
        c.running_urgent = true;
        c.set_rate(Some(1000));
        assert!(c.quick_rate.is_lifted());
        assert!(!c.rehash_rate.is_lifted());
    }
}
