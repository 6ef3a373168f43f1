//! The agent's HTTP side (`--http`): the status page, its JSON, the
//! health check and the Prometheus metrics, after an update that
//! restarted a service; and a `--http` address that cannot be served is
//! refused at start with one line.

use std::fs;

use crate::agent_support::{examples, write, Fleet};
use subd::{Agent, AgentError};

async fn get(url: &str) -> (u16, String) {
    let response = reqwest::get(url).await.unwrap();
    let status = response.status().as_u16();
    (status, response.text().await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_status_page_json_and_metrics_follow_the_agent() {
    let fleet = Fleet::start().await;
    let tmp = tempfile::tempdir().unwrap();
    let source = tmp.path().join("source");
    write(&source, "/etc/ssh/sshd.conf", b"Port 22\n", 0o644);
    write(&source, "/etc/motd", b"<b>hello</b>\n", 0o644);
    let triggers = examples().join("triggers.sshd");
    let record = fleet
        .add_image("web.0", &source, None, Some(&triggers))
        .await;
    let root = tmp.path().join("machine");
    write(&root, "/etc/ssh/sshd.conf", b"Port 2222\n", 0o644);

    let mut config = fleet.config("http1", &root, "/bin/true");
    config.http = Some("127.0.0.1:0".into());
    let agent = Agent::start(config).unwrap();
    let base = format!("http://{}", agent.http_address().unwrap());
    assert_eq!(get(&format!("{base}/healthz")).await, (200, "ok\n".into()));

    fleet.assign("http1", &record).await;
    fleet.wait_compliant("http1", "web.0").await;
    // The page shows what the loop recorded last; wait until it has the
    // compliant report.
    let status = loop {
        let (code, body) = get(&format!("{base}/status")).await;
        assert_eq!(code, 200, "{body}");
        let status: serde_json::Value = serde_json::from_str(&body).unwrap();
        if status["report"]["compliant"] == true {
            break status;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    assert_eq!(status["host"], "http1");
    assert_eq!(status["report"]["image"], "web.0");
    let events = status["events"].as_array().unwrap();
    assert!(events.iter().any(|e| e["kind"] == "update"), "{status:#}");
    let update = &status["report"]["last_update"];
    assert!(update["transition_ms"].is_u64(), "{status:#}");

    let (code, page) = get(&format!("{base}/")).await;
    assert_eq!(code, 200);
    assert!(page.contains("<title>subd on http1</title>"), "{page}");
    assert!(page.contains("web.0"), "{page}");
    assert!(page.contains("services in transition for"), "{page}");
    assert!(page.contains("Latest events"), "{page}");
    assert!(!page.contains("<b>hello"), "{page}");

    let (code, metrics) = get(&format!("{base}/metrics")).await;
    assert_eq!(code, 200);
    for line in [
        "subd_compliant 1",
        "subd_deviations 0",
        "subd_updates_total{result=\"ok\"} 1",
        "subd_transition_window_seconds_count 1",
        "subd_update_seconds_count 1",
        "subd_trigger_failures_total 0",
        "subd_fetched_objects_total 2",
        "subd_events_total{kind=\"update\"} 1",
    ] {
        assert!(
            metrics.lines().any(|l| l == line),
            "no {line:?} in:\n{metrics}"
        );
    }
    let scans = metrics
        .lines()
        .find_map(|l| l.strip_prefix("subd_scans_total "))
        .and_then(|n| n.parse::<u64>().ok())
        .unwrap();
    assert!(scans >= 2, "{metrics}");
    assert!(metrics.contains("subd_fetched_bytes_total 21"), "{metrics}");
    assert!(metrics.ends_with("# EOF\n"));

    let (code, _) = get(&format!("{base}/static/dom.css")).await;
    assert_eq!(code, 200);
    let (code, _) = get(&format!("{base}/nothing-here")).await;
    assert_eq!(code, 404);

    agent.stop().await;
    assert!(reqwest::get(format!("{base}/healthz")).await.is_err());
    assert_eq!(fs::read(root.join("etc/motd")).unwrap(), b"<b>hello</b>\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_address_that_cannot_be_served_is_refused_at_start() {
    let fleet = Fleet::start().await;
    let tmp = tempfile::tempdir().unwrap();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let mut config = fleet.config("http2", tmp.path(), "/bin/true");
    config.http = Some(addr.clone());
    let error = match Agent::start(config) {
        Err(error) => error,
        Ok(_) => panic!("started on a taken address"),
    };
    assert!(matches!(error, AgentError::Http(_)), "{error}");
    let message = error.to_string();
    assert!(
        message.contains(&addr) && !message.contains('\n'),
        "{message}"
    );
}
