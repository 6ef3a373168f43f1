//! `status`, `show`, `watch` and the fleet controls, with a dominator
//! running in-process and state reports made up by the test.

use std::io::{BufRead, BufReader};
use std::process::Stdio;

use crate::common::*;

#[tokio::test]
async fn status_show_and_the_safety_shutoff() {
    let server = NatsServer::start().unwrap();
    let bus = connect(&server).await;
    bus.publish_image(&sparse("sparse.0")).await.unwrap();
    bus.publish_image(&normal("tiny.0", 10)).await.unwrap();
    bus.publish_state(&report("web1", "sparse.0", true))
        .await
        .unwrap();
    bus.publish_state(&report("db1", "tiny.0", false))
        .await
        .unwrap();
    let _dominator = dominator(&bus).await;
    domtool(&server, &["mdb", "set", "web1", "--required", "sparse.0"])
        .await
        .ok();
    domtool(&server, &["mdb", "set", "db1", "--required", "tiny.0"])
        .await
        .ok();
    domtool(
        &server,
        &["mdb", "set", "web2", "--required", "nosuch.0", "--force"],
    )
    .await
    .ok();
    // The shutoff holds db1.
    wait_desired(&bus, "db1", "held on tiny.0", |d| {
        d.image.as_str() == "tiny.0" && !d.updates_allowed
    })
    .await;

    let status = domtool(&server, &["status"]).await.ok();
    let lines: Vec<&str> = status.lines().collect();
    assert!(lines[0].starts_with("3 machines, 1 compliant"), "{status}");
    assert!(lines[1].starts_with("HOST"), "{status}");
    let row = |host: &str| {
        lines
            .iter()
            .find(|l| l.starts_with(&format!("{host} ")))
            .unwrap_or_else(|| panic!("no row for {host}: {status}"))
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
    };
    assert!(
        row("web1").starts_with("web1 sparse.0 sparse.0 yes -"),
        "{status}"
    );
    assert!(
        row("db1").starts_with("db1 tiny.0 - no - safety shutoff"),
        "{status}"
    );
    assert!(
        row("web2").starts_with("web2 nosuch.0 - ? - image nosuch.0 does not exist"),
        "{status}"
    );

    let show = domtool(&server, &["show", "db1"]).await.ok();
    assert!(
        show.contains("desired:   tiny.0 (normal), updates held"),
        "{show}"
    );
    assert!(show.contains("error:     safety shutoff"), "{show}");
    assert!(show.contains("domtool clear-safety-shutoff db1"), "{show}");
    let show = domtool(&server, &["show", "web2"]).await.ok();
    assert!(show.contains("event web2 error"), "{show}");
    let error = domtool(&server, &["show", "nobody"]).await.one_line_error();
    assert!(error.contains("nobody is not in the MDB"), "{error}");

    let out = domtool(
        &server,
        &["clear-safety-shutoff", "db1", "--reason", "tiny on purpose"],
    )
    .await
    .ok();
    assert_eq!(
        out.trim(),
        "safety shutoff of db1 cleared for one update to tiny.0"
    );
    wait_desired(&bus, "db1", "allowed onto tiny.0", |d| {
        d.image.as_str() == "tiny.0" && d.updates_allowed
    })
    .await;
    let error = domtool(&server, &["clear-safety-shutoff", "nobody"])
        .await
        .one_line_error();
    assert!(error.contains("nobody is not in the MDB"), "{error}");
}

#[tokio::test]
async fn disable_and_enable_updates() {
    let server = NatsServer::start().unwrap();
    let bus = connect(&server).await;
    bus.publish_image(&sparse("sparse.0")).await.unwrap();
    let _dominator = dominator(&bus).await;
    domtool(&server, &["mdb", "set", "web1", "--required", "sparse.0"])
        .await
        .ok();
    wait_desired(&bus, "web1", "allowed", |d| d.updates_allowed).await;

    let error = domtool(&server, &["disable-updates", " "])
        .await
        .one_line_error();
    assert!(error.contains("say why"), "{error}");
    let out = domtool(&server, &["disable-updates", "bad kernel"])
        .await
        .ok();
    assert!(
        out.starts_with("updates disabled for the fleet by alice@"),
        "{out}"
    );
    wait_desired(&bus, "web1", "held", |d| !d.updates_allowed).await;
    let status = domtool(&server, &["status"]).await.ok();
    assert!(status.contains("UPDATES DISABLED by alice@"), "{status}");
    assert!(status.contains("bad kernel"), "{status}");

    domtool(&server, &["enable-updates", "kernel fixed"])
        .await
        .ok();
    wait_desired(&bus, "web1", "allowed again", |d| d.updates_allowed).await;
    let controls = bus.last_per_subject(dom_bus::FleetKind::Ctl).await.unwrap();
    let updates: serde_json::Value = serde_json::from_slice(&controls[0].payload).unwrap();
    assert_eq!(updates["updates"], "enabled");
    assert_eq!(updates["reason"], "kernel fixed");
    assert!(updates["by"].as_str().unwrap().starts_with("alice@"));
    assert!(updates["when"].as_str().unwrap().ends_with('Z'));
}

#[tokio::test]
async fn watch_prints_one_line_per_change() {
    let server = NatsServer::start().unwrap();
    let bus = connect(&server).await;
    let mut child = domtool_command(&server, &["watch", "--count", "3"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    // On a timeout the child is killed, so that the blocking reads below
    // end and the test fails instead of hanging.
    let pid = child.id().to_string();
    let kill = move || {
        let _ = std::process::Command::new("kill")
            .args(["-9", &pid])
            .status();
    };
    let ready = tokio::task::spawn_blocking(move || {
        let mut line = String::new();
        BufReader::new(stderr).read_line(&mut line).unwrap();
        line
    });
    let Ok(ready) = tokio::time::timeout(DEADLINE, ready).await else {
        kill();
        panic!("domtool watch did not start within {DEADLINE:?}");
    };
    let ready = ready.unwrap();
    assert!(ready.starts_with("watching dom.> on"), "{ready}");

    bus.publish_mdb("web1", br#"{"RequiredImage":"sparse.0"}"#.to_vec().into())
        .await
        .unwrap();
    bus.publish_state(&report("web1", "sparse.0", true))
        .await
        .unwrap();
    let event = dom_model::Event::new("web1", "update", "2026-11-26T09:00:01Z", "sparse.0 applied");
    bus.publish_event(&event.with_image("sparse.0"))
        .await
        .unwrap();
    let output = tokio::task::spawn_blocking(move || child.wait_with_output().unwrap());
    let Ok(output) = tokio::time::timeout(DEADLINE, output).await else {
        kill();
        panic!("domtool watch did not print three lines within {DEADLINE:?}");
    };
    let output = output.unwrap();
    let stdout = String::from_utf8(output.stdout).unwrap();
    assert!(output.status.success(), "{stdout}");
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 3, "{stdout}");
    assert!(
        lines[0].ends_with(r#"mdb web1 {"Hostname":"web1","RequiredImage":"sparse.0"}"#),
        "{stdout}"
    );
    assert!(
        lines[1].ends_with("state web1 generation 0 image sparse.0 compliant"),
        "{stdout}"
    );
    assert_eq!(
        lines[2],
        "2026-11-26T09:00:01Z event web1 update [sparse.0]: sparse.0 applied"
    );
}

#[tokio::test]
async fn watch_once_prints_the_status_screen() {
    let server = NatsServer::start().unwrap();
    let bus = connect(&server).await;
    bus.publish_image(&sparse("sparse.0")).await.unwrap();
    for (host, compliant) in [("web1", true), ("web2", false)] {
        bus.publish_mdb(host, br#"{"RequiredImage":"sparse.0"}"#.to_vec().into())
            .await
            .unwrap();
        bus.publish_state(&report(host, "sparse.0", compliant))
            .await
            .unwrap();
    }
    for i in 0..3 {
        let event =
            dom_model::Event::new("web1", "update", "2026-11-26T09:00:01Z", format!("n{i}"));
        bus.publish_event(&event.with_image("sparse.0"))
            .await
            .unwrap();
    }
    domtool(&server, &["disable-updates", "bad image"])
        .await
        .ok();

    let screen = domtool(&server, &["watch", "--once"]).await.ok();
    let lines: Vec<&str> = screen.lines().collect();
    assert!(lines[0].starts_with("fleet on nats://"), "{screen}");
    assert!(
        lines[1].starts_with("machines 2  compliant 1  "),
        "{screen}"
    );
    assert!(
        lines[2].starts_with("updates: STOPPED by alice@"),
        "{screen}"
    );
    assert!(lines[2].ends_with(": bad image"), "{screen}");
    assert!(lines[1].ends_with("safety shutoffs 0"), "{screen}");
    assert!(lines.contains(&"  sparse.0: 1/2 compliant"), "{screen}");
    let events = lines.iter().position(|l| *l == "latest events").unwrap();
    assert_eq!(
        &lines[events + 1..],
        [
            "09:00:01 web1 update [sparse.0]: n2",
            "09:00:01 web1 update [sparse.0]: n1",
            "09:00:01 web1 update [sparse.0]: n0",
        ],
        "{screen}"
    );
    assert!(!screen.contains('\x1b'), "{screen:?}");
}

#[tokio::test]
async fn the_screen_shows_an_event_published_while_it_starts_once() {
    use futures::StreamExt;
    let server = NatsServer::start().unwrap();
    let bus = connect(&server).await;
    let event = |message: &str| {
        dom_model::Event::new(
            "web1",
            "update",
            "2026-11-26T09:00:01Z",
            message.to_string(),
        )
    };
    bus.publish_event(&event("before")).await.unwrap();
    // The screen has subscribed but not yet read the stored events when
    // "during" is published: it is both stored and delivered live.
    let live = bus
        .client
        .subscribe(bus.subjects.all("event"))
        .await
        .unwrap();
    bus.client.flush().await.unwrap();
    bus.publish_event(&event("during")).await.unwrap();
    let (events, stored) = bus.recent_events_then(10, live).await.unwrap();
    assert_eq!(stored, 2);
    // Identical events published afterwards are each shown.
    bus.publish_event(&event("after")).await.unwrap();
    bus.publish_event(&event("after")).await.unwrap();
    let shown: Vec<(String, u64)> = tokio::time::timeout(
        DEADLINE,
        events
            .take(4)
            .map(|e| {
                let (event, pending) = e.unwrap();
                (event.message, pending)
            })
            .collect(),
    )
    .await
    .expect("four events");
    assert_eq!(
        shown,
        [
            ("before".to_string(), 1),
            ("during".to_string(), 0),
            ("after".to_string(), 0),
            ("after".to_string(), 0),
        ]
    );
}
