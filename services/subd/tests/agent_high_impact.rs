//! HighImpact permission, with the desired states published by hand as
//! the dominator would: an update that fires a HighImpact trigger touches
//! nothing until the desired state carries the grant, and the request is
//! withdrawn once it ran. A drift correction that fires one asks too, once
//! the grant used before has been taken back. An agent told not to ask
//! goes ahead on its own.

use std::fs;
use std::path::{Path, PathBuf};

use crate::agent_support::{at, write, Fleet, Recorder};
use dom_model::report::HighImpactRequest;
use dom_model::{DesiredState, ImageRecord, StateReport};
use subd::Agent;

const TRIGGERS: &str = r#"[
  {"MatchLines": ["/etc/db/.*"], "Service": "db", "HighImpact": true},
  {"MatchLines": ["/etc/motd"], "Service": "motd", "DoReload": true}
]"#;

/// An image tree with a database configuration and a motd, and the
/// triggers file.
fn source(dir: &Path) -> (PathBuf, PathBuf) {
    let src = dir.join("src");
    write(&src, "/etc/db/db.conf", b"shared_buffers = 1GB\n", 0o644);
    write(&src, "/etc/motd", b"welcome\n", 0o644);
    let triggers = dir.join("triggers.json");
    fs::write(&triggers, TRIGGERS).unwrap();
    (src, triggers)
}

/// `record`'s desired state for `host`, granted or not.
fn desired(host: &str, record: &ImageRecord, granted: bool) -> DesiredState {
    DesiredState {
        high_impact_granted: granted,
        ..DesiredState::for_image(host, record)
    }
}

fn asks_for(report: &StateReport, image: &str) -> bool {
    report
        .high_impact
        .as_ref()
        .is_some_and(|r| r.image == image)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_high_impact_update_waits_for_the_grant() {
    let fleet = Fleet::start().await;
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("machine");
    write(&root, "/etc/hostname", b"hi1\n", 0o644);
    let recorder = Recorder::new(tmp.path(), "true");
    let (src, triggers) = source(tmp.path());
    let image = fleet.add_image("db.0", &src, None, Some(&triggers)).await;
    let _agent = Agent::start(fleet.config("hi1", &root, &recorder.command())).unwrap();

    // Without the grant: the agent asks and changes nothing.
    fleet
        .bus
        .publish_desired(&desired("hi1", &image, false))
        .await
        .unwrap();
    let report = fleet
        .wait_state("hi1", "asking for a HighImpact grant", |r| {
            asks_for(r, "db.0")
        })
        .await;
    assert_eq!(
        report.high_impact,
        Some(HighImpactRequest {
            image: "db.0".into(),
            services: vec!["db".into()],
        })
    );
    assert!(
        !report.compliant && report.last_update.is_none(),
        "{report:?}"
    );
    assert!(!at(&root, "/etc/db").exists());
    assert!(recorder.calls().is_empty(), "{:?}", recorder.calls());

    // The grant arrives: the update runs, and the request is withdrawn.
    fleet
        .bus
        .publish_desired(&desired("hi1", &image, true))
        .await
        .unwrap();
    let report = fleet
        .wait_state("hi1", "updated under the grant", |r| {
            r.last_update.is_some()
        })
        .await;
    assert!(report.high_impact.is_none(), "{report:?}");
    assert!(report.last_update.as_ref().unwrap().ok, "{report:?}");
    let report = fleet.wait_compliant("hi1", "db.0").await;
    assert!(report.high_impact.is_none(), "{report:?}");
    let applied = report.last_update.clone().unwrap();
    assert_eq!(
        fs::read(at(&root, "/etc/db/db.conf")).unwrap(),
        b"shared_buffers = 1GB\n"
    );
    // The first install: the new triggers stop and start db.
    assert_eq!(
        recorder.calls(),
        ["db stop", "db start", "motd reload"],
        "{:?}",
        recorder.calls()
    );
    recorder.clear();

    // Drift in the database's files. The grant used for the update is
    // still in the desired state, but spent: nothing is asked or done.
    write(&root, "/etc/db/db.conf", b"shared_buffers = 8GB\n", 0o644);
    let report = fleet
        .wait_state("hi1", "drift seen", |r| {
            !r.compliant && !r.fetching && !r.updating
        })
        .await;
    assert!(report.high_impact.is_none(), "{report:?}");
    assert_eq!(report.last_update, Some(applied.clone()));
    assert_eq!(
        fs::read(at(&root, "/etc/db/db.conf")).unwrap(),
        b"shared_buffers = 8GB\n"
    );

    // The grant is taken back: the agent asks again, still touching
    // nothing.
    fleet
        .bus
        .publish_desired(&desired("hi1", &image, false))
        .await
        .unwrap();
    let report = fleet
        .wait_state("hi1", "asking to correct the drift", |r| {
            asks_for(r, "db.0")
        })
        .await;
    assert_eq!(report.last_update, Some(applied));
    assert_eq!(
        fs::read(at(&root, "/etc/db/db.conf")).unwrap(),
        b"shared_buffers = 8GB\n"
    );
    assert!(recorder.calls().is_empty(), "{:?}", recorder.calls());

    // Granted again: the drift is corrected around a db restart.
    fleet
        .bus
        .publish_desired(&desired("hi1", &image, true))
        .await
        .unwrap();
    let report = fleet
        .wait_state("hi1", "drift corrected", |r| {
            r.compliant && r.high_impact.is_none()
        })
        .await;
    assert!(report.last_update.unwrap().ok);
    assert_eq!(
        fs::read(at(&root, "/etc/db/db.conf")).unwrap(),
        b"shared_buffers = 1GB\n"
    );
    assert_eq!(recorder.calls(), ["db stop", "db start"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_told_not_to_ask_goes_ahead() {
    let fleet = Fleet::start().await;
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("machine");
    fs::create_dir_all(&root).unwrap();
    let recorder = Recorder::new(tmp.path(), "true");
    let (src, triggers) = source(tmp.path());
    let image = fleet.add_image("db.0", &src, None, Some(&triggers)).await;
    let mut config = fleet.config("solo1", &root, &recorder.command());
    config.high_impact_permission = false;
    let _agent = Agent::start(config).unwrap();
    fleet.assign("solo1", &image).await;
    let report = fleet.wait_compliant("solo1", "db.0").await;
    assert!(report.high_impact.is_none(), "{report:?}");
    assert_eq!(recorder.calls(), ["db stop", "db start", "motd reload"]);
}
