//! `domtool wait` and `domtool fast-update` against state reports the
//! test publishes: exit 0 when the machines get there, 1 when one failed,
//! 3 at the timeout, each with its lines. (tests/tests/e2e_wait.rs runs
//! the same against real agents and a dominator.)

use dom_model::controls::Control;
use dom_model::report::{Health, HealthState, UpdateResult};
use dom_model::StateReport;

use crate::common::*;

fn on(host: &str, image: &str) -> StateReport {
    report(host, image, true)
}

fn failed_update(host: &str, image: &str, started: &str) -> StateReport {
    let mut report = report(host, "sparse.0", true);
    report.last_update = Some(UpdateResult {
        image: image.into(),
        from: Some("sparse.0".into()),
        started: started.into(),
        ok: false,
        error: Some("cannot fetch object 1f2e: not found".into()),
        ..UpdateResult::default()
    });
    report
}

fn with_health(mut report: StateReport, state: HealthState) -> StateReport {
    let image = report.image.clone().unwrap();
    report.health = Some(Health {
        image,
        state,
        message: "curl: (7) connection refused".into(),
        started: "2026-12-01T09:00:00Z".into(),
        ..Health::default()
    });
    report
}

/// Runs `command` while the test goes on.
fn background(mut command: std::process::Command) -> tokio::task::JoinHandle<Run> {
    tokio::task::spawn_blocking(move || Run::from(command.output().expect("run domtool")))
}

#[tokio::test]
async fn wait_exits_0_once_every_machine_is_there_and_healthy() {
    let server = NatsServer::start().unwrap();
    let bus = connect(&server).await;
    bus.publish_state(&on("web1", "sparse.1")).await.unwrap();
    bus.publish_state(&with_health(on("web2", "sparse.1"), HealthState::Checking))
        .await
        .unwrap();
    let waiting = background(domtool_command(
        &server,
        &[
            "wait",
            "web1",
            "web2",
            "--image",
            "sparse.1",
            "--timeout",
            "30s",
        ],
    ));
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    assert!(!waiting.is_finished(), "web2 is still being checked");
    bus.publish_state(&with_health(on("web2", "sparse.1"), HealthState::Healthy))
        .await
        .unwrap();
    let out = waiting.await.unwrap().ok();
    assert_eq!(
        out,
        "web1 carries sparse.1 and is healthy (1 of 2)\n\
         web2 carries sparse.1 and is healthy (2 of 2)\n"
    );
}

#[tokio::test]
async fn wait_exits_1_on_a_failed_update_or_health_check() {
    let server = NatsServer::start().unwrap();
    let bus = connect(&server).await;
    bus.publish_state(&failed_update("web1", "sparse.1", "2026-12-01T09:00:00Z"))
        .await
        .unwrap();
    bus.publish_state(&with_health(on("web2", "sparse.1"), HealthState::Unhealthy))
        .await
        .unwrap();
    let run = domtool(&server, &["wait", "web1", "--image", "sparse.1"]).await;
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert_eq!(
        run.one_line_error(),
        "domtool: web1: update to sparse.1 failed: cannot fetch object 1f2e: not found"
    );
    let run = domtool(&server, &["wait", "web2", "--image", "sparse.1"]).await;
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert_eq!(
        run.one_line_error(),
        "domtool: web2: unhealthy on sparse.1: curl: (7) connection refused"
    );
    // Both at once: a line each.
    let run = domtool(&server, &["wait", "web1", "web2", "--image", "sparse.1"]).await;
    assert_eq!(run.code, 1);
    assert_eq!(run.stderr.lines().count(), 2, "{}", run.stderr);
}

#[tokio::test]
async fn wait_exits_3_at_the_timeout_saying_where_each_machine_is() {
    let server = NatsServer::start().unwrap();
    let bus = connect(&server).await;
    bus.publish_state(&on("web1", "sparse.0")).await.unwrap();
    let run = domtool(
        &server,
        &[
            "wait",
            "web1",
            "web9",
            "--image",
            "sparse.1",
            "--timeout",
            "1s",
        ],
    )
    .await;
    assert_eq!(run.code, 3, "{}", run.stderr);
    assert_eq!(
        run.stderr,
        "domtool: web1: not on sparse.1 after 1s: on sparse.0, told to carry sparse.0\n\
         domtool: web9: not on sparse.1 after 1s: no state report yet\n"
    );

    // A failure standing before the wait counts only without
    // --ignore-earlier; a new one counts either way.
    bus.publish_state(&failed_update("web1", "sparse.1", "2026-12-01T09:00:00Z"))
        .await
        .unwrap();
    let run = domtool(
        &server,
        &[
            "wait",
            "web1",
            "--image",
            "sparse.1",
            "--timeout",
            "1s",
            "--ignore-earlier",
        ],
    )
    .await;
    assert_eq!(run.code, 3, "{}", run.stderr);
    assert!(run
        .one_line_error()
        .contains("(before waiting began: update to sparse.1 failed"),);
    let waiting = background(domtool_command(
        &server,
        &[
            "wait",
            "web1",
            "--image",
            "sparse.1",
            "--timeout",
            "30s",
            "--ignore-earlier",
        ],
    ));
    tokio::time::sleep(std::time::Duration::from_millis(1000)).await;
    bus.publish_state(&failed_update("web1", "sparse.1", "2026-12-01T09:05:00Z"))
        .await
        .unwrap();
    let run = waiting.await.unwrap();
    assert_eq!(run.code, 1, "{}", run.stderr);
}

#[tokio::test]
async fn fast_update_rewrites_only_the_required_image_and_asks_for_the_update() {
    let server = NatsServer::start().unwrap();
    let bus = connect(&server).await;
    bus.publish_image(&sparse("sparse.0")).await.unwrap();
    bus.publish_image(&sparse("sparse.1")).await.unwrap();
    deleted(&bus, "gone.0").await;
    let stored = br#"{"hostname":"web1","requiredimage":"sparse.0","PlannedImage":"sparse.1",
        "IpAddress":"10.0.0.1","Tags":{"Role":"web"}}"#;
    bus.publish_mdb("web1", stored.to_vec().into())
        .await
        .unwrap();
    let mdb_payload = || async {
        let message = bus.last_mdb_message("web1").await.unwrap().unwrap();
        serde_json::from_slice::<serde_json::Value>(&message.payload).unwrap()
    };

    let error = domtool(&server, &["fast-update", "web1", "--image", "gone.0"])
        .await
        .one_line_error();
    assert!(error.contains("image gone.0 was deleted"), "{error}");
    assert_eq!(
        mdb_payload().await,
        serde_json::from_slice::<serde_json::Value>(stored).unwrap()
    );
    assert_eq!(last_control(&bus, "fast-update.web1").await, None);

    let out = domtool(
        &server,
        &["fast-update", "web1", "--image", "sparse.1", "--no-wait"],
    )
    .await
    .ok();
    assert_eq!(
        out,
        "web1 now requires sparse.1 in the MDB\nfast update of web1 to sparse.1 asked for\n"
    );
    assert_eq!(
        mdb_payload().await,
        serde_json::json!({"hostname": "web1", "RequiredImage": "sparse.1",
            "PlannedImage": "sparse.1", "IpAddress": "10.0.0.1", "Tags": {"Role": "web"}})
    );
    let payload = last_control(&bus, "fast-update.web1").await.unwrap();
    let Control::FastUpdate(fast) = Control::decode("fast-update.web1", &payload).unwrap() else {
        panic!("not a fast update");
    };
    assert_eq!(
        (fast.host.as_str(), fast.image.as_str()),
        ("web1", "sparse.1")
    );

    // Without --image: the image the MDB requires; it waits, and an
    // earlier failure does not count.
    bus.publish_state(&failed_update("web1", "sparse.1", "2026-12-01T09:00:00Z"))
        .await
        .unwrap();
    let run = domtool(&server, &["fast-update", "web1", "--timeout", "1s"]).await;
    assert_eq!(run.code, 3, "{}", run.stderr);
    assert!(
        run.stdout.contains("fast update of web1 to sparse.1"),
        "{}",
        run.stdout
    );
    bus.publish_state(&on("web1", "sparse.1")).await.unwrap();
    let out = domtool(&server, &["fast-update", "web1"]).await.ok();
    assert!(
        out.contains("web1 carries sparse.1 and is healthy"),
        "{out}"
    );

    let error = domtool(&server, &["fast-update", "web9"])
        .await
        .one_line_error();
    assert!(error.contains("web9 is not in the MDB"), "{error}");
}
