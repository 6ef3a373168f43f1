//! Helpers shared by domtool's tests: run the real binary against a
//! fixture nats-server, with a dominator running in-process.

#![allow(dead_code)]

use std::future::Future;
use std::process::{Command, Output};
use std::time::Duration;

use dom_bus::{Bus, ConnectArgs};
use dom_model::{DesiredState, ImageName, ImageRecord, ObjectId, StateReport};
use dominator::{Dominator, Settings};

pub use dom_tests::NatsServer;

pub const DEADLINE: Duration = Duration::from_secs(20);

pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    fn from(output: Output) -> Self {
        Self {
            code: output.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }

    /// Asserts success and returns stdout.
    pub fn ok(self) -> String {
        assert_eq!(
            self.code, 0,
            "stdout: {}\nstderr: {}",
            self.stdout, self.stderr
        );
        self.stdout
    }

    /// Asserts a non-zero exit with one line on stderr, and returns it.
    pub fn one_line_error(self) -> String {
        assert_ne!(self.code, 0, "expected failure; stdout: {}", self.stdout);
        let lines: Vec<_> = self.stderr.lines().collect();
        assert_eq!(lines.len(), 1, "expected one line, got: {:?}", self.stderr);
        assert!(!self.stderr.contains("panicked"), "{}", self.stderr);
        lines[0].to_string()
    }
}

pub fn domtool_command(server: &NatsServer, args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_domtool"));
    command
        .args(["--server", &server.url()])
        .args(args)
        .env_remove("DOM_SERVER")
        .env_remove("RUST_LOG")
        .env("USER", "alice");
    command
}

/// Runs domtool against `server`, off the async runtime's threads.
pub async fn domtool(server: &NatsServer, args: &[&str]) -> Run {
    let mut command = domtool_command(server, args);
    tokio::task::spawn_blocking(move || Run::from(command.output().expect("run domtool")))
        .await
        .unwrap()
}

pub async fn connect(server: &NatsServer) -> Bus {
    let args = ConnectArgs {
        server: server.url(),
        ..ConnectArgs::default()
    };
    let bus = Bus::connect(&args, "domtool-tests").await.unwrap();
    bus.ensure_streams().await.unwrap();
    bus
}

pub async fn dominator(bus: &Bus) -> Dominator {
    let settings = Settings {
        debounce: Duration::from_millis(20),
        ..Settings::default()
    };
    Dominator::start(bus.clone(), settings, None).await.unwrap()
}

pub async fn eventually<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

pub fn sparse(image: &str) -> ImageRecord {
    ImageRecord {
        v: 1,
        name: ImageName::parse(image).unwrap(),
        manifest: ObjectId::of(image.as_bytes()),
        sparse: true,
        filter: None,
        triggers: vec![],
        files: 1,
        bytes: 10,
        inodes: 3,
        created: "2026-11-26T09:00:00Z".into(),
        creator: "root@build1".into(),
        expires: None,
        expires_unix: None,
    }
}

pub fn normal(image: &str, inodes: u64) -> ImageRecord {
    ImageRecord {
        sparse: false,
        filter: Some(vec!["/etc/hostname".into()]),
        inodes,
        ..sparse(image)
    }
}

/// A report of a machine with 1000 inodes that has planned against
/// `image`.
pub fn report(host: &str, image: &str, compliant: bool) -> StateReport {
    let mut report = StateReport::new(host);
    report.scan.inodes = Some(1000);
    report.desired_image = Some(image.into());
    report.would_delete = Some(if compliant { 0 } else { 5 });
    report.compliant = compliant;
    report.deviations = if compliant { 0 } else { 5 };
    if compliant {
        report.image = Some(image.into());
    }
    report
}

pub async fn wait_desired(
    bus: &Bus,
    host: &str,
    what: &str,
    check: impl Fn(&DesiredState) -> bool,
) -> DesiredState {
    eventually(&format!("{host}: {what}"), || async {
        bus.desired(host)
            .await
            .unwrap()
            .and_then(|m| m.state.ok())
            .filter(|d| check(d))
    })
    .await
}
