//! Free space before a fetch, on a machine whose root is a small tmpfs:
//! an image that does not fit is refused before anything is fetched
//! ("not enough space: need X, have Y", one `error` event) and the tree
//! is left alone; a smaller image then converges. Objects a cut-short
//! fetch left on a full disk are dropped for the next image.
//!
//! Mounting needs root; where it fails the tests say so and pass.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use dom_model::{Event, ObjectId};
use subd::objects::ObjectCache;
use subd::Agent;

use crate::agent_support::{tree, Fleet, Recorder};

/// A tmpfs mounted for the test, unmounted when dropped.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(dir: &Path, size: &str) -> Option<Self> {
        fs::create_dir_all(dir).unwrap();
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir)
            .output();
        match out {
            Ok(out) if out.status.success() => Some(Self(dir.to_path_buf())),
            Ok(out) => {
                eprintln!(
                    "skipped: cannot mount a tmpfs: {}",
                    String::from_utf8_lossy(&out.stderr).trim()
                );
                None
            }
            Err(e) => {
                eprintln!("skipped: cannot run mount: {e}");
                None
            }
        }
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// Incompressible bytes, the same for the same seed.
fn noise(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}

/// A source tree of `files` files of `mib` MiB each, seeded by `seed`.
fn source(dir: &Path, name: &str, seed: u64, files: usize, mib: usize) -> (PathBuf, Vec<Vec<u8>>) {
    let src = dir.join(name);
    fs::create_dir_all(src.join("data")).unwrap();
    let mut contents = Vec::new();
    for i in 0..files {
        let content = noise(seed * 1000 + i as u64, mib << 20);
        fs::write(src.join(format!("data/blob{i}")), &content).unwrap();
        contents.push(content);
    }
    (src, contents)
}

/// Files under `dir`, recursively.
fn files_under(dir: &Path) -> usize {
    let Ok(entries) = fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| {
            if e.file_type().unwrap().is_dir() {
                files_under(&e.path())
            } else {
                1
            }
        })
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_image_bigger_than_the_free_space_is_refused_then_a_smaller_one_converges() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("machine");
    let Some(_mount) = Tmpfs::mount(&root, "40m") else {
        return;
    };
    let fleet = Fleet::start().await;
    let recorder = Recorder::new(tmp.path(), "true");
    let (big_src, _) = source(tmp.path(), "big", 1, 8, 10);
    let (small_src, _) = source(tmp.path(), "small", 2, 5, 1);
    let big = fleet.add_image("big.0", &big_src, None, None).await;
    let small = fleet.add_image("small.0", &small_src, None, None).await;
    fs::write(root.join("local"), b"the machine's own file").unwrap();
    let before = tree(&root);

    let agent = Agent::start(fleet.config("sp1", &root, &recorder.command())).unwrap();
    fleet.assign("sp1", &big).await;
    let report = fleet
        .wait_state("sp1", "refused for want of space", |r| {
            r.error
                .as_deref()
                .is_some_and(|e| e.starts_with("not enough space: need "))
        })
        .await;
    let error = report.error.unwrap();
    assert!(error.contains(" MiB, have "), "{error}");
    assert!(!report.compliant);
    assert_eq!(report.last_update, None, "no update was tried");
    // It keeps looking, but says so once, and fetches nothing.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let refusals = fleet
        .events("sp1")
        .await
        .into_iter()
        .filter(|e| e.kind == Event::ERROR && e.message.starts_with("not enough space"))
        .count();
    assert_eq!(refusals, 1);
    assert_eq!(files_under(&root.join(".subd/objects")), 0);
    assert_eq!(tree(&root), before, "the tree is left alone");

    fleet.assign("sp1", &small).await;
    let report = fleet.wait_compliant("sp1", "small.0").await;
    assert_eq!(report.error, None);
    assert!(root.join("data/blob4").exists());
    assert!(
        root.join("local").exists(),
        "a sparse image deletes nothing"
    );
    agent.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn objects_a_cut_short_fetch_left_on_a_full_disk_do_not_wedge_the_next_image() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("machine");
    let Some(_mount) = Tmpfs::mount(&root, "40m") else {
        return;
    };
    let fleet = Fleet::start().await;
    let recorder = Recorder::new(tmp.path(), "true");
    let (big_src, big_contents) = source(tmp.path(), "big", 3, 8, 10);
    let (small_src, _) = source(tmp.path(), "small", 4, 5, 1);
    fleet.add_image("big.1", &big_src, None, None).await;
    let small = fleet.add_image("small.1", &small_src, None, None).await;

    // What a fetch of the big image killed on a full disk leaves: whole
    // objects of it in the cache, until there was no room for the next.
    let cache = ObjectCache::open(root.join(".subd/objects")).unwrap();
    let mut left = Vec::new();
    for content in &big_contents {
        let id = ObjectId::of(content);
        if cache.insert_bytes(&id, content).is_err() {
            break;
        }
        left.push(id);
    }
    assert!(left.len() >= 2, "the cache holds objects of the big image");
    let free = subd::report::free_bytes(&root).unwrap();
    assert!(
        free < 13 << 20,
        "the disk is nearly full: {free} bytes free"
    );
    drop(cache);

    let agent = Agent::start(fleet.config("sp2", &root, &recorder.command())).unwrap();
    fleet.assign("sp2", &small).await;
    let report = fleet.wait_compliant("sp2", "small.1").await;
    assert_eq!(report.error, None);
    let cache = ObjectCache::open(root.join(".subd/objects")).unwrap();
    for id in &left {
        assert!(!cache.contains(id), "an object no wanted image needs stays");
    }
    agent.stop().await;
}

#[test]
fn writing_objects_into_a_full_cache_leaves_no_partial_file() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("small");
    let Some(_mount) = Tmpfs::mount(&dir, "8m") else {
        return;
    };
    let cache = ObjectCache::open(dir.join("objects")).unwrap();
    let objects: Vec<Vec<u8>> = (0..4).map(|i| noise(100 + i, 3 << 20)).collect();
    let ids: Vec<ObjectId> = objects.iter().map(|c| ObjectId::of(c)).collect();
    // One by one, then in a batch (as a fetch writes them).
    let failed = (0..4).find(|&i| cache.insert_bytes(&ids[i], &objects[i]).is_err());
    let failed = failed.expect("the file system fills up");
    let error = cache
        .insert_bytes(&ids[failed], &objects[failed])
        .unwrap_err();
    assert!(error.to_string().contains("No space left"), "{error}");
    assert_eq!(files_under(&dir), failed, "whole objects only");
    assert!(!cache.contains(&ids[failed]));

    cache.retain(&Default::default()).unwrap();
    let batch = cache.batch();
    let written = (0..4)
        .take_while(|&i| batch.insert_bytes(&ids[i], &objects[i]).is_ok())
        .count();
    assert!(written < 4);
    batch.commit().unwrap();
    assert_eq!(files_under(&dir), written, "whole objects only");
    for (i, id) in ids.iter().enumerate() {
        assert_eq!(cache.contains(id), i < written);
    }
    // Room made, the next write goes through.
    cache.retain(&Default::default()).unwrap();
    cache.insert_bytes(&ids[3], &objects[3]).unwrap();
}
