//! Stopping: the `subd` binary exits cleanly on SIGTERM, also in the middle
//! of a slow fetch whose NATS server has just gone away; in the middle of
//! an update it finishes the update first, leaves no half-written file,
//! and a restart does nothing twice.

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use dom_tests::fixtures::{recorded_calls, service_recorder};
use dom_tests::{terminate_timed, SIGTERM_LIMIT};

use crate::agent_support::{tree, wait_for, wait_scans, write, Fleet, Running, Snap, DEADLINE};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_stops_the_agent_mid_fetch_without_nats() {
    let mut fleet = Fleet::start().await;
    let tmp = tempfile::tempdir().unwrap();
    let source = tmp.path().join("source");
    for i in 0..20 {
        let content = format!("file {i}\n").repeat(8192);
        write(&source, &format!("/data/f{i}"), content.as_bytes(), 0o644);
    }
    let record = fleet.add_image("slow.0", &source, None, None).await;
    let root = tmp.path().join("machine");
    fs::create_dir(&root).unwrap();
    let mut agent = Command::new(env!("CARGO_BIN_EXE_subd"))
        .args([
            "--server",
            &fleet.server.url(),
            "--hostname",
            "sig1",
            "--root",
        ])
        .arg(&root)
        .args(["--scan-speed-percent", "100", "--fetch-rate", "65536"])
        .args(["--service-command", "/bin/true", "--reboot-command", ""])
        .args(["--http", "127.0.0.1:0"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    fleet.assign("sig1", &record).await;
    fleet.wait_state("sig1", "fetching", |r| r.fetching).await;
    fleet.server.stop();

    // SAFETY: kill(2) on our own child, which has not been reaped.
    unsafe { libc::kill(agent.id() as libc::pid_t, libc::SIGTERM) };
    let started = Instant::now();
    let status = loop {
        if let Some(status) = agent.try_wait().unwrap() {
            break status;
        }
        if started.elapsed() > DEADLINE {
            let _ = agent.kill();
            panic!("subd did not stop on SIGTERM");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(status.success(), "{status}");
}

/// How long the service command takes to stop the service: the update is
/// stopped while it waits.
const SLOW_STOP: Duration = Duration::from_secs(2);

/// Image version `v`: a service's configuration, which its trigger
/// watches, and data files.
fn version(dir: &Path, v: u32) -> std::path::PathBuf {
    let source = dir.join(format!("src{v}"));
    write(
        &source,
        "/etc/app/app.conf",
        format!("version {v}\n").as_bytes(),
        0o644,
    );
    for i in 0..50 {
        let content = format!("file {i} version {v}\n").repeat(200);
        write(&source, &format!("/data/f{i}"), content.as_bytes(), 0o644);
    }
    source
}

/// Type, mode and content of each path (times are the image's, but the
/// source's directories are not compared).
fn shape(tree: &BTreeMap<String, Snap>) -> BTreeMap<String, (char, u32, Vec<u8>)> {
    tree.iter()
        .map(|(path, s)| (path.clone(), (s.kind, s.mode, s.content.clone())))
        .collect()
}

/// The agent binary keeping `root`, its stderr in `ROOT.log`.
fn agent(fleet: &Fleet, root: &Path, service: &Path, http: &str, extra: &[&str]) -> Child {
    let log = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(root.with_extension("log"))
        .unwrap();
    Command::new(env!("CARGO_BIN_EXE_subd"))
        .args([
            "--server",
            &fleet.server.url(),
            "--hostname",
            "stop1",
            "--root",
        ])
        .arg(root)
        .arg("--service-command")
        .arg(service)
        .args(["--reboot-command", "", "--http", http])
        .args(["--scan-speed-percent", "100", "--scan-interval", "20ms"])
        .args(extra)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap()
}

/// What the agents keeping `root` have logged.
fn logged(root: &Path) -> String {
    fs::read_to_string(root.with_extension("log")).unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_mid_update_finishes_it_and_a_restart_repeats_nothing() {
    let fleet = Fleet::start().await;
    let dir = tempfile::tempdir().unwrap();
    let tmp = dir.path();
    let triggers = tmp.join("triggers");
    fs::write(
        &triggers,
        r#"[{"MatchLines": ["/etc/app/.*"], "Service": "app"}]"#,
    )
    .unwrap();
    // Records each call; a stop takes a while, and says when it began.
    let log = tmp.join("service.log");
    let stopping = tmp.join("stopping");
    let service = tmp.join("service");
    let script = format!(
        "#!/bin/sh\necho \"$1 $2\" >> '{log}'\n\
         if [ \"$2\" = stop ]; then touch '{stopping}'; sleep {slow}; fi\n",
        log = log.display(),
        stopping = stopping.display(),
        slow = SLOW_STOP.as_secs(),
    );
    fs::write(&service, script).unwrap();
    fs::set_permissions(
        &service,
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let calls = || -> Vec<String> {
        fs::read_to_string(&log)
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect()
    };
    let (v0, v1) = (version(tmp, 0), version(tmp, 1));
    let images = [
        fleet.add_image("stop.0", &v0, None, Some(&triggers)).await,
        fleet.add_image("stop.1", &v1, None, Some(&triggers)).await,
    ];
    let root = tmp.join("machine");
    fs::create_dir(&root).unwrap();

    let mut first = Running(agent(&fleet, &root, &service, "", &[]));
    fleet.assign("stop1", &images[0]).await;
    fleet.wait_compliant("stop1", "stop.0").await;
    let _ = fs::remove_file(&log);
    let _ = fs::remove_file(&stopping);

    // The update to stop.1 is under way (its service being stopped) when
    // systemd stops the agent: it finishes the update, then exits 0.
    fleet.assign("stop1", &images[1]).await;
    wait_for("the service's stop", || stopping.exists()).await;
    let (status, took) = terminate_timed(&mut first.0);
    assert!(status.success(), "{status}; {}", logged(&root));
    // The stop command's time, then the usual bound.
    assert!(took < SLOW_STOP + SIGTERM_LIMIT, "took {took:?} to stop");
    assert_eq!(
        calls(),
        ["app stop", "app start"],
        "the update ran to its end"
    );
    // Every path is the new image's, and nothing else is in the tree: no
    // temporary file left at or beside a final path.
    assert_eq!(shape(&tree(&root)), shape(&tree(&v1)));
    // Its result was recorded and reported before the agent went.
    let report = fleet.bus.state("stop1").await.unwrap().unwrap();
    let update = report.last_update.expect("the update's result");
    assert!(update.ok && update.image == "stop.1", "{update:?}");
    assert!(
        fleet
            .events("stop1")
            .await
            .iter()
            .any(|e| e.kind == "update" && e.image.as_deref() == Some("stop.1")),
        "the update's event"
    );

    // Restarted, the agent finds the machine on stop.1 and does nothing
    // again: no service stopped or started twice.
    let port = dom_tests::free_port().unwrap();
    let http = format!("127.0.0.1:{port}");
    let mut second = Running(agent(&fleet, &root, &service, &http, &[]));
    // (The report on the bus is still the stopped agent's.)
    wait_for("the restarted agent", || {
        std::net::TcpStream::connect(&http).is_ok()
    })
    .await;
    wait_scans(http.parse().unwrap(), 3).await;
    fleet.wait_compliant("stop1", "stop.1").await;
    assert_eq!(calls(), ["app stop", "app start"]);
    assert_eq!(shape(&tree(&root)), shape(&tree(&v1)));
    let (status, took) = terminate_timed(&mut second.0);
    assert!(status.success(), "{status}; {}", logged(&root));
    assert!(took < SIGTERM_LIMIT, "took {took:?} to stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_mid_fetch_leaves_the_tree_as_it_was() {
    let fleet = Fleet::start().await;
    let dir = tempfile::tempdir().unwrap();
    let tmp = dir.path();
    let triggers = tmp.join("triggers");
    fs::write(
        &triggers,
        r#"[{"MatchLines": ["/etc/app/.*"], "Service": "app"}]"#,
    )
    .unwrap();
    let (service, log) = service_recorder(&tmp.join("svc"));
    let (v0, v1) = (version(tmp, 0), version(tmp, 1));
    let images = [
        fleet.add_image("fetch.0", &v0, None, Some(&triggers)).await,
        fleet.add_image("fetch.1", &v1, None, Some(&triggers)).await,
    ];
    let root = tmp.join("machine");
    fs::create_dir(&root).unwrap();
    let mut first = Running(agent(&fleet, &root, &service, "", &[]));
    fleet.assign("stop1", &images[0]).await;
    fleet.wait_compliant("stop1", "fetch.0").await;
    // With nothing under way, a stop is quick.
    let (status, took) = terminate_timed(&mut first.0);
    assert!(status.success(), "{status}; {}", logged(&root));
    assert!(took < SIGTERM_LIMIT, "took {took:?} to stop");
    let _ = fs::remove_file(&log);

    // A slow fetch of fetch.1 (some 200 KB at 16 KB/s) is under way when
    // the agent is stopped: it does not wait for it, and the tree is
    // still fetch.0's, nothing stopped, nothing half written.
    let mut slow = Running(agent(
        &fleet,
        &root,
        &service,
        "",
        &["--fetch-rate", "16384"],
    ));
    fleet.assign("stop1", &images[1]).await;
    fleet.wait_state("stop1", "fetching", |r| r.fetching).await;
    let (status, took) = terminate_timed(&mut slow.0);
    assert!(status.success(), "{status}; {}", logged(&root));
    assert!(took < SIGTERM_LIMIT, "took {took:?} to stop");
    assert_eq!(recorded_calls(&log), Vec::<String>::new());
    assert_eq!(shape(&tree(&root)), shape(&tree(&v0)));

    // Restarted, it fetches again and updates once.
    let port = dom_tests::free_port().unwrap();
    let http = format!("127.0.0.1:{port}");
    let mut last = Running(agent(&fleet, &root, &service, &http, &[]));
    fleet.wait_compliant("stop1", "fetch.1").await;
    wait_scans(http.parse().unwrap(), 3).await;
    assert_eq!(recorded_calls(&log), ["app stop", "app start"]);
    assert_eq!(shape(&tree(&root)), shape(&tree(&v1)));
    let (status, took) = terminate_timed(&mut last.0);
    assert!(status.success(), "{status}; {}", logged(&root));
    assert!(took < SIGTERM_LIMIT, "took {took:?} to stop");
}
