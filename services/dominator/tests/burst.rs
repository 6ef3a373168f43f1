//! Many changes at once cost a few decisions, not one each; and the
//! binary fails in one line when it cannot start.

use std::time::Duration;

use crate::common::*;
use dom_model::MdbRecord;
use dominator::{Dominator, Settings};

#[tokio::test]
async fn a_burst_of_mdb_changes_is_decided_in_a_few_rounds() {
    const MACHINES: usize = 1000;
    let server = NatsServer::start().unwrap();
    let bus = connect(&server).await;
    add_image(&bus, &sparse("sparse.0")).await;
    let settings = Settings {
        debounce: Duration::from_millis(100),
        ..Settings::default()
    };
    let dominator = Dominator::start(bus.clone(), settings, None).await.unwrap();
    wait_rounds(&dominator, 1).await;

    let publishes = (0..MACHINES).map(|i| {
        let host = format!("node{i:04}");
        let record = MdbRecord::new(&host).requiring(name("sparse.0"));
        let bus = bus.clone();
        async move { bus.publish_mdb(&host, record.encode().into()).await }
    });
    for result in futures::future::join_all(publishes).await {
        result.unwrap();
    }
    let board = dominator.board().clone();
    tokio::time::timeout(
        DEADLINE,
        board.wait_for(|s| s.desired_published == MACHINES as u64),
    )
    .await
    .expect("a desired state for every machine");
    let rounds = board.status().rounds;
    assert!(
        rounds * 5 < MACHINES as u64,
        "{rounds} rounds for {MACHINES} changes"
    );
}

#[test]
fn an_unreachable_server_is_one_line() {
    let port = dom_tests::free_port().unwrap();
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_dominator"))
        .args([
            "--server",
            &format!("nats://127.0.0.1:{port}"),
            "--http",
            "off",
        ])
        .env_remove("DOM_SERVER")
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.starts_with("dominator: cannot reach NATS"),
        "{stderr}"
    );
}
