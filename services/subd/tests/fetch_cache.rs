//! The object cache holds only whole, verified objects under their ids.

use std::collections::HashSet;
use std::fs;
use std::path::Path;

use crate::update_support::*;
use dom_model::ObjectId;
use subd::fetch::FetchError;
use subd::objects::ObjectCache;

/// Every file under the cache directory, as `SUBDIR/NAME` or `NAME`.
fn objects(dir: &Path) -> Vec<String> {
    dom_tests::files_under(dir)
        .iter()
        .map(|p| p.strip_prefix(dir).unwrap().to_str().unwrap().to_string())
        .collect()
}

/// Where the cache keeps `id`, relative to its directory.
fn shard_path(id: &ObjectId) -> String {
    let hex = id.to_hex();
    format!("{}/{hex}", &hex[..2])
}

#[test]
fn content_that_does_not_match_its_id_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let cache = ObjectCache::open(dir.path().join("objects")).unwrap();
    let id = ObjectId::of(b"what the image says");
    let err = cache.insert_bytes(&id, b"something else").unwrap_err();
    assert!(matches!(err, FetchError::Corrupt { .. }), "{err}");
    let message = err.to_string();
    assert!(message.contains(&id.to_hex()), "{message}");
    assert!(!message.contains('\n'));
    assert!(!cache.contains(&id));
    assert_eq!(
        fs::read_dir(cache.dir()).unwrap().count(),
        0,
        "nothing written, no subdirectory made"
    );

    cache.insert_bytes(&id, b"what the image says").unwrap();
    assert!(cache.contains(&id));
    assert_eq!(fs::read(cache.path(&id)).unwrap(), b"what the image says");
    assert_eq!(objects(cache.dir()), [shard_path(&id)]);
}

#[test]
fn a_machine_file_is_copied_only_while_it_still_matches() {
    let dir = tempfile::tempdir().unwrap();
    let cache = ObjectCache::open(dir.path().join("objects")).unwrap();
    let file = dir.path().join("hosts");
    fs::write(&file, "127.0.0.1 localhost\n").unwrap();
    let id = ObjectId::of(b"127.0.0.1 localhost\n");
    cache.insert_from_file(&id, &file).unwrap();
    assert!(cache.contains(&id));

    // Changed since it was scanned.
    let other = ObjectId::of(b"something scanned earlier");
    let err = cache.insert_from_file(&other, &file).unwrap_err();
    assert!(matches!(err, FetchError::Changed { .. }), "{err}");
    assert!(!cache.contains(&other));
    assert_eq!(objects(cache.dir()), [shard_path(&id)]);

    // A fifo or a symlink in its place is not read.
    let fifo = dir.path().join("fifo");
    mkfifo(&fifo);
    // (Opening it for reading would block for ever.)
    assert!(cache.insert_from_file(&other, &fifo).is_err());
    let link = dir.path().join("link");
    std::os::unix::fs::symlink(&file, &link).unwrap();
    let err = cache.insert_from_file(&other, &link).unwrap_err();
    assert!(matches!(err, FetchError::Read { .. }), "{err}");
}

#[test]
fn objects_no_longer_needed_are_removed() {
    let dir = tempfile::tempdir().unwrap();
    let cache = ObjectCache::open(dir.path().join("objects")).unwrap();
    let ids: Vec<ObjectId> = ["a", "bb", "ccc"]
        .iter()
        .map(|c| {
            let id = ObjectId::of(c.as_bytes());
            cache.insert_bytes(&id, c.as_bytes()).unwrap();
            id
        })
        .collect();
    assert_eq!(cache.total_bytes().unwrap(), 6);
    assert_eq!(cache.ids().unwrap(), ids.iter().copied().collect());
    let keep: HashSet<_> = [ids[1]].into();
    assert_eq!(cache.retain(&keep).unwrap(), (2, 4));
    assert_eq!(cache.ids().unwrap(), keep);
    assert_eq!(cache.total_bytes().unwrap(), 2);
}

#[test]
fn opening_tidies_what_a_crash_left() {
    let m = Machine::new();
    let content = b"a whole object";
    let id = ObjectId::of(content);
    m.cache.insert_bytes(&id, content).unwrap();
    let top = m.path("/.subd/objects");
    // A partial write, and an object moved aside for installing (whole,
    // already given an image's mode).
    fs::write(top.join(".subd-tmp.99.1"), b"a who").unwrap();
    let shard = top.join(&id.to_hex()[..2]);
    fs::write(shard.join(".subd-tmp.99.2"), b"a wh").unwrap();
    let staged = top.join(format!(".subd-staged.{}", id.to_hex()));
    fs::rename(m.cache.path(&id), &staged).unwrap();
    chmod(&staged, "/", 0o4000);

    let cache = ObjectCache::open(&top).unwrap();
    assert_eq!(objects(&top), [shard_path(&id)]);
    assert!(cache.contains(&id));
    assert_eq!(fs::read(cache.path(&id)).unwrap(), content);
}

#[test]
fn a_cache_with_every_object_at_the_top_is_moved_into_subdirectories() {
    let dir = tempfile::tempdir().unwrap();
    let top = dir.path().join("objects");
    fs::create_dir(&top).unwrap();
    let contents: [&[u8]; 3] = [b"one", b"two", b"three"];
    for content in contents {
        fs::write(top.join(ObjectId::of(content).to_hex()), content).unwrap();
    }
    // Not an object: left alone.
    fs::write(top.join("README"), "notes").unwrap();

    let cache = ObjectCache::open(&top).unwrap();
    let mut expected: Vec<String> = contents
        .iter()
        .map(|c| shard_path(&ObjectId::of(c)))
        .chain(["README".to_string()])
        .collect();
    expected.sort();
    assert_eq!(objects(&top), expected);
    for content in contents {
        let id = ObjectId::of(content);
        assert!(cache.contains(&id));
        assert_eq!(fs::read(cache.path(&id)).unwrap(), content);
    }
    assert_eq!(cache.total_bytes().unwrap(), 11);
}

#[test]
fn a_batch_names_its_objects_by_their_ids_only_when_it_commits() {
    let dir = tempfile::tempdir().unwrap();
    let cache = ObjectCache::open(dir.path().join("objects")).unwrap();
    let batch = cache.batch();
    let contents: [&[u8]; 3] = [b"one", b"two", b""];
    for content in contents {
        batch.insert_bytes(&ObjectId::of(content), content).unwrap();
    }
    let file = dir.path().join("hosts");
    fs::write(&file, "127.0.0.1 localhost\n").unwrap();
    let copied = ObjectId::of(b"127.0.0.1 localhost\n");
    batch.insert_from_file(&copied, &file).unwrap();
    assert_eq!(batch.len(), 4);

    // Written, but only under temporary names: not in the cache yet, and
    // what a crash now would leave is removed when the cache is opened.
    for content in contents {
        assert!(!cache.contains(&ObjectId::of(content)));
    }
    assert!(!cache.contains(&copied));
    let written = objects(cache.dir());
    assert_eq!(written.len(), 4);
    assert!(
        written.iter().all(|p| p.contains("/.subd-tmp.")),
        "{written:?}"
    );

    batch.commit().unwrap();
    assert!(batch.is_empty());
    let mut expected: Vec<String> = contents
        .iter()
        .map(|c| shard_path(&ObjectId::of(c)))
        .chain([shard_path(&copied)])
        .collect();
    expected.sort();
    assert_eq!(objects(cache.dir()), expected);
    for content in contents {
        assert_eq!(
            fs::read(cache.path(&ObjectId::of(content))).unwrap(),
            content
        );
    }
}

#[test]
fn a_batch_refuses_what_does_not_match_and_drops_what_it_did_not_commit() {
    let dir = tempfile::tempdir().unwrap();
    let cache = ObjectCache::open(dir.path().join("objects")).unwrap();
    let batch = cache.batch();
    let id = ObjectId::of(b"what the image says");
    let err = batch.insert_bytes(&id, b"something else").unwrap_err();
    assert!(matches!(err, FetchError::Corrupt { .. }), "{err}");
    let file = dir.path().join("hosts");
    fs::write(&file, "edited since the scan\n").unwrap();
    let err = batch.insert_from_file(&id, &file).unwrap_err();
    assert!(matches!(err, FetchError::Changed { .. }), "{err}");
    assert!(batch.is_empty());
    assert!(objects(cache.dir()).is_empty());

    batch.insert_bytes(&id, b"what the image says").unwrap();
    drop(batch);
    assert!(!cache.contains(&id));
    assert!(
        objects(cache.dir()).is_empty(),
        "an abandoned batch leaves nothing"
    );
}

#[test]
fn a_full_batch_commits_by_itself() {
    let dir = tempfile::tempdir().unwrap();
    let cache = ObjectCache::open(dir.path().join("objects")).unwrap();
    let batch = cache.batch();
    let big = vec![7u8; subd::objects::COMMIT_BYTES as usize];
    let id = ObjectId::of(&big);
    batch.insert_bytes(&id, &big).unwrap();
    assert!(cache.contains(&id));
    assert!(batch.is_empty());
}

fn mkfifo(path: &std::path::Path) {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes()).unwrap();
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o644) }, 0);
}
