//! addi and addrep: images made from an image and archives, through the
//! real binary against a real server. What is uploaded is counted, in the
//! summary and in the bucket; what comes out is read back with show, get,
//! show-filter and show-triggers.

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use crate::common::*;

/// The source image's tree: `/etc` with `motd`, `passwd` and its hard
/// link `passwd.hard`, `/var/lib/app/data`, `/usr/bin/tool`.
fn base_tree(root: &Path) {
    write(root, "etc/motd", b"hello\n");
    write(root, "etc/passwd", b"root:x:0:0\n");
    std::fs::hard_link(root.join("etc/passwd"), root.join("etc/passwd.hard")).unwrap();
    write(root, "var/lib/app/data", b"1\n");
    write(root, "usr/bin/tool", b"tool\n");
}

/// Every path under `dir` with its content (`None` for directories).
fn tree(dir: &Path) -> BTreeMap<String, Option<Vec<u8>>> {
    let mut found = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(at) = stack.pop() {
        for entry in std::fs::read_dir(&at).unwrap() {
            let path = entry.unwrap().path();
            let rel = path.strip_prefix(dir).unwrap().display().to_string();
            if path.is_dir() {
                found.insert(rel, None);
                stack.push(path);
            } else {
                found.insert(rel, Some(std::fs::read(&path).unwrap()));
            }
        }
    }
    found
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// `N objects uploaded` in a summary line.
fn uploaded(summary: &str) -> u64 {
    let before = summary.split(" objects uploaded").next().unwrap();
    before.rsplit(' ').next().unwrap().parse().unwrap()
}

fn show(server: &NatsServer, name: &str) -> Vec<String> {
    imagetool(server, &["show", name])
        .ok()
        .lines()
        .map(str::to_owned)
        .collect()
}

#[test]
fn addi_lays_the_archive_over_the_image_and_uploads_only_its_new_objects() {
    let server = NatsServer::start().unwrap();
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("src");
    base_tree(&src);
    imagetool(&server, &["add", "base", s(&src), "", ""]).ok();
    let overlay = tar_of(
        work.path(),
        "overlay.tar",
        &[
            TarEntry::Dir("etc/", 0o700),
            TarEntry::File("etc/motd", b"bye\n"),
            TarEntry::File("etc/passwd", b"changed\n"),
            TarEntry::File("opt/new/file", b"new\n"),
            TarEntry::HardLink("opt/new/file.hard", "opt/new/file"),
            // The source image has this content: it is not uploaded.
            TarEntry::File("usr/bin/tool2", b"tool\n"),
        ],
    );
    let before = stored_objects(&server);
    let summary = imagetool(&server, &["addi", "derived", "base", s(&overlay), "", ""]).ok();
    assert!(
        summary.starts_with("added derived from base: 7 files"),
        "{summary}"
    );
    assert_eq!(uploaded(&summary), 3, "{summary}");
    // Three objects and the manifest, nothing else.
    assert_eq!(stored_objects(&server), before + 4);

    let (base, derived) = (show(&server, "base"), show(&server, "derived"));
    let changed = ["/etc", "/etc/motd", "/etc/passwd", "/etc/passwd.hard"];
    for line in &base {
        let path = line.split(' ').nth(5).unwrap();
        if !changed.contains(&path) {
            assert!(derived.contains(line), "{line} is gone from {derived:#?}");
        }
    }
    assert_eq!(derived.len(), base.len() + 5, "{derived:#?}");
    let etc = derived.iter().find(|l| l.ends_with(" /etc")).unwrap();
    assert!(etc.starts_with("drwx------ 0:0 "), "{etc}");

    let out = work.path().join("out");
    imagetool(&server, &["get", "derived", s(&out)]).ok();
    let expected = work.path().join("expected");
    base_tree(&expected);
    std::fs::remove_file(expected.join("etc/passwd")).unwrap();
    write(&expected, "etc/passwd", b"changed\n");
    write(&expected, "etc/motd", b"bye\n");
    write(&expected, "opt/new/file", b"new\n");
    write(&expected, "opt/new/file.hard", b"new\n");
    write(&expected, "usr/bin/tool2", b"tool\n");
    assert_eq!(tree(&out), tree(&expected));
    // The other name of the replaced file keeps the old inode, alone.
    let hard = std::fs::metadata(out.join("etc/passwd.hard")).unwrap();
    let replaced = std::fs::metadata(out.join("etc/passwd")).unwrap();
    assert_ne!(hard.ino(), replaced.ino());
    let new = std::fs::metadata(out.join("opt/new/file")).unwrap();
    let new_hard = std::fs::metadata(out.join("opt/new/file.hard")).unwrap();
    assert_eq!(new.ino(), new_hard.ino());
}

#[test]
fn addi_applies_the_new_filter_and_triggers_to_the_whole_tree() {
    let server = NatsServer::start().unwrap();
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("src");
    base_tree(&src);
    imagetool(&server, &["add", "base", s(&src), "", ""]).ok();
    let overlay = tar_of(
        work.path(),
        "overlay.tar.gz.tmp",
        &[
            TarEntry::File("var/lib/app/more", b"filtered\n"),
            TarEntry::File("etc/issue", b"kept\n"),
        ],
    );
    // A compressed archive works as a plain one does.
    let gz = work.path().join("overlay.tar.gz");
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    std::io::Write::write_all(&mut encoder, &std::fs::read(&overlay).unwrap()).unwrap();
    std::fs::write(&gz, encoder.finish().unwrap()).unwrap();
    let filter = write(work.path(), "filter", b"/var/lib\n");
    let triggers = write(
        work.path(),
        "triggers",
        br#"[{"MatchLines": ["/etc/issue"], "Service": "getty"}]"#,
    );
    let summary = imagetool(
        &server,
        &["addi", "derived", "base", s(&gz), s(&filter), s(&triggers)],
    )
    .ok();
    // The filtered file is never read into the upload.
    assert_eq!(uploaded(&summary), 1, "{summary}");
    let paths: Vec<String> = show(&server, "derived")
        .iter()
        .map(|l| l.split(' ').nth(5).unwrap().to_string())
        .collect();
    assert!(
        !paths.iter().any(|p| p.starts_with("/var/lib")),
        "{paths:?}"
    );
    assert!(paths.contains(&"/etc/issue".to_string()));
    assert_eq!(
        imagetool(&server, &["show-filter", "derived"]).ok(),
        "/var/lib\n"
    );
    assert!(imagetool(&server, &["show-triggers", "derived"])
        .ok()
        .contains("\"getty\""));
}

#[test]
fn addi_without_an_archive_refilters_the_image_as_the_original_does() {
    let server = NatsServer::start().unwrap();
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("src");
    base_tree(&src);
    imagetool(&server, &["add", "base", s(&src), "", ""]).ok();
    let filter = write(work.path(), "filter", b"/usr\n");
    let summary = imagetool(&server, &["addi", "copy", "base", s(&filter), ""]).ok();
    assert_eq!(uploaded(&summary), 0, "{summary}");
    let base: Vec<String> = show(&server, "base")
        .into_iter()
        .filter(|l| !l.contains(" /usr"))
        .collect();
    assert_eq!(show(&server, "copy"), base);
    assert_eq!(imagetool(&server, &["show-filter", "copy"]).ok(), "/usr\n");
}

#[test]
fn addrep_replaces_files_keeping_the_source_filter_and_triggers() {
    let server = NatsServer::start().unwrap();
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("src");
    base_tree(&src);
    let filter = write(work.path(), "filter", b"/tmp\n");
    let triggers = write(
        work.path(),
        "triggers",
        br#"[{"MatchLines": ["/etc/motd"], "Service": "motd"}]"#,
    );
    imagetool(&server, &["add", "base", s(&src), s(&filter), s(&triggers)]).ok();
    let first = tar_of(
        work.path(),
        "first.tar",
        &[
            TarEntry::Dir("etc/", 0o777),
            TarEntry::File("etc/motd", b"replaced\n"),
            TarEntry::File("etc/passwd.hard", b"newroot\n"),
            TarEntry::File("tmp/ignored", b"filtered\n"),
        ],
    );
    let second = tar_of(
        work.path(),
        "second.tar",
        &[TarEntry::File("etc/motd", b"second\n")],
    );
    let before = stored_objects(&server);
    let summary = imagetool(
        &server,
        &["addrep", "replaced", "base", s(&first), s(&second)],
    )
    .ok();
    assert!(
        summary.starts_with("added replaced from base: 4 files"),
        "{summary}"
    );
    // The first archive's motd is replaced by the second's, so the image
    // never needs it: two objects and the manifest are stored.
    assert_eq!(uploaded(&summary), 2, "{summary}");
    assert_eq!(stored_objects(&server), before + 3);

    let (base, replaced) = (show(&server, "base"), show(&server, "replaced"));
    assert_eq!(base.len(), replaced.len());
    let etc = replaced.iter().find(|l| l.ends_with(" /etc")).unwrap();
    assert!(base.contains(etc), "archive directories are ignored: {etc}");
    for name in ["show-filter", "show-triggers"] {
        assert_eq!(
            imagetool(&server, &[name, "replaced"]).ok(),
            imagetool(&server, &[name, "base"]).ok()
        );
    }
    let out = work.path().join("out");
    imagetool(&server, &["get", "replaced", s(&out)]).ok();
    assert_eq!(std::fs::read(out.join("etc/motd")).unwrap(), b"second\n");
    // Replacing one name of a hard link replaces the inode.
    assert_eq!(std::fs::read(out.join("etc/passwd")).unwrap(), b"newroot\n");
    let a = std::fs::metadata(out.join("etc/passwd")).unwrap();
    let b = std::fs::metadata(out.join("etc/passwd.hard")).unwrap();
    assert_eq!(a.ino(), b.ino());
}

#[test]
fn an_archive_from_a_pipe_is_read_once_and_kept_for_both_passes() {
    let server = NatsServer::start().unwrap();
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("src");
    base_tree(&src);
    imagetool(&server, &["add", "base", s(&src), "", ""]).ok();
    let archive = tar_of(
        work.path(),
        "fix.tar",
        &[TarEntry::File("etc/motd", b"piped\n")],
    );
    let fifo = work.path().join("fifo");
    let c = std::ffi::CString::new(fifo.as_os_str().as_encoded_bytes()).unwrap();
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    let writer = {
        let (fifo, archive) = (fifo.clone(), archive.clone());
        std::thread::spawn(move || std::fs::write(fifo, std::fs::read(archive).unwrap()))
    };
    let summary = imagetool(&server, &["addrep", "piped", "base", s(&fifo)]).ok();
    writer.join().unwrap().unwrap();
    assert_eq!(uploaded(&summary), 1, "{summary}");
    let out = work.path().join("out");
    imagetool(&server, &["get", "piped", s(&out)]).ok();
    assert_eq!(std::fs::read(out.join("etc/motd")).unwrap(), b"piped\n");
}

/// Runs a failing command and checks that image `name` did not appear
/// and the bucket did not change.
fn fails(server: &NatsServer, args: &[&str], name: &str, expect: &str) {
    let before = stored_objects(server);
    let err = imagetool(server, args).one_line_error();
    assert!(err.contains(expect), "expected {expect:?} in: {err}");
    let listed = imagetool(server, &["list", "--all"]).ok();
    let named = |l: &str| l == name || l.starts_with(&format!("{name} "));
    assert!(!listed.lines().any(named), "{listed}");
    assert_eq!(stored_objects(server), before, "nothing may be uploaded");
}

#[test]
fn bad_input_fails_with_one_line_and_changes_nothing() {
    let server = NatsServer::start().unwrap();
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("src");
    base_tree(&src);
    imagetool(&server, &["add", "base", s(&src), "", ""]).ok();
    let good = tar_of(
        work.path(),
        "good.tar",
        &[TarEntry::File("etc/motd", b"x\n")],
    );
    let dotdot = work.path().join("dotdot.tar");
    std::fs::write(
        &dotdot,
        hostile_tar("../etc/passwd", tar::EntryType::Regular, None),
    )
    .unwrap();
    let unsupported = work.path().join("sparse.tar");
    std::fs::write(
        &unsupported,
        hostile_tar("etc/sparse", tar::EntryType::new(b'Z'), None),
    )
    .unwrap();
    let missing = tar_of(
        work.path(),
        "missing.tar",
        &[TarEntry::File("etc/shadow", b"new\n")],
    );
    let kind = tar_of(work.path(), "kind.tar", &[TarEntry::File("usr/bin", b"x")]);

    fails(
        &server,
        &["addi", "a", "nosuch", s(&good), "", ""],
        "a",
        "image nosuch does not exist",
    );
    fails(
        &server,
        &["addi", "b", "base", s(&dotdot), "", ""],
        "b",
        "'..'",
    );
    fails(
        &server,
        &["addi", "c", "base", s(&unsupported), "", ""],
        "c",
        "unsupported entry type",
    );
    fails(
        &server,
        &["addi", "d", "base", "/no/such.tar", "", ""],
        "d",
        "cannot read archive /no/such.tar",
    );
    fails(
        &server,
        &["addrep", "e", "base", s(&missing)],
        "e",
        "/etc/shadow is not in the source image",
    );
    fails(
        &server,
        &["addrep", "f", "base", s(&kind)],
        "f",
        "/usr/bin is a directory in the source image, not a file",
    );
    fails(
        &server,
        &["addrep", "g", "nosuch", s(&good)],
        "g",
        "image nosuch does not exist",
    );
    fails(
        &server,
        &["addi", "base", "base", s(&good), "", ""],
        "zzz",
        "base already exists",
    );
}

#[test]
fn addi_and_addrep_take_the_metadata_flags_addrep_over_the_source_s() {
    let server = NatsServer::start().unwrap();
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("src");
    base_tree(&src);
    let notes = write(work.path(), "NOTES", b"what changed\n");
    imagetool(
        &server,
        &[
            "add",
            "base",
            s(&src),
            "",
            "",
            "-tag",
            "stream=web",
            "-tag",
            "stage=qa",
        ],
    )
    .ok();
    let layer = tar_of(
        work.path(),
        "layer.tar",
        &[TarEntry::File("etc/motd", b"patched\n")],
    );
    // addi: a new build, with only the metadata given.
    let before = stored_objects(&server);
    imagetool(
        &server,
        &[
            "addi",
            "patched",
            "base",
            s(&layer),
            "",
            "",
            "-tag",
            "stage=dev",
            "-buildCommitId",
            "abc123",
            "-releaseNotes",
            s(&notes),
        ],
    )
    .ok();
    let patched = record(&server, "patched");
    assert_eq!(patched.v, dom_model::image::IMAGE_RECORD_METADATA_VERSION);
    let tags: Vec<_> = patched.metadata.tags.iter().collect();
    assert_eq!(tags, [(&"stage".to_string(), &"dev".to_string())]);
    assert_eq!(patched.metadata.build_commit_id.as_deref(), Some("abc123"));
    // The layer's one new object, the manifest, and the notes.
    assert_eq!(stored_objects(&server), before + 3);
    assert_eq!(
        imagetool(&server, &["show-metadata", "patched", "--release-notes"]).ok(),
        "what changed\n"
    );
    // addrep: the source's tags, with those given over them.
    imagetool(
        &server,
        &["addrep", "fixed", "base", s(&layer), "-tag", "stage=prod"],
    )
    .ok();
    let fixed = record(&server, "fixed");
    let tags: Vec<_> = fixed
        .metadata
        .tags
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    assert_eq!(tags, ["stage=prod", "stream=web"]);
    // A bad tag is refused before anything is sent.
    let messages = listed(&server);
    let err = imagetool(
        &server,
        &["addrep", "bad", "base", s(&layer), "-tag", "nope"],
    )
    .one_line_error();
    assert!(err.contains(r#"tag "nope" is not KEY=VALUE"#), "{err}");
    assert_eq!(listed(&server), messages);
}
