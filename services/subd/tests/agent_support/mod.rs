//! A fleet for the agent's end-to-end tests: a private nats-server, images
//! added with imagetool's library, desired states published by hand (as
//! the dominator would), machines as temporary roots, and a service
//! command that records its calls.
//!
//! Nothing here sleeps for a fixed time to let something happen: every
//! wait polls for a condition until a generous deadline.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use dom_bus::{Bus, ConnectArgs};
use dom_model::{DesiredState, Event, ImageName, ImageRecord, StateReport};
use dom_tests::NatsServer;
use subd::services::ServiceCommand;
use subd::Config;

/// How long any one condition may take to come true.
pub const DEADLINE: Duration = Duration::from_secs(120);

/// The repository's user-guide examples.
pub fn examples() -> PathBuf {
    dom_tests::repo_root().join("ops/examples")
}

/// A private NATS with the fleet's streams, and a connection to it.
pub struct Fleet {
    pub server: NatsServer,
    pub bus: Bus,
}

impl Fleet {
    pub async fn start() -> Self {
        // `RUST_LOG=subd=debug` shows what the agents do.
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_test_writer()
            .try_init();
        let server = NatsServer::start().expect("nats-server starts");
        let bus = Bus::connect(&connect(&server.url()), "agent tests")
            .await
            .expect("connects");
        bus.ensure_streams().await.expect("streams");
        Self { server, bus }
    }

    pub fn connect(&self) -> ConnectArgs {
        connect(&self.server.url())
    }

    /// Adds an image from `source`; `filter` and `triggers` are file paths
    /// (`None`: sparse, no triggers).
    pub async fn add_image(
        &self,
        name: &str,
        source: &Path,
        filter: Option<&Path>,
        triggers: Option<&Path>,
    ) -> ImageRecord {
        let file = |p: Option<&Path>| p.map(|p| p.display().to_string()).unwrap_or_default();
        let request =
            imagetool::add::AddRequest::parse(name, source, &file(filter), &file(triggers), None)
                .expect("a valid image");
        imagetool::add::add(&self.bus, request, false)
            .await
            .expect("image added");
        self.bus
            .image_record(&ImageName::parse(name).unwrap())
            .await
            .expect("image record")
    }

    /// Tells `host` to carry `record`'s image.
    pub async fn assign(&self, host: &str, record: &ImageRecord) -> u64 {
        self.bus
            .publish_desired(&DesiredState::for_image(host, record))
            .await
            .expect("desired state published")
    }

    /// An agent configuration for `host` keeping `root`: no limits, short
    /// pauses, and `service` as the service command.
    pub fn config(&self, host: &str, root: &Path, service: &str) -> Config {
        let mut config = Config::new(host, root).uncapped();
        config.connect = self.connect();
        config.service_command = ServiceCommand::parse(service).unwrap();
        config.reboot_command = None;
        config
    }

    /// Waits until `host`'s last state report satisfies `ok`.
    pub async fn wait_state(
        &self,
        host: &str,
        what: &str,
        ok: impl Fn(&StateReport) -> bool,
    ) -> StateReport {
        let started = Instant::now();
        let mut last = None;
        loop {
            if let Ok(Some(report)) = self.bus.state(host).await {
                if ok(&report) {
                    return report;
                }
                last = Some(report);
            }
            assert!(
                started.elapsed() < DEADLINE,
                "{host}: {what}: not within {DEADLINE:?}; last state report: {last:#?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits until `host` reports it carries `image` and matches it.
    pub async fn wait_compliant(&self, host: &str, image: &str) -> StateReport {
        self.wait_state(host, &format!("compliant with {image}"), |r| {
            r.compliant
                && r.image.as_deref() == Some(image)
                && r.desired_image.as_deref() == Some(image)
        })
        .await
    }

    /// Every event of `host` so far.
    pub async fn events(&self, host: &str) -> Vec<Event> {
        self.bus.events(host).await.expect("events")
    }

    /// Waits until `host` has published an event satisfying `ok`.
    pub async fn wait_event(&self, host: &str, what: &str, ok: impl Fn(&Event) -> bool) -> Event {
        let started = Instant::now();
        loop {
            let events = self.events(host).await;
            if let Some(event) = events.iter().find(|e| ok(e)) {
                return event.clone();
            }
            assert!(
                started.elapsed() < DEADLINE,
                "{host}: {what}: no such event within {DEADLINE:?}; events: {events:#?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

pub fn connect(url: &str) -> ConnectArgs {
    ConnectArgs {
        server: url.to_string(),
        ..ConnectArgs::default()
    }
}

/// An agent process, killed when dropped (also when a check fails).
pub struct Running(pub std::process::Child);

impl Running {
    /// Kills it at once (SIGKILL) and reaps it.
    pub fn kill(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Waits until `ok` holds, polling.
pub async fn wait_for(what: &str, mut ok: impl FnMut() -> bool) {
    let started = Instant::now();
    while !ok() {
        assert!(
            started.elapsed() < DEADLINE,
            "{what}: not within {DEADLINE:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// `path` (an image path) under `root`.
pub fn at(root: &Path, path: &str) -> PathBuf {
    root.join(path.trim_start_matches('/'))
}

/// Writes a file (and its parents) with a mode.
pub fn write(root: &Path, path: &str, content: &[u8], mode: u32) {
    let disk = at(root, path);
    fs::create_dir_all(disk.parent().unwrap()).unwrap();
    fs::write(&disk, content).unwrap();
    fs::set_permissions(&disk, fs::Permissions::from_mode(mode)).unwrap();
}

/// Sets a file's mtime.
pub fn set_mtime(root: &Path, path: &str, at_time: SystemTime) {
    let file = fs::OpenOptions::new()
        .write(true)
        .open(at(root, path))
        .unwrap();
    file.set_modified(at_time).unwrap();
}

/// What a path is: type, mode, owner, mtime and content (or target).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Snap {
    pub kind: char,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    /// Directories' times change as their entries do; not compared.
    pub mtime: Option<(i64, i64)>,
    pub content: Vec<u8>,
}

pub fn snap(disk: &Path) -> Option<Snap> {
    let meta = fs::symlink_metadata(disk).ok()?;
    let ft = meta.file_type();
    let (kind, content) = if ft.is_dir() {
        ('d', Vec::new())
    } else if ft.is_symlink() {
        (
            'l',
            fs::read_link(disk)
                .ok()?
                .into_os_string()
                .into_encoded_bytes(),
        )
    } else if ft.is_file() {
        ('-', fs::read(disk).ok()?)
    } else {
        ('?', Vec::new())
    };
    Some(Snap {
        kind,
        mode: meta.mode() & 0o7777,
        uid: meta.uid(),
        gid: meta.gid(),
        mtime: (kind != 'd').then(|| (meta.mtime(), meta.mtime_nsec())),
        content,
    })
}

/// Every path under `root` (as image paths), except the agent's state.
pub fn tree(root: &Path) -> BTreeMap<String, Snap> {
    let mut out = BTreeMap::new();
    walk(root, "", &mut out);
    out
}

fn walk(root: &Path, prefix: &str, out: &mut BTreeMap<String, Snap>) {
    let dir = at(root, prefix);
    let Ok(entries) = fs::read_dir(&dir) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let path = format!("{prefix}/{name}");
        if path == "/.subd" {
            continue;
        }
        if let Some(s) = snap(&entry.path()) {
            let is_dir = s.kind == 'd';
            out.insert(path.clone(), s);
            if is_dir {
                walk(root, &path, out);
            }
        }
    }
}

/// A service command that appends `NAME ACTION` and whatever `probe`
/// (shell text, run in the machine's root) prints to a log file.
pub struct Recorder {
    pub script: PathBuf,
    pub log: PathBuf,
}

impl Recorder {
    pub fn new(dir: &Path, probe: &str) -> Self {
        let script = dir.join("service");
        let log = dir.join("service.log");
        let text = format!(
            "#!/bin/sh\nprobe=$({probe})\necho \"$1 $2 $probe\" >> '{}'\n",
            log.display()
        );
        fs::write(&script, text).unwrap();
        fs::set_permissions(&script, fs::Permissions::from_mode(0o755)).unwrap();
        Self { script, log }
    }

    pub fn command(&self) -> String {
        self.script.display().to_string()
    }

    /// The calls so far, one line each.
    pub fn calls(&self) -> Vec<String> {
        fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .map(|l| l.trim_end().to_string())
            .collect()
    }

    pub fn clear(&self) {
        let _ = fs::remove_file(&self.log);
    }
}

/// How many scans the agent serving `http` (its `--http` address) has
/// finished, from its `/metrics`.
pub async fn scans(http: std::net::SocketAddr) -> u64 {
    let body = reqwest::get(format!("http://{http}/metrics"))
        .await
        .expect("metrics")
        .text()
        .await
        .expect("metrics body");
    body.lines()
        .find_map(|line| line.strip_prefix("subd_scans_total "))
        .and_then(|n| n.trim().parse().ok())
        .expect("subd_scans_total in /metrics")
}

/// Waits until the agent serving `http` has finished `n` more scans, so
/// that a test can say "and nothing else happened" without guessing how
/// long that takes.
pub async fn wait_scans(http: std::net::SocketAddr, n: u64) {
    let start = scans(http).await;
    let deadline = tokio::time::Instant::now() + dom_tests::DEADLINE;
    while scans(http).await < start + n {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{n} more scans did not finish"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
