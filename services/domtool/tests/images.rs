//! Commands that name an image refuse one that is unknown, deleted or
//! expired, in one line naming the image and why, and publish nothing;
//! `--force` publishes anyway.

use crate::common::*;

struct Fixture {
    server: NatsServer,
    bus: dom_bus::Bus,
}

impl Fixture {
    async fn start() -> Self {
        let server = NatsServer::start().unwrap();
        let bus = connect(&server).await;
        bus.publish_image(&sparse("sparse.0")).await.unwrap();
        bus.publish_image(&expired("old.0")).await.unwrap();
        deleted(&bus, "gone.0").await;
        Self { server, bus }
    }

    /// The last sequences of the MDB and control streams.
    async fn sequences(&self) -> (u64, u64) {
        let subjects = &self.bus.subjects;
        (
            stream_sequence(&self.bus, &subjects.mdb_stream()).await,
            stream_sequence(&self.bus, &subjects.ctl_stream()).await,
        )
    }

    /// Runs `args`, which must be refused with a line containing
    /// `expected`, and then with `--force`, which must succeed.
    async fn refused_unless_forced(&self, args: &[&str], expected: &str) {
        let before = self.sequences().await;
        let error = domtool(&self.server, args).await.one_line_error();
        assert!(error.contains(expected), "{args:?}: {error}");
        assert_eq!(self.sequences().await, before, "{args:?} published");
        let forced: Vec<&str> = args.iter().copied().chain(["--force"]).collect();
        domtool(&self.server, &forced).await.ok();
        assert_ne!(
            self.sequences().await,
            before,
            "{forced:?} published nothing"
        );
    }
}

const EXPIRED: &str = "image old.0 expired at 2020-01-01T00:00:00Z; pick a live image (or --force)";
const DELETED: &str =
    "image gone.0 was deleted at 2026-11-30T09:00:00Z by bob@build1; pick a live image (or --force)";

#[tokio::test]
async fn mdb_set_refuses_deleted_and_expired_images() {
    let f = Fixture::start().await;
    f.refused_unless_forced(&["mdb", "set", "web1", "--required", "old.0"], EXPIRED)
        .await;
    f.refused_unless_forced(&["mdb", "set", "web2", "--required", "gone.0"], DELETED)
        .await;
    f.refused_unless_forced(
        &[
            "mdb",
            "set",
            "web3",
            "--required",
            "sparse.0",
            "--planned",
            "gone.0",
        ],
        DELETED,
    )
    .await;
}

#[tokio::test]
async fn mdb_load_checks_every_records_images() {
    let f = Fixture::start().await;
    let dir = tempfile::tempdir().unwrap();
    for (records, expected) in [
        (
            r#"[{"Hostname":"web1","RequiredImage":"sparse.0"},
                {"Hostname":"web2","RequiredImage":"old.0"}]"#,
            format!("web2: RequiredImage: {EXPIRED}"),
        ),
        (
            r#"[{"Hostname":"web1","RequiredImage":"sparse.0","PlannedImage":"gone.0"}]"#,
            format!("web1: PlannedImage: {DELETED}"),
        ),
        (
            r#"[{"Hostname":"web1","RequiredImage":"nosuch.0"}]"#,
            "web1: RequiredImage: image nosuch.0 does not exist".to_string(),
        ),
    ] {
        let file = dir.path().join("mdb.json");
        std::fs::write(&file, records).unwrap();
        f.refused_unless_forced(&["mdb", "load", file.to_str().unwrap()], &expected)
            .await;
    }
}

#[tokio::test]
async fn clear_safety_shutoff_checks_the_image_it_names() {
    let f = Fixture::start().await;
    domtool(&f.server, &["mdb", "set", "db1", "--required", "sparse.0"])
        .await
        .ok();
    f.refused_unless_forced(
        &["clear-safety-shutoff", "db1", "--image", "old.0"],
        EXPIRED,
    )
    .await;
    f.refused_unless_forced(
        &["clear-safety-shutoff", "db1", "--image", "gone.0"],
        DELETED,
    )
    .await;
    let out = domtool(
        &f.server,
        &["clear-safety-shutoff", "db1", "--image", "sparse.0"],
    )
    .await
    .ok();
    assert!(out.contains("cleared for one update to sparse.0"), "{out}");
}
