//! SIGTERM, as systemd sends it, in the middle of the dominator's work: the
//! `dominator` binary exits 0 within 5 s, and a new one (systemd's
//! restart) carries on from the streams. Nothing is lost (every machine
//! ends on its MDB image) and nothing is published twice (a desired state
//! the stopped one published stays as it was; only the machines it had
//! not reached yet get one).

use std::collections::BTreeMap;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::common::*;
use dom_tests::{eventually, terminate_timed, SIGTERM_LIMIT};

const HOSTS: usize = 400;

fn host(i: usize) -> String {
    format!("m{i:03}")
}

/// The dominator binary on `server`, every machine allowed at once and no
/// rollout waves, so that one round moves the whole fleet.
fn start(server: &NatsServer, http: &str) -> Child {
    Command::new(env!("CARGO_BIN_EXE_dominator"))
        .env_remove("DOM_HTTP")
        .env_remove("DOM_SERVER")
        .args(["--server", &server.url(), "--http", http, "--id", "dom1"])
        .args(["--canary", "0", "--max-concurrent", "1000"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// Each machine's desired image and the sequence of its desired state.
async fn desired_states(bus: &dom_bus::Bus) -> BTreeMap<String, (String, u64)> {
    let mut out = BTreeMap::new();
    for i in 0..HOSTS {
        if let Some(message) = bus.desired(&host(i)).await.unwrap() {
            let state = message.state.unwrap();
            out.insert(host(i), (state.image.to_string(), message.sequence));
        }
    }
    out
}

/// How many desired states the last decision round of the dominator
/// serving `http` had to publish, once it has caught up.
async fn to_publish(http: &str) -> Option<u64> {
    let body = reqwest::get(format!("http://{http}/status"))
        .await
        .ok()?
        .text()
        .await
        .ok()?;
    let status: serde_json::Value = serde_json::from_str(&body).ok()?;
    if status["caught_up"] != true {
        return None;
    }
    status["decision"]["summary"]["to_publish"].as_u64()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_mid_round_loses_nothing_and_repeats_nothing() {
    let server = NatsServer::start().unwrap();
    let bus = connect(&server).await;
    add_image(&bus, &sparse("sparse.0")).await;
    add_image(&bus, &sparse("sparse.1")).await;
    for i in 0..HOSTS {
        set_mdb(&bus, &host(i), "sparse.0").await;
    }
    let mut first = start(&server, "");
    for i in 0..HOSTS {
        wait_allowed(&bus, &host(i), "sparse.0").await;
    }

    // The whole fleet moves to sparse.1; the dominator is stopped as soon
    // as the first desired state for it is out, while it publishes the
    // rest.
    let before = desired_sequence(&bus).await;
    for i in 0..HOSTS {
        set_mdb(&bus, &host(i), "sparse.1").await;
    }
    eventually("a first desired state for sparse.1", || async {
        (desired_sequence(&bus).await > before).then_some(())
    })
    .await;
    let (status, took) = terminate_timed(&mut first);
    let stderr = std::io::read_to_string(first.stderr.take().unwrap()).unwrap();
    assert!(status.success(), "{status}; {stderr}");
    assert!(took < SIGTERM_LIMIT, "took {took:?} to stop");
    assert_eq!(stderr, "");
    let cut = desired_states(&bus).await;
    let cut_sequence = desired_sequence(&bus).await;
    let moved: Vec<&String> = cut
        .iter()
        .filter(|(_, (image, _))| image == "sparse.1")
        .map(|(host, _)| host)
        .collect();
    eprintln!("stopped with {} of {HOSTS} machines moved", moved.len());

    // The next dominator moves the rest, once each, and leaves alone what
    // the first one published.
    let port = dom_tests::free_port().unwrap();
    let http = format!("127.0.0.1:{port}");
    let mut second = start(&server, &http);
    for i in 0..HOSTS {
        wait_allowed(&bus, &host(i), "sparse.1").await;
    }
    // Its own publishes have come back to it: a round with nothing left
    // to publish.
    eventually("a round with nothing to publish", || async {
        to_publish(&http).await.filter(|n| *n == 0)
    })
    .await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let after = desired_states(&bus).await;
    for host in &moved {
        assert_eq!(after[*host], cut[*host], "{host} was published again");
    }
    assert_eq!(
        desired_sequence(&bus).await - cut_sequence,
        (HOSTS - moved.len()) as u64,
        "one desired state for each machine not yet moved, no more"
    );
    let (status, took) = terminate_timed(&mut second);
    assert!(status.success(), "{status}");
    assert!(took < SIGTERM_LIMIT, "took {took:?} to stop");
}
