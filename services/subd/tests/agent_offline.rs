//! Outages: an agent that was down catches up with the last desired state
//! only; an agent that starts while NATS is down enforces the image it
//! kept, and converges to the new one once NATS is back.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use crate::agent_support::{at, snap, wait_for, write, Fleet};
use dom_model::Event;
use subd::Agent;

/// A small tree whose `/etc/release` names `version`.
fn source(dir: &Path, version: u32) -> PathBuf {
    let path = dir.join(format!("src{version}"));
    write(
        &path,
        "/etc/release",
        format!("release {version}\n").as_bytes(),
        0o644,
    );
    write(&path, "/usr/bin/app", b"#!/bin/sh\necho app\n", 0o755);
    write(
        &path,
        &format!("/usr/share/v{version}"),
        b"only here\n",
        0o644,
    );
    path
}

fn filter(dir: &Path) -> PathBuf {
    let path = dir.join("filter");
    fs::write(&path, "/var/log/.*\n").unwrap();
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_agent_catches_up_with_the_last_desired_state_only() {
    let fleet = Fleet::start().await;
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("machine");
    fs::create_dir(&root).unwrap();
    let f = filter(tmp.path());
    let first = fleet
        .add_image("off.0", &source(tmp.path(), 0), Some(&f), None)
        .await;
    let agent = Agent::start(fleet.config("off1", &root, "/bin/true")).unwrap();
    fleet.assign("off1", &first).await;
    fleet.wait_compliant("off1", "off.0").await;
    agent.stop().await;

    for version in 1..=3 {
        let name = format!("off.{version}");
        let record = fleet
            .add_image(&name, &source(tmp.path(), version), Some(&f), None)
            .await;
        fleet.assign("off1", &record).await;
    }
    let agent = Agent::start(fleet.config("off1", &root, "/bin/true")).unwrap();
    fleet.wait_compliant("off1", "off.3").await;
    assert_eq!(fs::read(at(&root, "/etc/release")).unwrap(), b"release 3\n");
    assert!(at(&root, "/usr/share/v3").exists() && !at(&root, "/usr/share/v0").exists());
    let updates: Vec<_> = fleet
        .events("off1")
        .await
        .into_iter()
        .filter(|e| e.kind == Event::UPDATE)
        .map(|e| e.image.unwrap_or_default())
        .collect();
    assert_eq!(updates, ["off.0", "off.3"]);
    agent.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_without_nats_enforces_its_kept_image_then_converges() {
    let mut fleet = Fleet::start().await;
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("machine");
    fs::create_dir(&root).unwrap();
    let f = filter(tmp.path());
    let first = fleet
        .add_image("boot.0", &source(tmp.path(), 0), Some(&f), None)
        .await;
    let second = fleet
        .add_image("boot.1", &source(tmp.path(), 1), Some(&f), None)
        .await;
    let agent = Agent::start(fleet.config("boot1", &root, "/bin/true")).unwrap();
    fleet.assign("boot1", &first).await;
    fleet.wait_compliant("boot1", "boot.0").await;
    agent.stop().await;

    // While the machine is down: a new desired state, then NATS goes away
    // and the machine drifts.
    fleet.assign("boot1", &second).await;
    fleet.server.stop();
    let app = at(&root, "/usr/bin/app");
    fs::set_permissions(&app, fs::Permissions::from_mode(0o777)).unwrap();
    write(&root, "/etc/extra", b"dropped here while down\n", 0o644);
    write(&root, "/var/log/boot.log", b"filtered\n", 0o644);

    // The machine boots without NATS: its kept image is enforced.
    let agent = Agent::start(fleet.config("boot1", &root, "/bin/true")).unwrap();
    wait_for("kept image enforced without NATS", || {
        let mode = snap(&app).map(|s| s.mode);
        mode == Some(0o755) && !at(&root, "/etc/extra").exists()
    })
    .await;
    assert_eq!(fs::read(at(&root, "/etc/release")).unwrap(), b"release 0\n");
    assert!(at(&root, "/var/log/boot.log").exists());

    // NATS comes back: the agent converges to the new desired state.
    fleet.server.restart().unwrap();
    fleet.wait_compliant("boot1", "boot.1").await;
    assert_eq!(fs::read(at(&root, "/etc/release")).unwrap(), b"release 1\n");
    assert!(at(&root, "/var/log/boot.log").exists());
    agent.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_running_agent_rides_out_a_nats_outage() {
    let mut fleet = Fleet::start().await;
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("machine");
    fs::create_dir(&root).unwrap();
    let f = filter(tmp.path());
    let first = fleet
        .add_image("out.0", &source(tmp.path(), 0), Some(&f), None)
        .await;
    let second = fleet
        .add_image("out.1", &source(tmp.path(), 1), Some(&f), None)
        .await;
    let agent = Agent::start(fleet.config("out1", &root, "/bin/true")).unwrap();
    fleet.assign("out1", &first).await;
    fleet.wait_compliant("out1", "out.0").await;

    // NATS goes away while the agent runs, and drift is still undone.
    fleet.server.stop();
    write(
        &root,
        "/etc/extra",
        b"dropped here during the outage\n",
        0o644,
    );
    wait_for("drift undone without NATS", || {
        !at(&root, "/etc/extra").exists()
    })
    .await;

    // NATS returns: the agent follows the desired state again.
    fleet.server.restart().unwrap();
    fleet.assign("out1", &second).await;
    fleet.wait_compliant("out1", "out.1").await;
    assert_eq!(fs::read(at(&root, "/etc/release")).unwrap(), b"release 1\n");
    agent.stop().await;
}
