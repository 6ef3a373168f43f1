//! Helpers shared by domtool's tests: run the real binary against a
//! fixture nats-server, with a dominator running in-process.

use std::process::Command;
use std::time::Duration;

use dom_bus::Bus;
use dominator::{Dominator, Settings};

pub use dom_tests::fixtures::{
    normal_record as normal, planned_report as report, sparse_record as sparse,
};
pub use dom_tests::{connect, wait_desired, NatsServer, Run, DEADLINE};

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

pub async fn dominator(bus: &Bus) -> Dominator {
    let settings = Settings {
        debounce: Duration::from_millis(20),
        ..Settings::default()
    };
    Dominator::start(bus.clone(), settings, None).await.unwrap()
}
