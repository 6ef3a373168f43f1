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

/// The payload standing on `dom.ctl.<control>`, if any (empty: withdrawn).
pub async fn last_control(bus: &Bus, control: &str) -> Option<Vec<u8>> {
    bus.last_control(control)
        .await
        .unwrap()
        .map(|m| m.payload.to_vec())
}

/// The last sequence of a stream: unchanged when a command published
/// nothing on it.
pub async fn stream_sequence(bus: &Bus, stream: &str) -> u64 {
    let mut stream = bus.js.get_stream(stream).await.unwrap();
    stream.info().await.unwrap().state.last_sequence
}

/// An image record that expired in 2020.
pub fn expired(image: &str) -> dom_model::ImageRecord {
    dom_model::ImageRecord {
        expires: Some("2020-01-01T00:00:00Z".into()),
        expires_unix: Some(1_577_836_800),
        ..sparse(image)
    }
}

/// Adds image `image` and deletes it.
pub async fn deleted(bus: &Bus, image: &str) {
    bus.publish_image(&sparse(image)).await.unwrap();
    let tombstone = dom_model::Tombstone {
        v: 1,
        name: dom_model::ImageName::parse(image).unwrap(),
        deleted: true,
        deleted_at: "2026-11-30T09:00:00Z".into(),
        by: "bob@build1".into(),
    };
    bus.delete_image(&tombstone).await.unwrap();
}
