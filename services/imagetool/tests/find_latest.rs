//! `find-latest-image`: the newest live image under a plain string
//! prefix, by creation time, narrowed by tags, build commit and expiry.

use crate::common::*;
use crate::records::*;

/// Publishes a first-schema record of `name` made at `created`, edited.
fn image(
    server: &NatsServer,
    name: &str,
    created: &str,
    edit: impl FnOnce(&mut serde_json::Value),
) {
    let mut record = v1_record(name, created);
    edit(&mut record);
    if record.get("tags").is_some() || record.get("build_commit_id").is_some() {
        record["v"] = 3.into();
    }
    publish_raw(server, name, &record);
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// A server holding the images of a release stream, and others beside.
fn releases() -> NatsServer {
    let server = NatsServer::start().unwrap();
    imagetool(&server, &["list"]).ok();
    image(&server, "web/prod/1", "2026-12-01T00:00:00Z", |_| {});
    image(&server, "web/prod/2", "2026-12-02T00:00:00Z", |r| {
        r["tags"] = serde_json::json!({"stage": "prod", "team": "web"});
        r["build_commit_id"] = "c2".into();
    });
    // Deleted afterwards.
    image(&server, "web/prod/3", "2026-12-03T00:00:00Z", |r| {
        r["tags"] = serde_json::json!({"stage": "prod"});
    });
    // Expired.
    image(&server, "web/prod/4", "2026-12-04T00:00:00Z", |r| {
        r["expires"] = "2026-12-05T00:00:00Z".into();
        r["expires_unix"] = (now() - 10).into();
        r["tags"] = serde_json::json!({"stage": "prod"});
    });
    // Live, but expiring in an hour.
    image(&server, "web/prod/5", "2026-12-05T00:00:00Z", |r| {
        r["expires"] = "later".into();
        r["expires_unix"] = (now() + 3600).into();
    });
    // Made in the same second as web/prod/5, in another zone's time.
    image(&server, "web/prod/0", "2026-12-05T02:00:00+02:00", |_| {});
    // Newer, but not under web/prod/ as a directory.
    image(&server, "web/production/9", "2026-12-09T00:00:00Z", |_| {});
    image(&server, "db/prod/9", "2026-12-09T00:00:00Z", |_| {});
    imagetool(&server, &["delete", "web/prod/3"]).ok();
    server
}

fn latest(server: &NatsServer, args: &[&str]) -> String {
    let mut all = vec!["find-latest-image"];
    all.extend_from_slice(args);
    imagetool(server, &all).ok()
}

#[test]
fn the_newest_live_image_under_a_prefix_is_found() {
    let server = releases();
    // web/prod/0 and web/prod/5 were made at the same time: the name decides.
    assert_eq!(latest(&server, &["web/prod/"]), "web/prod/5\n");
    assert_eq!(
        latest(&server, &["-ignoreExpiring", "web/prod/"]),
        "web/prod/0\n"
    );
    assert_eq!(
        latest(&server, &["web/prod/", "--ignore-expiring"]),
        "web/prod/0\n"
    );
    // A plain string prefix, as the original's.
    assert_eq!(latest(&server, &["web/prod"]), "web/production/9\n");
    assert_eq!(latest(&server, &["/web/prod/"]), "web/prod/5\n");
    // Tags: the deleted and the expired ones carry it too, and are skipped.
    assert_eq!(
        latest(&server, &["web/", "-tagsToMatch", "stage=prod"]),
        "web/prod/2\n"
    );
    assert_eq!(
        latest(
            &server,
            &["web/", "--tag", "stage=prod", "--tag", "team=web"]
        ),
        "web/prod/2\n"
    );
    assert_eq!(
        latest(&server, &["web/", "--tags-to-match=team=web"]),
        "web/prod/2\n"
    );
    assert_eq!(
        latest(&server, &["web/", "-buildCommitId", "c2"]),
        "web/prod/2\n"
    );
    assert_eq!(
        latest(&server, &["web/", "--build-commit-id=c2"]),
        "web/prod/2\n"
    );
}

#[test]
fn no_match_is_exit_1_and_one_line() {
    let server = releases();
    for (args, expect) in [
        (&["web/staging/"][..], "imagetool: no live image named web/staging/…"),
        (
            &["web/", "-tagsToMatch", "stage=dev"][..],
            "imagetool: no live image named web/… with tags stage=dev",
        ),
        (
            &["web/prod/", "-buildCommitId", "c9"][..],
            "imagetool: no live image named web/prod/…, built from commit c9",
        ),
        (
            &["web/prod/", "-tagsToMatch", "stage=prod", "-ignoreExpiring", "-buildCommitId", "c3"][..],
            "imagetool: no live image named web/prod/… with tags stage=prod, built from commit c3, never expiring",
        ),
        (&["web/", "-tagsToMatch", "stage"][..], r#"imagetool: tag "stage" is not KEY=VALUE"#),
    ] {
        let mut all = vec!["find-latest-image"];
        all.extend_from_slice(args);
        let run = imagetool(&server, &all);
        assert_eq!(run.code, 1, "{args:?}");
        assert_eq!(run.one_line_error(), expect, "{args:?}");
    }
}

#[test]
fn an_image_added_to_expire_soon_is_found_until_it_expires() {
    let server = NatsServer::start().unwrap();
    let tree = examples().join("path");
    let tree = tree.to_str().unwrap();
    imagetool(&server, &["add", "app/1", tree, "", ""]).ok();
    // Made a second later, so that it is the newer.
    std::thread::sleep(std::time::Duration::from_millis(1100));
    imagetool(&server, &["-expiresIn", "2s", "add", "app/2", tree, "", ""]).ok();
    assert_eq!(latest(&server, &["app/"]), "app/2\n");
    assert_eq!(latest(&server, &["app/", "-ignoreExpiring"]), "app/1\n");
    std::thread::sleep(std::time::Duration::from_millis(2100));
    assert_eq!(latest(&server, &["app/"]), "app/1\n");
}
