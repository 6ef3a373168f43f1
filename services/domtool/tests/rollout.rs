//! `domtool rollout status|resume|abort` against controls and state
//! reports the test publishes (as a dominator and agents would).

use dom_model::controls::{Control, RolloutControl, RolloutMachine, RolloutState};
use dom_model::report::UpdateResult;

use crate::common::*;

fn halted(image: &str) -> RolloutControl {
    RolloutControl {
        v: 1,
        image: dom_model::ImageName::parse(image).unwrap(),
        state: RolloutState::Halted,
        reason: "1 of 1 machines failed (--halt-after 1)".into(),
        machines: vec![RolloutMachine {
            host: "web1".into(),
            from: Some(dom_model::ImageName::parse("sparse.0").unwrap()),
            why: "unhealthy: curl: (7) refused".into(),
        }],
        revert: false,
        canary: None,
        by: "dominator@ops1".into(),
        when: "2026-12-01T09:00:00Z".into(),
    }
}

async fn rollout_control(bus: &dom_bus::Bus, image: &str) -> RolloutControl {
    let name = format!("rollout.{image}");
    let payload = last_control(bus, &name).await.expect("a rollout control");
    match Control::decode(&name, &payload).unwrap() {
        Control::Rollout(control) => control,
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn resume_forgives_a_halted_rollout_and_refuses_otherwise() {
    let server = NatsServer::start().unwrap();
    let bus = connect(&server).await;
    assert_eq!(
        domtool(&server, &["rollout", "status"]).await.ok(),
        "no rollouts\n"
    );
    assert_eq!(
        domtool(&server, &["rollout", "status", "sparse.1"])
            .await
            .ok(),
        "no rollout of sparse.1\n"
    );
    let error = domtool(&server, &["rollout", "resume", "sparse.1"])
        .await
        .one_line_error();
    assert!(error.contains("was never halted or aborted"), "{error}");

    let control = halted("sparse.1");
    bus.publish_ctl("rollout.sparse.1", control.encode().into())
        .await
        .unwrap();
    let status = domtool(&server, &["rollout", "status"]).await.ok();
    assert!(
        status.contains(
            "last control: halted by dominator@ops1 at 2026-12-01T09:00:00Z: \
             1 of 1 machines failed (--halt-after 1); 1 machine named"
        ),
        "{status}"
    );

    let out = domtool(
        &server,
        &[
            "rollout",
            "resume",
            "sparse.1",
            "--reason",
            "fixed the check",
        ],
    )
    .await
    .ok();
    assert!(
        out.contains("rollout of sparse.1 resumed by alice@"),
        "{out}"
    );
    let resumed = rollout_control(&bus, "sparse.1").await;
    assert_eq!(resumed.state, RolloutState::Resumed);
    assert_eq!(resumed.machines, control.machines, "the failures forgiven");
    assert_eq!(resumed.reason, "fixed the check");
    let error = domtool(&server, &["rollout", "resume", "sparse.1"])
        .await
        .one_line_error();
    assert!(error.contains("is not halted or aborted"), "{error}");
}

#[tokio::test]
async fn abort_names_the_machines_reached_and_not_done_with_where_they_came_from() {
    let server = NatsServer::start().unwrap();
    let bus = connect(&server).await;
    bus.publish_image(&sparse("sparse.0")).await.unwrap();
    bus.publish_image(&sparse("sparse.1")).await.unwrap();
    let error = domtool(&server, &["rollout", "abort", "sparse.1"])
        .await
        .one_line_error();
    assert!(error.contains("no rollout of sparse.1"), "{error}");
    for host in ["web1", "web2", "web3"] {
        domtool(&server, &["mdb", "set", host, "--required", "sparse.1"])
            .await
            .ok();
    }
    // web1's update failed; web2 is done; web3 was not reached.
    let mut web1 = report("web1", "sparse.0", true);
    web1.last_update = Some(UpdateResult {
        image: "sparse.1".into(),
        from: Some("sparse.0".into()),
        started: "2026-12-01T09:00:00Z".into(),
        ok: false,
        error: Some("no space left".into()),
        ..UpdateResult::default()
    });
    bus.publish_state(&web1).await.unwrap();
    bus.publish_state(&report("web2", "sparse.1", true))
        .await
        .unwrap();
    bus.publish_state(&report("web3", "sparse.0", true))
        .await
        .unwrap();

    let out = domtool(
        &server,
        &[
            "rollout", "abort", "sparse.1", "--revert", "--reason", "bad",
        ],
    )
    .await
    .ok();
    assert_eq!(
        out.lines().nth(1),
        Some("  web1: update to sparse.1 failed: no space left, going back to sparse.0"),
        "{out}"
    );
    let aborted = rollout_control(&bus, "sparse.1").await;
    assert_eq!(aborted.state, RolloutState::Aborted);
    assert!(aborted.revert);
    assert_eq!(aborted.reason, "bad");
    assert_eq!(
        aborted.machines,
        [RolloutMachine {
            host: "web1".into(),
            from: Some(dom_model::ImageName::parse("sparse.0").unwrap()),
            why: "update to sparse.1 failed: no space left".into(),
        }]
    );
    // Aborted, it can be resumed.
    domtool(&server, &["rollout", "resume", "sparse.1"])
        .await
        .ok();
}

#[tokio::test]
async fn an_image_gets_a_canary_of_its_own_kept_through_a_halt_and_a_resume() {
    let server = NatsServer::start().unwrap();
    let bus = connect(&server).await;
    let out = domtool(&server, &["rollout", "canary", "sparse.1", "10%"])
        .await
        .ok();
    assert!(out.contains("a canary of 10%"), "{out}");
    let control = rollout_control(&bus, "sparse.1").await;
    assert_eq!(control.state, RolloutState::Configured);
    assert_eq!(control.canary.as_deref(), Some("10%"));
    let status = domtool(&server, &["rollout", "status", "sparse.1"])
        .await
        .ok();
    assert!(status.contains("configured by"), "{status}");
    assert!(status.contains("its own canary 10%"), "{status}");

    // A halt (the dominator carries the canary on), changed, resumed.
    let halt = RolloutControl {
        canary: Some("10%".into()),
        ..halted("sparse.1")
    };
    bus.publish_ctl("rollout.sparse.1", halt.encode().into())
        .await
        .unwrap();
    domtool(&server, &["rollout", "canary", "sparse.1", "3"])
        .await
        .ok();
    let changed = rollout_control(&bus, "sparse.1").await;
    assert_eq!(changed.state, RolloutState::Halted, "a halt stays a halt");
    assert_eq!(changed.canary.as_deref(), Some("3"));
    domtool(&server, &["rollout", "resume", "sparse.1"])
        .await
        .ok();
    let resumed = rollout_control(&bus, "sparse.1").await;
    assert_eq!(resumed.state, RolloutState::Resumed);
    assert_eq!(resumed.canary.as_deref(), Some("3"));

    // Bad input changes nothing.
    for bad in ["", "ten", "0%", "101%", "1.5"] {
        let error = domtool(&server, &["rollout", "canary", "sparse.1", bad])
            .await
            .one_line_error();
        assert!(error.contains("canary"), "{bad}: {error}");
    }
    assert_eq!(rollout_control(&bus, "sparse.1").await, resumed);
}
