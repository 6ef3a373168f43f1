//! Bad input: a corrupt object in the bucket is never installed and the
//! update reports why; a malformed desired state is refused (a `rejected`
//! event and the state report's `error`), nothing is touched, and the
//! agent keeps running.

use std::fs;

use crate::agent_support::{at, write, Fleet};
use bytes::Bytes;
use dom_model::{Event, ObjectId};
use subd::Agent;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupt_object_is_never_installed() {
    let fleet = Fleet::start().await;
    let tmp = tempfile::tempdir().unwrap();
    let source = tmp.path().join("source");
    write(&source, "/etc/good", b"good content\n", 0o644);
    write(&source, "/etc/victim", b"the real content\n", 0o644);
    let record = fleet.add_image("bad.0", &source, None, None).await;
    // Someone with write access replaces the object's content where the
    // store keeps it, under the object's id, rolling up what was there.
    let id = ObjectId::of(b"the real content\n");
    let chunk = format!(
        "{}{}",
        fleet.bus.subjects.object_chunk_prefix(),
        id.to_hex()
    );
    let mut headers = async_nats::HeaderMap::new();
    headers.insert(async_nats::header::NATS_ROLLUP, "sub");
    fleet
        .bus
        .js
        .publish_with_headers(chunk, headers, Bytes::from_static(b"the evil content\n"))
        .await
        .unwrap()
        .await
        .unwrap();

    let root = tmp.path().join("machine");
    write(&root, "/etc/victim", b"the machine's own\n", 0o644);
    let agent = Agent::start(fleet.config("bad1", &root, "/bin/true")).unwrap();
    fleet.assign("bad1", &record).await;
    let report = fleet
        .wait_state("bad1", "a failed update reported", |r| {
            r.last_update.as_ref().is_some_and(|u| !u.ok)
        })
        .await;
    let error = report.last_update.clone().unwrap().error.unwrap();
    assert!(
        error.contains("corrupt") && error.contains(&id.to_hex()),
        "{error}"
    );
    assert!(!report.compliant && report.image.is_none(), "{report:#?}");
    let event = fleet
        .wait_event("bad1", "update event", |e| e.kind == Event::UPDATE)
        .await;
    assert!(event.message.contains("corrupt"), "{event:?}");

    // Nothing of it reached the tree, nor the object cache.
    assert_eq!(
        fs::read(at(&root, "/etc/victim")).unwrap(),
        b"the machine's own\n"
    );
    for path in dom_tests::files_under(&root.join(".subd/objects")) {
        let content = fs::read(path).unwrap();
        assert_ne!(content, b"the evil content\n");
    }
    agent.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malformed_desired_state_is_refused() {
    let fleet = Fleet::start().await;
    let tmp = tempfile::tempdir().unwrap();
    let source = tmp.path().join("source");
    write(&source, "/etc/motd", b"hello\n", 0o644);
    let record = fleet.add_image("ok.0", &source, None, None).await;
    let root = tmp.path().join("machine");
    fs::create_dir(&root).unwrap();
    let agent = Agent::start(fleet.config("rej1", &root, "/bin/true")).unwrap();
    fleet.assign("rej1", &record).await;
    fleet.wait_compliant("rej1", "ok.0").await;

    // By hand, with a filter that does not compile.
    let mut bad =
        serde_json::to_value(dom_model::DesiredState::for_image("rej1", &record)).unwrap();
    bad["sparse"] = false.into();
    bad["filter"] = serde_json::json!(["/tmp/(unclosed"]);
    fleet
        .bus
        .publish_desired_payload("rej1", serde_json::to_vec(&bad).unwrap().into())
        .await
        .unwrap();
    let event = fleet
        .wait_event("rej1", "rejected", |e| e.kind == Event::REJECTED)
        .await;
    assert!(event.message.contains("unclosed"), "{event:?}");
    assert!(!event.message.contains('\n'));
    let report = fleet
        .wait_state("rej1", "error reported", |r| r.error.is_some())
        .await;
    assert!(report.error.unwrap().contains("refused"));
    assert_eq!(report.image.as_deref(), Some("ok.0"));

    // Not JSON at all, then a good state again: the error clears.
    fleet
        .bus
        .publish_desired_payload("rej1", Bytes::from_static(b"not json"))
        .await
        .unwrap();
    fleet.assign("rej1", &record).await;
    fleet
        .wait_state("rej1", "error cleared", |r| {
            r.error.is_none() && r.compliant
        })
        .await;
    assert_eq!(fs::read(at(&root, "/etc/motd")).unwrap(), b"hello\n");
    agent.stop().await;
}
