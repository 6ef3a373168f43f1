//! What the tools print for people and scripts, through one writer that
//! ends the process quietly when the reader has gone (`domtool status |
//! head -1`), as command-line tools do, instead of panicking as
//! `println!` does on a closed pipe.
//!
//! [`outln!`](crate::outln) is `println!` with that difference.

use std::io::{self, Write};

/// Standard output for what a tool prints through a writer (a listing, a
/// diff): a closed pipe ends the process with status 0, as for
/// [`line`]; other errors are returned.
pub fn stdout() -> Stdout {
    Stdout(io::stdout().lock())
}

/// See [`stdout`].
pub struct Stdout(io::StdoutLock<'static>);

impl Write for Stdout {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.write(buf).map_err(reader_gone)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.0.flush().map_err(reader_gone)
    }
}

/// Ends the process quietly if `e` says the reader has gone.
fn reader_gone(e: io::Error) -> io::Error {
    if e.kind() == io::ErrorKind::BrokenPipe {
        std::process::exit(0);
    }
    e
}

/// Writes one line to standard output. A closed pipe ends the process
/// with status 0: the reader took what it wanted. Any other failure to
/// write ends it with one line on stderr and status 1.
pub fn line(args: std::fmt::Arguments<'_>) {
    let mut out = stdout();
    if let Err(e) = writeln!(out, "{args}").and_then(|_| out.flush()) {
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
