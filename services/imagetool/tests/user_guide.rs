//! The user guide's command lines, run as written against a real server,
//! and the round trip of every kind of inode through add and get.

use std::os::unix::fs::{MetadataExt, PermissionsExt};

use crate::common::*;

#[test]
fn user_guide_lines_work_as_written() {
    let server = NatsServer::start().unwrap();
    let port = server.port().to_string();
    let host = "-imageServerHostname=127.0.0.1".to_string();
    let port_flag = format!("-imageServerPortNum={port}");
    let dir = tempfile::tempdir().unwrap();
    // The guide uses /tmp/filter and /tmp/triggers*; we use a private copy.
    for f in ["filter", "triggers", "triggers.sshd"] {
        std::fs::copy(examples().join(f), dir.path().join(f)).unwrap();
    }
    let run = |args: &[&str]| {
        let mut all = vec![host.as_str(), port_flag.as_str()];
        all.extend_from_slice(args);
        imagetool_in(&examples(), &all)
    };
    let filter = dir.path().join("filter");
    let triggers = dir.path().join("triggers");
    let triggers_sshd = dir.path().join("triggers.sshd");
    let (filter, triggers, triggers_sshd) = (
        filter.to_str().unwrap(),
        triggers.to_str().unwrap(),
        triggers_sshd.to_str().unwrap(),
    );

    let added = run(&["add", "sparse.0", "path", "", ""]).ok();
    assert!(added.starts_with("added sparse.0: 6 files"), "{added}");
    assert_eq!(run(&["list"]).ok(), "sparse.0\n");
    let shown = run(&["show", "sparse.0"]).ok();
    let sshd = shown
        .lines()
        .find(|l| l.ends_with(" /etc/ssh/sshd.conf"))
        .unwrap();
    let content = std::fs::read(examples().join("path/etc/ssh/sshd.conf")).unwrap();
    assert!(
        sshd.contains(&dom_model::ObjectId::of(&content).to_hex()),
        "{sshd}"
    );
    assert!(sshd.starts_with("-rw-r--r-- "), "{sshd}");

    let err = run(&["add", "sparse.0", "path", "", triggers_sshd]).one_line_error();
    assert!(err.contains("sparse.0 already exists"), "{err}");
    run(&["add", "sparse.1", "path", "", triggers_sshd]).ok();
    let added = run(&["add", "image.0", "path", filter, triggers]).ok();
    assert!(
        added.contains("0 objects uploaded"),
        "all objects were stored before: {added}"
    );

    assert_eq!(run(&["list"]).ok(), "image.0\nsparse.0\nsparse.1\n");
    let shown = run(&["show", "image.0"]).ok();
    assert!(!shown.contains("/etc/fstab") && !shown.contains("/etc/hostname"));
    assert!(!shown.contains("/var/log/.keep"));
    assert!(
        shown.contains(" /var/log\n"),
        "the directory itself is not filtered"
    );
    assert_eq!(
        run(&["show-filter", "image.0"]).ok(),
        "/etc/fstab\n/etc/hostname\n/tmp/.*\n/var/log/.*\n/var/mail/.*\n/var/spool/.*\n/var/tmp/.*\n"
    );
    assert_eq!(run(&["show-filter", "sparse.0"]).ok(), "");
    let t: serde_json::Value =
        serde_json::from_str(&run(&["show-triggers", "sparse.1"]).ok()).unwrap();
    assert_eq!(t[0]["Service"], "sshd");
    assert_eq!(
        run(&["diff", "sparse.0", "image.0"]).ok(),
        "- /etc/fstab\n- /etc/hostname\n- /var/log/.keep\n"
    );
}

#[test]
fn every_inode_kind_round_trips_through_add_and_get() {
    let server = NatsServer::start().unwrap();
    let src = tempfile::tempdir().unwrap();
    let root = src.path();
    let f = write(root, "etc/app.conf", b"key = value\n");
    std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o4750)).unwrap();
    write(root, "data/dup1", b"same content");
    write(root, "data/dup2", b"same content");
    std::fs::hard_link(root.join("etc/app.conf"), root.join("etc/app.conf.link")).unwrap();
    std::os::unix::fs::symlink("../etc/app.conf", root.join("data/rel-link")).unwrap();
    std::os::unix::fs::symlink("/etc/app.conf", root.join("data/abs-link")).unwrap();
    std::fs::create_dir(root.join("empty")).unwrap();
    std::fs::set_permissions(root.join("empty"), std::fs::Permissions::from_mode(0o1777)).unwrap();
    let fifo = std::ffi::CString::new(root.join("data/pipe").to_str().unwrap()).unwrap();
    assert_eq!(unsafe { libc_mkfifo(fifo.as_ptr(), 0o600) }, 0);
    let mtime = std::time::UNIX_EPOCH + std::time::Duration::new(1_600_000_000, 123_456_789);
    std::fs::File::options()
        .write(true)
        .open(root.join("data/dup1"))
        .unwrap()
        .set_modified(mtime)
        .unwrap();

    let out = imagetool(&server, &["add", "kinds", root.to_str().unwrap(), "", ""]).ok();
    assert!(out.contains("3 files"), "hard links count once: {out}");
    assert!(
        out.contains("2 objects uploaded"),
        "duplicates are stored once: {out}"
    );

    let shown = imagetool(&server, &["show", "kinds"]).ok();
    assert!(
        shown.contains("/etc/app.conf.link => /etc/app.conf"),
        "{shown}"
    );
    assert!(
        shown.contains("/data/rel-link -> ../etc/app.conf"),
        "{shown}"
    );
    assert!(shown.contains("-rwsr-x--- "), "{shown}");
    assert!(shown.contains("drwxrwxrwt "), "{shown}");
    assert!(
        shown
            .lines()
            .any(|l| l.starts_with("prw------- ") && l.ends_with("/data/pipe")),
        "{shown}"
    );

    let dest = tempfile::tempdir().unwrap();
    let out_dir = dest.path().join("out");
    imagetool(&server, &["get", "kinds", out_dir.to_str().unwrap()]).ok();
    let got = |rel: &str| std::fs::symlink_metadata(out_dir.join(rel)).unwrap();
    assert_eq!(
        std::fs::read(out_dir.join("etc/app.conf")).unwrap(),
        b"key = value\n"
    );
    assert_eq!(got("etc/app.conf").mode() & 0o7777, 0o4750);
    assert_eq!(got("etc/app.conf").ino(), got("etc/app.conf.link").ino());
    assert_ne!(got("data/dup1").ino(), got("data/dup2").ino());
    assert_eq!(got("data/dup1").mtime(), 1_600_000_000);
    assert_eq!(got("data/dup1").mtime_nsec(), 123_456_789);
    assert_eq!(
        std::fs::read_link(out_dir.join("data/rel-link"))
            .unwrap()
            .to_str(),
        Some("../etc/app.conf")
    );
    assert!(std::os::unix::fs::FileTypeExt::is_fifo(
        &got("data/pipe").file_type()
    ));
    assert_eq!(got("empty").mode() & 0o7777, 0o1777);

    // A second add of the same tree uploads nothing.
    let out = imagetool(
        &server,
        &["add", "kinds.again", root.to_str().unwrap(), "", ""],
    )
    .ok();
    assert!(out.contains("0 objects uploaded"), "{out}");
}

extern "C" {
    #[link_name = "mkfifo"]
    fn libc_mkfifo(path: *const std::ffi::c_char, mode: u32) -> i32;
}

#[test]
fn tar_and_gzip_sources_give_the_same_image_as_the_directory() {
    let server = NatsServer::start().unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let tree = examples().join("path");
    let tar_path = tmp.path().join("tree.tar");
    {
        let mut builder = tar::Builder::new(std::fs::File::create(&tar_path).unwrap());
        builder.append_dir_all(".", &tree).unwrap();
        builder.finish().unwrap();
    }
    let tgz_path = tmp.path().join("tree.tgz");
    {
        let mut gz = flate2::write::GzEncoder::new(
            std::fs::File::create(&tgz_path).unwrap(),
            flate2::Compression::fast(),
        );
        std::io::copy(&mut std::fs::File::open(&tar_path).unwrap(), &mut gz).unwrap();
        gz.finish().unwrap();
    }
    imagetool(
        &server,
        &["add", "from.dir", tree.to_str().unwrap(), "", ""],
    )
    .ok();
    imagetool(
        &server,
        &["add", "from.tar", tar_path.to_str().unwrap(), "", ""],
    )
    .ok();
    imagetool(
        &server,
        &["add", "from.tgz", tgz_path.to_str().unwrap(), "", ""],
    )
    .ok();
    // Tar keeps whole-second mtimes and its own root; compare contents.
    let files = |name: &str| -> Vec<String> {
        imagetool(&server, &["show", name])
            .ok()
            .lines()
            .filter(|l| l.starts_with('-'))
            .map(|l| {
                let f: Vec<_> = l.split(' ').collect();
                format!("{} {} {}", f[0], f[4], f[5])
            })
            .collect()
    };
    assert_eq!(files("from.dir"), files("from.tar"));
    assert_eq!(files("from.tar"), files("from.tgz"));
    assert_eq!(
        imagetool(&server, &["diff", "from.tar", "from.tgz"]).ok(),
        ""
    );
}

#[test]
fn delete_keeps_the_name_taken_and_expiry_hides_images() {
    let server = NatsServer::start().unwrap();
    let tree = examples().join("path");
    let tree = tree.to_str().unwrap();
    imagetool(&server, &["add", "old", tree, "", ""]).ok();
    imagetool(&server, &["-expiresIn=1s", "add", "short", tree, "", ""]).ok();
    assert_eq!(imagetool(&server, &["check", "old"]).code, 0);
    imagetool(&server, &["delete", "old"]).ok();
    assert_eq!(imagetool(&server, &["check", "old"]).code, 1);
    let err = imagetool(&server, &["add", "old", tree, "", ""]).one_line_error();
    assert!(err.contains("old was deleted"), "{err}");
    let err = imagetool(&server, &["delete", "old"]).one_line_error();
    assert!(err.contains("deleted"), "{err}");
    std::thread::sleep(std::time::Duration::from_millis(1500));
    assert!(listed(&server).is_empty(), "{:?}", listed(&server));
    assert_eq!(imagetool(&server, &["check", "short"]).code, 1);
    let all = imagetool(&server, &["list", "--all"]).ok();
    assert_eq!(all, "old (deleted)\nshort (expired)\n");
}

#[test]
fn images_survive_a_server_restart() {
    let mut server = NatsServer::start().unwrap();
    let tree = examples().join("path");
    imagetool(&server, &["add", "kept", tree.to_str().unwrap(), "", ""]).ok();
    server.restart().unwrap();
    assert_eq!(listed(&server), ["kept"]);
    let out = tempfile::tempdir().unwrap();
    imagetool(
        &server,
        &["get", "kept", out.path().join("x").to_str().unwrap()],
    )
    .ok();
}

#[test]
fn a_reader_that_goes_away_ends_the_listing_quietly() {
    let server = NatsServer::start().unwrap();
    // More lines than a pipe holds (64 KiB): each names a SHA-512.
    let tree = tempfile::tempdir().unwrap();
    for i in 0..1000 {
        std::fs::write(tree.path().join(format!("file-{i:04}")), i.to_string()).unwrap();
    }
    let path = tree.path().to_str().unwrap();
    imagetool(&server, &["add", "many.0", path, "", ""]).ok();
    let (first, run) = Run::first_line_then_close(imagetool_on(&server, &["show", "many.0"]));
    assert!(first.ends_with(" /\n"), "{first}");
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(run.stderr.is_empty(), "{}", run.stderr);
}
