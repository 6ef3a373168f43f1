//! The inspection commands, through the real binary against a real
//! server: get-file-in-image, show-inode, diff with local sides,
//! match-triggers, merge-filters and merge-triggers.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use crate::common::*;
use dom_model::ObjectId;

/// A server holding `image.0`, the user guide's normal image (filter and
/// triggers from ops/examples).
fn user_guide_image() -> NatsServer {
    let server = NatsServer::start().unwrap();
    let ex = examples();
    let arg = |f: &str| ex.join(f).to_str().unwrap().to_string();
    imagetool(
        &server,
        &[
            "add",
            "image.0",
            &arg("path"),
            &arg("filter"),
            &arg("triggers"),
        ],
    )
    .ok();
    server
}

/// The names in `dir`, sorted.
fn names_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// The image's list of paths and hashes, to show nothing changed.
fn shown(server: &NatsServer) -> String {
    imagetool(server, &["list", "--all"]).ok() + &imagetool(server, &["show", "image.0"]).ok()
}

#[test]
fn get_file_in_image_writes_the_verified_bytes_and_refuses_to_clobber() {
    let server = user_guide_image();
    let source = std::fs::read(examples().join("path/etc/ssh/sshd.conf")).unwrap();
    let to_stdout = imagetool_on(
        &server,
        &["get-file-in-image", "image.0", "/etc/ssh/sshd.conf"],
    )
    .output()
    .unwrap();
    assert!(to_stdout.status.success());
    assert_eq!(to_stdout.stdout, source);

    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("sshd.conf");
    let out_arg = out.to_str().unwrap();
    let printed = imagetool(
        &server,
        &[
            "get-file-in-image",
            "image.0",
            "/etc/ssh/sshd.conf",
            out_arg,
        ],
    )
    .ok();
    assert_eq!(printed, "");
    assert_eq!(std::fs::read(&out).unwrap(), source);
    let hello = dir.path().join("hello");
    imagetool(
        &server,
        &[
            "get-file-in-image",
            "image.0",
            "/usr/local/bin/hello",
            hello.to_str().unwrap(),
        ],
    )
    .ok();
    let mode = std::fs::metadata(&hello).unwrap().permissions().mode();
    assert_eq!(mode & 0o7777, 0o755, "the image's mode");

    // An existing file is kept unless --force.
    std::fs::write(&out, b"mine").unwrap();
    let err = imagetool(
        &server,
        &["get-file-in-image", "image.0", "/etc/motd", out_arg],
    )
    .one_line_error();
    assert_eq!(
        err,
        format!("imagetool: {out_arg} exists; give --force to replace it")
    );
    assert_eq!(std::fs::read(&out).unwrap(), b"mine");
    imagetool(
        &server,
        &[
            "get-file-in-image",
            "image.0",
            "/etc/motd",
            out_arg,
            "--force",
        ],
    )
    .ok();
    assert_eq!(
        std::fs::read(&out).unwrap(),
        std::fs::read(examples().join("path/etc/motd")).unwrap()
    );
    assert_eq!(
        names_in(dir.path()),
        ["hello", "sshd.conf"],
        "no temporary left"
    );
}

#[test]
fn get_file_in_image_refuses_what_is_no_file_of_the_image_and_writes_nothing() {
    let server = user_guide_image();
    let before = shown(&server);
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let out_arg = out.to_str().unwrap();
    for (image, path, expect) in [
        (
            "image.0",
            "/etc/fstab",
            "imagetool: /etc/fstab is not in image image.0",
        ),
        (
            "image.0",
            "/etc/ssh",
            "imagetool: /etc/ssh in image image.0 is a directory, not a regular file",
        ),
        ("no.such.image", "/etc/motd", "no.such.image"),
        ("image.0", "etc/motd", "not absolute"),
    ] {
        let err = imagetool(&server, &["get-file-in-image", image, path, out_arg]).one_line_error();
        assert!(err.contains(expect), "{image} {path}: {err}");
        assert!(
            names_in(dir.path()).is_empty(),
            "{image} {path}: wrote something"
        );
    }
    // Stdout too stays empty.
    let run = imagetool(&server, &["get-file-in-image", "image.0", "/etc/ssh"]);
    assert_eq!(run.stdout, "");
    run.one_line_error();
    assert_eq!(shown(&server), before, "nothing changed on the server");
}

/// A tar archive with one inode of each kind whose metadata a directory
/// made by a test cannot carry: root's files, setuid, a device.
fn every_kind_tar(dir: &Path) -> PathBuf {
    let mut builder = tar::Builder::new(Vec::new());
    let header = |kind: tar::EntryType, mode: u32, size: u64| {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(kind);
        h.set_mode(mode);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(1_700_000_000);
        h.set_size(size);
        h
    };
    let dir_header = header(tar::EntryType::Directory, 0o755, 0);
    for name in ["bin", "dev"] {
        builder
            .append_data(&mut dir_header.clone(), name, std::io::empty())
            .unwrap();
    }
    let mut file = header(tar::EntryType::Regular, 0o4755, 5);
    file.set_uid(7);
    file.set_gid(8);
    builder
        .append_data(&mut file, "bin/tool", &b"tool\n"[..])
        .unwrap();
    for (kind, name, target) in [
        (tar::EntryType::Link, "bin/tool2", "bin/tool"),
        (tar::EntryType::Symlink, "bin/latest", "tool"),
    ] {
        let mut h = header(kind, 0o777, 0);
        builder.append_link(&mut h, name, target).unwrap();
    }
    let mut null = header(tar::EntryType::Char, 0o666, 0);
    null.set_device_major(1).unwrap();
    null.set_device_minor(3).unwrap();
    builder
        .append_data(&mut null, "dev/null", std::io::empty())
        .unwrap();
    let path = dir.join("kinds.tar");
    std::fs::write(&path, builder.into_inner().unwrap()).unwrap();
    path
}

#[test]
fn show_inode_prints_each_kind_as_stored() {
    let server = NatsServer::start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let tar = every_kind_tar(dir.path());
    imagetool(&server, &["add", "kinds", tar.to_str().unwrap(), "", ""]).ok();
    let show = |path: &str| imagetool(&server, &["show-inode", "kinds", path]).ok();
    let sha = ObjectId::of(b"tool\n").to_hex();
    assert_eq!(
        show("/bin/tool"),
        format!(
            "path: /bin/tool\ntype: regular file\nmode: -rwsr-xr-x (4755)\nuid: 7\ngid: 8\n\
             size: 5\nmtime: 2023-11-14T22:13:20Z\nsha512: {sha}\nlinks: /bin/tool2\n"
        )
    );
    assert_eq!(
        show("/bin/tool2"),
        format!(
            "path: /bin/tool2\ntype: regular file\nmode: -rwsr-xr-x (4755)\nuid: 7\ngid: 8\n\
             size: 5\nmtime: 2023-11-14T22:13:20Z\nsha512: {sha}\nlinks: /bin/tool\n"
        )
    );
    assert_eq!(
        show("/bin/latest"),
        "path: /bin/latest\ntype: symlink\nuid: 0\ngid: 0\ntarget: tool\n"
    );
    assert_eq!(
        show("/dev/null"),
        "path: /dev/null\ntype: character device\nmode: crw-rw-rw- (0666)\nuid: 0\ngid: 0\n\
         mtime: 2023-11-14T22:13:20Z\nrdev: 1,3\n"
    );
    assert_eq!(
        show("/bin"),
        "path: /bin\ntype: directory\nmode: drwxr-xr-x (0755)\nuid: 0\ngid: 0\n"
    );
    let json: serde_json::Value = serde_json::from_str(
        &imagetool(&server, &["show-inode", "kinds", "/bin/tool", "--json"]).ok(),
    )
    .unwrap();
    assert_eq!(
        json,
        serde_json::json!({
            "path": "/bin/tool", "type": "regular file", "mode": "-rwsr-xr-x",
            "mode_octal": "4755", "uid": 7, "gid": 8, "size": 5,
            "mtime": "2023-11-14T22:13:20Z", "sha512": sha, "links": ["/bin/tool2"],
        })
    );
    let err = imagetool(&server, &["show-inode", "kinds", "/bin/nothing"]).one_line_error();
    assert_eq!(err, "imagetool: /bin/nothing is not in image kinds");
}

#[test]
fn diff_takes_a_directory_or_archive_on_either_side() {
    let server = user_guide_image();
    let tree = examples().join("path");
    let tree_arg = tree.to_str().unwrap();
    // Read through image.0's filter, its own source shows no change.
    assert_eq!(imagetool(&server, &["diff", "image.0", tree_arg]).ok(), "");
    assert_eq!(imagetool(&server, &["diff", tree_arg, "image.0"]).ok(), "");

    let dir = tempfile::tempdir().unwrap();
    let copy = dir.path().join("tree");
    copy_keeping_mtimes(&tree, &copy);
    let motd = copy.join("etc/motd");
    let mtime = std::fs::metadata(&motd).unwrap().modified().unwrap();
    std::fs::write(&motd, b"changed\n").unwrap();
    std::fs::File::options()
        .write(true)
        .open(&motd)
        .unwrap()
        .set_modified(mtime)
        .unwrap();
    std::fs::remove_file(copy.join("usr/local/bin/hello")).unwrap();
    write(&copy, "etc/new", b"new\n");
    write(&copy, "var/log/filtered", b"the filter hides this\n");
    let changes = "+ /etc/new\nM /etc/motd (content)\n- /usr/local/bin/hello\n";
    let relative = imagetool_in(
        dir.path(),
        &["--server", &server.url(), "diff", "image.0", "./tree"],
    )
    .ok();
    assert_eq!(sorted(&relative), sorted(changes));

    // Archives, and two local sides with no server at all.
    let a = dir.path().join("a.tar");
    let b = dir.path().join("b.tar.gz");
    tar_of(&tree, &a, false);
    tar_of(&copy, &b, true);
    imagetool(&server, &["add", "from-tar", a.to_str().unwrap(), "", ""]).ok();
    assert_eq!(
        imagetool(&server, &["diff", a.to_str().unwrap(), "from-tar"]).ok(),
        ""
    );
    let offline = imagetool_in(
        dir.path(),
        &[
            "--server",
            "nats://127.0.0.1:1",
            "diff",
            "./a.tar",
            "./b.tar.gz",
        ],
    )
    .ok();
    assert_eq!(
        sorted(&offline),
        sorted("+ /etc/new\nM /etc/motd (content)\n- /usr/local/bin/hello\n+ /var/log/filtered\n")
    );
    assert_eq!(
        imagetool_in(
            dir.path(),
            &["--server", "nats://127.0.0.1:1", "diff", "./tree", "./tree"]
        )
        .ok(),
        ""
    );

    let err = imagetool_in(dir.path(), &["diff", "./missing", "image.0"]).one_line_error();
    assert_eq!(err, "imagetool: ./missing: no such directory or archive");
    let err = imagetool(&server, &["diff", "release.tar", tree_arg]).one_line_error();
    assert!(
        err.starts_with("imagetool: release.tar is neither an archive on disk nor an image:"),
        "{err}"
    );
    let err = imagetool(&server, &["diff", "no.such.image", tree_arg]).one_line_error();
    assert!(err.contains("no.such.image"), "{err}");
    let err = imagetool(&server, &["diff", "bad name!", tree_arg]).one_line_error();
    assert!(
        err.contains("is neither an image name") && err.contains("nor a directory or archive"),
        "{err}"
    );
}

/// Copies the tree `from` to `to`, files with their mtimes, as a build
/// would leave an unchanged tree.
fn copy_keeping_mtimes(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_keeping_mtimes(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
            let mtime = entry.metadata().unwrap().modified().unwrap();
            std::fs::File::options()
                .write(true)
                .open(&target)
                .unwrap()
                .set_modified(mtime)
                .unwrap();
        }
    }
}

/// The lines of `text`, sorted, to compare without fixing the order.
fn sorted(text: &str) -> Vec<&str> {
    let mut lines: Vec<&str> = text.lines().collect();
    lines.sort();
    lines
}

/// Archives `tree` (its contents at the archive's root) into `to`.
fn tar_of(tree: &Path, to: &Path, gzip: bool) {
    let file = std::fs::File::create(to).unwrap();
    let write: Box<dyn std::io::Write> = if gzip {
        Box::new(flate2::write::GzEncoder::new(
            file,
            flate2::Compression::fast(),
        ))
    } else {
        Box::new(file)
    };
    let mut builder = tar::Builder::new(write);
    builder.follow_symlinks(false);
    builder.append_dir_all(".", tree).unwrap();
    builder.into_inner().unwrap().flush().unwrap();
}

#[test]
fn match_triggers_names_what_a_change_restarts() {
    let server = user_guide_image();
    let triggers = examples().join("triggers");
    let triggers = triggers.to_str().unwrap();
    let both = ["/etc/ssh/sshd.conf", "/etc/motd", "/etc/passwd"];
    let mut args = vec!["match-triggers", "image.0"];
    args.extend(both);
    assert_eq!(
        imagetool(&server, &args).ok(),
        "motd reload\nsshd restart\n"
    );
    assert_eq!(
        imagetool(&server, &["match-triggers", "image.0", "/usr/sbin/sshd"]).ok(),
        "sshd restart\n"
    );
    assert_eq!(
        imagetool(&server, &["match-triggers", "image.0", "/etc/passwd"]).ok(),
        ""
    );
    // A triggers file needs no server.
    let mut offline = vec!["--server", "nats://127.0.0.1:1", "match-triggers", triggers];
    offline.extend(both);
    assert_eq!(
        imagetool_in(Path::new("."), &offline).ok(),
        "motd reload\nsshd restart\n"
    );

    let dir = tempfile::tempdir().unwrap();
    let high = write(
        dir.path(),
        "high",
        br#"[{"Service":"kernel","MatchLines":["/boot/.*"],"HighImpact":true,"DoReboot":true}]"#,
    );
    let json = imagetool_in(
        Path::new("."),
        &[
            "match-triggers",
            high.to_str().unwrap(),
            "/boot/vmlinuz",
            "--json",
        ],
    )
    .ok();
    let fired: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(fired[0]["Service"], "kernel");
    assert_eq!(fired[0]["HighImpact"], true);
    assert_eq!(
        imagetool_in(
            Path::new("."),
            &["match-triggers", high.to_str().unwrap(), "/boot/vmlinuz"]
        )
        .ok(),
        "kernel restart high-impact reboot\n"
    );

    // The original's form: which of a file's triggers the image fires.
    let three = write(
        dir.path(),
        "three",
        br#"[{"Service":"kernel","MatchLines":["/boot/.*"]},
             {"Service":"sshd","MatchLines":["/etc/ssh/.*"]},
             {"Service":"motd","MatchLines":["/etc/motd"],"DoReload":true}]"#,
    );
    let json = imagetool(
        &server,
        &["match-triggers", "image.0", three.to_str().unwrap()],
    )
    .ok();
    let fired: serde_json::Value = serde_json::from_str(&json).unwrap();
    let services: Vec<_> = fired
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["Service"].as_str().unwrap())
        .collect();
    assert_eq!(services, ["motd", "sshd"], "{json}");

    let err = imagetool(&server, &["match-triggers", "image.0", "etc/motd"]).one_line_error();
    assert!(err.contains("not absolute"), "{err}");
    let err =
        imagetool(&server, &["match-triggers", "no.such.image", "/etc/motd"]).one_line_error();
    assert!(err.contains("no.such.image"), "{err}");
}

#[test]
fn merge_filters_and_triggers_offline() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "a", b"/tmp/.*\n/var/log/.*\n");
    write(
        dir.path(),
        "b",
        b"# ours\n/var/log/.*\n/etc/fstab\n\n/tmp/.*\n",
    );
    let run = |args: &[&str]| {
        let mut all = vec!["--server", "nats://127.0.0.1:1"];
        all.extend_from_slice(args);
        imagetool_in(dir.path(), &all)
    };
    assert_eq!(
        run(&["merge-filters", "a", "b"]).ok(),
        "/tmp/.*\n/var/log/.*\n/etc/fstab\n"
    );
    write(dir.path(), "bad", b"/ok\n/(unclosed\n");
    let run_bad = run(&["merge-filters", "a", "bad"]);
    assert_eq!(run_bad.stdout, "");
    let err = run_bad.one_line_error();
    assert!(
        err.starts_with("imagetool: filter file bad: filter line 2: invalid regular expression"),
        "{err}"
    );

    let sshd = examples().join("triggers.sshd");
    let all = examples().join("triggers");
    write(
        dir.path(),
        "more",
        br#"[{"Service":"sshd","MatchLines":["/lib/ssh/.*","/etc/ssh/.*"],"HighImpact":true}]"#,
    );
    let merged = run(&[
        "merge-triggers",
        sshd.to_str().unwrap(),
        all.to_str().unwrap(),
        "more",
    ])
    .ok();
    let merged: serde_json::Value = serde_json::from_str(&merged).unwrap();
    assert_eq!(
        merged,
        serde_json::json!([
            {"MatchLines": ["/etc/motd"], "Service": "motd", "DoReload": true},
            {"MatchLines": ["/etc/ssh/.*", "/lib/ssh/.*", "/usr/sbin/sshd"],
             "Service": "sshd", "HighImpact": true},
        ])
    );
    write(dir.path(), "broken", b"[{\"Service\": ");
    let err = run(&["merge-triggers", "more", "broken"]).one_line_error();
    assert!(
        err.starts_with("imagetool: triggers file broken: triggers are not valid JSON"),
        "{err}"
    );
    let err = run(&["merge-triggers", "missing"]).one_line_error();
    assert!(
        err.starts_with("imagetool: cannot read triggers file missing"),
        "{err}"
    );
}

#[test]
fn diff_with_a_tool_runs_it_on_both_listings_as_the_original_does() {
    let server = user_guide_image();
    let tree = examples().join("path");
    let tree_arg = tree.to_str().unwrap();
    // The same tree: the tool finds no difference and exits 0.
    let same = imagetool(&server, &["diff", "diff", "image.0", tree_arg]);
    assert_eq!(
        (same.code, same.stdout.as_str()),
        (0, ""),
        "{}",
        same.stderr
    );
    // A file added: the tool's own output and status.
    let dir = tempfile::tempdir().unwrap();
    let copy = dir.path().join("tree");
    copy_keeping_mtimes(&tree, &copy);
    write(&copy, "etc/new", b"new\n");
    let changed = imagetool(
        &server,
        &["diff", "diff -u", "image.0", copy.to_str().unwrap()],
    );
    assert_eq!(changed.code, 1, "{}", changed.stderr);
    let added: Vec<_> = changed
        .stdout
        .lines()
        .filter(|l| l.starts_with('+') && !l.starts_with("+++"))
        .collect();
    assert_eq!(added.len(), 1, "{}", changed.stdout);
    assert!(added[0].contains("/etc/new"), "{}", changed.stdout);
    // A tool that cannot run is one line.
    let err = imagetool(&server, &["diff", "no-such-tool", "image.0", tree_arg]).one_line_error();
    assert!(
        err.contains("cannot run the diff tool no-such-tool"),
        "{err}"
    );
}
