//! The `subd` binary: flags, logging and niceness, then the agent.

use std::os::unix::process::CommandExt;
use std::process::ExitCode;
use std::time::Duration;

use subd::{Cli, Exit};

/// How long stopping may wait for background work.
const SHUTDOWN_LIMIT: Duration = Duration::from_secs(5);

fn main() -> ExitCode {
    let cli: Cli = dom_bus::cli::parse();
    cli.log.init();
    let config = match cli.config() {
        Ok(config) => config,
        Err(e) => {
            eprintln!("subd: {e:#}");
            return ExitCode::FAILURE;
        }
    };
    // Scanning must not compete with the machine's real work. Threads
    // inherit the niceness of the thread that starts them, so this comes
    // before the runtime and the scan threads exist.
    // SAFETY: setpriority on the calling process; no memory is involved.
    if unsafe { libc::setpriority(libc::PRIO_PROCESS, 0, cli.nice) } != 0 {
        tracing::warn!(nice = cli.nice, error = %std::io::Error::last_os_error(), "cannot lower the CPU priority");
    }
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("subd: cannot start: {e}");
            return ExitCode::FAILURE;
        }
    };
    let exit = runtime.block_on(async { subd::run(config, dom_bus::shutdown::signalled()).await });
    // Work still waiting on the bus is abandoned, not waited for.
    runtime.shutdown_timeout(SHUTDOWN_LIMIT);
    match exit {
        Ok(Exit::Stopped) => ExitCode::SUCCESS,
        Ok(Exit::Restart) => restart(),
        Err(e) => {
            eprintln!("subd: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Runs the (possibly updated) agent binary again in this process.
fn restart() -> ExitCode {
    let mut args = std::env::args_os();
    let program = std::env::current_exe()
        .ok()
        .or_else(|| args.next().map(Into::into));
    let Some(program) = program else {
        eprintln!("subd: cannot restart: no program path");
        return ExitCode::FAILURE;
    };
    let args: Vec<_> = std::env::args_os().skip(1).collect();
    tracing::info!("restarting after an update of the agent itself");
    let error = std::process::Command::new(&program).args(args).exec();
    eprintln!("subd: cannot restart {}: {error}", program.display());
    ExitCode::FAILURE
}
