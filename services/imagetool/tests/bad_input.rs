//! Bad input: each case fails with one clear line and a non-zero exit,
//! and publishes nothing.

use std::time::{Duration, Instant};

use crate::common::*;

fn tree() -> String {
    examples().join("path").to_str().unwrap().to_string()
}

/// Runs a failing add and checks that no image appeared.
fn add_fails(server: &NatsServer, args: &[&str], expect: &str) {
    let mut all = vec!["add"];
    all.extend_from_slice(args);
    let err = imagetool(server, &all).one_line_error();
    assert!(err.contains(expect), "expected {expect:?} in: {err}");
    let listed = imagetool(server, &["list", "--all"]).ok();
    assert!(
        !listed.contains(args[0]),
        "nothing may be published: {listed}"
    );
}

#[test]
fn invalid_filter_and_triggers() {
    let server = NatsServer::start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let bad_filter = write(dir.path(), "filter", b"/etc/fstab\n/var/(log\n");
    let bad_regex_trigger = write(
        dir.path(),
        "triggers-regex",
        br#"[{"MatchLines": ["/etc/ssh/[a-"], "Service": "sshd"}]"#,
    );
    let bad_json = write(
        dir.path(),
        "triggers-json",
        br#"[{"MatchLines": ["/etc"], "Service": "#,
    );
    let wrong_shape = write(dir.path(), "triggers-shape", br#"{"Service": "sshd"}"#);
    let no_service = write(
        dir.path(),
        "triggers-noservice",
        br#"[{"MatchLines": ["/x"]}]"#,
    );
    let t = tree();
    let s = |p: &std::path::Path| p.to_str().unwrap().to_string();
    add_fails(&server, &["a", &t, &s(&bad_filter), ""], "filter line 2");
    add_fails(
        &server,
        &["b", &t, "", &s(&bad_regex_trigger)],
        "invalid regular expression",
    );
    add_fails(&server, &["c", &t, "", &s(&bad_json)], "not valid JSON");
    add_fails(&server, &["d", &t, "", &s(&wrong_shape)], "not valid JSON");
    add_fails(&server, &["e", &t, "", &s(&no_service)], "Service");
    add_fails(
        &server,
        &["f", &t, "/no/such/filter", ""],
        "cannot read filter file /no/such/filter",
    );
    add_fails(
        &server,
        &["g", &t, "", "/no/such/triggers"],
        "cannot read triggers file",
    );
}

#[test]
fn missing_or_unreadable_source() {
    let server = NatsServer::start().unwrap();
    add_fails(
        &server,
        &["a", "/no/such/dir", "", ""],
        "cannot read source /no/such/dir",
    );
    let dir = tempfile::tempdir().unwrap();
    let junk = write(
        dir.path(),
        "junk.tar",
        b"this is not a tar archive at all, just text",
    );
    add_fails(&server, &["b", junk.to_str().unwrap(), "", ""], "junk.tar");
}

#[test]
fn hostile_tar_entries() {
    let server = NatsServer::start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cases: &[(&str, &[u8], &str)] = &[
        (
            "dotdot",
            &hostile_tar("../etc/passwd", tar::EntryType::Regular, None),
            "'..'",
        ),
        (
            "inner-dotdot",
            &hostile_tar("a/../../b", tar::EntryType::Regular, None),
            "'..'",
        ),
        (
            "absolute",
            &hostile_tar("/etc/passwd", tar::EntryType::Regular, None),
            "absolute",
        ),
        (
            "symlink-escape",
            &hostile_tar(
                "etc/x",
                tar::EntryType::Symlink,
                Some("../../../etc/shadow"),
            ),
            "escapes the image root",
        ),
        (
            "hardlink-escape",
            &hostile_tar("etc/x", tar::EntryType::Link, Some("../outside")),
            "hard link target",
        ),
        (
            "hardlink-absolute",
            &hostile_tar("etc/x", tar::EntryType::Link, Some("/etc/shadow")),
            "hard link target",
        ),
    ];
    for (name, bytes, expect) in cases {
        let path = dir.path().join(format!("{name}.tar"));
        std::fs::write(&path, bytes).unwrap();
        add_fails(&server, &[name, path.to_str().unwrap(), "", ""], expect);
    }
}

#[test]
fn bad_and_reused_names() {
    let server = NatsServer::start().unwrap();
    let t = tree();
    for bad in ["a b", "x..y", "star*", "trailing.", "a/../b"] {
        let err = imagetool(&server, &["add", bad, &t, "", ""]).one_line_error();
        assert!(err.contains("image name"), "{bad}: {err}");
    }
    imagetool(&server, &["add", "taken", &t, "", ""]).ok();
    let err = imagetool(&server, &["add", "taken", &t, "", ""]).one_line_error();
    assert!(err.contains("taken already exists"), "{err}");
    imagetool(&server, &["delete", "taken"]).ok();
    let err = imagetool(&server, &["add", "taken", &t, "", ""]).one_line_error();
    assert!(err.contains("taken was deleted"), "{err}");
    let err = imagetool(&server, &["show", "never"]).one_line_error();
    assert!(err.contains("image never does not exist"), "{err}");
    assert_eq!(
        imagetool(&server, &["list", "--all"]).ok(),
        "taken (deleted)\n"
    );
}

#[test]
fn nats_unreachable_fails_fast_and_names_the_server() {
    let port = dom_tests::free_port().unwrap();
    let url = format!("nats://127.0.0.1:{port}");
    let started = Instant::now();
    let run = imagetool_in(&examples(), &["--server", &url, "add", "x", "path", "", ""]);
    let err = run.one_line_error();
    assert!(started.elapsed() < Duration::from_secs(10));
    assert!(
        err.contains(&format!("cannot reach NATS at {url}")),
        "{err}"
    );
    let go_style = imagetool_in(
        &examples(),
        &[
            "-imageServerHostname=127.0.0.1",
            &format!("-imageServerPortNum={port}"),
            "list",
        ],
    )
    .one_line_error();
    assert!(
        go_style.contains(&format!("127.0.0.1:{port}")),
        "{go_style}"
    );
}

#[test]
fn corrupt_object_is_refused_by_get() {
    // Same length, other content: the hash tells; another length: the
    // size the manifest gives tells, before the content is read.
    for (tampered, says) in [
        (&b"the evil content"[..], "is corrupt"),
        (&b"tampered"[..], "holds 8 bytes where 16 were expected"),
    ] {
        let server = NatsServer::start().unwrap();
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "etc/file", b"the real content");
        imagetool(
            &server,
            &["add", "img", dir.path().to_str().unwrap(), "", ""],
        )
        .ok();
        // Overwrite the object with other content under the same name.
        let id = dom_model::ObjectId::of(b"the real content").to_hex();
        let rt = tokio::runtime::Runtime::new().unwrap();
        rt.block_on(async {
            let client = async_nats::connect(server.url()).await.unwrap();
            let js = async_nats::jetstream::new(client);
            let bucket = js.get_object_store("dom-objects").await.unwrap();
            bucket.put(id.as_str(), &mut &tampered[..]).await.unwrap();
        });
        let out = dir.path().join("out");
        let err = imagetool(&server, &["get", "img", out.to_str().unwrap()]).one_line_error();
        assert!(err.contains(says), "{err}");
        assert!(
            !out.join("etc/file").exists(),
            "a corrupt object is never written"
        );
    }
}

#[test]
fn a_file_that_is_no_archive_is_named_as_such() {
    let server = NatsServer::start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let text = write(dir.path(), "somefile", b"just some text, no tar\n");
    let long_text = write(dir.path(), "notes.tar", &b"0123456789".repeat(100));
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    std::io::Write::write_all(&mut gz, b"text squeezed, still no tar").unwrap();
    let gzip = write(dir.path(), "text.tar.gz", &gz.finish().unwrap());
    for (name, path) in [("f.0", text), ("f.1", long_text), ("f.2", gzip)] {
        let run = imagetool(&server, &["add", name, path.to_str().unwrap(), "", ""]);
        assert_eq!(run.code, 1, "{}", run.stderr);
        assert_eq!(
            run.one_line_error(),
            format!(
                "imagetool: {} is neither a directory nor a .tar or .tar.gz archive",
                path.display()
            )
        );
    }
    assert_eq!(imagetool(&server, &["list", "--all"]).ok(), "");
}

#[test]
fn get_into_an_existing_file_says_it_is_not_a_directory() {
    let server = NatsServer::start().unwrap();
    imagetool(&server, &["add", "img", &tree(), "", ""]).ok();
    let dir = tempfile::tempdir().unwrap();
    let file = write(dir.path(), "existing-file", b"keep me\n");
    let run = imagetool(&server, &["get", "img", file.to_str().unwrap()]);
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert_eq!(
        run.one_line_error(),
        format!(
            "imagetool: {} is not a directory; give a new or empty directory",
            file.display()
        )
    );
    assert_eq!(std::fs::read(&file).unwrap(), b"keep me\n");
}

#[test]
fn a_misspelt_go_style_flag_is_named_with_its_spelling() {
    let run = imagetool_in(
        &examples(),
        &["-imageServerHostName=", "add", "x", "path", "", ""],
    );
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert_eq!(
        run.one_line_error(),
        "imagetool: unknown flag -imageServerHostName (did you mean -imageServerHostname?)"
    );
}

#[test]
fn flags_clap_refuses_are_one_line_and_help_still_prints() {
    let run = imagetool_in(&examples(), &["-expiresIn=soon", "list"]);
    assert_eq!(run.code, 1, "{}", run.stderr);
    let line = run.one_line_error();
    assert!(
        line.starts_with("imagetool: invalid value 'soon' for '--expiresIn <DURATION>'"),
        "{line}"
    );
    let run = imagetool_in(&examples(), &["add", "x"]);
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert_eq!(
        run.one_line_error(),
        "imagetool: the following required arguments were not provided: \
         <SOURCE> <FILTERFILE> <TRIGGERSFILE>"
    );
    for flag in ["--help", "--version"] {
        let run = imagetool_in(&examples(), &[flag]);
        assert!(run.stdout.contains("imagetool"), "{flag}: {}", run.stdout);
        run.ok();
    }
}

#[test]
fn an_objects_location_it_cannot_use_is_one_line_and_publishes_nothing() {
    let server = NatsServer::start().unwrap();
    let t = tree();
    for (objects, expect) in [
        ("ftp://host/x", "use s3://BUCKET/PREFIX or file:///DIR"),
        ("s3:///prefix", "no bucket named; use s3://BUCKET/PREFIX"),
        (
            "file://relative/dir",
            "the directory must be an absolute path",
        ),
        ("bucket/prefix", "use s3://BUCKET/PREFIX or file:///DIR"),
    ] {
        let err =
            imagetool(&server, &["--objects", objects, "add", "i", &t, "", ""]).one_line_error();
        assert!(
            err.contains(expect) && err.contains("--objects"),
            "{objects}: {err}"
        );
    }
    assert_eq!(imagetool(&server, &["list", "--all"]).ok(), "");
}
