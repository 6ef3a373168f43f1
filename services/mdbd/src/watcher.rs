//! Following the file and publishing its changes.

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::time::Duration;

use bytes::Bytes;
use dom_bus::{Bus, BusError, FleetKind};
use dom_model::mdb::{diff_mdb, parse_mdb_file};
use dom_model::{MdbChange, MdbRecord};
use tokio::sync::watch;

/// What the watcher has done so far, for tests and status.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Progress {
    /// Readings of the file that parsed.
    pub loaded: u64,
    /// Readings that did not parse (or could not be read).
    pub refused: u64,
    /// Why the last reading was refused, while the file is still bad.
    pub error: Option<String>,
    /// Records and removals published.
    pub published: u64,
    /// Whether everything the file says is on the bus.
    pub in_step: bool,
}

/// The metadata that changes whenever the file is replaced or rewritten.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Stamp {
    dev: u64,
    ino: u64,
    size: u64,
    mtime: i64,
    mtime_nsec: i64,
    ctime: i64,
    ctime_nsec: i64,
}

impl Stamp {
    fn of(meta: &std::fs::Metadata) -> Self {
        Self {
            dev: meta.dev(),
            ino: meta.ino(),
            size: meta.size(),
            mtime: meta.mtime(),
            mtime_nsec: meta.mtime_nsec(),
            ctime: meta.ctime(),
            ctime_nsec: meta.ctime_nsec(),
        }
    }
}

/// Follows one mdb.json file.
pub struct Watcher {
    bus: Bus,
    path: PathBuf,
    interval: Duration,
    /// What the MDB holds, as far as this watcher knows: read from the bus
    /// at start, then updated with every publish that succeeds.
    published: BTreeMap<String, MdbRecord>,
    /// The machines of the last good reading of the file.
    wanted: Option<Vec<MdbRecord>>,
    seen: Option<Stamp>,
    missing_reported: bool,
    progress: watch::Sender<Progress>,
}

impl Watcher {
    /// A watcher for `path`, starting from the MDB on the bus.
    pub async fn new(bus: Bus, path: PathBuf, interval: Duration) -> Result<Self, BusError> {
        let mut published = BTreeMap::new();
        for message in bus.last_per_subject(FleetKind::Mdb).await? {
            // A record that does not decode is as good as absent: the
            // file's record for that host replaces it.
            if let Ok(Some(record)) = MdbRecord::decode(&message.name, &message.payload) {
                published.insert(message.name, record);
            }
        }
        Ok(Self {
            bus,
            path,
            interval,
            published,
            wanted: None,
            seen: None,
            missing_reported: false,
            progress: watch::channel(Progress::default()).0,
        })
    }

    /// Follows the progress.
    pub fn progress(&self) -> watch::Receiver<Progress> {
        self.progress.subscribe()
    }

    /// Looks at the file every interval, for ever.
    pub async fn run(mut self) {
        let mut tick = tokio::time::interval(self.interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            self.check().await;
        }
    }

    /// One look: reads the file if it changed, then publishes what the
    /// MDB lacks.
    pub async fn check(&mut self) {
        self.read_if_changed();
        if self.wanted.is_some() {
            self.publish().await;
        }
    }

    fn read_if_changed(&mut self) {
        let meta = match std::fs::metadata(&self.path) {
            Ok(meta) => meta,
            Err(e) => {
                if !self.missing_reported {
                    tracing::warn!(file = %self.path.display(), "cannot read the file: {e}; waiting for it");
                    self.missing_reported = true;
                    self.refuse(format!("cannot read {}: {e}", self.path.display()));
                }
                return;
            }
        };
        self.missing_reported = false;
        let stamp = Stamp::of(&meta);
        if self.seen == Some(stamp) {
            return;
        }
        self.seen = Some(stamp);
        let parsed = std::fs::read(&self.path)
            .map_err(|e| format!("cannot read {}: {e}", self.path.display()))
            .and_then(|bytes| parse_mdb_file(&bytes).map_err(|e| e.to_string()));
        match parsed {
            Ok(records) => {
                tracing::info!(file = %self.path.display(), machines = records.len(), "file read");
                self.wanted = Some(records);
                self.progress.send_modify(|p| {
                    p.loaded += 1;
                    p.error = None;
                    p.in_step = false;
                });
            }
            Err(e) => {
                tracing::warn!(file = %self.path.display(), "file ignored until it is fixed: {e}");
                self.refuse(e);
            }
        }
    }

    fn refuse(&self, error: String) {
        self.progress.send_modify(|p| {
            p.refused += 1;
            p.error = Some(error);
        });
    }

    /// Publishes every difference between the file and the MDB; stops at
    /// the first failure, to try again at the next look.
    async fn publish(&mut self) {
        let Some(wanted) = &self.wanted else { return };
        let current: Vec<MdbRecord> = self.published.values().cloned().collect();
        let changes = diff_mdb(&current, wanted);
        let mut published = 0;
        let mut in_step = true;
        for change in changes {
            let host = change.host().to_string();
            let payload = match &change {
                MdbChange::Set(record) => Bytes::from(record.encode()),
                MdbChange::Remove(_) => Bytes::new(),
            };
            if let Err(e) = self.bus.publish_mdb(&host, payload).await {
                tracing::warn!(%host, error = %e, "cannot publish; will try again");
                in_step = false;
                break;
            }
            match change {
                MdbChange::Set(record) => {
                    tracing::info!(%host, image = ?record.required_image, "published");
                    self.published.insert(host, record);
                }
                MdbChange::Remove(_) => {
                    tracing::info!(%host, "removed");
                    self.published.remove(&host);
                }
            }
            published += 1;
        }
        self.progress.send_modify(|p| {
            p.published += published;
            p.in_step = in_step;
        });
    }
}
