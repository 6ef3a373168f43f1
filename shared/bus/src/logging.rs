//! Logging for every tool and service: quiet by default (warnings and
//! errors only), `-v` for info, `-vv` for debugging; `RUST_LOG` overrides.
//! Logs go to stderr, with colours only when a person is watching.
//!
//! The NATS client's own connection logging is left out below `-vv`: a
//! refused credential or an unreachable server is already one line of
//! ours, naming the server and what to do, and the client's line before
//! it would only repeat it less clearly.

/// The logging flags every binary flattens into its command line.
#[derive(Clone, Copy, Debug, Default, clap::Args)]
pub struct LogArgs {
    /// More logging (-v: info, -vv: debug); RUST_LOG also works.
    #[arg(long, short, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,
}

impl LogArgs {
    /// Sets up logging as these flags say.
    pub fn init(&self) {
        init_logging(self.verbose);
    }
}

/// Sets up logging for a binary; `verbose` counts its `-v` flags.
pub fn init_logging(verbose: u8) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_filter(verbose)));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .try_init();
}

/// The filter for `verbose` `-v` flags when `RUST_LOG` is not set.
fn default_filter(verbose: u8) -> &'static str {
    match verbose {
        0 => "warn,async_nats::connector=off",
        1 => "info,async_nats::connector=off",
        _ => "debug",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_default_filter_parses() {
        for verbose in 0..3 {
            tracing_subscriber::EnvFilter::try_new(default_filter(verbose)).unwrap();
        }
    }
}
