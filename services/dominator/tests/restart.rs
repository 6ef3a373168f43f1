//! The dominator keeps no state: a new one picks up mid-rollout from the
//! streams and publishes nothing for machines whose desired state has not
//! changed.

use crate::common::*;

#[tokio::test]
async fn a_restart_mid_rollout_publishes_nothing_new() {
    let server = NatsServer::start().unwrap();
    let bus = connect(&server).await;
    add_image(&bus, &sparse("sparse.0")).await;
    for host in ["a1", "a2", "a3"] {
        bus.publish_state(&report(host, "old.0", true))
            .await
            .unwrap();
        set_mdb(&bus, host, "sparse.0").await;
    }
    let first = dominator(&bus, 1).await;
    // a1 gets the one slot; the others are told to wait.
    wait_allowed(&bus, "a1", "sparse.0").await;
    for host in ["a2", "a3"] {
        wait_desired(&bus, host, "held for a slot", |d| !d.updates_allowed).await;
    }
    let before = desired_sequence(&bus).await;
    drop(first);

    let second = dominator(&bus, 1).await;
    wait_rounds(&second, 1).await;
    let status = second.board().status();
    let decision = status.decision.as_ref().unwrap();
    assert_eq!(decision.summary.to_publish, 0, "{:?}", decision.summary);
    assert_eq!(decision.summary.updating, 1);
    assert!(decision.machine("a1").unwrap().updating);
    assert_eq!(desired_sequence(&bus).await, before, "nothing republished");

    // The rollout goes on from where it was.
    bus.publish_state(&report("a1", "sparse.0", true))
        .await
        .unwrap();
    wait_allowed(&bus, "a2", "sparse.0").await;
    assert!(!desired(&bus, "a3").await.unwrap().updates_allowed);
}

#[tokio::test]
async fn errors_are_not_announced_again_after_a_restart() {
    let server = NatsServer::start().unwrap();
    let bus = connect(&server).await;
    set_mdb(&bus, "web1", "nosuch.0").await;
    let first = dominator(&bus, 10).await;
    wait_event(&bus, "web1", "error", |_| true).await;
    drop(first);
    let second = dominator(&bus, 10).await;
    wait_rounds(&second, 1).await;
    // A later change is announced: the earlier one was not repeated.
    add_image(&bus, &sparse("nosuch.0")).await;
    wait_event(&bus, "web1", "resolved", |_| true).await;
    let kinds: Vec<String> = bus
        .events("web1")
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.kind)
        .collect();
    assert_eq!(kinds, ["error", "resolved"]);
}

#[tokio::test]
async fn serves_health_and_status() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let server = NatsServer::start().unwrap();
    let bus = connect(&server).await;
    add_image(&bus, &sparse("sparse.0")).await;
    set_mdb(&bus, "web1", "nosuch.0").await;
    let dominator = dominator(&bus, 10).await;
    wait_rounds(&dominator, 1).await;
    let addr = dominator.http_addr().unwrap();
    let get = |path: &'static str| async move {
        let mut socket = tokio::net::TcpStream::connect(addr).await.unwrap();
        let request = format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n");
        socket.write_all(request.as_bytes()).await.unwrap();
        let mut response = String::new();
        socket.read_to_string(&mut response).await.unwrap();
        response
    };
    let health = get("/healthz").await;
    assert!(health.starts_with("HTTP/1.1 200"), "{health}");
    let status = get("/status").await;
    assert!(status.starts_with("HTTP/1.1 200"), "{status}");
    let body = status.split("\r\n\r\n").nth(1).unwrap();
    let json: serde_json::Value = serde_json::from_str(body).unwrap();
    assert_eq!(json["caught_up"], true);
    let machines = json["decision"]["machines"].as_array().unwrap();
    assert_eq!(machines[0]["host"], "web1");
    assert_eq!(machines[0]["error"], "image nosuch.0 does not exist");
    assert_eq!(json["decision"]["summary"]["errors"], 1);
    assert!(get("/nope").await.starts_with("HTTP/1.1 404"));
}
