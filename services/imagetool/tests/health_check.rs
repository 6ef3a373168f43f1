//! `add --health-command`: the check is stored in the image record, which
//! says schema version 2; an image without one stays version 1. Bad
//! health flags are one-line errors and publish nothing.

use crate::common::*;

fn tree() -> String {
    examples().join("path").to_str().unwrap().to_string()
}

/// The record on `dom.image.<name>`, as JSON.
fn record(server: &NatsServer, name: &str) -> serde_json::Value {
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let client = async_nats::connect(server.url()).await.unwrap();
        let js = async_nats::jetstream::new(client);
        let stream = js.get_stream("DOM_IMAGES").await.unwrap();
        let message = stream
            .get_last_raw_message_by_subject(&format!("dom.image.{name}"))
            .await
            .unwrap();
        serde_json::from_slice(&message.payload).unwrap()
    })
}

#[test]
fn the_health_check_goes_into_the_record_with_version_2() {
    let server = NatsServer::start().unwrap();
    let t = tree();
    let out = imagetool(
        &server,
        &[
            "add",
            "web.1",
            &t,
            "",
            "",
            "--health-command",
            "curl -fs http://localhost/healthz",
            "--health-timeout",
            "90s",
        ],
    )
    .ok();
    assert!(
        out.contains("health check: curl -fs http://localhost/healthz (for up to 90 s)"),
        "{out}"
    );
    let with = record(&server, "web.1");
    assert_eq!(with["v"], 2, "{with}");
    assert_eq!(
        with["health_check"],
        serde_json::json!({"command": "curl -fs http://localhost/healthz", "timeout_s": 90})
    );

    imagetool(
        &server,
        &["add", "web.2", &t, "", "", "--health-command", "true"],
    )
    .ok();
    let no_timeout = record(&server, "web.2");
    assert_eq!(no_timeout["v"], 2);
    assert_eq!(
        no_timeout["health_check"],
        serde_json::json!({"command": "true"})
    );

    let shown = imagetool(&server, &["show-health-check", "web.1"]).ok();
    let shown: serde_json::Value = serde_json::from_str(&shown).unwrap();
    assert_eq!(shown, with["health_check"]);

    imagetool(&server, &["add", "plain.1", &t, "", ""]).ok();
    assert_eq!(
        imagetool(&server, &["show-health-check", "plain.1"])
            .ok()
            .trim(),
        "null"
    );
    let without = record(&server, "plain.1");
    assert_eq!(without["v"], 1, "{without}");
    assert!(without.get("health_check").is_none(), "{without}");
}

#[test]
fn bad_health_flags_are_one_line_errors_and_publish_nothing() {
    let server = NatsServer::start().unwrap();
    let t = tree();
    for (args, says) in [
        (
            &["--health-command", " "][..],
            "--health-command: the health check's command is empty",
        ),
        (
            &["--health-command", "true", "--health-timeout", "0s"],
            "--health-timeout: a timeout of 0",
        ),
        (
            &["--health-command", "true", "--health-timeout", "2h"],
            "--health-timeout: the health check's timeout_s 7200 is over 3600",
        ),
        (&["--health-timeout", "10s"], "--health-command"),
        (
            &["--health-command", "true", "--health-timeout", "soon"],
            "--health-timeout",
        ),
    ] {
        let mut all = vec!["add", "h.1", t.as_str(), "", ""];
        all.extend_from_slice(args);
        let err = imagetool(&server, &all).one_line_error();
        assert!(err.contains(says), "{args:?}: expected {says:?} in: {err}");
    }
    assert_eq!(imagetool(&server, &["list", "--all"]).ok(), "");
}
