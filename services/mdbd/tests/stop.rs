//! The `mdbd` binary: SIGTERM, as systemd sends it, stops it cleanly; a
//! bad flag is one line and exit status 1.

use std::process::{Command, Stdio};

use dom_bus::{Bus, ConnectArgs, FleetKind};
use dom_tests::{eventually, terminate, NatsServer, Run};

fn mdbd_binary() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_mdbd"));
    command.env_remove("DOM_SERVER").env_remove("MDBD_FILE");
    command
}

#[tokio::test]
async fn sigterm_stops_it_cleanly() {
    let server = NatsServer::start().unwrap();
    let args = ConnectArgs {
        server: server.url(),
        ..ConnectArgs::default()
    };
    let bus = Bus::connect(&args, "mdbd-tests").await.unwrap();
    bus.ensure_streams().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("mdb.json");
    std::fs::write(
        &file,
        r#"[{"Hostname": "web1", "RequiredImage": "sparse.0"}]"#,
    )
    .unwrap();
    let mut child = mdbd_binary()
        .args(["--server", &server.url(), "--interval", "50ms", "--file"])
        .arg(&file)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Running: it publishes the file's machine.
    eventually("web1's record", || async {
        let records = bus.last_per_subject(FleetKind::Mdb).await.unwrap();
        records.iter().any(|m| m.name == "web1").then_some(())
    })
    .await;
    let status = terminate(&mut child);
    let stderr = std::io::read_to_string(child.stderr.take().unwrap()).unwrap();
    assert!(status.success(), "{status}; {stderr}");
    assert_eq!(stderr, "");
}

#[test]
fn a_missing_or_bad_flag_is_one_line() {
    let run = Run::from(mdbd_binary().output().unwrap());
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert_eq!(
        run.one_line_error(),
        "mdbd: the following required arguments were not provided: --file <PATH>"
    );
    let run = Run::from(
        mdbd_binary()
            .args(["--file", "x", "--interval", "soon"])
            .output()
            .unwrap(),
    );
    assert_eq!(run.code, 1, "{}", run.stderr);
    let line = run.one_line_error();
    assert!(
        line.starts_with("mdbd: invalid value 'soon' for '--interval <DURATION>'"),
        "{line}"
    );
}
