//! `imagetool adds`: a hand-tuned golden machine captured through its
//! agent becomes an image, and a second machine that requires it ends up
//! with the same tree, byte for byte, modes, owners and links included.

use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

use dom_model::Event;
use dom_tests::eventually;

use crate::fleet_kit::{write, Fleet};

/// The golden machine's hand-tuned tree: files, a symlink, a hard link,
/// an empty directory, a setuid file, and owners other than root's.
fn hand_tune(root: &Path) {
    write(root, "etc/app.conf", b"tuned = yes\n");
    write(root, "usr/bin/tool", b"#!/bin/sh\necho tool\n");
    fs::set_permissions(
        root.join("usr/bin/tool"),
        fs::Permissions::from_mode(0o4755),
    )
    .unwrap();
    fs::hard_link(root.join("usr/bin/tool"), root.join("usr/bin/tool-again")).unwrap();
    std::os::unix::fs::symlink("../etc/app.conf", root.join("usr/app.conf")).unwrap();
    fs::create_dir_all(root.join("var/empty")).unwrap();
    fs::set_permissions(root.join("var/empty"), fs::Permissions::from_mode(0o1777)).unwrap();
    // Larger than a chunk, so it comes in several.
    let big: Vec<u8> = (0..1_300_000u32).map(|i| (i * 7 % 251) as u8).collect();
    write(root, "srv/data.bin", &big);
    write(root, "home/ops/notes", b"owned by ops\n");
    std::os::unix::fs::lchown(root.join("home/ops/notes"), Some(1234), Some(5678)).unwrap();
    std::os::unix::fs::lchown(root.join("usr/app.conf"), Some(1234), Some(5678)).unwrap();
}

/// Everything about a tree but the agent's own state: per path its kind,
/// mode, owners, content or target, and which paths share an inode.
fn describe(root: &Path) -> BTreeMap<String, String> {
    fn walk(
        root: &Path,
        dir: &Path,
        out: &mut BTreeMap<String, String>,
        inodes: &mut HashMap<u64, String>,
    ) {
        for entry in fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            let rel = path.strip_prefix(root).unwrap().display().to_string();
            if rel == ".subd" {
                continue;
            }
            let meta = fs::symlink_metadata(&path).unwrap();
            let owners = format!("{:o} {}:{}", meta.mode(), meta.uid(), meta.gid());
            let what = if meta.file_type().is_symlink() {
                format!("link -> {}", fs::read_link(&path).unwrap().display())
            } else if meta.is_dir() {
                walk(root, &path, out, inodes);
                "dir".to_string()
            } else {
                let first = inodes
                    .entry(meta.ino())
                    .or_insert_with(|| rel.clone())
                    .clone();
                format!(
                    "file {} bytes, mtime {}, sha {}, inode of {first}",
                    meta.len(),
                    meta.mtime(),
                    dom_model::ObjectId::of(&fs::read(&path).unwrap()).to_hex()
                )
            };
            out.insert(rel, format!("{what}, {owners}"));
        }
    }
    let mut out = BTreeMap::new();
    walk(root, root, &mut out, &mut HashMap::new());
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_golden_machine_becomes_an_image_another_machine_carries() {
    if unsafe { libc::geteuid() } != 0 {
        dom_tests::fixtures::skip_without("root, to give files other owners");
        return;
    }
    let fleet = Fleet::start().await;
    let golden = fleet.machine("golden");
    hand_tune(&golden.root);
    let _golden_agent = golden.start();
    eventually("golden scanned", || async {
        fleet.state("golden").await.filter(|r| r.generation > 0)
    })
    .await;

    // Captured as a normal image: a filter that matches nothing there.
    let filter = fleet.dir.path().join("filter");
    fs::write(&filter, "/tmp/.*\n").unwrap();
    let filter = filter.display().to_string();
    let out = fleet
        .imagetool(&["adds", "golden.0", "golden", &filter, ""])
        .await
        .ok();
    // Five distinct contents: app.conf, tool (and its hard link),
    // data.bin, notes, and the machine kit's hostname, fstab and junk.
    assert!(
        out.starts_with("added golden.0 from golden: 7 files,")
            && out.contains(" 7 objects uploaded (")
            && out.contains(" 0 already stored"),
        "{out}"
    );
    let record = fleet
        .bus
        .image_record(&dom_tests::fixtures::image_name("golden.0"))
        .await
        .unwrap();
    assert!(!record.sparse);
    assert_eq!(record.files, 7);
    assert_eq!(record.v, record.schema_version());

    // The agent says who captured it and what it served.
    let events = eventually("the capture event", || async {
        let events = fleet.bus.events("golden").await.ok()?;
        events.into_iter().find(|e| e.kind == Event::CAPTURE)
    })
    .await;
    assert_eq!(events.details["objects"], 7, "{events:?}");
    assert!(events.details["bytes"].as_u64().unwrap() > 1_300_000);

    // Unchanged, captured again: nothing to upload, the same tree.
    let again = fleet
        .imagetool(&[
            "adds",
            "golden.1",
            "golden",
            &filter,
            "",
            "-tag",
            "role=golden",
        ])
        .await
        .ok();
    assert!(
        again.contains(" 0 objects uploaded (0 B), 7 already stored"),
        "{again}"
    );
    let second = fleet
        .bus
        .image_record(&dom_tests::fixtures::image_name("golden.1"))
        .await
        .unwrap();
    assert_eq!(second.manifest, record.manifest);
    assert_eq!(
        second.metadata.tags.get("role").map(String::as_str),
        Some("golden")
    );

    // A second machine requiring it ends up with the golden tree.
    let copy = fleet.machine("copy");
    let _copy_agent = copy.start();
    fleet.require("copy", "golden.0").await;
    fleet.wait_compliant("copy", "golden.0").await;
    let (want, got) = (describe(&golden.root), describe(&copy.root));
    assert_eq!(got, want);
    assert!(want["usr/bin/tool"].contains(", 104755 0:0"), "{want:?}");
    let inode_of = |path: &str| want[path].split(", inode of ").nth(1).unwrap().to_string();
    assert_eq!(inode_of("usr/bin/tool-again"), inode_of("usr/bin/tool"));
    assert_ne!(inode_of("etc/app.conf"), inode_of("usr/bin/tool"));
    assert!(want["home/ops/notes"].ends_with(" 1234:5678"));
    assert!(want["usr/app.conf"].starts_with("link -> ../etc/app.conf"));
    assert!(want["var/empty"].starts_with("dir, 41777"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_no_agent_answers_for_is_one_line_and_publishes_nothing() {
    let fleet = Fleet::start().await;
    let error = fleet
        .imagetool(&["adds", "ghost.0", "ghost"])
        .await
        .one_line_error();
    assert_eq!(
        error,
        "imagetool: no agent answered for ghost on dom.capture.ghost; is subd running and connected?"
    );
    let listed = fleet.imagetool(&["list", "--all"]).await.ok();
    assert_eq!(listed, "");
    let error = fleet
        .imagetool(&["adds", "bad.0", "no host"])
        .await
        .one_line_error();
    assert!(error.contains("invalid host name"), "{error}");
}
