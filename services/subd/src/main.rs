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
    lower_priority(cli.nice);
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

/// Lowers the CPU priority to niceness `nice`, never raising it: started
/// lower already (systemd's `Nice=`, `nice -n 19 subd`), the agent keeps
/// that, so the unit and `--nice` do not undo each other.
///
/// Scanning must not compete with the machine's real work. Threads
/// inherit the niceness of the thread that starts them, so this comes
/// before the runtime and the scan threads exist.
fn lower_priority(nice: i32) {
    // For the calling process getpriority cannot fail (its error value,
    // -1, is also a niceness, and below every --nice).
    // SAFETY: getpriority on the calling process; no memory is involved.
    let current = unsafe { libc::getpriority(libc::PRIO_PROCESS, 0) };
    if current >= nice {
        return;
    }
    // SAFETY: setpriority on the calling process; no memory is involved.
    if unsafe { libc::setpriority(libc::PRIO_PROCESS, 0, nice) } != 0 {
        tracing::warn!(nice, error = %std::io::Error::last_os_error(), "cannot lower the CPU priority");
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
