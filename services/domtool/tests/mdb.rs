//! `domtool mdb`: set, get, remove, load and export records.

use crate::common::*;
use dom_model::mdb::parse_mdb_file;

async fn mdb_sequence(bus: &dom_bus::Bus) -> u64 {
    let mut stream = bus.js.get_stream(bus.subjects.mdb_stream()).await.unwrap();
    stream.info().await.unwrap().state.last_sequence
}

#[tokio::test]
async fn set_get_remove_and_list() {
    let server = NatsServer::start().unwrap();
    let bus = connect(&server).await;
    bus.publish_image(&sparse("sparse.0")).await.unwrap();
    bus.publish_image(&sparse("sparse.1")).await.unwrap();

    let error = domtool(&server, &["mdb", "set", "web1", "--required", "nosuch.0"])
        .await
        .one_line_error();
    assert!(error.contains("image nosuch.0 does not exist"), "{error}");
    let error = domtool(
        &server,
        &["mdb", "set", "bad@host", "--required", "sparse.0"],
    )
    .await
    .one_line_error();
    assert!(error.contains("invalid host"), "{error}");
    let error = domtool(&server, &["mdb", "get", "web1"])
        .await
        .one_line_error();
    assert!(error.contains("web1 is not in the MDB"), "{error}");

    domtool(
        &server,
        &[
            "mdb",
            "set",
            "web1",
            "--required",
            "sparse.0",
            "--planned",
            "sparse.1",
            "--tag",
            "Role=web",
        ],
    )
    .await
    .ok();
    let got: serde_json::Value =
        serde_json::from_str(&domtool(&server, &["mdb", "get", "web1"]).await.ok()).unwrap();
    assert_eq!(
        got,
        serde_json::json!({"Hostname": "web1", "RequiredImage": "sparse.0",
                           "PlannedImage": "sparse.1", "Tags": {"Role": "web"}})
    );
    // A new record keeps the tags.
    domtool(
        &server,
        &[
            "mdb",
            "set",
            "web1",
            "--required",
            "sparse.1",
            "--disable-updates",
        ],
    )
    .await
    .ok();
    let got: serde_json::Value =
        serde_json::from_str(&domtool(&server, &["mdb", "get", "web1"]).await.ok()).unwrap();
    assert_eq!(
        got,
        serde_json::json!({"Hostname": "web1", "RequiredImage": "sparse.1",
                           "DisableUpdates": true, "Tags": {"Role": "web"}})
    );
    domtool(
        &server,
        &["mdb", "set", "web2", "--required", "later.0", "--force"],
    )
    .await
    .ok();
    assert_eq!(domtool(&server, &["list-subs"]).await.ok(), "web1\nweb2\n");
    domtool(&server, &["mdb", "remove", "web2"]).await.ok();
    assert_eq!(domtool(&server, &["list-subs"]).await.ok(), "web1\n");
}

#[tokio::test]
async fn load_publishes_only_what_changed_and_export_reads_back() {
    let server = NatsServer::start().unwrap();
    let bus = connect(&server).await;
    bus.publish_image(&sparse("sparse.0")).await.unwrap();
    domtool(&server, &["mdb", "set", "web1", "--required", "sparse.0"])
        .await
        .ok();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("mdb.json");
    std::fs::write(
        &file,
        r#"[{"Hostname":"web1","RequiredImage":"sparse.0","IpAddress":"10.0.0.1"},
            {"Hostname":"web2","RequiredImage":"sparse.0"},
            {"Hostname":"web3"}]"#,
    )
    .unwrap();
    let before = mdb_sequence(&bus).await;
    let file_arg = file.to_str().unwrap();
    let out = domtool(&server, &["mdb", "load", file_arg]).await.ok();
    assert_eq!(out.trim(), "2 set, 0 removed, 1 unchanged");
    assert_eq!(mdb_sequence(&bus).await, before + 2);
    // Again: nothing to do.
    let out = domtool(&server, &["mdb", "load", file_arg]).await.ok();
    assert_eq!(out.trim(), "0 set, 0 removed, 3 unchanged");
    assert_eq!(mdb_sequence(&bus).await, before + 2);

    let exported = domtool(&server, &["mdb", "export"]).await.ok();
    let records = parse_mdb_file(exported.as_bytes()).unwrap();
    let hosts: Vec<&str> = records.iter().map(|r| r.hostname.as_str()).collect();
    assert_eq!(hosts, ["web1", "web2", "web3"]);

    // Machines the file leaves out are removed only with --replace.
    std::fs::write(&file, r#"[{"Hostname":"web2","RequiredImage":"sparse.0"}]"#).unwrap();
    let out = domtool(&server, &["mdb", "load", file_arg]).await.ok();
    assert_eq!(out.trim(), "0 set, 0 removed, 1 unchanged");
    let out = domtool(&server, &["mdb", "load", "--replace", file_arg])
        .await
        .ok();
    assert_eq!(out.trim(), "0 set, 2 removed, 1 unchanged");
    assert_eq!(domtool(&server, &["list-subs"]).await.ok(), "web2\n");

    std::fs::write(&file, r#"[{"Hostname":"web2"},{"Hostname":"web2"}]"#).unwrap();
    let error = domtool(&server, &["mdb", "load", file_arg])
        .await
        .one_line_error();
    assert!(error.contains("more than once"), "{error}");
}

#[tokio::test]
async fn an_unreachable_server_is_one_line() {
    let port = dom_tests::free_port().unwrap();
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_domtool"))
        .args(["--server", &format!("nats://127.0.0.1:{port}"), "status"])
        .env_remove("DOM_SERVER")
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("cannot reach NATS"), "{stderr}");
}

#[tokio::test]
async fn a_refused_record_leaves_the_previous_one_standing_for_every_command() {
    let server = NatsServer::start().unwrap();
    let bus = connect(&server).await;
    bus.publish_image(&sparse("sparse.0")).await.unwrap();
    domtool(&server, &["mdb", "set", "web6", "--required", "sparse.0"])
        .await
        .ok();
    // Anyone may publish on the subject; the dominator refuses this and
    // keeps web6 on its previous record, and so does every command.
    bus.publish_mdb("web6", br#"{"RequiredImage":5}"#.to_vec().into())
        .await
        .unwrap();

    let got: serde_json::Value =
        serde_json::from_str(&domtool(&server, &["mdb", "get", "web6"]).await.ok()).unwrap();
    assert_eq!(
        got,
        serde_json::json!({"Hostname": "web6", "RequiredImage": "sparse.0"})
    );
    assert_eq!(domtool(&server, &["list-subs"]).await.ok(), "web6\n");
    let status = domtool(&server, &["status"]).await.ok();
    assert!(!status.contains("not in the MDB"), "{status}");
    let row = status.lines().find(|l| l.starts_with("web6")).unwrap();
    assert!(row.contains("sparse.0"), "{status}");
    let exported = domtool(&server, &["mdb", "export"]).await.ok();
    let records = parse_mdb_file(exported.as_bytes()).unwrap();
    assert_eq!(records.len(), 1, "{exported}");
    assert_eq!(records[0].hostname, "web6");

    // Exporting and loading it back with --replace loses nothing.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("mdb.json");
    std::fs::write(&file, exported).unwrap();
    let out = domtool(
        &server,
        &["mdb", "load", "--replace", file.to_str().unwrap()],
    )
    .await
    .ok();
    assert_eq!(out.trim(), "0 set, 0 removed, 1 unchanged");
    assert_eq!(domtool(&server, &["list-subs"]).await.ok(), "web6\n");
}

#[tokio::test]
async fn a_reader_that_goes_away_ends_the_output_quietly() {
    let server = NatsServer::start().unwrap();
    let bus = connect(&server).await;
    bus.publish_image(&sparse("sparse.0")).await.unwrap();
    // More than a pipe holds (64 KiB), for each command.
    for i in 0..2000 {
        let host = format!("machine-{i:05}.rack-{:03}.west.example.com", i / 40);
        let record = format!(r#"{{"RequiredImage":"sparse.0","Tags":{{"n":"{i}"}}}}"#);
        bus.publish_mdb(&host, record.into_bytes().into())
            .await
            .unwrap();
    }
    for args in [&["status"][..], &["list-subs"], &["mdb", "export"]] {
        let command = domtool_command(&server, args);
        let (first, run) = tokio::task::spawn_blocking(move || Run::first_line_then_close(command))
            .await
            .unwrap();
        assert!(!first.is_empty(), "{args:?}");
        assert_eq!(run.code, 0, "{args:?}: {}", run.stderr);
        assert!(run.stderr.is_empty(), "{args:?}: {}", run.stderr);
    }
}
