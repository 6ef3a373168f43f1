//! The agent's CPU priority: `--nice` lowers it, and an agent started at a
//! lower priority still (systemd's `Nice=`, `nice -n 19`) keeps that, so
//! the unit and the flag never undo each other.

use std::process::{Command, Stdio};
use std::time::Duration;

use crate::agent_support::{wait_for, Running};

/// The niceness of process `pid`, from /proc (field 19 of its stat).
fn niceness(pid: u32) -> Option<i32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces; it ends at the last ')'.
    let rest = &stat[stat.rfind(')')? + 2..];
    rest.split(' ').nth(16)?.parse().ok()
}

/// Starts subd through `launcher` (e.g. `nice -n 19`) with `--nice nice`
/// and returns its niceness once it has set it.
async fn started_niceness(launcher: &[&str], nice: &str) -> i32 {
    let root = tempfile::tempdir().unwrap();
    let mut command = Command::new(
        launcher
            .first()
            .copied()
            .unwrap_or(env!("CARGO_BIN_EXE_subd")),
    );
    if !launcher.is_empty() {
        command.args(&launcher[1..]).arg(env!("CARGO_BIN_EXE_subd"));
    }
    let child = command
        // Nothing listens there: the agent waits for NATS, which is all
        // this needs.
        .args([
            "--server",
            "nats://127.0.0.1:1",
            "--hostname",
            "nice1",
            "--root",
        ])
        .arg(root.path())
        .args(["--http", "", "--reboot-command", "", "--nice", nice])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let agent = Running(child);
    let pid = agent.0.id();
    // The priority is set before the agent makes its state directory.
    wait_for("the state directory", || root.path().join(".subd").exists()).await;
    tokio::time::sleep(Duration::from_millis(20)).await;
    niceness(pid).expect("the agent's niceness")
}

#[tokio::test]
async fn nice_lowers_the_priority_and_never_raises_it() {
    // Relative to the tests' own niceness (0, unless run niced).
    let base = niceness(std::process::id()).unwrap();
    assert_eq!(started_niceness(&[], "15").await, base.max(15));
    assert_eq!(started_niceness(&["nice", "-n", "19"], "15").await, 19);
    assert_eq!(
        started_niceness(&["nice", "-n", "2"], "15").await,
        (base + 2).max(15)
    );
    assert_eq!(
        started_niceness(&["nice", "-n", "18"], "15").await,
        (base + 18).min(19)
    );
}
