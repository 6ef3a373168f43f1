//! The agent trusts nothing it reads. Desired states and manifests made by
//! hand, as anyone with write access to the bus could, are refused before
//! any file is touched, and the refusal is reported (a `rejected` event
//! and the state report's `error`): paths with `..`, a path below a
//! symlink of the image, a symlink leading out of the root, an absurd
//! size, a desired state naming another host. An object whose size is not
//! the one its image gives is refused before its content is read; one
//! whose content does not match its SHA-512 is refused too
//! (`agent_corrupt`). Writing through a symlink already on the machine is
//! covered by `update_symlinks`.

use std::fs;

use crate::agent_support::{at, tree, write, Fleet};
use bytes::Bytes;
use dom_model::{DesiredState, Entry, Event, ImageRecord, Inode, Manifest, ObjectId};
use dom_store::{ContentStore, NatsStore};
use subd::Agent;

/// Stores `manifest` as it is (no validation) and tells `host` to carry
/// it under `record`'s name. Returns the desired state's sequence.
async fn publish_by_hand(
    fleet: &Fleet,
    host: &str,
    record: &ImageRecord,
    manifest: &Manifest,
) -> u64 {
    let encoded = manifest.encode();
    let id = ObjectId::of(&encoded);
    let store = NatsStore::open(&fleet.bus).await.unwrap();
    store.put(id, encoded.into()).await.unwrap();
    let mut state = DesiredState::for_image(host, record);
    state.manifest = id;
    fleet.bus.publish_desired(&state).await.unwrap()
}

fn file(path: &str, size: u64, object: ObjectId) -> Entry {
    Entry {
        path: path.into(),
        inode: Inode::File {
            mode: 0o644,
            uid: 0,
            gid: 0,
            mtime: 1_700_000_000,
            mtime_ns: 0,
            size,
            object,
        },
    }
}

fn dir(path: &str) -> Entry {
    Entry {
        path: path.into(),
        inode: Inode::Dir {
            mode: 0o755,
            uid: 0,
            gid: 0,
        },
    }
}

fn symlink(path: &str, target: &str) -> Entry {
    Entry {
        path: path.into(),
        inode: Inode::Symlink {
            uid: 0,
            gid: 0,
            target: target.into(),
        },
    }
}

fn manifest(entries: Vec<Entry>) -> Manifest {
    Manifest {
        v: dom_model::manifest::MANIFEST_VERSION,
        entries,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hand_made_manifests_are_refused_before_anything_is_touched() {
    let fleet = Fleet::start().await;
    let tmp = tempfile::tempdir().unwrap();
    let source = tmp.path().join("source");
    let motd = b"hello\n";
    write(&source, "/etc/motd", motd, 0o644);
    let record = fleet.add_image("ok.0", &source, None, None).await;
    let root = tmp.path().join("machine");
    fs::create_dir(&root).unwrap();
    let outside = tmp.path().join("outside");
    fs::create_dir(&outside).unwrap();
    let agent = Agent::start(fleet.config("hostile1", &root, "/bin/true")).unwrap();
    fleet.assign("hostile1", &record).await;
    fleet.wait_compliant("hostile1", "ok.0").await;
    let before = tree(&root);
    let object = ObjectId::of(motd);
    let size = motd.len() as u64;

    let cases: Vec<(&str, Manifest, &str)> = vec![
        (
            "a path with ..",
            manifest(vec![
                dir("/"),
                dir("/etc"),
                file("/etc/../../outside/owned", size, object),
            ]),
            "contains '..'",
        ),
        (
            "a path below a symlink of the image",
            manifest(vec![
                dir("/"),
                symlink("/etc", "../outside"),
                file("/etc/owned", size, object),
            ]),
            "escapes the root",
        ),
        (
            "a file below a symlink that stays inside",
            manifest(vec![
                dir("/"),
                dir("/data"),
                symlink("/etc", "/data"),
                file("/etc/owned", size, object),
            ]),
            "its parent is not a directory",
        ),
        (
            "an absurd size",
            manifest(vec![
                dir("/"),
                dir("/etc"),
                file("/etc/motd", 1 << 60, object),
            ]),
            "is absurd",
        ),
        (
            "a path that is not absolute",
            manifest(vec![dir("/"), file("etc", size, object)]),
            "not absolute",
        ),
    ];
    for (what, hostile, says) in cases {
        let sequence = publish_by_hand(&fleet, "hostile1", &record, &hostile).await;
        let event = fleet
            .wait_event("hostile1", what, |e| {
                e.kind == Event::REJECTED && e.message.contains(&format!("#{sequence}:"))
            })
            .await;
        assert!(
            event.message.contains("unusable") && event.message.contains(says),
            "{what}: {event:?}"
        );
        assert!(!event.message.contains('\n'), "{what}: {event:?}");
        let report = fleet
            .wait_state("hostile1", "the refusal reported", |r| {
                r.error
                    .as_deref()
                    .is_some_and(|e| e.contains(&format!("#{sequence}:")))
            })
            .await;
        assert_eq!(report.image.as_deref(), Some("ok.0"), "{what}");
        assert_eq!(tree(&root), before, "{what}: the machine changed");
        assert_eq!(fs::read_dir(&outside).unwrap().count(), 0, "{what}");
    }

    // A desired state naming another host is refused the same way.
    let other = DesiredState::for_image("hostile2", &record);
    let sequence = fleet
        .bus
        .publish_desired_payload("hostile1", other.encode().into())
        .await
        .unwrap();
    let event = fleet
        .wait_event("hostile1", "another host's desired state", |e| {
            e.kind == Event::REJECTED && e.message.contains(&format!("#{sequence}:"))
        })
        .await;
    assert!(event.message.contains("hostile2"), "{event:?}");
    assert_eq!(tree(&root), before);

    // The good state again: the agent carries on.
    fleet.assign("hostile1", &record).await;
    fleet
        .wait_state("hostile1", "the error cleared", |r| {
            r.error.is_none() && r.compliant
        })
        .await;
    agent.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_object_of_another_size_than_its_image_says_is_not_installed() {
    let fleet = Fleet::start().await;
    let tmp = tempfile::tempdir().unwrap();
    let source = tmp.path().join("source");
    write(&source, "/etc/motd", b"hello\n", 0o644);
    let record = fleet.add_image("sized.0", &source, None, None).await;
    // The manifest claims the object of a large file is a few bytes long:
    // the agent must not read it (it could be of any size) nor install it.
    let big = vec![b'x'; 3 << 20];
    let object = ObjectId::of(&big);
    let store = NatsStore::open(&fleet.bus).await.unwrap();
    store.put(object, Bytes::from(big)).await.unwrap();
    let lying = manifest(vec![dir("/"), dir("/etc"), file("/etc/motd", 6, object)]);

    let root = tmp.path().join("machine");
    write(&root, "/etc/motd", b"the machine's own\n", 0o644);
    let agent = Agent::start(fleet.config("sized1", &root, "/bin/true")).unwrap();
    publish_by_hand(&fleet, "sized1", &record, &lying).await;
    let report = fleet
        .wait_state("sized1", "a failed update reported", |r| {
            r.last_update.as_ref().is_some_and(|u| !u.ok)
        })
        .await;
    let error = report.last_update.unwrap().error.unwrap();
    assert!(
        error.contains(&object.to_hex()) && error.contains("where the image says 6"),
        "{error}"
    );
    assert_eq!(
        fs::read(at(&root, "/etc/motd")).unwrap(),
        b"the machine's own\n"
    );
    for path in dom_tests::files_under(&root.join(".subd/objects")) {
        assert!(fs::metadata(&path).unwrap().len() < 1 << 20, "{path:?}");
    }
    agent.stop().await;
}
