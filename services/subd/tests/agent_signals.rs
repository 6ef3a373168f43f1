//! Stopping: the `subd` binary exits cleanly on SIGTERM, also in the middle
//! of a slow fetch whose NATS server has just gone away.

use std::fs;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::agent_support::{write, Fleet, DEADLINE};

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
