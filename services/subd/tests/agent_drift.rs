//! Drift: a managed file edited, chmod'ed or deleted on the machine is put
//! back by the next scan, and an extra file in a normal image is removed;
//! the agent reports the drift and the update that fixed it.

use std::fs;
use std::os::unix::fs::PermissionsExt;

use crate::agent_support::{at, examples, snap, wait_for, write, Fleet};
use dom_model::Event;
use subd::Agent;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drift_is_reported_and_undone() {
    let fleet = Fleet::start().await;
    let tmp = tempfile::tempdir().unwrap();
    let ex = examples();
    let source = ex.join("path");
    let record = fleet
        .add_image("image.0", &source, Some(&ex.join("filter")), None)
        .await;
    let root = tmp.path().join("machine");
    fs::create_dir(&root).unwrap();

    let agent = Agent::start(fleet.config("drift1", &root, "/bin/true")).unwrap();
    fleet.assign("drift1", &record).await;
    let first = fleet.wait_compliant("drift1", "image.0").await;

    // Four kinds of drift at once.
    write(&root, "/etc/motd", b"edited by hand\n", 0o644);
    fs::set_permissions(
        at(&root, "/usr/local/bin/hello"),
        fs::Permissions::from_mode(0o700),
    )
    .unwrap();
    fs::remove_file(at(&root, "/etc/ssh/sshd.conf")).unwrap();
    write(&root, "/etc/ssh/extra", b"not in the image\n", 0o644);

    let drift = fleet
        .wait_event("drift1", "drift reported", |e| e.kind == Event::DRIFT)
        .await;
    assert_eq!(drift.image.as_deref(), Some("image.0"));
    let report = fleet
        .wait_state("drift1", "compliant again", |r| {
            r.compliant && r.generation > first.generation && r.last_update != first.last_update
        })
        .await;
    assert!(report.last_update.unwrap().ok);

    for path in ["/etc/motd", "/usr/local/bin/hello", "/etc/ssh/sshd.conf"] {
        let (want, have) = (snap(&at(&source, path)).unwrap(), snap(&at(&root, path)));
        assert_eq!(have.as_ref(), Some(&want), "{path} not restored");
    }
    assert!(!at(&root, "/etc/ssh/extra").exists());

    // Drift seen by a later scan, not only the first after an update.
    fs::remove_file(at(&root, "/etc/motd")).unwrap();
    wait_for("/etc/motd restored", || at(&root, "/etc/motd").exists()).await;
    let updates: Vec<_> = fleet
        .events("drift1")
        .await
        .into_iter()
        .filter(|e| e.kind == Event::UPDATE)
        .collect();
    assert!(updates.len() >= 2, "{updates:#?}");
    agent.stop().await;
}
