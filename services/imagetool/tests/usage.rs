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
