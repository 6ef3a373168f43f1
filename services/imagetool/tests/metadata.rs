//! Build metadata and tags: `add` with them, `show-metadata`, `list
//! --tag`, `tag`, and records of the first schema, which have none.

use crate::common::*;
use crate::records::*;

fn tree() -> String {
    examples().join("path").to_str().unwrap().to_string()
}

fn id_of(content: &[u8]) -> String {
    dom_model::ObjectId::of(content).to_hex()
}

/// `show-metadata`'s lines with the creation time taken out.
fn shown(server: &NatsServer, name: &str) -> Vec<String> {
    imagetool(server, &["show-metadata", name])
        .ok()
        .lines()
        .map(|line| match line.strip_prefix("created ") {
            Some(rest) => format!("created T {}", rest.split_once(' ').unwrap().1),
            None => line.to_string(),
        })
        .collect()
}

const NOTES: &[u8] = "Fixes the sshd restart loop.\nDéjà vu: none.\n".as_bytes();
const LOG: &[u8] = b"step 1 ok\nstep 2 ok\n";

fn add_with_metadata(server: &NatsServer, name: &str, dir: &std::path::Path) {
    let notes = write(dir, "notes.txt", NOTES);
    let log = write(dir, "build.log", LOG);
    let notes_flag = format!("-releaseNotes={}", notes.display());
    imagetool(
        server,
        &[
            "add",
            name,
            &tree(),
            "",
            "",
            "-tag",
            "stage=prod",
            "--tag",
            "team=web=blue",
            "-buildCommitId",
            "0123abc",
            "--build-git-url",
            "https://git.example/web.git",
            &notes_flag,
            "--build-log",
            log.to_str().unwrap(),
        ],
    )
    .ok();
}

#[test]
fn add_records_the_metadata_and_show_metadata_prints_it() {
    let server = NatsServer::start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let before = objects(&server).len();
    assert_eq!(before, 0);
    imagetool(&server, &["add", "plain.0", &tree(), "", ""]).ok();
    let plain_objects = objects(&server).len();
    add_with_metadata(&server, "web.0", dir.path());
    // The same tree again: only the notes and the log are new.
    assert_eq!(objects(&server).len(), plain_objects + 2);
    assert!(objects(&server).contains(&id_of(NOTES)));

    let record = record_json(&server, "web.0");
    assert_eq!(record["v"], 3, "{record}");
    assert_eq!(
        record["tags"],
        serde_json::json!({"stage": "prod", "team": "web=blue"})
    );
    assert_eq!(record["release_notes"], id_of(NOTES));
    assert_eq!(record["build_log"], id_of(LOG));
    let me = record["creator"].as_str().unwrap();
    assert_eq!(
        shown(&server, "web.0"),
        [
            "image web.0".to_string(),
            format!("created T by {me}"),
            "expires never".into(),
            "build commit 0123abc".into(),
            "build git url https://git.example/web.git".into(),
            format!("release notes {} ({} bytes)", id_of(NOTES), NOTES.len()),
            format!("build log {} ({} bytes)", id_of(LOG), LOG.len()),
            "tag stage=prod".into(),
            "tag team=web=blue".into(),
        ]
    );
    // The content round-trips, byte for byte.
    let notes = imagetool(&server, &["show-metadata", "web.0", "--release-notes"]).ok();
    assert_eq!(notes.as_bytes(), NOTES);
    let log = imagetool(&server, &["show-metadata", "web.0", "-buildLog"]).ok();
    assert_eq!(log.as_bytes(), LOG);
    // The original's get-build-log, to stdout and to a file.
    assert_eq!(
        imagetool(&server, &["get-build-log", "web.0"])
            .ok()
            .as_bytes(),
        LOG
    );
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("build.log");
    let out_arg = out.to_str().unwrap();
    imagetool(&server, &["get-build-log", "web.0", out_arg]).ok();
    assert_eq!(std::fs::read(&out).unwrap(), LOG);
    let err = imagetool(&server, &["get-build-log", "web.0", out_arg]).one_line_error();
    assert!(err.contains("--force"), "{err}");
    imagetool(&server, &["get-build-log", "web.0", out_arg, "--force"]).ok();
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    let json: serde_json::Value =
        serde_json::from_str(&imagetool(&server, &["show-metadata", "web.0", "--json"]).ok())
            .unwrap();
    assert_eq!(json["tags"]["team"], "web=blue");
    assert_eq!(json["build_commit_id"], "0123abc");
    assert_eq!(json["release_notes"]["id"], id_of(NOTES));
    assert_eq!(json["release_notes"]["bytes"], NOTES.len());
    assert_eq!(json["build_log"]["bytes"], LOG.len());
    assert_eq!(json["expires"], serde_json::Value::Null);
    // No image needs them less than its files: a collection keeps them.
    assert_eq!(
        imagetool(&server, &["list-unreferenced"]).ok(),
        "0 unreferenced objects, 0 B (0 bytes)\n"
    );

    // An image without metadata shows only when and by whom.
    assert_eq!(
        shown(&server, "plain.0"),
        [
            "image plain.0".to_string(),
            format!("created T by {me}"),
            "expires never".into()
        ]
    );
    assert_eq!(record_v(&server, "plain.0"), 1);
    let err = imagetool(&server, &["show-metadata", "plain.0", "--release-notes"]).one_line_error();
    assert!(err.contains("image plain.0 has no release notes"), "{err}");
}

fn record_v(server: &NatsServer, name: &str) -> u64 {
    record_json(server, name)["v"].as_u64().unwrap()
}

#[test]
fn list_by_tag_needs_every_tag_given() {
    let server = NatsServer::start().unwrap();
    let t = tree();
    for (name, tags) in [
        ("web.1", &["-tag", "stage=prod", "-tag", "team=web"][..]),
        ("web.2", &["-tag", "stage=qa", "-tag", "team=web"][..]),
        ("db.1", &["-tag", "stage=prod"][..]),
        ("gone.1", &["-tag", "stage=prod"][..]),
        ("plain.1", &[][..]),
    ] {
        let mut args = vec!["add", name, &t, "", ""];
        args.extend_from_slice(tags);
        imagetool(&server, &args).ok();
    }
    imagetool(&server, &["delete", "gone.1"]).ok();
    let list = |tags: &[&str]| {
        let mut args = vec!["list"];
        args.extend_from_slice(tags);
        imagetool(&server, &args).ok()
    };
    assert_eq!(list(&["--tag", "stage=prod"]), "db.1\nweb.1\n");
    assert_eq!(
        list(&["--tag", "stage=prod", "--tag", "team=web"]),
        "web.1\n"
    );
    assert_eq!(list(&["-tag", "team=web"]), "web.1\nweb.2\n");
    assert_eq!(list(&["--tag", "stage=dev"]), "");
    // The original's spelling.
    assert_eq!(
        list(&["-tagsToMatch", "stage=prod", "-tagsToMatch=team=web"]),
        "web.1\n"
    );
    assert_eq!(list(&["--all", "--tag", "stage=prod"]), "db.1\nweb.1\n");
    assert_eq!(list(&[]), "db.1\nplain.1\nweb.1\nweb.2\n");
    let err = imagetool(&server, &["list", "--tag", "stage"]).one_line_error();
    assert_eq!(err, r#"imagetool: tag "stage" is not KEY=VALUE"#);
}

#[test]
fn tag_publishes_one_more_record_with_only_the_tags_changed() {
    let server = NatsServer::start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    add_with_metadata(&server, "web.0", dir.path());
    let before = record_json(&server, "web.0");
    let messages = image_messages(&server);

    let out = imagetool(&server, &["tag", "web.0", "stage=live", "canary=yes"]).ok();
    assert_eq!(out, "web.0 tags: canary=yes stage=live team=web=blue\n");
    assert_eq!(image_messages(&server), messages + 1);
    let after = record_json(&server, "web.0");
    assert_eq!(
        after["tags"],
        serde_json::json!({"canary": "yes", "stage": "live", "team": "web=blue"})
    );
    // Everything else is as it was.
    let strip = |mut r: serde_json::Value| {
        r.as_object_mut().unwrap().remove("tags");
        r
    };
    assert_eq!(strip(after), strip(before.clone()));

    let out = imagetool(
        &server,
        &["tag", "web.0", "-delete", "canary", "--remove", "team"],
    )
    .ok();
    assert_eq!(out, "web.0 tags: stage=live\n");
    assert_eq!(image_messages(&server), messages + 2);
    assert_eq!(
        record_json(&server, "web.0")["manifest"],
        before["manifest"]
    );
    assert_eq!(
        imagetool(&server, &["list", "--tag", "stage=live"]).ok(),
        "web.0\n"
    );
    // A tag taken away from an image of the first schema leaves it there.
    imagetool(&server, &["add", "plain.0", &tree(), "", ""]).ok();
    imagetool(&server, &["tag", "plain.0", "k=v"]).ok();
    assert_eq!(record_v(&server, "plain.0"), 3);
    let out = imagetool(&server, &["tag", "plain.0", "-delete", "k"]).ok();
    assert_eq!(out, "plain.0 has no tags\n");
    assert_eq!(record_v(&server, "plain.0"), 1);
}

#[test]
fn bad_tags_and_images_are_one_line_and_change_nothing() {
    let server = kept_and_gone();
    let t = tree();
    imagetool(&server, &["-expiresIn=1s", "add", "brief.0", &t, "", ""]).ok();
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let messages = image_messages(&server);
    let stored = objects(&server);
    let dir = tempfile::tempdir().unwrap();
    let notes = write(dir.path(), "notes", b"n");
    for (args, expect) in [
        (
            &["tag", "kept", "stage"][..],
            r#"tag "stage" is not KEY=VALUE"#,
        ),
        (
            &["tag", "kept", "a b=c"][..],
            "tag key \"a b\" has a character",
        ),
        (
            &["tag", "kept", "a=1", "a=2"][..],
            "tag key \"a\" is given twice",
        ),
        (&["tag", "kept"][..], "nothing to change"),
        (
            &["tag", "kept", "a=1", "-delete", "a"][..],
            "both set and deleted",
        ),
        (&["tag", "gone", "a=1"][..], "image gone was deleted"),
        (
            &["tag", "never.0", "a=1"][..],
            "image never.0 does not exist",
        ),
        (&["tag", "brief.0", "a=1"][..], "image brief.0 has expired"),
        (
            &["add", "new.0", &t, "", "", "-tag", "x"][..],
            r#"tag "x" is not KEY=VALUE"#,
        ),
        (
            &["add", "new.0", &t, "", "", "-tag", "a=1", "-tag", "a=1"][..],
            "tag key \"a\" is given twice",
        ),
        (
            &[
                "add",
                "new.0",
                &t,
                "",
                "",
                "-releaseNotes",
                "/nonexistent/notes",
            ][..],
            "-releaseNotes: cannot read /nonexistent/notes",
        ),
        (
            &[
                "add",
                "kept",
                &t,
                "",
                "",
                "-releaseNotes",
                notes.to_str().unwrap(),
            ][..],
            "image kept already exists",
        ),
        (
            &["show-metadata", "never.0"][..],
            "image never.0 does not exist",
        ),
        (&["show-metadata", "gone"][..], "image gone was deleted"),
    ] {
        let err = imagetool(&server, args).one_line_error();
        assert!(err.contains(expect), "{args:?}: {err}");
    }
    assert_eq!(image_messages(&server), messages);
    assert_eq!(objects(&server), stored, "no object was stored");
    assert_eq!(listed(&server), ["kept"]);
}

#[test]
fn a_first_schema_record_lists_shows_and_copies() {
    let server = NatsServer::start().unwrap();
    imagetool(&server, &["add", "source.0", &tree(), "", ""]).ok();
    // The first release's record: none of the later fields.
    let mut old = v1_record("old.0", "2026-11-26T00:00:00Z");
    old["manifest"] = record_json(&server, "source.0")["manifest"].clone();
    publish_raw(&server, "old.0", &old);
    assert_eq!(listed(&server), ["old.0", "source.0"]);
    assert_eq!(
        imagetool(&server, &["show", "old.0"]).ok(),
        imagetool(&server, &["show", "source.0"]).ok()
    );
    assert_eq!(
        imagetool(&server, &["show-metadata", "old.0"]).ok(),
        "image old.0\ncreated 2026-11-26T00:00:00Z by builder@ci\nexpires never\n"
    );
    assert_eq!(imagetool(&server, &["list", "--tag", "a=1"]).ok(), "");
    imagetool(&server, &["copy", "old.0", "new.0"]).ok();
    let copied = record_json(&server, "new.0");
    assert_eq!(copied["v"], 1, "{copied}");
    assert_eq!(copied["manifest"], old["manifest"]);
    assert_eq!(
        imagetool(&server, &["show", "new.0"]).ok(),
        imagetool(&server, &["show", "old.0"]).ok()
    );
}
