//! The `mdbd` binary: SIGTERM, as systemd sends it, stops it cleanly, also
//! in the middle of publishing a large file, and a restart publishes what
//! the stopped one had not, and nothing else; a bad flag is one line and
//! exit status 1.

use std::process::{Child, Command, Stdio};

use dom_bus::{Bus, ConnectArgs, FleetKind};
use dom_model::MdbRecord;
use dom_tests::{eventually, terminate, terminate_timed, NatsServer, Run, SIGTERM_LIMIT};

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

/// Machines in the large file: enough that publishing them takes a while.
const MACHINES: usize = 3000;

fn spawn(server: &NatsServer, file: &std::path::Path) -> Child {
    mdbd_binary()
        .args(["--server", &server.url(), "--interval", "50ms", "--file"])
        .arg(file)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// How many machines the MDB on the bus holds on `image`, and the MDB
/// stream's last sequence.
async fn on_image(bus: &Bus, image: &str) -> (usize, u64) {
    let messages = bus.last_per_subject(FleetKind::Mdb).await.unwrap();
    let count = messages
        .iter()
        .filter(|m| {
            MdbRecord::decode(&m.name, &m.payload)
                .unwrap()
                .and_then(|r| r.required_image)
                .is_some_and(|i| i.as_str() == image)
        })
        .count();
    let mut stream = bus.js.get_stream(bus.subjects.mdb_stream()).await.unwrap();
    (count, stream.info().await.unwrap().state.last_sequence)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_mid_publish_loses_nothing_and_repeats_nothing() {
    let server = NatsServer::start().unwrap();
    let args = ConnectArgs {
        server: server.url(),
        ..ConnectArgs::default()
    };
    let bus = Bus::connect(&args, "mdbd-tests").await.unwrap();
    bus.ensure_streams().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("mdb.json");
    let records: Vec<String> = (0..MACHINES)
        .map(|i| format!(r#"{{"Hostname": "m{i:04}", "RequiredImage": "big.0"}}"#))
        .collect();
    std::fs::write(&file, format!("[{}]", records.join(",\n"))).unwrap();

    // Stopped once the first records are out, while it publishes the rest.
    let mut first = spawn(&server, &file);
    eventually("a first record", || async {
        (on_image(&bus, "big.0").await.0 > 0).then_some(())
    })
    .await;
    let (status, took) = terminate_timed(&mut first);
    let stderr = std::io::read_to_string(first.stderr.take().unwrap()).unwrap();
    assert!(status.success(), "{status}; {stderr}");
    assert!(took < SIGTERM_LIMIT, "took {took:?} to stop");
    assert_eq!(stderr, "");
    let (published, cut) = on_image(&bus, "big.0").await;
    eprintln!("stopped with {published} of {MACHINES} records published");

    // The next one publishes the rest, once each.
    let mut second = spawn(&server, &file);
    eventually("every record", || async {
        (on_image(&bus, "big.0").await.0 == MACHINES).then_some(())
    })
    .await;
    let status = terminate(&mut second);
    assert!(status.success(), "{status}");
    let (_, last) = on_image(&bus, "big.0").await;
    assert_eq!(
        last - cut,
        (MACHINES - published) as u64,
        "one record for each machine not yet published, no more"
    );
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
