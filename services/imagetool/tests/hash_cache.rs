//! The hash cache speeds up adding a tree again, and never hides a change.

use std::time::Duration;

use crate::common::*;
use dom_model::ObjectId;

/// The SHA-512 `show` prints for `path` in image `name`.
fn shown_hash(server: &NatsServer, name: &str, path: &str) -> String {
    let shown = imagetool(server, &["show", name]).ok();
    let line = shown
        .lines()
        .find(|l| l.split_whitespace().any(|w| w == path))
        .unwrap_or_else(|| panic!("{path} not shown:\n{shown}"));
    line.split_whitespace()
        .find(|w| w.len() == 128)
        .unwrap_or_else(|| panic!("no SHA-512 in {line}"))
        .to_string()
}

#[test]
fn unchanged_files_are_not_read_again_and_changed_ones_always_are() {
    let server = NatsServer::start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let tree = dir.path().join("tree");
    let cache = dir.path().join("cache");
    let cache = cache.to_str().unwrap();
    let file = write(&tree, "etc/motd", b"hello, world");
    write(&tree, "etc/issue", b"a large enough file to notice");
    // Files changed less than 2 s before they are hashed (0.1 s where
    // times carry nanoseconds) are not cached.
    std::thread::sleep(Duration::from_millis(2100));
    let tree_arg = tree.to_str().unwrap();

    let first = imagetool(
        &server,
        &["add", "a", tree_arg, "", "", "--hash-cache", cache],
    )
    .ok();
    assert!(first.contains("(41 B hashed)"), "{first}");
    let again = imagetool(
        &server,
        &["add", "b", tree_arg, "", "", "--hash-cache", cache],
    )
    .ok();
    assert!(again.contains("(0 B hashed)"), "{again}");

    // Same size, mtime put back: only the ctime tells.
    let mtime = std::fs::metadata(&file).unwrap().modified().unwrap();
    std::fs::write(&file, b"HELLO, WORLD").unwrap();
    std::fs::File::options()
        .write(true)
        .open(&file)
        .unwrap()
        .set_modified(mtime)
        .unwrap();
    let changed = imagetool(
        &server,
        &["add", "c", tree_arg, "", "", "--hash-cache", cache],
    )
    .ok();
    assert!(changed.contains("(12 B hashed)"), "{changed}");
    assert_eq!(
        shown_hash(&server, "c", "/etc/motd"),
        ObjectId::of(b"HELLO, WORLD").to_hex()
    );

    // --no-hash-cache reads everything.
    let all = imagetool(&server, &["add", "d", tree_arg, "", "", "--no-hash-cache"]).ok();
    assert!(all.contains("(41 B hashed)"), "{all}");
}

#[test]
fn a_damaged_cache_is_ignored() {
    let server = NatsServer::start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let tree = dir.path().join("tree");
    write(&tree, "etc/motd", b"hello, world");
    let cache = dir.path().join("cache");
    std::fs::write(&cache, b"DOMHC01\ngarbage that is not a cache at all").unwrap();
    let added = imagetool(
        &server,
        &[
            "add",
            "a",
            tree.to_str().unwrap(),
            "",
            "",
            "--hash-cache",
            cache.to_str().unwrap(),
        ],
    )
    .ok();
    assert!(added.contains("(12 B hashed)"), "{added}");
    assert_eq!(
        shown_hash(&server, "a", "/etc/motd"),
        ObjectId::of(b"hello, world").to_hex()
    );
}

/// A build host makes ten image streams in turn, each from its own tree:
/// the first tree's hashes are still there after the nine others.
#[test]
fn ten_trees_in_turn_keep_each_others_hashes() {
    let server = NatsServer::start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    let cache = cache.to_str().unwrap();
    let trees: Vec<_> = (0..10)
        .map(|i| {
            let tree = dir.path().join(format!("tree{i}"));
            write(&tree, "etc/stream", format!("stream {i}\n").as_bytes());
            write(&tree, "usr/lib/common", b"the same in every stream");
            tree.to_str().unwrap().to_string()
        })
        .collect();
    std::thread::sleep(Duration::from_millis(2100));
    let add = |name: &str, tree: &str| {
        imagetool(&server, &["add", name, tree, "", "", "--hash-cache", cache]).ok()
    };
    for (i, tree) in trees.iter().enumerate() {
        let added = add(&format!("stream{i}.0"), tree);
        assert!(added.contains("(33 B hashed)"), "{added}");
    }
    for (i, tree) in trees.iter().enumerate() {
        let again = add(&format!("stream{i}.1"), tree);
        assert!(again.contains("(0 B hashed)"), "{again}");
    }
    let changed = std::path::Path::new(&trees[0]).join("etc/stream");
    std::fs::write(&changed, b"stream 0, patched\n").unwrap();
    let patched = add("stream0.2", &trees[0]);
    assert!(patched.contains("(18 B hashed)"), "{patched}");
    assert_eq!(
        shown_hash(&server, "stream0.2", "/etc/stream"),
        ObjectId::of(b"stream 0, patched\n").to_hex()
    );
}
