//! mdbd: keeps the MDB on the bus in step with a Dominator `mdb.json`
//! file.
//!
//! Another program (an inventory export, a configuration manager) writes
//! the file, replacing it atomically by renaming a new one over it, as the
//! original's `mdbd` expects. mdbd looks at the file's metadata every
//! second and, when it changed, reads it and publishes only what differs
//! from what the MDB holds: a record for every machine added or changed, an
//! empty payload for every machine gone. At start "what the MDB holds" is
//! read from the bus, so a restart publishes nothing for an unchanged
//! file. A file that does not parse (half written, a duplicate host) is
//! logged and ignored, and nothing is published, until it is fixed.

pub mod cli;
pub mod watcher;

use std::future::Future;

use anyhow::Context;
use dom_bus::Bus;

pub use cli::Cli;
pub use watcher::{Progress, Watcher};

/// Runs mdbd as the command line says, until `shutdown` completes (the
/// binary passes [`dom_bus::shutdown::signalled`]).
pub async fn run(cli: Cli, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
    let bus = Bus::connect(&cli.connect, "mdbd").await?;
    bus.ensure_streams().await?;
    let watcher = Watcher::new(bus, cli.file.clone(), cli.interval)
        .await
        .context("reading the MDB")?;
    tokio::select! {
        () = watcher.run() => Ok(()),
        () = shutdown => Ok(()),
    }
}
