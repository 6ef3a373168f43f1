//! What the tools print for people and scripts, through one writer that
//! ends the process quietly when the reader has gone (`domtool status |
//! head -1`), as command-line tools do, instead of panicking as
//! `println!` does on a closed pipe.
//!
//! [`outln!`](crate::outln) is `println!` with that difference.

use std::io::Write;

/// Writes one line to standard output. A closed pipe ends the process
/// with status 0: the reader took what it wanted. Any other failure to
/// write ends it with one line on stderr and status 1.
pub fn line(args: std::fmt::Arguments<'_>) {
    let mut out = std::io::stdout().lock();
    if let Err(e) = writeln!(out, "{args}").and_then(|_| out.flush()) {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            std::process::exit(0);
        }
        eprintln!("error: cannot write to standard output: {e}");
        std::process::exit(1);
    }
}

/// `println!` for tools: see [`crate::output`].
#[macro_export]
macro_rules! outln {
    () => {
        $crate::output::line(format_args!(""))
    };
    ($($arg:tt)*) => {
        $crate::output::line(format_args!($($arg)*))
    };
}
