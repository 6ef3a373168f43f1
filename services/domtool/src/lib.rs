//! domtool: the operators' tool for a fleet managed by the dominator.
//!
//! - [`mdb`]: reading and editing the machine database.
//! - [`fleet`]: the status table, the machine list and one machine's
//!   details, judged by the dominator's own policy on a snapshot of the
//!   streams.
//! - [`watch`]: the live stream of what happens, one line each.
//! - [`screen`]: the live status screen `watch` shows on a terminal.
//! - [`controls`]: the emergency stop and safety-shutoff clearances.
//! - [`images`]: refusing images that do not resolve before anything
//!   names them.
//! - [`pause`], [`subs`], [`default_image`]: the day-two controls:
//!   pausing one machine, the agents' settings, the default image.
//! - [`wait`]: waiting for machines to carry an image and be healthy.
//! - [`fast_update`]: moving one machine now, past its rollout's waves.
//! - [`rollout`]: an image's rollout, and resuming or aborting it.

pub mod cli;
pub mod controls;
pub mod default_image;
pub mod fast_update;
pub mod fleet;
pub mod images;
pub mod mdb;
pub mod pause;
pub mod rollout;
pub mod screen;
pub mod subs;
pub mod wait;
pub mod watch;

use std::process::ExitCode;

use dom_bus::Bus;

pub use cli::{Cli, Command, MdbCommand, RolloutCommand};

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
            force,
        } => controls::clear_safety_shutoff(&bus, &host, image.as_deref(), &reason, force).await,
        Command::Pause {
            host,
            duration,
            reason,
            force,
        } => pause::pause(&bus, &host, duration, &reason, force).await,
        Command::Resume { host } => pause::resume(&bus, &host).await,
        Command::ConfigureSubs {
            host,
            scan_speed_percent,
            fetch_rate,
            clear,
        } => {
            let change = subs::Change {
                host,
                scan_speed_percent,
                fetch_rate,
                clear,
            };
            subs::configure(&bus, change).await
        }
        Command::GetSubsConfiguration => subs::show(&bus).await,
        Command::SetDefaultImage { image, none, force } => {
            let image = if none { None } else { image };
            default_image::set(&bus, image.as_deref(), force).await
        }
        Command::GetDefaultImage => default_image::get(&bus).await,
        Command::Wait {
            hosts,
            image,
            timeout,
            ignore_earlier,
        } => wait::wait(&bus, &hosts, &image, timeout, ignore_earlier).await,
        Command::FastUpdate {
            host,
            image,
            timeout,
            no_wait,
            force,
        } => {
            let request = fast_update::Request {
                host,
                image,
                timeout,
                no_wait,
                force,
            };
            fast_update::fast_update(&bus, request).await
        }
        Command::Rollout(command) => rollout::run(&bus, command).await,
    }
}
