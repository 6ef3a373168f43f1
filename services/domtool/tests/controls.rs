//! The day-two controls through the real binary: pause and resume, the
//! agents' settings and the default image, what each publishes on
//! `dom.ctl.<control>` and what each refuses.

use dom_model::controls::Control;

use crate::common::*;

async fn ctl_sequence(bus: &dom_bus::Bus) -> u64 {
    stream_sequence(bus, &bus.subjects.ctl_stream()).await
}

fn decode(control: &str, payload: Option<Vec<u8>>) -> Control {
    Control::decode(control, &payload.expect("a control")).unwrap()
}

#[tokio::test]
async fn pause_and_resume_publish_and_withdraw_a_pause() {
    let server = NatsServer::start().unwrap();
    let bus = connect(&server).await;
    bus.publish_image(&sparse("sparse.0")).await.unwrap();
    domtool(&server, &["mdb", "set", "web1", "--required", "sparse.0"])
        .await
        .ok();

    let out = domtool(
        &server,
        &["pause", "web1", "--for", "2h", "debugging a leak"],
    )
    .await
    .ok();
    assert!(out.starts_with("web1 paused until 20"), "{out}");
    assert!(out.contains("(2h) by alice@"), "{out}");
    assert!(out.trim_end().ends_with(": debugging a leak"), "{out}");
    let Control::Pause(pause) = decode("pause.web1", last_control(&bus, "pause.web1").await) else {
        panic!("not a pause");
    };
    assert_eq!(pause.until_unix - pause.when_unix, 7200);
    assert_eq!(pause.reason, "debugging a leak");
    assert!(pause.by.starts_with("alice@"), "{pause:?}");
    assert!(out.contains(&pause.until), "{out}");

    let status = domtool(&server, &["status"]).await.ok();
    let row = status.lines().find(|l| l.starts_with("web1 ")).unwrap();
    assert!(
        row.contains("held: paused by alice@") && row.contains("debugging a leak"),
        "{status}"
    );

    let show = domtool(&server, &["show", "web1"]).await.ok();
    assert!(show.contains("paused:    by alice@"), "{show}");

    let before = ctl_sequence(&bus).await;
    for (args, expected) in [
        (&["pause", "web1", "--for", "30s", "x"][..], "too short"),
        (&["pause", "web1", "--for", "25h", "x"], "too long"),
        (&["pause", "web1", "--for", "2h", " "], "say why"),
        (
            &["pause", "web9", "--for", "2h", "x"],
            "web9 is not in the MDB",
        ),
        (&["pause", "bad@host", "--for", "2h", "x"], "invalid host"),
        (
            &["pause", "web1", "--for", "soon", "x"],
            "invalid value 'soon'",
        ),
        (&["pause", "web1", "--for", "2h"], "<REASON>"),
    ] {
        let error = domtool(&server, args).await.one_line_error();
        assert!(error.contains(expected), "{args:?}: {error}");
    }
    assert_eq!(ctl_sequence(&bus).await, before, "a refusal published");
    domtool(&server, &["pause", "web9", "--for", "1m", "x", "--force"])
        .await
        .ok();

    let out = domtool(&server, &["resume", "web1"]).await.ok();
    assert!(
        out.starts_with("web1 resumed; its pause by alice@"),
        "{out}"
    );
    assert_eq!(last_control(&bus, "pause.web1").await, Some(vec![]));
    let out = domtool(&server, &["resume", "web1"]).await.ok();
    assert_eq!(out, "web1 is not paused\n");
}

#[tokio::test]
async fn configure_subs_and_get_subs_configuration_round_trip() {
    let server = NatsServer::start().unwrap();
    let bus = connect(&server).await;

    let out = domtool(&server, &["get-subs-configuration"]).await.ok();
    assert_eq!(out, "fleet: the agents' own settings\n");
    let out = domtool(&server, &["configure-subs", "--scan-speed-percent", "2"])
        .await
        .ok();
    assert_eq!(
        out,
        "settings of the fleet: scan speed 2%, fetch rate the agent's\n"
    );
    // A setting not named is kept.
    let out = domtool(&server, &["configure-subs", "--fetch-rate", "1048576"])
        .await
        .ok();
    assert_eq!(
        out,
        "settings of the fleet: scan speed 2%, fetch rate 1048576 bytes/s\n"
    );
    domtool(
        &server,
        &[
            "configure-subs",
            "--host",
            "web1",
            "--scan-speed-percent",
            "0.1%",
        ],
    )
    .await
    .ok();
    let Control::SubsConfig(one) = decode(
        "subs-config.web1",
        last_control(&bus, "subs-config.web1").await,
    ) else {
        panic!("not agent settings");
    };
    assert_eq!(one.host.as_deref(), Some("web1"));
    assert_eq!(one.config.scan_speed_percent, Some("0.1".parse().unwrap()));
    assert_eq!(one.config.fetch_rate, None);

    let out = domtool(&server, &["get-subs-configuration"]).await.ok();
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 2, "{out}");
    assert!(
        lines[0].starts_with("fleet: scan speed 2%, fetch rate 1048576 bytes/s, set by alice@"),
        "{out}"
    );
    assert!(
        lines[1].starts_with("web1: scan speed 0.1%, fetch rate the fleet's, set by alice@"),
        "{out}"
    );

    let before = ctl_sequence(&bus).await;
    for (args, expected) in [
        (&["configure-subs"][..], "name a setting"),
        (&["configure-subs", "--host", "web1"], "name a setting"),
        (
            &["configure-subs", "--scan-speed-percent", "0"],
            "is not between 0.001 and 100",
        ),
        (
            &["configure-subs", "--scan-speed-percent", "101"],
            "is not between 0.001 and 100",
        ),
        (&["configure-subs", "--fetch-rate", "0"], "--fetch-rate"),
        (&["configure-subs", "--fetch-rate", "10MiB"], "--fetch-rate"),
        (
            &["configure-subs", "--clear", "--fetch-rate", "5"],
            "cannot be used with",
        ),
        (
            &["configure-subs", "--host", "bad@host", "--fetch-rate", "5"],
            "invalid host",
        ),
    ] {
        let error = domtool(&server, args).await.one_line_error();
        assert!(error.contains(expected), "{args:?}: {error}");
    }
    assert_eq!(ctl_sequence(&bus).await, before, "a refusal published");

    let out = domtool(&server, &["configure-subs", "--host", "web1", "--clear"])
        .await
        .ok();
    assert_eq!(out, "settings of web1 cleared: the fleet's apply\n");
    let out = domtool(&server, &["get-subs-configuration"]).await.ok();
    assert_eq!(out.lines().count(), 1, "{out}");
}

#[tokio::test]
async fn set_default_image_refuses_images_that_do_not_resolve() {
    let server = NatsServer::start().unwrap();
    let bus = connect(&server).await;
    bus.publish_image(&sparse("base.3")).await.unwrap();
    bus.publish_image(&expired("old.0")).await.unwrap();
    deleted(&bus, "gone.0").await;

    let out = domtool(&server, &["get-default-image"]).await.ok();
    assert_eq!(out, "no default image\n");
    let before = ctl_sequence(&bus).await;
    for (image, expected) in [
        (
            "nosuch.0",
            "image nosuch.0 does not exist; add it with imagetool first (or --force)",
        ),
        (
            "old.0",
            "image old.0 expired at 2020-01-01T00:00:00Z; pick a live image (or --force)",
        ),
        (
            "gone.0",
            "image gone.0 was deleted at 2026-11-30T09:00:00Z by bob@build1",
        ),
    ] {
        let error = domtool(&server, &["set-default-image", image])
            .await
            .one_line_error();
        assert!(error.contains(expected), "{image}: {error}");
    }
    assert_eq!(ctl_sequence(&bus).await, before, "a refusal published");

    domtool(&server, &["set-default-image", "nosuch.0", "--force"])
        .await
        .ok();
    let out = domtool(&server, &["set-default-image", "base.3"])
        .await
        .ok();
    assert!(out.starts_with("default image set to base.3"), "{out}");
    let Control::DefaultImage(default) =
        decode("default-image", last_control(&bus, "default-image").await)
    else {
        panic!("not a default image");
    };
    assert_eq!(default.image.unwrap().as_str(), "base.3");
    let out = domtool(&server, &["get-default-image"]).await.ok();
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "base.3", "{out}");
    assert!(lines[1].starts_with("set by alice@"), "{out}");

    for args in [
        &["set-default-image", "--none"][..],
        &["set-default-image", ""],
    ] {
        let out = domtool(&server, args).await.ok();
        assert!(out.starts_with("no default image"), "{out}");
        let out = domtool(&server, &["get-default-image"]).await.ok();
        assert!(
            out.starts_with("no default image (cleared by alice@"),
            "{out}"
        );
    }
    let error = domtool(&server, &["set-default-image"])
        .await
        .one_line_error();
    assert!(error.contains("required"), "{error}");
}
