//! A sparse image on a machine: its files appear exactly (content, mode,
//! owner where permitted, mtime), and nothing else on the machine is
//! touched.

use std::time::{Duration, SystemTime};

use crate::agent_support::{at, set_mtime, snap, tree, wait_scans, write, Fleet};
use subd::Agent;

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sparse_image_adds_its_files_and_touches_nothing_else() {
    let fleet = Fleet::start().await;
    let tmp = tempfile::tempdir().unwrap();

    // The image: a few files with distinctive modes, owners and mtimes.
    let source = tmp.path().join("source");
    let then = SystemTime::UNIX_EPOCH + Duration::new(1_700_000_000, 123_456_789);
    write(&source, "/etc/motd", b"welcome to the fleet\n", 0o644);
    write(
        &source,
        "/usr/local/bin/hello",
        b"#!/bin/sh\necho hello\n",
        0o755,
    );
    write(&source, "/usr/local/bin/setuid", b"not really\n", 0o4750);
    write(&source, "/srv/data/owned", b"owned by 1234:5678\n", 0o640);
    set_mtime(&source, "/etc/motd", then);
    set_mtime(
        &source,
        "/usr/local/bin/hello",
        then + Duration::from_secs(60),
    );
    if is_root() {
        std::os::unix::fs::chown(at(&source, "/srv/data/owned"), Some(1234), Some(5678)).unwrap();
    }
    let record = fleet.add_image("sparse.0", &source, None, None).await;
    assert!(record.sparse);

    // The machine: its own files, one of which the image replaces.
    let root = tmp.path().join("machine");
    write(&root, "/etc/motd", b"old motd\n", 0o600);
    write(&root, "/etc/passwd", b"root:x:0:0::/root:/bin/sh\n", 0o644);
    write(&root, "/home/user/notes.txt", b"mine\n", 0o600);
    write(&root, "/usr/local/bin/tool", b"local tool\n", 0o755);
    std::os::unix::fs::symlink("notes.txt", at(&root, "/home/user/link")).unwrap();
    set_mtime(&root, "/etc/passwd", then - Duration::from_secs(3600));
    let before = tree(&root);

    let mut config = fleet.config("sparse1", &root, "/bin/true");
    config.http = Some("127.0.0.1:0".into());
    let agent = Agent::start(config).unwrap();
    fleet.assign("sparse1", &record).await;
    let report = fleet.wait_compliant("sparse1", "sparse.0").await;
    assert_eq!(report.deviations, 0);
    let update = report.last_update.expect("an update was reported");
    assert!(update.ok, "{update:?}");
    assert_eq!(update.image, "sparse.0");

    // The image's files, exactly.
    for path in [
        "/etc/motd",
        "/usr/local/bin/hello",
        "/usr/local/bin/setuid",
        "/srv/data/owned",
    ] {
        let want = snap(&at(&source, path)).unwrap();
        let have = snap(&at(&root, path)).unwrap_or_else(|| panic!("{path} missing"));
        assert_eq!(have.content, want.content, "{path}");
        assert_eq!(have.mode, want.mode, "{path}: mode {:o}", have.mode);
        assert_eq!(have.mtime, want.mtime, "{path}");
        if is_root() {
            assert_eq!((have.uid, have.gid), (want.uid, want.gid), "{path}");
        }
    }
    assert_eq!(snap(&at(&root, "/srv/data/owned")).unwrap().uid, {
        if is_root() {
            1234
        } else {
            snap(&at(&source, "/srv/data/owned")).unwrap().uid
        }
    });

    // Everything else exactly as it was.
    let after = tree(&root);
    for (path, was) in &before {
        if path == "/etc/motd" {
            continue;
        }
        let now = after
            .get(path)
            .unwrap_or_else(|| panic!("{path} was removed"));
        if was.kind == 'd' {
            assert_eq!(now.kind, 'd', "{path}");
        } else {
            assert_eq!(now, was, "{path} changed");
        }
    }
    let added: Vec<_> = after.keys().filter(|p| !before.contains_key(*p)).collect();
    for path in &added {
        assert!(
            [
                "/srv",
                "/srv/data",
                "/srv/data/owned",
                "/usr/local/bin/hello",
                "/usr/local/bin/setuid"
            ]
            .contains(&path.as_str()),
            "unexpected path {path}"
        );
    }

    // A scan that finds the same tree publishes nothing new.
    let settled = fleet.wait_compliant("sparse1", "sparse.0").await;
    wait_scans(agent.http_address().unwrap(), 2).await;
    let later = fleet.bus.state("sparse1").await.unwrap().unwrap();
    assert_eq!(later.generation, settled.generation);
    agent.stop().await;
}
