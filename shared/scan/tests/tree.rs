//! Scanning real directory trees.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::symlink;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use dom_model::{Inode, ObjectId};
use dom_scan::{scan_tree, Counters, HashCache, ScanError, ScanOptions};

fn tree() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    std::fs::create_dir_all(root.join("etc/ssh")).unwrap();
    std::fs::create_dir_all(root.join(".subd/objects")).unwrap();
    std::fs::write(root.join("etc/ssh/sshd.conf"), b"Port 22\n").unwrap();
    std::fs::write(root.join("etc/motd"), b"hello\n").unwrap();
    std::fs::write(root.join(".subd/objects/x"), b"agent state").unwrap();
    std::fs::hard_link(root.join("etc/motd"), root.join("etc/motd.link")).unwrap();
    symlink("ssh/sshd.conf", root.join("etc/sshd.conf")).unwrap();
    dir
}

#[test]
fn files_are_hashed_links_grouped_and_protected_paths_left_out() {
    let dir = tree();
    let options = ScanOptions {
        protected: vec!["/.subd".into()],
        ..Default::default()
    };
    let counters = Counters::default();
    let manifest = scan_tree(dir.path(), &options, &counters).unwrap().manifest;
    let paths: Vec<&str> = manifest.entries.iter().map(|e| e.path.as_str()).collect();
    assert_eq!(
        paths,
        [
            "/",
            "/etc",
            "/etc/motd",
            "/etc/motd.link",
            "/etc/ssh",
            "/etc/ssh/sshd.conf",
            "/etc/sshd.conf"
        ]
    );
    match &manifest.get("/etc/ssh/sshd.conf").unwrap().inode {
        Inode::File { object, size, .. } => {
            assert_eq!(*object, ObjectId::of(b"Port 22\n"));
            assert_eq!(*size, 8);
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        &manifest.get("/etc/motd.link").unwrap().inode,
        Inode::Link { target } if target == "/etc/motd"
    ));
    assert_eq!(counters.files.load(Ordering::Relaxed), 3);
}

#[test]
fn a_warm_cache_reads_nothing_again() {
    let dir = tree();
    let cache = Arc::new(HashCache::new());
    let options = ScanOptions {
        cache: Some(cache.clone()),
        ..Default::default()
    };
    // Files written just now are too fresh to be trusted; a record made
    // "later" stands for a tree that has settled.
    let first = Counters::default();
    let before = scan_tree(dir.path(), &options, &first).unwrap().manifest;
    assert!(first.hashed_bytes.load(Ordering::Relaxed) > 0);
    for entry in &before.entries {
        if let Inode::File { object, .. } = entry.inode {
            let meta = std::fs::symlink_metadata(dir.path().join(&entry.path[1..])).unwrap();
            cache.record(
                &meta,
                object,
                std::time::SystemTime::now() + std::time::Duration::from_secs(60),
            );
        }
    }
    let second = Counters::default();
    let after = scan_tree(dir.path(), &options, &second).unwrap().manifest;
    assert_eq!(second.hashed_bytes.load(Ordering::Relaxed), 0);
    assert_eq!(before, after);
}

#[test]
fn what_a_manifest_cannot_hold_fails_an_image_scan_and_is_skipped_on_a_machine() {
    let dir = tree();
    let root = dir.path();
    std::fs::write(
        root.join(OsStr::from_bytes(b"etc/caf\xe9")),
        b"latin-1 name",
    )
    .unwrap();
    symlink("../../../outside", root.join("etc/escape")).unwrap();

    let strict = scan_tree(root, &ScanOptions::default(), &Counters::default());
    assert!(matches!(strict, Err(ScanError::Read { .. })), "{strict:?}");

    let lenient = ScanOptions {
        skip_unrepresentable: true,
        ..Default::default()
    };
    let counters = Counters::default();
    let manifest = scan_tree(root, &lenient, &counters).unwrap().manifest;
    assert_eq!(counters.skipped.load(Ordering::Relaxed), 2);
    assert!(manifest.get("/etc/escape").is_none());
    assert!(manifest.get("/etc/motd").is_some());
}
