//! The scan and fetch rates the dominator hands out (`domtool
//! configure-subs`, in the desired state's `config`) reach a running
//! agent: its `/metrics` shows the limits in force and its state report
//! the scan rate.

use std::fs;
use std::time::Duration;

use dom_model::DesiredState;
use subd::Agent;

use crate::agent_support::{examples, Fleet, Recorder, DEADLINE};

/// The value of `metric` in the agent's `/metrics` at `base`.
async fn metric(base: &str, metric: &str) -> Option<u64> {
    let body = reqwest::get(format!("{base}/metrics"))
        .await
        .ok()?
        .text()
        .await
        .ok()?;
    body.lines()
        .find_map(|l| l.strip_prefix(metric)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fractional_scan_speed_from_the_dominator_reaches_the_metrics_and_the_report() {
    let fleet = Fleet::start().await;
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("machine");
    fs::create_dir(&root).unwrap();
    let recorder = Recorder::new(tmp.path(), "true");
    let record = fleet
        .add_image("rates.0", &examples().join("path"), None, None)
        .await;
    let media_speed = 200 << 20;
    let mut config = fleet.config("rt1", &root, &recorder.command());
    config.media_speed = Some(media_speed);
    config.http = Some("127.0.0.1:0".into());
    let agent = Agent::start(config).unwrap();
    let base = format!("http://{}", agent.http_address().unwrap());
    fleet.assign("rt1", &record).await;
    fleet.wait_compliant("rt1", "rates.0").await;
    let scan = "subd_scan_rate_limit_bytes_per_second";
    let fetch = "subd_fetch_rate_limit_bytes_per_second";
    assert_eq!(metric(&base, scan).await, Some(0), "no limit at first");
    assert_eq!(metric(&base, fetch).await, Some(0));

    let mut state = DesiredState::for_image("rt1", &record);
    state.config.scan_speed_percent = Some("0.1".parse().unwrap());
    state.config.fetch_rate = Some(5_000_000);
    fleet.bus.publish_desired(&state).await.unwrap();
    // 0.1% of the disk's 200 MiB/s.
    let expected = media_speed / 1000;
    let report = fleet
        .wait_state("rt1", "the new scan rate", |r| {
            r.scan_rate == Some(expected)
        })
        .await;
    assert!(report.compliant);
    let started = std::time::Instant::now();
    while metric(&base, scan).await != Some(expected) {
        assert!(
            started.elapsed() < DEADLINE,
            "{scan} never became {expected}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(metric(&base, fetch).await, Some(5_000_000));

    // Taken back: no limit again.
    fleet.assign("rt1", &record).await;
    fleet
        .wait_state("rt1", "no scan rate", |r| r.scan_rate.is_none())
        .await;
    assert_eq!(metric(&base, scan).await, Some(0));
    agent.stop().await;
}
