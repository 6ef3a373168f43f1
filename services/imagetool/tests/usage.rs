//! du and list-unreferenced, on a store of images that share content,
//! after a delete and an expiry.

use std::collections::BTreeMap;

use crate::common::*;
use dom_model::ObjectId;

/// `list-unreferenced --ids`: each id with its size, and the summary line.
fn unreferenced(server: &NatsServer) -> (BTreeMap<String, u64>, String) {
    let out = imagetool(server, &["list-unreferenced", "--ids"]).ok();
    let mut lines: Vec<&str> = out.lines().collect();
    let summary = lines.pop().expect("a summary line").to_string();
    let ids = lines
        .iter()
        .map(|line| {
            let (id, size) = line.split_once(' ').expect("id and size");
            (id.to_string(), size.parse().expect("a size"))
        })
        .collect();
    (ids, summary)
}

fn hex(content: &[u8]) -> String {
    ObjectId::of(content).to_hex()
}

#[test]
fn only_objects_no_live_image_needs_are_unreferenced() {
    let server = NatsServer::start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (only_a, shared, only_b, only_c) = (
        vec![b'a'; 100],
        vec![b's'; 2000],
        vec![b'b'; 300],
        vec![b'c'; 400],
    );
    for (tree, files) in [
        ("a", vec![("x", &only_a), ("y", &shared)]),
        ("b", vec![("y", &shared), ("z", &only_b)]),
        ("c", vec![("w", &only_c), ("y", &shared)]),
    ] {
        for (name, content) in files {
            write(&dir.path().join(tree), name, content);
        }
    }
    let tree = |name: &str| dir.path().join(name).to_str().unwrap().to_owned();
    imagetool(&server, &["add", "a", &tree("a"), "", ""]).ok();
    imagetool(&server, &["add", "b", &tree("b"), "", ""]).ok();
    imagetool(&server, &["-expiresIn=1s", "add", "c", &tree("c"), "", ""]).ok();
    // Everything is needed while the three are live.
    let (ids, summary) = unreferenced(&server);
    assert!(ids.is_empty(), "{ids:?}");
    assert_eq!(summary, "0 unreferenced objects, 0 B (0 bytes)");

    imagetool(&server, &["delete", "a"]).ok();
    std::thread::sleep(std::time::Duration::from_millis(1500));
    let (ids, summary) = unreferenced(&server);
    // a's and c's own files and their two manifests; the shared file
    // and b's own stay needed.
    assert_eq!(ids.len(), 4, "{ids:?}");
    assert_eq!(ids.get(&hex(&only_a)), Some(&100));
    assert_eq!(ids.get(&hex(&only_c)), Some(&400));
    for kept in [&shared, &only_b] {
        assert!(!ids.contains_key(&hex(kept)), "{ids:?}");
    }
    let total: u64 = ids.values().sum();
    assert!(summary.starts_with("4 unreferenced objects, "), "{summary}");
    assert!(summary.ends_with(&format!("({total} bytes)")), "{summary}");
    // The original's name for it says the same.
    let again = imagetool(&server, &["list-unreferenced-objects"]).ok();
    assert_eq!(again.trim_end(), summary);

    // du: b alone is live, so the shared file is now its own.
    let du = imagetool(&server, &["du"]).ok();
    let lines: Vec<&str> = du.lines().collect();
    assert_eq!(lines.len(), 3, "{du}");
    let row: Vec<&str> = lines[1].split_whitespace().collect();
    assert_eq!(&row[..4], &["b", "2", "2.2", "KiB"], "{du}");
    // Objects: b's two files and its manifest.
    assert_eq!(row[4], "3", "{du}");
    assert_eq!(
        row[5..7],
        row[7..9],
        "all of b's stored bytes are its own: {du}"
    );
    assert!(
        lines[2].starts_with("store: 7 objects, ")
            && lines[2].contains("; unreferenced 4 objects, "),
        "{du}"
    );
}

#[test]
fn a_collection_deletes_exactly_the_unreferenced_objects() {
    let server = NatsServer::start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    for (tree, name, content) in [
        ("a", "x", &b"only in a"[..]),
        ("a", "y", b"shared"),
        ("b", "y", b"shared"),
        ("b", "z", b"only in b"),
        ("c", "w", b"only in c"),
    ] {
        write(&dir.path().join(tree), name, content);
    }
    let tree = |name: &str| dir.path().join(name).to_str().unwrap().to_owned();
    imagetool(&server, &["add", "a", &tree("a"), "", ""]).ok();
    imagetool(&server, &["add", "b", &tree("b"), "", ""]).ok();
    imagetool(&server, &["-expiresIn=1s", "add", "c", &tree("c"), "", ""]).ok();
    imagetool(&server, &["delete", "a"]).ok();
    std::thread::sleep(std::time::Duration::from_millis(1500));
    let (before, _) = unreferenced(&server);
    assert_eq!(before.len(), 4, "{before:?}");

    let dry = imagetool(&server, &["delete-unreferenced", "--dry-run"]).ok();
    let lines: Vec<&str> = dry.lines().collect();
    assert_eq!(lines.len(), 5, "each object, then the summary: {dry}");
    assert!(
        lines[4].starts_with("would delete 4 unreferenced objects, "),
        "{dry}"
    );
    assert!(
        dry.ends_with("; 1 expired images would be tombstoned\n"),
        "{dry}"
    );
    assert_eq!(unreferenced(&server).0, before);
    // Every object is younger than an hour: only the expired image goes.
    let recent = imagetool(&server, &["delete-unreferenced", "--older-than", "1h"]).ok();
    assert_eq!(
        recent,
        "deleted 0 unreferenced objects, 0 B; tombstoned 1 expired images\n"
    );
    assert_eq!(unreferenced(&server).0, before);

    let done = imagetool(&server, &["delete-unreferenced"]).ok();
    assert!(
        done.starts_with("deleted 4 unreferenced objects, "),
        "{done}"
    );
    assert!(done.ends_with("; tombstoned 0 expired images\n"), "{done}");
    assert!(unreferenced(&server).0.is_empty());
    assert_eq!(
        imagetool(&server, &["list", "--all"]).ok(),
        "a (deleted)\nb\nc (deleted)\n"
    );
    // What b needs is all there.
    let out = dir.path().join("out");
    imagetool(&server, &["get", "b", out.to_str().unwrap()]).ok();
    assert_eq!(std::fs::read(out.join("y")).unwrap(), b"shared");
    assert_eq!(std::fs::read(out.join("z")).unwrap(), b"only in b");
    let again = imagetool(&server, &["delete-unreferenced"]).ok();
    assert!(
        again.starts_with("deleted 0 unreferenced objects"),
        "{again}"
    );
}

#[test]
fn an_add_racing_a_collection_never_publishes_an_image_with_objects_missing() {
    let server = NatsServer::start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    // A large file, hashed anew by each add, keeps it between listing the
    // bucket and publishing for a while: the window a collection must not
    // delete in.
    let large = write(dir.path(), "large", &vec![7u8; 48 << 20]);
    for round in 0..6u64 {
        // A tree whose objects are all stored and all unreferenced: the
        // add finds them stored, and the collection would delete them.
        let tree = dir.path().join(format!("t{round}"));
        for file in 0..100 {
            let content = format!("round {round} file {file}");
            write(&tree, &format!("f{file}"), content.as_bytes());
        }
        std::fs::hard_link(&large, tree.join("large")).unwrap();
        let tree = tree.to_str().unwrap();
        let first = format!("first{round}");
        imagetool(&server, &["add", &first, tree, "", ""]).ok();
        imagetool(&server, &["delete", &first]).ok();
        let again = format!("again{round}");
        let add = imagetool_on(&server, &["add", "--no-hash-cache", &again, tree, "", ""])
            .spawn()
            .unwrap();
        std::thread::sleep(std::time::Duration::from_millis(40 * round));
        let collected = imagetool(&server, &["delete-unreferenced"]).ok();
        let added = add.wait_with_output().unwrap();
        assert!(added.status.success(), "{added:?}");
        assert!(collected.starts_with("deleted "), "{collected}");
        // Every object verified as it is written out.
        let out = dir.path().join(format!("out{round}"));
        imagetool(&server, &["get", &again, out.to_str().unwrap()]).ok();
        assert_eq!(
            std::fs::read(out.join("f7")).unwrap(),
            format!("round {round} file 7").as_bytes()
        );
        std::fs::remove_dir_all(&out).unwrap();
    }
}

#[test]
fn du_names_an_image_it_cannot_measure() {
    let server = kept_and_gone();
    let shown = imagetool(&server, &["du", "kept"]).ok();
    assert!(
        shown.lines().nth(1).unwrap().starts_with("kept "),
        "{shown}"
    );
    for (name, expect) in [("gone", "deleted"), ("never", "never")] {
        let err = imagetool(&server, &["du", name]).one_line_error();
        assert!(err.contains(expect), "du {name}: {err}");
    }
    let err = imagetool(&server, &["du", "bad//name"]).one_line_error();
    assert!(err.contains("bad//name"), "{err}");
}
