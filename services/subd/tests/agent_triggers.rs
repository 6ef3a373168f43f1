//! Triggers, with the user guide's sshd example: changing
//! `/etc/ssh/sshd.conf` stops sshd (after the new file is fetched, while
//! the old one is still in place) and starts it once the new one is; a
//! `DoReload` trigger reloads; a service whose files did not change is not
//! touched.

use std::fs;
use std::path::Path;

use crate::agent_support::{examples, write, Fleet, Recorder};
use dom_tests::fixtures::copy_tree;
use subd::Agent;

/// A copy of the user guide's tree with `sshd.conf` and `motd` marked.
fn source(dir: &Path, sshd: u32, motd: u32) -> std::path::PathBuf {
    let path = dir.join(format!("src-{sshd}-{motd}"));
    copy_tree(&examples().join("path"), &path);
    let conf = fs::read_to_string(path.join("etc/ssh/sshd.conf")).unwrap();
    write(
        &path,
        "/etc/ssh/sshd.conf",
        format!("{conf}# version {sshd}\n").as_bytes(),
        0o644,
    );
    write(
        &path,
        "/etc/motd",
        format!("motd {motd}\n").as_bytes(),
        0o644,
    );
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn triggers_stop_and_start_around_the_change() {
    let fleet = Fleet::start().await;
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("machine");
    fs::create_dir(&root).unwrap();
    let state = root.join(".subd");
    // Each call records which sshd.conf is in place, and how many cached
    // or staged objects hold a version line (the fetched new file).
    let probe = format!(
        "v=$(grep -o 'version [0-9]*' '{}/etc/ssh/sshd.conf' 2>/dev/null); \
         n=$(grep -rl 'version' '{}/objects' 2>/dev/null | wc -l); echo \"[$v] fetched=$n\"",
        root.display(),
        state.display()
    );
    let recorder = Recorder::new(tmp.path(), &probe);
    let ex = examples();
    let sshd_only = ex.join("triggers.sshd");
    let with_motd = ex.join("triggers");

    // First install: the new image's triggers decide what to stop.
    let t0 = fleet
        .add_image("sshd.0", &source(tmp.path(), 0, 0), None, Some(&with_motd))
        .await;
    let agent = Agent::start(fleet.config("trig1", &root, &recorder.command())).unwrap();
    fleet.assign("trig1", &t0).await;
    fleet.wait_compliant("trig1", "sshd.0").await;
    let calls = recorder.calls();
    assert!(
        calls.iter().any(|c| c.starts_with("sshd stop")),
        "{calls:?}"
    );
    assert!(
        calls.iter().any(|c| c.starts_with("sshd start")),
        "{calls:?}"
    );
    assert!(
        calls.iter().any(|c| c.starts_with("motd reload")),
        "{calls:?}"
    );
    recorder.clear();

    // sshd.conf changes: sshd stop, then start; motd is not touched.
    let t1 = fleet
        .add_image("sshd.1", &source(tmp.path(), 1, 0), None, Some(&with_motd))
        .await;
    fleet.assign("trig1", &t1).await;
    let report = fleet.wait_compliant("trig1", "sshd.1").await;
    let calls = recorder.calls();
    assert_eq!(calls.len(), 2, "{calls:?}");
    assert!(
        calls[0].starts_with("sshd stop [version 0] fetched="),
        "{calls:?}"
    );
    let fetched: u32 = calls[0].rsplit('=').next().unwrap().parse().unwrap();
    assert!(
        fetched >= 1,
        "sshd stopped before the new file was fetched: {calls:?}"
    );
    assert_eq!(calls[1], "sshd start [version 1] fetched=0", "{calls:?}");
    let update = report.last_update.unwrap();
    assert!(
        update.ok && update.trigger_failures.is_empty(),
        "{update:?}"
    );
    assert!(update.transition_ms.is_some(), "{update:?}");
    recorder.clear();

    // motd changes: reloaded, sshd left alone.
    let t2 = fleet
        .add_image("sshd.2", &source(tmp.path(), 1, 1), None, Some(&with_motd))
        .await;
    fleet.assign("trig1", &t2).await;
    fleet.wait_compliant("trig1", "sshd.2").await;
    assert_eq!(recorder.calls(), ["motd reload [version 1] fetched=0"]);
    recorder.clear();

    // The old image's triggers decide what stops: with the sshd-only
    // triggers, a motd change reloads nothing and stops nothing.
    let t3 = fleet
        .add_image("sshd.3", &source(tmp.path(), 1, 2), None, Some(&sshd_only))
        .await;
    fleet.assign("trig1", &t3).await;
    fleet.wait_compliant("trig1", "sshd.3").await;
    assert_eq!(recorder.calls(), Vec::<String>::new());

    // A failing service command is reported, and the files still change.
    let failing = tmp.path().join("failing");
    fs::write(&failing, "#!/bin/sh\necho \"cannot $2 $1\" >&2\nexit 3\n").unwrap();
    fs::set_permissions(
        &failing,
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    agent.stop().await;
    let agent = Agent::start(fleet.config("trig1", &root, &failing.display().to_string())).unwrap();
    let t4 = fleet
        .add_image("sshd.4", &source(tmp.path(), 4, 2), None, Some(&sshd_only))
        .await;
    fleet.assign("trig1", &t4).await;
    let report = fleet.wait_compliant("trig1", "sshd.4").await;
    let update = report.last_update.unwrap();
    assert_eq!(update.trigger_failures.len(), 2, "{update:?}");
    assert!(
        update.trigger_failures[0].contains("sshd stop"),
        "{update:?}"
    );
    agent.stop().await;
}

/// The user guide's `sparse.0` then `sparse.1`: the same tree, now with the
/// sshd trigger. Nothing is updated, yet the machine carries sparse.1, and
/// sparse.1's triggers decide the next update's stops.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_image_already_in_place_is_taken_on_without_an_update() {
    let fleet = Fleet::start().await;
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("machine");
    fs::create_dir(&root).unwrap();
    let recorder = Recorder::new(tmp.path(), "");
    let ex = examples();
    let tree = source(tmp.path(), 0, 0);

    let plain = fleet.add_image("same.0", &tree, None, None).await;
    let agent = Agent::start(fleet.config("same1", &root, &recorder.command())).unwrap();
    fleet.assign("same1", &plain).await;
    fleet.wait_compliant("same1", "same.0").await;
    assert!(recorder.calls().is_empty(), "{:?}", recorder.calls());

    let with_sshd = fleet
        .add_image("same.1", &tree, None, Some(&ex.join("triggers.sshd")))
        .await;
    fleet.assign("same1", &with_sshd).await;
    let report = fleet.wait_compliant("same1", "same.1").await;
    assert_eq!(report.image.as_deref(), Some("same.1"));
    assert!(recorder.calls().is_empty(), "{:?}", recorder.calls());

    // The next change to sshd.conf stops sshd: same.1's trigger, not
    // same.0's (which had none).
    let next = fleet
        .add_image(
            "same.2",
            &source(tmp.path(), 1, 0),
            None,
            Some(&ex.join("triggers.sshd")),
        )
        .await;
    fleet.assign("same1", &next).await;
    fleet.wait_compliant("same1", "same.2").await;
    let calls = recorder.calls();
    assert!(
        calls.iter().any(|c| c.starts_with("sshd stop")),
        "{calls:?}"
    );
    agent.stop().await;
}
