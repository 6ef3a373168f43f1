//! Machines whose image is unknown, deleted or expired, and MDB payloads
//! that do not decode: clear errors, events once per change, and nothing
//! else changes.

use crate::common::*;
use dom_model::Tombstone;

#[tokio::test]
async fn unknown_and_deleted_images_put_a_machine_in_error_and_nothing_else() {
    let server = NatsServer::start().unwrap();
    let bus = connect(&server).await;
    add_image(&bus, &sparse("sparse.0")).await;
    set_mdb(&bus, "web1", "sparse.0").await;
    set_mdb(&bus, "web2", "sparse.0").await;
    let dominator = dominator(&bus, 10).await;
    wait_allowed(&bus, "web1", "sparse.0").await;
    wait_allowed(&bus, "web2", "sparse.0").await;

    // An image nobody added: web1 is in error and keeps its last desired
    // state; web2 is untouched.
    let before = desired_sequence(&bus).await;
    set_mdb(&bus, "web1", "nosuch.0").await;
    let event = wait_event(&bus, "web1", "error", |e| e.message.contains("nosuch.0")).await;
    assert_eq!(event.message, "image nosuch.0 does not exist");
    let board = dominator.board().clone();
    board
        .wait_for(|s| {
            s.decision
                .as_ref()
                .and_then(|d| d.machine("web1"))
                .is_some_and(|m| m.error.as_deref() == Some("image nosuch.0 does not exist"))
        })
        .await;
    assert_eq!(desired_sequence(&bus).await, before, "nothing published");
    assert_eq!(
        desired(&bus, "web1").await.unwrap().image.as_str(),
        "sparse.0"
    );

    // More changes elsewhere do not repeat the error event.
    add_image(&bus, &sparse("sparse.1")).await;
    set_mdb(&bus, "web2", "sparse.1").await;
    wait_allowed(&bus, "web2", "sparse.1").await;
    let errors = bus.events("web1").await.unwrap();
    assert_eq!(errors.iter().filter(|e| e.kind == "error").count(), 1);

    // The image appears: web1 converges and the error is resolved.
    add_image(&bus, &sparse("nosuch.0")).await;
    wait_allowed(&bus, "web1", "nosuch.0").await;
    wait_event(&bus, "web1", "resolved", |_| true).await;

    // A deleted image: in error again, with who deleted it.
    bus.delete_image(&Tombstone {
        v: 1,
        name: name("sparse.1"),
        deleted: true,
        deleted_at: "2026-11-26T10:00:00Z".into(),
        by: "bob@build1".into(),
    })
    .await
    .unwrap();
    let event = wait_event(&bus, "web2", "error", |_| true).await;
    assert!(
        event.message.contains("sparse.1 was deleted") && event.message.contains("bob@build1"),
        "{}",
        event.message
    );
    assert_eq!(
        desired(&bus, "web2").await.unwrap().image.as_str(),
        "sparse.1"
    );
}

#[tokio::test]
async fn malformed_mdb_payloads_are_refused_and_the_record_kept() {
    let server = NatsServer::start().unwrap();
    let bus = connect(&server).await;
    add_image(&bus, &sparse("sparse.0")).await;
    set_mdb(&bus, "web1", "sparse.0").await;
    set_mdb(&bus, "web2", "sparse.0").await;
    let dominator = dominator(&bus, 10).await;
    wait_allowed(&bus, "web1", "sparse.0").await;
    wait_allowed(&bus, "web2", "sparse.0").await;
    let before = desired_sequence(&bus).await;

    let cases = [
        ("not json", "{RequiredImage: sparse.1", "not valid JSON"),
        ("wrong type", r#"{"RequiredImage": 5}"#, "must be a string"),
        (
            "another host",
            r#"{"Hostname": "web2", "RequiredImage": "sparse.0"}"#,
            "names another host",
        ),
        ("bad image", r#"{"RequiredImage": "a..b"}"#, "a..b"),
    ];
    for (what, payload, says) in cases {
        nats_py_publish(&server, "dom.mdb.web1", payload);
        let event = wait_event(&bus, "web1", "rejected", |e| e.message.contains(says)).await;
        assert!(!event.message.contains('\n'), "{what}: {}", event.message);
    }
    // A huge payload is echoed as a bounded prefix and its size.
    let huge = format!("{:?}", "a".repeat(900_000));
    bus.publish_mdb("web1", huge.into_bytes().into())
        .await
        .unwrap();
    let event = wait_event(&bus, "web1", "rejected", |e| {
        e.message.contains("bytes in all")
    })
    .await;
    assert!(event.message.len() < 1_000, "{} bytes", event.message.len());
    let board = dominator.board().clone();
    board
        .wait_for(|s| s.rejected_mdb.contains_key("web1"))
        .await;
    // The machine keeps its record: nothing is published for anyone.
    let status = board.status();
    let machine = status
        .decision
        .as_ref()
        .unwrap()
        .machine("web1")
        .unwrap()
        .clone();
    assert_eq!(machine.required.unwrap().as_str(), "sparse.0");
    assert!(machine.error.is_none());
    assert_eq!(desired_sequence(&bus).await, before);

    // A restarted dominator finds the last good record in the history,
    // and does not announce the refusal again.
    let refusals =
        |events: Vec<dom_model::Event>| events.iter().filter(|e| e.kind == "rejected").count();
    let announced = refusals(bus.events("web1").await.unwrap());
    drop(dominator);
    let dominator = crate::common::dominator(&bus, 10).await;
    wait_rounds(&dominator, 1).await;
    assert_eq!(refusals(bus.events("web1").await.unwrap()), announced);
    let status = dominator.board().status();
    let machine = status
        .decision
        .as_ref()
        .unwrap()
        .machine("web1")
        .unwrap()
        .clone();
    assert_eq!(machine.required.unwrap().as_str(), "sparse.0");
    assert_eq!(desired_sequence(&bus).await, before);

    // A good record clears the refusal.
    nats_py_publish(&server, "dom.mdb.web1", "");
    dominator
        .board()
        .wait_for(|s| {
            !s.rejected_mdb.contains_key("web1")
                && s.decision
                    .as_ref()
                    .is_some_and(|d| d.machine("web1").is_none())
        })
        .await;
}

/// An active dominator that loses the lease before it could announce that
/// a machine's error ended leaves that to the events: once it holds the
/// lease again, it reads the error it announced and says it ended.
#[tokio::test]
async fn an_error_s_end_unannounced_when_the_lease_was_lost_is_announced_after_it_returns() {
    use dom_bus::{FleetKind, FleetMessage, View};
    use dom_model::ImageMessage;
    use dominator::notices::Notices;

    let server = NatsServer::start().unwrap();
    let bus = connect(&server).await;
    let mut view = View::default();
    view.apply(&FleetMessage {
        kind: FleetKind::Mdb,
        name: "web1".into(),
        payload: br#"{"RequiredImage":"sparse.0"}"#[..].into(),
        sequence: 1,
        published: None,
    });
    let in_error = view.decide(0);
    assert!(in_error.machine("web1").unwrap().error.is_some());
    let mut notices = Notices::default();
    assert!(
        notices
            .announce(&bus, &in_error, "2026-12-05T00:00:00Z")
            .await
    );
    wait_event(&bus, "web1", "error", |_| true).await;

    // The image arrives; the lease is lost before the round announces it.
    view.fleet
        .add_image(ImageMessage::Record(sparse("sparse.0")));
    let resolved = view.decide(0);
    assert_eq!(resolved.machine("web1").unwrap().error, None);
    notices.stand_by(&resolved);

    assert!(
        notices
            .announce(&bus, &resolved, "2026-12-05T00:00:05Z")
            .await
    );
    let event = wait_event(&bus, "web1", "resolved", |_| true).await;
    assert!(event.message.contains("sparse.0"), "{}", event.message);
    // Announced once: a further round says nothing more.
    assert!(
        notices
            .announce(&bus, &resolved, "2026-12-05T00:00:06Z")
            .await
    );
    let events = bus.events("web1").await.unwrap();
    assert_eq!(events.iter().filter(|e| e.kind == "resolved").count(), 1);
}
