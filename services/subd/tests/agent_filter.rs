//! A normal image with the user guide's filter: the machine becomes the
//! image, except the filtered paths (`/etc/fstab`, `/etc/hostname`,
//! `/tmp/...`, `/var/log/...`), which stay exactly as they were, even
//! where the image lacks the directory holding them.

use std::time::{Duration, SystemTime};

use crate::agent_support::{at, examples, set_mtime, snap, tree, write, Fleet};
use subd::Agent;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn normal_image_removes_extras_and_keeps_filtered_paths() {
    let fleet = Fleet::start().await;
    let tmp = tempfile::tempdir().unwrap();
    let ex = examples();
    let record = fleet
        .add_image("image.0", &ex.join("path"), Some(&ex.join("filter")), None)
        .await;
    assert!(!record.sparse);

    let root = tmp.path().join("machine");
    let long_ago = SystemTime::UNIX_EPOCH + Duration::from_secs(1_600_000_000);
    // Filtered: the machine's own, left alone.
    write(
        &root,
        "/etc/fstab",
        b"/dev/sda1 / ext4 defaults 0 1\n",
        0o600,
    );
    write(&root, "/etc/hostname", b"machine1\n", 0o644);
    write(&root, "/var/log/syslog", b"boot\n", 0o640);
    write(&root, "/var/log/nginx/access.log", b"GET /\n", 0o644);
    write(&root, "/tmp/session", b"x\n", 0o600);
    for path in ["/etc/fstab", "/etc/hostname", "/var/log/syslog"] {
        set_mtime(&root, path, long_ago);
    }
    // Extras: removed.
    write(&root, "/etc/extra.conf", b"not in the image\n", 0o644);
    write(&root, "/opt/junk/deep/file", b"junk\n", 0o644);
    std::os::unix::fs::symlink("/nowhere", at(&root, "/etc/dangling")).unwrap();
    // Wrong content: replaced.
    write(&root, "/usr/local/bin/hello", b"tampered\n", 0o777);
    let filtered = [
        "/etc/fstab",
        "/etc/hostname",
        "/var/log/syslog",
        "/var/log/nginx",
        "/var/log/nginx/access.log",
        "/tmp/session",
    ];
    let before = tree(&root);

    let agent = Agent::start(fleet.config("normal1", &root, "/bin/true")).unwrap();
    fleet.assign("normal1", &record).await;
    let report = fleet.wait_compliant("normal1", "image.0").await;
    assert!(
        report.last_update.as_ref().is_some_and(|u| u.ok),
        "{report:#?}"
    );

    let after = tree(&root);
    for path in filtered {
        let (was, now) = (&before[path], after.get(path));
        let now = now.unwrap_or_else(|| panic!("filtered {path} was removed"));
        if was.kind == 'd' {
            assert_eq!((now.kind, now.mode), (was.kind, was.mode), "{path}");
        } else {
            assert_eq!(now, was, "filtered {path} changed");
        }
    }
    // /tmp is not in the image, but holds only filtered content: it stays.
    assert!(after.contains_key("/tmp"));
    for gone in ["/etc/extra.conf", "/etc/dangling", "/opt", "/opt/junk"] {
        assert!(!after.contains_key(gone), "{gone} was not removed");
    }

    // Everything else is exactly the image's source.
    let source = tree(&ex.join("path"));
    for (path, want) in &source {
        if filtered.contains(&path.as_str()) || path.starts_with("/var/log/") {
            continue;
        }
        let have = after.get(path).unwrap_or_else(|| panic!("{path} missing"));
        if want.kind == 'd' {
            assert_eq!((have.kind, have.mode), (want.kind, want.mode), "{path}");
        } else {
            assert_eq!(have, want, "{path}");
        }
    }
    for path in after.keys() {
        let kept = source.contains_key(path)
            || filtered.contains(&path.as_str())
            || path == "/tmp"
            || path.starts_with("/var/log/");
        assert!(kept, "{path} should have been removed");
    }
    assert_eq!(
        snap(&at(&root, "/usr/local/bin/hello")).unwrap().content,
        std::fs::read(ex.join("path/usr/local/bin/hello")).unwrap()
    );
    agent.stop().await;
}
