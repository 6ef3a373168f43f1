//! A planned image: while the machine matches its image, the planned
//! image's objects are fetched ahead of time and nothing of it is applied;
//! the update to it then fetches nothing.

use std::fs;

use crate::agent_support::{at, wait_for, write, Fleet};
use dom_model::desired::PlannedImage;
use dom_model::{DesiredState, ObjectId};
use subd::Agent;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn planned_image_objects_are_fetched_ahead() {
    let fleet = Fleet::start().await;
    let tmp = tempfile::tempdir().unwrap();
    let (v0, v1) = (tmp.path().join("v0"), tmp.path().join("v1"));
    write(&v0, "/etc/app.conf", b"version 0\n", 0o644);
    write(&v1, "/etc/app.conf", b"version 1\n", 0o644);
    write(&v1, "/etc/new.conf", b"new in version 1\n", 0o644);
    let first = fleet.add_image("plan.0", &v0, None, None).await;
    let next = fleet.add_image("plan.1", &v1, None, None).await;
    let root = tmp.path().join("machine");
    fs::create_dir(&root).unwrap();

    let agent = Agent::start(fleet.config("plan1", &root, "/bin/true")).unwrap();
    let mut desired = DesiredState::for_image("plan1", &first);
    desired.planned = Some(PlannedImage {
        image: next.name.clone(),
        manifest: next.manifest,
    });
    fleet.bus.publish_desired(&desired).await.unwrap();
    fleet.wait_compliant("plan1", "plan.0").await;

    let cached = |content: &[u8]| {
        let hex = ObjectId::of(content).to_hex();
        root.join(".subd/objects").join(&hex[..2]).join(hex)
    };
    wait_for("planned objects fetched", || {
        cached(b"version 1\n").exists() && cached(b"new in version 1\n").exists()
    })
    .await;
    assert_eq!(
        fs::read(at(&root, "/etc/app.conf")).unwrap(),
        b"version 0\n"
    );
    assert!(!at(&root, "/etc/new.conf").exists());

    fleet.assign("plan1", &next).await;
    let report = fleet.wait_compliant("plan1", "plan.1").await;
    let update = report.last_update.unwrap();
    assert_eq!(
        (update.fetched_objects, update.fetched_bytes),
        (0, 0),
        "{update:?}"
    );
    assert_eq!(
        fs::read(at(&root, "/etc/new.conf")).unwrap(),
        b"new in version 1\n"
    );
    agent.stop().await;
}
