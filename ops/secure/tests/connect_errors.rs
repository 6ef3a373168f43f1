//! What a user meets when connecting goes wrong, through the `domsetup`
//! binary (every tool connects the same way): one line naming the server
//! or the file and what to do, exit status 1, and no log line of the NATS
//! client's own before it.

use std::path::Path;
use std::process::Command;

use dom_tests::{repo_root, NatsServer, Run};

/// A secured fleet's files (CA, credentials, configuration), as
/// `ops/secure/domsecure init` writes them.
fn secured(dir: &Path) {
    let output = Command::new(repo_root().join("ops/secure/domsecure"))
        .arg("--dir")
        .arg(dir)
        .args(["init", "--monitor", "off"])
        .env("DOMSETUP", env!("CARGO_BIN_EXE_domsetup"))
        .output()
        .expect("domsecure runs");
    assert!(output.status.success(), "{output:?}");
}

fn domsetup(args: &[&str]) -> Run {
    Run::from(
        Command::new(env!("CARGO_BIN_EXE_domsetup"))
            .args(args)
            .env_remove("DOM_SERVER")
            .env_remove("DOM_NKEY")
            .env_remove("DOM_TLS_CA")
            .env_remove("RUST_LOG")
            .output()
            .expect("run domsetup"),
    )
}

#[track_caller]
fn refused(args: &[&str]) -> String {
    let run = domsetup(args);
    assert_eq!(run.code, 1, "{args:?}: {}", run.stderr);
    run.one_line_error()
}

#[test]
fn a_refused_credential_is_our_one_line_only() {
    let dir = tempfile::tempdir().unwrap();
    secured(dir.path());
    let server = NatsServer::start_with_config(&dir.path().join("nats.conf")).unwrap();
    // A new key the server was never told about.
    let stranger = dir.path().join("stranger.nk");
    let entry = domsetup(&["credential", "viewer", "--seed", stranger.to_str().unwrap()]);
    entry.ok();
    let url = server.tls_url();
    let ca = dir.path().join("ca/ca.pem");
    let line = refused(&[
        "streams",
        "--server",
        &url,
        "--tls-ca",
        ca.to_str().unwrap(),
        "--nkey",
        stranger.to_str().unwrap(),
    ]);
    assert!(
        line.starts_with(&format!(
            "domsetup: cannot reach NATS at {url}: the credential given was refused"
        )),
        "{line}"
    );
}

#[test]
fn a_tls_file_that_cannot_be_read_is_named() {
    let server = NatsServer::start().unwrap();
    assert_eq!(
        refused(&["streams", "--server", &server.url(), "--tls-ca", "/nope"]),
        "domsetup: cannot read TLS CA certificate /nope: No such file or directory (os error 2)"
    );
    let dir = tempfile::tempdir().unwrap();
    assert_eq!(
        refused(&[
            "streams",
            "--server",
            &server.url(),
            "--tls-ca",
            dir.path().to_str().unwrap(),
        ]),
        format!(
            "domsetup: cannot read TLS CA certificate {}: it is a directory",
            dir.path().display()
        )
    );
}

#[test]
fn tls_to_a_plain_text_server_says_the_server_did_not_speak_tls() {
    let dir = tempfile::tempdir().unwrap();
    secured(dir.path());
    let server = NatsServer::start().unwrap();
    let url = server.url();
    let ca = dir.path().join("ca/ca.pem");
    assert_eq!(
        refused(&[
            "streams",
            "--server",
            &url,
            "--tls-ca",
            ca.to_str().unwrap()
        ]),
        format!(
            "domsetup: cannot reach NATS at {url}: the server did not speak TLS: it listens \
             in plain text there; use its TLS port, or connect without the --tls-* flags"
        )
    );
}

#[test]
fn flags_clap_refuses_are_one_line_and_help_still_prints() {
    assert_eq!(
        refused(&["credential", "viewer"]),
        "domsetup: the following required arguments were not provided: --seed <FILE>"
    );
    for flag in ["--help", "--version"] {
        let run = domsetup(&[flag]);
        assert!(run.stdout.contains("domsetup"), "{flag}: {}", run.stdout);
        run.ok();
    }
}
