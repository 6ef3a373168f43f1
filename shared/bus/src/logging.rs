//! Logging for every tool and service: quiet by default (warnings and
//! errors only), `-v` for info, `-vv` for debugging; `RUST_LOG` overrides.
//! Logs go to stderr, with colours only when a person is watching.

/// Sets up logging for a binary; `verbose` counts its `-v` flags.
pub fn init_logging(verbose: u8) {
    let default = match verbose {
        0 => "warn",
        1 => "info",
        _ => "debug",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .try_init();
}
