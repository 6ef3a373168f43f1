//! Running the service and reboot commands the triggers call for.
//!
//! The service command is `service` by default, run as
//! `service NAME stop|start|reload`; any other command line can take its
//! place (`--service-command "/usr/local/bin/svc --quiet"`), so tests can
//! record the calls and sites can use their own init system's tool. The
//! reboot command (`reboot` by default) is run with no arguments.
//!
//! Commands run to completion and block; callers on an async runtime run
//! them on a blocking thread. Output goes to an unnamed temporary file, not
//! a pipe, so a daemon started by the command that keeps its output open
//! cannot hold the agent up. A command that runs longer than its timeout
//! is killed.

use std::fmt;
use std::io::{Read, Seek};
use std::os::unix::process::ExitStatusExt;
use std::process::{Command, Stdio};
use std::str::FromStr;
use std::sync::mpsc;
use std::time::Duration;

use thiserror::Error;

/// How long a command may run by default before it is killed.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(300);
/// Most characters of a failing command's output kept in its error.
const OUTPUT_TAIL: usize = 200;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum CommandError {
    #[error("the command line is empty")]
    Empty,
    #[error("the command line {0:?} has an unclosed quote")]
    Quote(String),
}

/// What to do to a service.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ServiceAction {
    Stop,
    Start,
    Reload,
}

impl ServiceAction {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Stop => "stop",
            Self::Start => "start",
            Self::Reload => "reload",
        }
    }
}

impl fmt::Display for ServiceAction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A program and its leading arguments, split from one command line.
#[derive(Clone, Debug, PartialEq, Eq)]
struct CommandLine {
    program: String,
    args: Vec<String>,
    timeout: Duration,
}

impl CommandLine {
    fn parse(line: &str) -> Result<Self, CommandError> {
        let mut words = split_words(line)?.into_iter();
        let program = words.next().ok_or(CommandError::Empty)?;
        Ok(Self {
            program,
            args: words.collect(),
            timeout: DEFAULT_TIMEOUT,
        })
    }

    /// Runs the command with `extra` arguments; `Err` holds one line: why
    /// it failed and the end of what it printed.
    fn run(&self, extra: &[&str]) -> Result<(), String> {
        let mut output = tempfile::tempfile().map_err(|e| format!("cannot run: {e}"))?;
        let stderr = output.try_clone().map_err(|e| format!("cannot run: {e}"))?;
        let stdout = output.try_clone().map_err(|e| format!("cannot run: {e}"))?;
        let mut child = Command::new(&self.program)
            .args(&self.args)
            .args(extra)
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(stderr)
            .spawn()
            .map_err(|e| format!("cannot run {}: {e}", self.program))?;
        let pid = child.id() as libc::pid_t;
        let (done, finished) = mpsc::channel::<()>();
        let timeout = self.timeout;
        let watchdog = std::thread::spawn(move || {
            if finished.recv_timeout(timeout) == Err(mpsc::RecvTimeoutError::Timeout) {
                // SAFETY: plain kill(2) of our own child, not yet reaped.
                unsafe { libc::kill(pid, libc::SIGKILL) };
                return true;
            }
            false
        });
        let status = child.wait();
        let _ = done.send(());
        let timed_out = watchdog.join().unwrap_or(false);
        let status = status.map_err(|e| format!("waiting for {}: {e}", self.program))?;
        if timed_out {
            return Err(format!("timed out after {timeout:?}"));
        }
        if status.success() {
            return Ok(());
        }
        let mut text = String::new();
        let _ = output.rewind();
        let _ = output.read_to_string(&mut text);
        let status = match (status.code(), status.signal()) {
            (Some(code), _) => format!("exit status {code}"),
            (None, Some(signal)) => format!("killed by signal {signal}"),
            (None, None) => status.to_string(),
        };
        Err(match tail(&text) {
            Some(tail) => format!("{status}: {tail}"),
            None => status,
        })
    }
}

impl fmt::Display for CommandLine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.program)?;
        for arg in &self.args {
            write!(f, " {arg}")?;
        }
        Ok(())
    }
}

/// The last line of a command's output, shortened to fit in a report.
fn tail(text: &str) -> Option<String> {
    let line = text.lines().map(str::trim).rfind(|l| !l.is_empty())?;
    let chars = line.chars().count();
    Some(if chars > OUTPUT_TAIL {
        let kept: String = line.chars().skip(chars - OUTPUT_TAIL).collect();
        format!("...{kept}")
    } else {
        line.to_string()
    })
}

/// Splits a command line into words the way a shell would for simple
/// cases: whitespace separates, single and double quotes group, a
/// backslash escapes the next character (outside single quotes).
fn split_words(line: &str) -> Result<Vec<String>, CommandError> {
    let mut words = Vec::new();
    let mut word: Option<String> = None;
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            c if c.is_whitespace() => {
                if let Some(w) = word.take() {
                    words.push(w);
                }
            }
            '\'' => {
                let w = word.get_or_insert_with(String::new);
                loop {
                    match chars.next() {
                        Some('\'') => break,
                        Some(c) => w.push(c),
                        None => return Err(CommandError::Quote(line.into())),
                    }
                }
            }
            '"' => {
                let w = word.get_or_insert_with(String::new);
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('\\') => match chars.next() {
                            Some(c) => w.push(c),
                            None => return Err(CommandError::Quote(line.into())),
                        },
                        Some(c) => w.push(c),
                        None => return Err(CommandError::Quote(line.into())),
                    }
                }
            }
            '\\' => {
                if let Some(c) = chars.next() {
                    word.get_or_insert_with(String::new).push(c);
                }
            }
            c => word.get_or_insert_with(String::new).push(c),
        }
    }
    words.extend(word);
    Ok(words)
}

/// The command that stops, starts and reloads services: run as
/// `COMMAND NAME ACTION`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServiceCommand(CommandLine);

impl ServiceCommand {
    /// The default, the system's `service` tool.
    pub const DEFAULT: &'static str = "service";

    /// Parses a command line: a program and optional leading arguments.
    pub fn parse(line: &str) -> Result<Self, CommandError> {
        CommandLine::parse(line).map(Self)
    }

    /// The same command, killed when it runs longer than `timeout`.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.0.timeout = timeout;
        self
    }

    /// Runs `COMMAND service action`. `Err` is one line, such as
    /// `exit status 1: Job for sshd.service failed`.
    pub fn run(&self, service: &str, action: ServiceAction) -> Result<(), String> {
        self.0.run(&[service, action.as_str()])
    }
}

impl Default for ServiceCommand {
    fn default() -> Self {
        Self::parse(Self::DEFAULT).expect("the default parses")
    }
}

impl FromStr for ServiceCommand {
    type Err = CommandError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl fmt::Display for ServiceCommand {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// The command that reboots the machine, run with no further arguments.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RebootCommand(CommandLine);

impl RebootCommand {
    /// The default, the system's `reboot` tool.
    pub const DEFAULT: &'static str = "reboot";

    pub fn parse(line: &str) -> Result<Self, CommandError> {
        CommandLine::parse(line).map(Self)
    }

    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.0.timeout = timeout;
        self
    }

    /// Runs the command; `Err` is one line.
    pub fn run(&self) -> Result<(), String> {
        self.0.run(&[])
    }
}

impl Default for RebootCommand {
    fn default() -> Self {
        Self::parse(Self::DEFAULT).expect("the default parses")
    }
}

impl FromStr for RebootCommand {
    type Err = CommandError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl fmt::Display for RebootCommand {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_like_a_shell() {
        assert_eq!(split_words("service").unwrap(), ["service"]);
        assert_eq!(
            split_words("  /bin/svc  --quiet 'a b' \"c \\\"d\\\"\" e\\ f ").unwrap(),
            ["/bin/svc", "--quiet", "a b", "c \"d\"", "e f"]
        );
        assert_eq!(split_words("x ''").unwrap(), ["x", ""]);
        assert_eq!(
            ServiceCommand::parse("  "),
            Err(CommandError::Empty),
            "empty"
        );
        assert!(matches!(
            ServiceCommand::parse("svc 'open"),
            Err(CommandError::Quote(_))
        ));
    }

    #[test]
    fn runs_with_name_and_action() {
        let cmd = ServiceCommand::parse("sh -c 'test \"$0 $1\" = \"sshd start\"'").unwrap();
        assert_eq!(cmd.run("sshd", ServiceAction::Start), Ok(()));
        let err = cmd.run("sshd", ServiceAction::Stop).unwrap_err();
        assert_eq!(err, "exit status 1");
    }

    #[test]
    fn failure_carries_the_end_of_the_output() {
        let cmd =
            ServiceCommand::parse("sh -c 'echo starting; echo \"$0 failed\" >&2; exit 3'").unwrap();
        let err = cmd.run("sshd", ServiceAction::Start).unwrap_err();
        assert_eq!(err, "exit status 3: sshd failed");
        let missing = RebootCommand::parse("/nonexistent/reboot").unwrap();
        assert!(missing
            .run()
            .unwrap_err()
            .starts_with("cannot run /nonexistent/reboot"));
    }

    #[test]
    fn a_hanging_command_is_killed() {
        let cmd = RebootCommand::parse("sleep 30")
            .unwrap()
            .with_timeout(Duration::from_millis(100));
        let started = std::time::Instant::now();
        assert_eq!(cmd.run().unwrap_err(), "timed out after 100ms");
        assert!(started.elapsed() < Duration::from_secs(10));
    }

    #[test]
    fn a_daemon_keeping_output_open_does_not_hold_us() {
        let cmd = ServiceCommand::parse("sh -c 'sleep 30 & echo started'").unwrap();
        let started = std::time::Instant::now();
        assert_eq!(cmd.run("x", ServiceAction::Start), Ok(()));
        assert!(started.elapsed() < Duration::from_secs(10));
    }
}
