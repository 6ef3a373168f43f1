//! `domtool wait` and `domtool fast-update` with real agents moved by the
//! dominator (see `fleet_kit`): exit 0 once the machines carry the image,
//! 1 when an update to it fails on one, 3 for a machine that never
//! reports.

use std::fs;

use dom_model::ObjectId;

use crate::fleet_kit::{source, sshd_source, Fleet};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wait_follows_real_agents_to_their_image_or_their_failure() {
    let fleet = Fleet::start().await;
    let machines = [fleet.machine("web1"), fleet.machine("web2")];
    let guide = source(fleet.dir.path(), "guide", |_| {});
    fleet.add_image("sparse.0", &guide, "", "").await;
    let _agents = fleet.converge(&machines, "sparse.0").await;

    // Both move to sparse.1: wait sees them get there.
    let sparse1 = sshd_source(fleet.dir.path(), 1);
    fleet
        .add_image("sparse.1", &sparse1, "", "triggers.sshd")
        .await;
    for m in &machines {
        fleet.require(&m.host, "sparse.1").await;
    }
    let run = fleet
        .domtool(&[
            "wait",
            "web1",
            "web2",
            "--image",
            "sparse.1",
            "--timeout",
            "60s",
        ])
        .await;
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    assert!(
        run.stdout
            .contains("carries sparse.1 and is healthy (2 of 2)"),
        "{}",
        run.stdout
    );
    // Already there: at once.
    let run = fleet
        .domtool(&["wait", "web2", "--image", "sparse.1"])
        .await;
    assert_eq!(run.code, 0, "{}", run.stderr);

    // An image one of whose objects is gone from the bucket: the agent
    // cannot apply it, and fast-update says so.
    let broken = sshd_source(fleet.dir.path(), 2);
    fleet.add_image("broken.0", &broken, "", "").await;
    let conf = fs::read(broken.join("etc/ssh/sshd.conf")).unwrap();
    fleet
        .bus
        .object_bucket()
        .await
        .unwrap()
        .delete(ObjectId::of(&conf).to_string())
        .await
        .unwrap();
    let run = fleet
        .domtool(&[
            "fast-update",
            "web1",
            "--image",
            "broken.0",
            "--timeout",
            "60s",
        ])
        .await;
    assert_eq!(run.code, 1, "{}{}", run.stdout, run.stderr);
    assert!(
        run.stdout.contains("web1 now requires broken.0"),
        "{}",
        run.stdout
    );
    let error = run.one_line_error();
    assert!(
        error.starts_with("domtool: web1: update to broken.0 failed: fetching objects"),
        "{error}"
    );
    // It stands: a later wait fails at once too.
    let run = fleet
        .domtool(&["wait", "web1", "--image", "broken.0"])
        .await;
    assert_eq!(run.code, 1, "{}", run.stderr);

    // A machine that never reports.
    let run = fleet
        .domtool(&[
            "wait",
            "web2",
            "web3",
            "--image",
            "sparse.1",
            "--timeout",
            "2s",
        ])
        .await;
    assert_eq!(run.code, 3, "{}{}", run.stdout, run.stderr);
    assert_eq!(
        run.one_line_error(),
        "domtool: web3: not on sparse.1 after 2s: no state report yet"
    );
}
