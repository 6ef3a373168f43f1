//! Bad input: each case fails with one clear line and a non-zero exit,
//! and publishes nothing.

mod common;

use std::time::{Duration, Instant};

use common::*;

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
