//! domtool: the operators' tool for a fleet managed by the dominator.
//!
//! - [`mdb`]: reading and editing the machine database.
//! - [`fleet`]: the status table, the machine list and one machine's
//!   details, judged by the dominator's own policy on a snapshot of the
//!   streams.
//! - [`watch`]: the live stream of what happens, one line each.
//! - [`screen`]: the live status screen `watch` shows on a terminal.
//! - [`controls`]: the emergency stop and safety-shutoff clearances.

pub mod cli;
pub mod controls;
pub mod fleet;
pub mod mdb;
pub mod screen;
pub mod watch;

use std::process::ExitCode;

use dom_bus::Bus;

pub use cli::{Cli, Command, MdbCommand};

/// Runs one command.
pub async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let bus = Bus::connect(&cli.connect, "domtool").await?;
    bus.ensure_streams().await?;
    match cli.command {
        Command::Mdb(command) => mdb::run(&bus, command).await,
        Command::Status => fleet::status(&bus).await,
        Command::ListSubs => fleet::list_subs(&bus).await,
        Command::Show { host, events } => fleet::show(&bus, &host, events).await,
        Command::Watch { lines, count, once } => {
            let terminal = std::io::IsTerminal::is_terminal(&std::io::stdout());
            if once || (terminal && !lines && count.is_none()) {
                screen::screen(&bus, once).await
            } else {
                watch::watch(&bus, count).await
            }
        }
        Command::DisableUpdates { reason } => controls::set_updates(&bus, false, &reason).await,
        Command::EnableUpdates { reason } => controls::set_updates(&bus, true, &reason).await,
        Command::ClearSafetyShutoff {
            host,
            image,
            reason,
        } => controls::clear_safety_shutoff(&bus, &host, image.as_deref(), &reason).await,
    }
}
