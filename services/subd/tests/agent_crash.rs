//! Crash safety: the `subd` binary is killed with SIGKILL at random points
//! of large updates, twenty times in a row. After every kill, each file at
//! a final path holds either its old or its new content, never a part of
//! either; restarted once more, the machine converges.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, SystemTime};

use crate::agent_support::{at, wait_for, write, Fleet, Running};

const FILES: usize = 2000;
const NEW_ONLY: usize = 100;
const KILLS: usize = 20;

/// The content of file `i` in image version `v`: distinct per file and
/// version.
fn content(i: usize, v: u32) -> Vec<u8> {
    let line = format!("file {i} version {v}\n");
    line.repeat(8 * 1024 / line.len()).into_bytes()
}

fn path(i: usize) -> String {
    format!("/data/d{}/f{i}", i % 32)
}

fn source(dir: &Path, v: u32) -> PathBuf {
    let root = dir.join(format!("src{v}"));
    for i in 0..FILES {
        write(&root, &path(i), &content(i, v), 0o644);
    }
    // Files only the new version has.
    if v == 1 {
        for i in FILES..FILES + NEW_ONLY {
            write(&root, &path(i), &content(i, v), 0o644);
        }
    }
    root
}

/// Runs the agent binary; its service command marks each `stop` (just
/// before the tree changes) by creating `marker`.
fn start(fleet: &Fleet, root: &Path, service: &Path) -> Running {
    let child = Command::new(env!("CARGO_BIN_EXE_subd"))
        .args([
            "--server",
            &fleet.server.url(),
            "--hostname",
            "crash1",
            "--root",
        ])
        .arg(root)
        .arg("--service-command")
        .arg(service)
        .args(["--http", ""])
        .args([
            "--scan-speed-percent",
            "100",
            "--scan-interval",
            "20ms",
            "--reboot-command",
            "",
            "--nice",
            "0",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("subd starts");
    Running(child)
}

/// A small pseudo-random sequence, to choose when to kill.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self, below: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) % below
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_mid_update_never_leaves_a_partial_file() {
    let fleet = Fleet::start().await;
    let dir = tempfile::tempdir().unwrap();
    let tmp = dir.path();
    let filter = tmp.join("filter");
    fs::write(&filter, "/var/log/.*\n").unwrap();
    let triggers = tmp.join("triggers");
    fs::write(
        &triggers,
        r#"[{"MatchLines": ["/data/.*"], "Service": "data"}]"#,
    )
    .unwrap();
    let marker = tmp.join("stopping");
    let service = tmp.join("service");
    let script = format!(
        "#!/bin/sh\n[ \"$2\" = stop ] && touch '{}'\nexit 0\n",
        marker.display()
    );
    fs::write(&service, script).unwrap();
    fs::set_permissions(
        &service,
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let images = [
        fleet
            .add_image("crash.0", &source(tmp, 0), Some(&filter), Some(&triggers))
            .await,
        fleet
            .add_image("crash.1", &source(tmp, 1), Some(&filter), Some(&triggers))
            .await,
    ];
    let root = tmp.join("machine");
    fs::create_dir(&root).unwrap();

    let mut agent = start(&fleet, &root, &service);
    fleet.assign("crash1", &images[0]).await;
    fleet.wait_compliant("crash1", "crash.0").await;

    let seed = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    let mut random = Lcg(seed);
    let mut mixed = 0;
    let mut target = 1;
    for kill in 0..KILLS {
        // Each round has an update to interrupt: to the version the
        // machine does not hold. Half the kills come at a random point of
        // it (fetching, staging, changing the tree), half just after the
        // services stopped, while the tree is being changed.
        let _ = fs::remove_file(&marker);
        fleet.assign("crash1", &images[target]).await;
        if kill % 2 == 0 {
            tokio::time::sleep(Duration::from_millis(random.next(1500))).await;
        } else {
            wait_for("an update to stop the services", || marker.exists()).await;
            tokio::time::sleep(Duration::from_millis(random.next(60))).await;
        }
        agent.kill();
        let (old, new) = check(&root, &format!("after kill {kill} (seed {seed})"));
        mixed += usize::from(old > 0 && new > 0);
        target = if old == 0 { 0 } else { 1 };
        agent = start(&fleet, &root, &service);
    }
    // How often a kill caught the tree between the two versions (not
    // asserted: it depends on the machine's speed).
    println!("{mixed} of {KILLS} kills left a tree between the two versions");

    fleet.assign("crash1", &images[1]).await;
    fleet.wait_compliant("crash1", "crash.1").await;
    for i in 0..FILES + NEW_ONLY {
        assert_eq!(
            fs::read(at(&root, &path(i))).unwrap(),
            content(i, 1),
            "{}",
            path(i)
        );
    }
    agent.kill();
}

/// Every file is whole: old or new content, or (for a file only the new
/// image has) absent. Returns how many files hold each version.
fn check(root: &Path, when: &str) -> (usize, usize) {
    let (mut old, mut new) = (0, 0);
    for i in 0..FILES + NEW_ONLY {
        let p = path(i);
        match fs::read(at(root, &p)) {
            Ok(have) if have == content(i, 1) => new += 1,
            Ok(have) if i < FILES && have == content(i, 0) => old += 1,
            Ok(have) => panic!("{when}: {p} holds {} bytes of neither version", have.len()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                assert!(i >= FILES, "{when}: {p} is missing")
            }
            Err(e) => panic!("{when}: {p}: {e}"),
        }
    }
    (old, new)
}
