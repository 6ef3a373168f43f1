//! du and list-unreferenced, on a store of images that share content,
//! after a delete and an expiry.

use std::collections::BTreeMap;

use crate::common::*;
use dom_model::ObjectId;

/// Where a test's objects live: the fleet's NATS bucket, a real
/// S3-compatible server (moto), or a local directory.
struct Objects {
    args: Vec<String>,
    _s3: Option<dom_tests::s3::S3Server>,
    _dir: Option<tempfile::TempDir>,
}

impl Objects {
    fn nats() -> Self {
        Self {
            args: Vec::new(),
            _s3: None,
            _dir: None,
        }
    }

    fn s3() -> Self {
        let s3 = dom_tests::s3::S3Server::start().unwrap();
        tokio::runtime::Runtime::new()
            .unwrap()
            .block_on(s3.bucket("fleet"))
            .unwrap();
        Self {
            args: vec![
                "--objects".into(),
                "s3://fleet/objects".into(),
                "--s3-endpoint".into(),
                s3.endpoint(),
            ],
            _s3: Some(s3),
            _dir: None,
        }
    }

    fn local() -> Self {
        let dir = tempfile::tempdir().unwrap();
        Self {
            args: vec![
                "--objects".into(),
                format!("file://{}", dir.path().display()),
            ],
            _s3: None,
            _dir: Some(dir),
        }
    }

    fn all(&self, args: &[&str]) -> Vec<String> {
        let mut all = self.args.clone();
        all.extend(args.iter().map(|a| a.to_string()));
        all
    }

    /// imagetool ARGS against `server`, with the objects here.
    fn run(&self, server: &NatsServer, args: &[&str]) -> Run {
        let all = self.all(args);
        imagetool(server, &all.iter().map(String::as_str).collect::<Vec<_>>())
    }

    fn command(&self, server: &NatsServer, args: &[&str]) -> std::process::Command {
        let all = self.all(args);
        imagetool_on(server, &all.iter().map(String::as_str).collect::<Vec<_>>())
    }
}

/// `list-unreferenced --ids`: each id with its size, and the summary line.
fn unreferenced(server: &NatsServer) -> (BTreeMap<String, u64>, String) {
    unreferenced_in(server, &Objects::nats())
}

fn unreferenced_in(server: &NatsServer, objects: &Objects) -> (BTreeMap<String, u64>, String) {
    let out = objects.run(server, &["list-unreferenced", "--ids"]).ok();
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
    imagetool(&server, &["-expiresIn=3s", "add", "c", &tree("c"), "", ""]).ok();
    // Everything is needed while the three are live.
    let (ids, summary) = unreferenced(&server);
    assert!(ids.is_empty(), "{ids:?}");
    assert_eq!(summary, "0 unreferenced objects, 0 B (0 bytes)");

    imagetool(&server, &["delete", "a"]).ok();
    std::thread::sleep(std::time::Duration::from_millis(3500));
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

fn collects_exactly(objects: &Objects) {
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
    objects.run(&server, &["add", "a", &tree("a"), "", ""]).ok();
    objects.run(&server, &["add", "b", &tree("b"), "", ""]).ok();
    objects
        .run(&server, &["-expiresIn=1s", "add", "c", &tree("c"), "", ""])
        .ok();
    objects.run(&server, &["delete", "a"]).ok();
    std::thread::sleep(std::time::Duration::from_millis(1500));
    let (before, _) = unreferenced_in(&server, objects);
    assert_eq!(before.len(), 4, "{before:?}");

    let dry = objects
        .run(&server, &["delete-unreferenced", "--dry-run"])
        .ok();
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
    assert_eq!(unreferenced_in(&server, objects).0, before);
    // Every object is younger than an hour: only the expired image goes.
    let recent = objects
        .run(&server, &["delete-unreferenced", "--older-than", "1h"])
        .ok();
    assert_eq!(
        recent,
        "deleted 0 unreferenced objects, 0 B; tombstoned 1 expired images\n"
    );
    assert_eq!(unreferenced_in(&server, objects).0, before);

    let done = objects.run(&server, &["delete-unreferenced"]).ok();
    assert!(
        done.starts_with("deleted 4 unreferenced objects, "),
        "{done}"
    );
    assert!(done.ends_with("; tombstoned 0 expired images\n"), "{done}");
    assert!(unreferenced_in(&server, objects).0.is_empty());
    assert_eq!(
        objects.run(&server, &["list", "--all"]).ok(),
        "a (deleted)\nb\nc (deleted)\n"
    );
    // What b needs is all there.
    let out = dir.path().join("out");
    objects
        .run(&server, &["get", "b", out.to_str().unwrap()])
        .ok();
    assert_eq!(std::fs::read(out.join("y")).unwrap(), b"shared");
    assert_eq!(std::fs::read(out.join("z")).unwrap(), b"only in b");
    let again = objects.run(&server, &["delete-unreferenced"]).ok();
    assert!(
        again.starts_with("deleted 0 unreferenced objects"),
        "{again}"
    );
}

#[test]
fn a_collection_deletes_exactly_the_unreferenced_objects() {
    collects_exactly(&Objects::nats());
}

#[test]
fn a_collection_deletes_exactly_the_unreferenced_objects_in_s3() {
    collects_exactly(&Objects::s3());
}

#[test]
fn a_collection_deletes_exactly_the_unreferenced_objects_in_a_directory() {
    collects_exactly(&Objects::local());
}

fn races(objects: &Objects, rounds: u64) {
    let server = NatsServer::start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    // A large file, hashed anew by each add, keeps it between listing the
    // bucket and publishing for a while: the window a collection must not
    // delete in.
    let large = write(dir.path(), "large", &vec![7u8; 48 << 20]);
    for round in 0..rounds {
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
        objects.run(&server, &["add", &first, tree, "", ""]).ok();
        objects.run(&server, &["delete", &first]).ok();
        let again = format!("again{round}");
        let add = objects
            .command(&server, &["add", "--no-hash-cache", &again, tree, "", ""])
            .spawn()
            .unwrap();
        std::thread::sleep(std::time::Duration::from_millis(40 * round));
        let collected = objects.run(&server, &["delete-unreferenced"]).ok();
        let added = add.wait_with_output().unwrap();
        assert!(added.status.success(), "{added:?}");
        assert!(collected.starts_with("deleted "), "{collected}");
        // Every object verified as it is written out.
        let out = dir.path().join(format!("out{round}"));
        objects
            .run(&server, &["get", &again, out.to_str().unwrap()])
            .ok();
        assert_eq!(
            std::fs::read(out.join("f7")).unwrap(),
            format!("round {round} file 7").as_bytes()
        );
        std::fs::remove_dir_all(&out).unwrap();
    }
}

#[test]
fn an_add_racing_a_collection_never_publishes_an_image_with_objects_missing() {
    races(&Objects::nats(), 6);
}

#[test]
fn an_add_racing_a_collection_never_publishes_an_image_with_objects_missing_in_s3() {
    races(&Objects::s3(), 3);
}

#[test]
fn an_add_racing_a_collection_never_publishes_an_image_with_objects_missing_in_a_directory() {
    races(&Objects::local(), 3);
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

#[test]
fn a_collection_deletes_what_one_cut_short_left() {
    let server = NatsServer::start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    write(&dir.path().join("a"), "x", b"left behind");
    write(&dir.path().join("a"), "y", b"deleted whole");
    let tree = dir.path().join("a").to_str().unwrap().to_owned();
    imagetool(&server, &["add", "a", &tree, "", ""]).ok();
    imagetool(&server, &["delete", "a"]).ok();
    // A collection killed after it removed x's metadata, before its
    // content: x is listed no more, but its chunk is still stored.
    let chunk = format!("$O.dom-objects.C.{}", hex(b"left behind"));
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let stored = |subject: String| {
        runtime.block_on(async {
            let bus = dom_tests::connect(&server).await;
            let stream = bus.js.get_stream("OBJ_dom-objects").await.unwrap();
            stream.direct_get_last_for_subject(&subject).await.is_ok()
        })
    };
    runtime.block_on(async {
        let bus = dom_tests::connect(&server).await;
        let stream = bus.js.get_stream("OBJ_dom-objects").await.unwrap();
        let meta = format!(
            "$O.dom-objects.M.{}",
            base64_url(hex(b"left behind").as_bytes())
        );
        stream.purge().filter(meta).await.unwrap();
    });
    assert!(stored(chunk.clone()));
    let (listed, _) = unreferenced(&server);
    assert!(!listed.contains_key(&hex(b"left behind")), "{listed:?}");

    let dry = imagetool(&server, &["delete-unreferenced", "--dry-run"]).ok();
    assert!(
        dry.ends_with("would delete the content of 1 objects a collection cut short left, 11 B\n"),
        "{dry}"
    );
    assert!(stored(chunk.clone()));
    let done = imagetool(&server, &["delete-unreferenced"]).ok();
    assert!(
        done.ends_with("deleted the content of 1 objects a collection cut short left, 11 B\n"),
        "{done}"
    );
    assert!(!stored(chunk));
    let again = imagetool(&server, &["delete-unreferenced"]).ok();
    assert_eq!(
        again,
        "deleted 0 unreferenced objects, 0 B; tombstoned 0 expired images\n"
    );
}

/// Base64 (URL-safe, padded), as the bucket names metadata subjects.
fn base64_url(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE.encode(bytes)
}
