//! `copy OLD NEW`: promoting an image under a new name uploads nothing
//! and keeps everything but the name, the time, the maker and the
//! expiry; refusals change nothing.

use crate::common::*;
use crate::records::*;

fn tree() -> String {
    examples().join("path").to_str().unwrap().to_string()
}

/// The image's commands whose output must not differ between OLD and NEW.
fn shows(server: &NatsServer, name: &str) -> Vec<String> {
    ["show", "show-filter", "show-triggers", "show-health-check"]
        .iter()
        .map(|command| imagetool(server, &[command, name]).ok())
        .collect()
}

#[test]
fn a_copy_uploads_nothing_and_shows_the_same() {
    let server = NatsServer::start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let notes = write(dir.path(), "notes", b"release 7\n");
    let ex = examples();
    imagetool(
        &server,
        &[
            "add",
            "web/qa/7",
            &tree(),
            ex.join("filter").to_str().unwrap(),
            ex.join("triggers").to_str().unwrap(),
            "--health-command",
            "true",
            "-tag",
            "stage=qa",
            "-tag",
            "team=web",
            "-buildCommitId",
            "c7",
            "-releaseNotes",
            notes.to_str().unwrap(),
        ],
    )
    .ok();
    let stored = objects(&server);
    let messages = image_messages(&server);
    let out = imagetool(
        &server,
        &[
            "-expiresIn",
            "1h",
            "copy",
            "web/qa/7",
            "web/prod/7",
            "-tag",
            "stage=prod",
        ],
    )
    .ok();
    // The filter left three of the tree's files in the image.
    assert_eq!(
        out,
        "copied web/qa/7 to web/prod/7: 3 files, 484 B, 0 objects uploaded\n"
    );
    assert_eq!(objects(&server), stored, "no object was uploaded");
    assert_eq!(image_messages(&server), messages + 1);
    assert_eq!(shows(&server, "web/prod/7"), shows(&server, "web/qa/7"));

    let (old, new) = (
        record_json(&server, "web/qa/7"),
        record_json(&server, "web/prod/7"),
    );
    for field in [
        "manifest",
        "sparse",
        "filter",
        "triggers",
        "health_check",
        "files",
        "bytes",
        "inodes",
        "build_commit_id",
        "release_notes",
    ] {
        assert_eq!(new[field], old[field], "{field}");
    }
    assert_eq!(new["v"], 3);
    assert_eq!(
        new["tags"],
        serde_json::json!({"stage": "prod", "team": "web"})
    );
    assert_eq!(
        old["tags"],
        serde_json::json!({"stage": "qa", "team": "web"})
    );
    assert!(new["expires_unix"].is_i64() && old.get("expires_unix").is_none());
    assert_eq!(
        imagetool(&server, &["show-metadata", "web/prod/7", "--release-notes"]).ok(),
        "release 7\n"
    );
    assert_eq!(
        imagetool(
            &server,
            &["find-latest-image", "web/", "-tag", "stage=prod"]
        )
        .ok(),
        "web/prod/7\n"
    );
}

#[test]
fn a_copy_may_replace_the_filter_and_triggers() {
    let server = NatsServer::start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let filter = write(dir.path(), "filter", b"/var/log/.*\n/tmp/.*\n");
    let triggers = write(
        dir.path(),
        "triggers",
        br#"[{"MatchLines": ["/etc/nginx/.*"], "Service": "nginx"}]"#,
    );
    imagetool(&server, &["add", "sparse.0", &tree(), "", ""]).ok();
    let stored = objects(&server);
    imagetool(
        &server,
        &[
            "copy",
            "sparse.0",
            "normal.0",
            "-filter",
            filter.to_str().unwrap(),
            "--triggers",
            triggers.to_str().unwrap(),
        ],
    )
    .ok();
    assert_eq!(objects(&server), stored);
    let new = record_json(&server, "normal.0");
    assert_eq!(new["sparse"], false);
    assert_eq!(
        new["manifest"],
        record_json(&server, "sparse.0")["manifest"]
    );
    assert_eq!(
        imagetool(&server, &["show-filter", "normal.0"]).ok(),
        "/var/log/.*\n/tmp/.*\n"
    );
    assert!(imagetool(&server, &["show-triggers", "normal.0"])
        .ok()
        .contains("\"nginx\""));
    assert_eq!(imagetool(&server, &["show-filter", "sparse.0"]).ok(), "");
}

#[test]
fn refused_copies_are_one_line_and_change_nothing() {
    let server = kept_and_gone();
    let t = tree();
    imagetool(&server, &["-expiresIn=1s", "add", "brief.0", &t, "", ""]).ok();
    imagetool(&server, &["add", "taken.0", &t, "", ""]).ok();
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let dir = tempfile::tempdir().unwrap();
    let bad_filter = write(dir.path(), "filter", b"/etc/(unclosed\n");
    let notes = write(dir.path(), "notes", b"n");
    let messages = image_messages(&server);
    let stored = objects(&server);
    for (args, expect) in [
        (
            &["copy", "never.0", "new.0"][..],
            "image never.0 does not exist",
        ),
        (&["copy", "gone", "new.0"][..], "image gone was deleted"),
        (
            &["copy", "brief.0", "new.0"][..],
            "image brief.0 has expired",
        ),
        (
            &["copy", "kept", "taken.0"][..],
            "image taken.0 already exists",
        ),
        (&["copy", "kept", "gone"][..], "image gone was deleted"),
        (
            &["copy", "kept", "bad name"][..],
            "has a character other than",
        ),
        (
            &[
                "copy",
                "kept",
                "new.0",
                "-filter",
                bad_filter.to_str().unwrap(),
            ][..],
            "filter file",
        ),
        (
            &["copy", "kept", "new.0", "-filter", "/nonexistent"][..],
            "cannot read filter file /nonexistent",
        ),
        (
            &["copy", "kept", "new.0", "-tag", "nope"][..],
            r#"tag "nope" is not KEY=VALUE"#,
        ),
        // A new release notes file, to a name that is taken: not stored.
        (
            &[
                "copy",
                "kept",
                "taken.0",
                "-releaseNotes",
                notes.to_str().unwrap(),
            ][..],
            "image taken.0 already exists",
        ),
    ] {
        let err = imagetool(&server, args).one_line_error();
        assert!(err.contains(expect), "{args:?}: {err}");
    }
    assert_eq!(image_messages(&server), messages);
    assert_eq!(objects(&server), stored);
    // With new release notes, that one object is uploaded.
    let out = imagetool(
        &server,
        &[
            "copy",
            "kept",
            "new.0",
            "-releaseNotes",
            notes.to_str().unwrap(),
        ],
    )
    .ok();
    assert!(out.ends_with(", 1 objects uploaded\n"), "{out}");
    assert_eq!(objects(&server).len(), stored.len() + 1);
}

#[test]
fn the_original_s_order_new_then_old_copies_too() {
    let server = kept_and_gone();
    let stored = objects(&server);
    let out = imagetool(&server, &["copy", "promoted.0", "kept"]).ok();
    assert!(out.contains("promoted.0"), "{out}");
    assert_eq!(shows(&server, "promoted.0"), shows(&server, "kept"));
    assert_eq!(objects(&server), stored);
    // Either way round, a name in use is never overwritten.
    let err = imagetool(&server, &["copy", "promoted.0", "kept"]).one_line_error();
    assert!(err.contains("already exists"), "{err}");
}
