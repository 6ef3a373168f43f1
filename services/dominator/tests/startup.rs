//! The `dominator` binary: a bad flag is one line and exit status 1
//! before anything starts; `--http ""` and `--http off` both serve
//! nothing; SIGTERM, as systemd sends it, stops it cleanly and frees its
//! lease.

use std::process::{Command, Stdio};

use crate::common::*;
use dom_tests::{terminate, Run};

fn dominator_binary() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_dominator"));
    command.env_remove("DOM_HTTP").env_remove("DOM_SERVER");
    command
}

#[test]
fn an_http_flag_that_is_no_address_is_one_line() {
    let run = Run::from(
        dominator_binary()
            .args(["--http", "nonsense"])
            .output()
            .unwrap(),
    );
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert_eq!(
        run.one_line_error(),
        "dominator: invalid value 'nonsense' for '--http <ADDR>': \
         not an address: give HOST:PORT, :PORT (every interface) or off"
    );
}

#[test]
fn help_and_version_print_and_exit_0() {
    for flag in ["--help", "--version"] {
        let run = Run::from(dominator_binary().arg(flag).output().unwrap());
        assert!(run.stdout.contains("dominator"), "{flag}: {}", run.stdout);
        run.ok();
    }
}

#[tokio::test]
async fn sigterm_stops_it_cleanly_whichever_way_http_is_off() {
    let server = NatsServer::start().unwrap();
    let bus = connect(&server).await;
    add_image(&bus, &sparse("sparse.0")).await;
    for (host, http) in [("web1", ""), ("web2", "off")] {
        set_mdb(&bus, host, "sparse.0").await;
        let mut child = dominator_binary()
            .args(["--server", &server.url(), "--http", http])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // Running: it publishes the machine's desired state.
        wait_allowed(&bus, host, "sparse.0").await;
        let status = terminate(&mut child);
        let stderr = std::io::read_to_string(child.stderr.take().unwrap()).unwrap();
        assert!(status.success(), "--http {http:?}: {status}; {stderr}");
        assert_eq!(stderr, "", "--http {http:?}");
        // It handed its lease on: a standby need not wait for it to
        // expire.
        assert_eq!(bus.lease_holder(dominator::herd::LEASE).await, None);
    }
}
