//! Helpers shared by the dominator's tests: a fixture nats-server, a
//! dominator running in-process, image records and state reports made up
//! by the test, and waiting for conditions with a deadline.

use std::path::PathBuf;
use std::time::Duration;

use dom_bus::Bus;
use dom_model::{DesiredState, Event, ImageRecord};
use dominator::{Dominator, Settings};

pub use dom_tests::fixtures::{
    image_name as name, planned_report as report, sparse_record as sparse,
};
pub use dom_tests::{
    connect, eventually, set_mdb, wait_allowed, wait_desired, NatsServer, DEADLINE,
};

/// A dominator on `bus` with at most `max_concurrent` machines updating,
/// and no rollout waves: these tests look at one rule at a time, with
/// state reports they make up (the waves are tested with real agents in
/// the end-to-end tests).
pub async fn dominator(bus: &Bus, max_concurrent: usize) -> Dominator {
    let settings = Settings {
        max_concurrent,
        debounce: Duration::from_millis(20),
        rollout: dom_model::policy::RolloutPolicy {
            canary: dom_model::policy::Canary::Machines(0),
            ..Default::default()
        },
        ..Settings::default()
    };
    Dominator::start(bus.clone(), settings, Some("127.0.0.1:0"))
        .await
        .unwrap()
}

pub async fn add_image(bus: &Bus, record: &ImageRecord) {
    bus.publish_image(record).await.unwrap();
}

pub async fn desired(bus: &Bus, host: &str) -> Option<DesiredState> {
    bus.desired(host).await.unwrap().map(|m| m.state.unwrap())
}

/// Waits for an event of `kind` about `host` satisfying `check`.
pub async fn wait_event(
    bus: &Bus,
    host: &str,
    kind: &str,
    check: impl Fn(&Event) -> bool,
) -> Event {
    eventually(&format!("a {kind} event for {host}"), || async {
        let events = bus.events(host).await.unwrap();
        events
            .into_iter()
            .rev()
            .find(|e| e.kind == kind && check(e))
    })
    .await
}

/// The last sequence of the desired-state stream.
pub async fn desired_sequence(bus: &Bus) -> u64 {
    let mut stream = bus
        .js
        .get_stream(bus.subjects.desired_stream())
        .await
        .unwrap();
    stream.info().await.unwrap().state.last_sequence
}

/// Waits until the dominator has caught up and run at least `rounds`
/// decision rounds.
pub async fn wait_rounds(dominator: &Dominator, rounds: u64) {
    let board = dominator.board().clone();
    tokio::time::timeout(
        DEADLINE,
        board.wait_for(|s| s.caught_up && s.rounds >= rounds),
    )
    .await
    .expect("the dominator decides");
}

/// Waits until the dominator has nothing left to publish: a round after
/// every change so far has run and published nothing.
pub async fn wait_settled(dominator: &Dominator) {
    let board = dominator.board().clone();
    tokio::time::timeout(
        DEADLINE,
        board.wait_for(|s| {
            s.caught_up
                && s.decision
                    .as_ref()
                    .is_some_and(|d| d.summary.to_publish == 0)
        }),
    )
    .await
    .expect("the dominator settles");
}

/// The project's Python, which has nats-py (installed by
/// ops/install-tools.sh).
pub fn python() -> PathBuf {
    let root = dom_tests::repo_root();
    for candidate in [".tools/venv/bin/python", ".tools/bin/python"] {
        let path = root.join(candidate);
        if path.exists() {
            return path;
        }
    }
    panic!("no .tools/venv/bin/python: run ops/install-tools.sh");
}

/// Publishes a plain core-NATS message with the official Python client, as
/// any script of the operators' could.
pub fn nats_py_publish(server: &NatsServer, subject: &str, payload: &str) {
    const SCRIPT: &str = r#"
import asyncio, sys
import nats

async def main():
    nc = await nats.connect(sys.argv[1])
    await nc.publish(sys.argv[2], sys.argv[3].encode())
    await nc.flush()
    await nc.close()

asyncio.run(main())
"#;
    let output = std::process::Command::new(python())
        .args(["-c", SCRIPT, &server.url(), subject, payload])
        .output()
        .expect("run python");
    assert!(
        output.status.success(),
        "nats-py publish failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}
