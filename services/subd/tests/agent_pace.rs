//! What the scan's rate limit governs, and what it does not: background
//! verification only. On a disk the agent believes reads 64 KiB/s, its
//! default 2% share (1.3 KB/s) would need hours to read the images used
//! here, yet a desired state is acted on at once and the update's result
//! is reported right after it, with or without a full rehash under way.
//! What an update installs is known to the hash cache, so background
//! scans read none of it; a change made behind the agent's back, right
//! after an update or while it was down, is still found and put right.

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

use crate::agent_support::{at, wait_for, write, Fleet, Running};
use dom_model::StateReport;
use subd::{Agent, Config};

/// Files in each image, and their size: 7.5 MiB in all, hours of reading
/// at the limit.
const FILES: usize = 120;
const SIZE: usize = 64 << 10;
/// The disk speed the agents are told: 2% of it is 1.3 KB/s.
const MEDIA_SPEED: u64 = 64 << 10;
/// What "at once" allows, generously, for a loaded test machine.
const PROMPTLY: Duration = Duration::from_secs(15);

fn path(i: usize) -> String {
    format!("/srv/data/d{}/f{i}", i % 8)
}

/// File `i` in image version `v`; version 2 changes every tenth file.
fn content(i: usize, v: u32) -> Vec<u8> {
    let v = if i.is_multiple_of(10) { v } else { 1 };
    let line = format!("file {i} version {v}\n");
    line.repeat(SIZE / line.len() + 1).into_bytes()[..SIZE].to_vec()
}

fn source(dir: &Path, v: u32) -> PathBuf {
    let root = dir.join(format!("v{v}"));
    for i in 0..FILES {
        write(&root, &path(i), &content(i, v), 0o644);
    }
    root
}

/// The production defaults (2% of the disk, scans a second apart, a
/// rehash an hour), told that the disk is slow.
fn slow_disk(fleet: &Fleet, host: &str, root: &Path) -> Config {
    let mut config = Config::new(host, root);
    config.connect = fleet.connect();
    config.service_command = subd::services::ServiceCommand::parse("/bin/true").unwrap();
    config.reboot_command = None;
    config.media_speed = Some(MEDIA_SPEED);
    config.http = Some("127.0.0.1:0".into());
    config
}

fn holds(root: &Path, v: u32) -> bool {
    (0..FILES).all(|i| fs::read(at(root, &path(i))).ok() == Some(content(i, v)))
}

/// Assigns `image` and waits until `host` reports compliance with it,
/// which must come promptly; returns that report.
async fn take(fleet: &Fleet, host: &str, image: &dom_model::ImageRecord) -> StateReport {
    let started = Instant::now();
    fleet.assign(host, image).await;
    let name = image.name.to_string();
    let report = fleet.wait_compliant(host, &name).await;
    let took = started.elapsed();
    assert!(
        took < PROMPTLY,
        "{host} took {took:?} to report compliance with {name}"
    );
    report
}

/// One metric's value from the agent's `/metrics`.
async fn metric(agent: &Agent, name: &str) -> f64 {
    let url = format!("http://{}/metrics", agent.http_address().unwrap());
    let text = reqwest::get(url).await.unwrap().text().await.unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("no metric {name} in {text}"))
}

/// Waits until the agent has finished `n` more quick scans, which can
/// only happen while they read (nearly) nothing.
async fn scans_go_on(agent: &Agent, n: f64) {
    let before = metric(agent, "subd_scans_total").await;
    let started = Instant::now();
    while metric(agent, "subd_scans_total").await < before + n {
        assert!(
            started.elapsed() < PROMPTLY,
            "the quick scans stalled: they must be reading at the limit"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_disk_never_holds_up_an_update_or_its_report() {
    let fleet = Fleet::start().await;
    let tmp = tempfile::tempdir().unwrap();
    let v1 = fleet
        .add_image("pace.1", &source(tmp.path(), 1), None, None)
        .await;
    let v2 = fleet
        .add_image("pace.2", &source(tmp.path(), 2), None, None)
        .await;
    let root = tmp.path().join("machine");
    fs::create_dir(&root).unwrap();
    let agent = Agent::start(slow_disk(&fleet, "pace1", &root)).unwrap();

    take(&fleet, "pace1", &v1).await;
    assert!(holds(&root, 1));
    // The background scans that follow trust what the update installed.
    let hashed = metric(&agent, "subd_scan_hashed_bytes_total").await;
    scans_go_on(&agent, 2.0).await;
    assert_eq!(
        metric(&agent, "subd_scan_hashed_bytes_total").await,
        hashed,
        "a quick scan read files the update had installed"
    );

    let before = fleet.wait_compliant("pace1", "pace.1").await;
    let after = take(&fleet, "pace1", &v2).await;
    assert!(holds(&root, 2));
    // Reported right after the update, from what it changed: no scan
    // found a new tree in between.
    assert_eq!(after.generation, before.generation, "{after:#?}");
    let update = after.last_update.as_ref().unwrap();
    assert_eq!(update.image, "pace.2");
    assert_eq!(update.fetched_objects, (FILES / 10) as u64, "{update:#?}");
    scans_go_on(&agent, 2.0).await;
    agent.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_rehash_under_way_steps_aside_for_an_update() {
    let fleet = Fleet::start().await;
    let tmp = tempfile::tempdir().unwrap();
    let v1 = fleet
        .add_image("rehash.1", &source(tmp.path(), 1), None, None)
        .await;
    let v2 = fleet
        .add_image("rehash.2", &source(tmp.path(), 2), None, None)
        .await;
    let root = tmp.path().join("machine");
    fs::create_dir(&root).unwrap();
    let mut config = slow_disk(&fleet, "rehash1", &root);
    // One rehash after the other: with the files in place, one runs from
    // then on, reading at 1.3 KB/s.
    config.rehash_interval = Duration::ZERO;
    let agent = Agent::start(config).unwrap();

    take(&fleet, "rehash1", &v1).await;
    let deadline = Instant::now() + PROMPTLY;
    while metric(&agent, "subd_rehash_running").await != 1.0 {
        assert!(Instant::now() < deadline, "no rehash started");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Quick scans are not held up by it either.
    scans_go_on(&agent, 2.0).await;

    let before = fleet.wait_compliant("rehash1", "rehash.1").await;
    let after = take(&fleet, "rehash1", &v2).await;
    assert!(holds(&root, 2));
    assert_eq!(after.generation, before.generation, "{after:#?}");
    assert_eq!(
        metric(&agent, "subd_rehash_running").await,
        1.0,
        "the rehash was to be still under way"
    );
    assert_eq!(after.scan.full_scans, before.scan.full_scans);
    agent.stop().await;
}

/// Rewrites `p` with other content of the same size and puts its mtime
/// back: only its ctime tells.
fn tamper(root: &Path, p: &str) {
    let disk = at(root, p);
    let meta = fs::metadata(&disk).unwrap();
    let mtime = meta.modified().unwrap();
    fs::write(&disk, vec![b'x'; meta.len() as usize]).unwrap();
    fs::File::options()
        .write(true)
        .open(&disk)
        .unwrap()
        .set_modified(mtime)
        .unwrap();
    assert_eq!(fs::metadata(&disk).unwrap().mtime(), meta.mtime());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_right_after_an_update_is_still_found_and_corrected() {
    let fleet = Fleet::start().await;
    let tmp = tempfile::tempdir().unwrap();
    let v1 = fleet
        .add_image("drift.1", &source(tmp.path(), 1), None, None)
        .await;
    let root = tmp.path().join("machine");
    fs::create_dir(&root).unwrap();
    // A disk fast enough for the background scan to read one changed
    // file in a moment (2% of 100 MiB/s).
    let mut config = slow_disk(&fleet, "drift1", &root);
    config.media_speed = Some(100 << 20);
    let agent = Agent::start(config).unwrap();

    let report = take(&fleet, "drift1", &v1).await;
    tamper(&root, &path(3));
    assert!(!holds(&root, 1));
    wait_for("the changed file put right", || holds(&root, 1)).await;
    let again = fleet.wait_compliant("drift1", "drift.1").await;
    assert!(again.generation > report.generation);
    fleet
        .wait_event("drift1", "drift reported", |e| e.kind == "drift")
        .await;
    agent.stop().await;
}

/// The agent binary with its defaults, told the disk is slow.
fn start_binary(fleet: &Fleet, host: &str, root: &Path) -> Running {
    let child = Command::new(env!("CARGO_BIN_EXE_subd"))
        .args(["--server", &fleet.server.url(), "--hostname", host])
        .arg("--root")
        .arg(root)
        .args(["--service-command", "/bin/true", "--reboot-command", ""])
        .args(["--http", "", "--media-speed", &MEDIA_SPEED.to_string()])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("subd starts");
    Running(child)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_kill_nothing_changed_meanwhile_is_trusted() {
    let fleet = Fleet::start().await;
    let tmp = tempfile::tempdir().unwrap();
    let v1 = fleet
        .add_image("kill.1", &source(tmp.path(), 1), None, None)
        .await;
    let root = tmp.path().join("machine");
    fs::create_dir(&root).unwrap();
    let hashes = root.join(".subd/hashes");
    let mut agent = start_binary(&fleet, "kill1", &root);

    let assigned = SystemTime::now();
    take(&fleet, "kill1", &v1).await;
    // Killed once the hash cache with what the update installed is saved.
    wait_for("the hash cache saved after the update", || {
        fs::metadata(&hashes)
            .and_then(|m| m.modified())
            .is_ok_and(|t| t > assigned)
    })
    .await;
    agent.kill();

    tamper(&root, &path(5));
    fs::remove_file(at(&root, &path(6))).unwrap();
    let _agent = start_binary(&fleet, "kill1", &root);
    let started = Instant::now();
    wait_for("both files put right", || holds(&root, 1)).await;
    assert!(
        started.elapsed() < PROMPTLY,
        "the restarted agent took {:?}",
        started.elapsed()
    );
    fleet.wait_compliant("kill1", "kill.1").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_disk_is_measured_once_an_image_gives_it_something_to_read() {
    let fleet = Fleet::start().await;
    let tmp = tempfile::tempdir().unwrap();
    // 24 MiB in files of 1 MiB: enough to time the disk with.
    let source = tmp.path().join("source");
    for i in 0..24u8 {
        write(&source, &format!("/opt/big/{i}"), &vec![i; 1 << 20], 0o644);
    }
    let image = fleet.add_image("measure.1", &source, None, None).await;
    let root = tmp.path().join("machine");
    fs::create_dir(&root).unwrap();
    let mut config = slow_disk(&fleet, "measure1", &root);
    config.media_speed = None;
    let remembered = root.join(".subd/media-speed");
    let agent = Agent::start(config).unwrap();

    // An empty root says nothing about the disk: a default is assumed,
    // and nothing is remembered.
    fleet
        .wait_state("measure1", "first report", |r| r.scan.started.is_some())
        .await;
    assert!(!remembered.exists());
    take(&fleet, "measure1", &image).await;
    wait_for("the disk's speed measured and remembered", || {
        fs::read_to_string(&remembered).is_ok_and(|s| s.trim().parse::<u64>().is_ok_and(|n| n > 0))
    })
    .await;
    agent.stop().await;
}
