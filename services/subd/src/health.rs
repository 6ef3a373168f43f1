//! The health check after an update: is the machine working on its new
//! image? The agent's `--health-command` and the image's own check (from
//! its record, carried by the desired state) each run with `sh -c` once
//! the update's triggers have started their services, and are tried again
//! every `--health-interval` until they pass or their time is up. Both
//! must pass.
//!
//! The check runs as a task of its own, so scanning and reporting go on
//! meanwhile; the report says `checking` until it ends. Its result is kept
//! with what the machine carries (`applied.json`), so a restarted agent
//! still reports an unhealthy machine as unhealthy, and runs a check it
//! was running again. A check for an image the machine is no longer told
//! to carry is dropped.
//!
//! Each try runs in a process group of its own; a try still running at
//! the deadline is killed with its whole group, and the result is
//! `timed_out`. A failing check's message is its command's last
//! non-empty line of output (stdout and stderr together, as written).

use std::io::Read;
use std::os::fd::{FromRawFd, OwnedFd};
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use dom_bus::stamp::now_rfc3339;
use dom_model::report::{Health, HealthState};
use dom_model::text::bounded;
use dom_model::Event;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::agent::Core;
use crate::report::millis;

/// The most of a try's output kept to find its last line.
const OUTPUT_KEPT: usize = 64 << 10;
/// How long the output of a finished try may take to end (a process that
/// left the group may hold the pipe).
const OUTPUT_GRACE: Duration = Duration::from_secs(1);

/// One command to check with, and how long it may keep failing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Check {
    pub command: String,
    pub timeout: Duration,
}

/// Everything a health check of one image needs.
#[derive(Clone, Debug)]
pub struct Checks {
    /// Run in this order; each must pass.
    pub checks: Vec<Check>,
    /// Pause between tries.
    pub interval: Duration,
    /// `DOM_HOST`, `DOM_IMAGE`, `DOM_ROOT`.
    pub env: Vec<(&'static str, String)>,
}

impl Checks {
    /// Runs every check; the first that fails decides the result.
    pub async fn run(&self, image: &str) -> Health {
        let (started, started_at) = (Instant::now(), now_rfc3339());
        let mut health = Health {
            image: image.to_string(),
            state: HealthState::Healthy,
            message: String::new(),
            started: started_at,
            attempts: 0,
            duration_ms: 0,
        };
        for check in &self.checks {
            let (state, message, attempts) = self.run_one(check).await;
            health.attempts += attempts;
            health.state = state;
            health.message = message;
            if state != HealthState::Healthy {
                break;
            }
        }
        if health.state == HealthState::Healthy {
            health.message = match self.checks.len() {
                0 => "no health check".into(),
                1 => "the health check passed".into(),
                n => format!("{n} health checks passed"),
            };
        }
        health.duration_ms = millis(started.elapsed());
        health
    }

    /// Tries `check` until it passes or its time is up.
    async fn run_one(&self, check: &Check) -> (HealthState, String, u32) {
        let deadline = Instant::now() + check.timeout;
        let mut attempts = 0;
        loop {
            attempts += 1;
            let left = deadline.saturating_duration_since(Instant::now());
            match try_once(&check.command, &self.env, left).await {
                Try::Passed => return (HealthState::Healthy, String::new(), attempts),
                Try::TimedOut(line) => {
                    let message = line.unwrap_or_else(|| {
                        format!(
                            "still running after {}",
                            humantime::format_duration(check.timeout)
                        )
                    });
                    return (HealthState::TimedOut, message, attempts);
                }
                Try::Failed(line) => {
                    if Instant::now() + self.interval >= deadline {
                        return (HealthState::Unhealthy, line, attempts);
                    }
                    tracing::debug!(command = %check.command, attempts, "health check failed: {line}");
                }
            }
            tokio::time::sleep(self.interval).await;
        }
    }
}

/// How one try went; the lines are the command's last line of output.
enum Try {
    Passed,
    Failed(String),
    TimedOut(Option<String>),
}

/// Runs `command` once, for at most `limit`.
async fn try_once(command: &str, env: &[(&'static str, String)], limit: Duration) -> Try {
    let (read, write) = match pipe() {
        Ok(ends) => ends,
        Err(e) => return Try::Failed(format!("cannot run the health check: {e}")),
    };
    let mut child = {
        let stderr = match write.try_clone() {
            Ok(fd) => fd,
            Err(e) => return Try::Failed(format!("cannot run the health check: {e}")),
        };
        let mut cmd = tokio::process::Command::new("sh");
        cmd.arg("-c")
            .arg(command)
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
            .stdin(Stdio::null())
            .stdout(Stdio::from(write))
            .stderr(Stdio::from(stderr))
            .process_group(0)
            .kill_on_drop(true);
        // The command (and the pipe's write ends it holds) is dropped at
        // the end of this block, so the output ends when the group does.
        match cmd.spawn() {
            Ok(child) => child,
            Err(e) => return Try::Failed(format!("cannot run sh: {e}")),
        }
    };
    let group = Group(child.id());
    let output = tokio::task::spawn_blocking(move || read_tail(read));
    let waited = tokio::time::timeout(limit, child.wait()).await;
    // Whatever the command left running goes with it.
    drop(group);
    let _ = child.wait().await;
    let line = match tokio::time::timeout(OUTPUT_GRACE, output).await {
        Ok(Ok(tail)) => last_line(&tail),
        _ => None,
    };
    match waited {
        Err(_) => Try::TimedOut(line),
        Ok(Ok(status)) if status.success() => Try::Passed,
        Ok(Ok(status)) => {
            Try::Failed(line.unwrap_or_else(|| format!("the command failed ({status})")))
        }
        Ok(Err(e)) => Try::Failed(format!("cannot wait for the health check: {e}")),
    }
}

/// A try's process group, killed when this is dropped.
struct Group(Option<u32>);

impl Drop for Group {
    fn drop(&mut self) {
        if let Some(pid) = self.0.and_then(|p| i32::try_from(p).ok()) {
            // SAFETY: kill has no memory-safety preconditions; a negative
            // pid names the group the try was started in.
            unsafe {
                libc::kill(-pid, libc::SIGKILL);
            }
        }
    }
}

/// A pipe, both ends closed on exec.
fn pipe() -> std::io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0; 2];
    // SAFETY: `fds` has room for the two descriptors pipe2 writes.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: pipe2 succeeded: both are open descriptors owned by no one
    // else.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// The last [`OUTPUT_KEPT`] bytes read from `fd` until it ends.
fn read_tail(fd: OwnedFd) -> Vec<u8> {
    let mut file = std::fs::File::from(fd);
    let mut tail = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        match file.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                tail.extend_from_slice(&buf[..n]);
                if tail.len() > 2 * OUTPUT_KEPT {
                    tail.drain(..tail.len() - OUTPUT_KEPT);
                }
            }
        }
    }
    tail
}

/// The last line of `output` that is not blank, trimmed and bounded.
fn last_line(output: &[u8]) -> Option<String> {
    String::from_utf8_lossy(output)
        .lines()
        .rev()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .map(bounded)
}

/// The `health` event for a check that ended.
pub fn health_event(host: &str, health: &Health) -> Event {
    let image = &health.image;
    let message = match health.state {
        HealthState::Healthy => format!("healthy on {image}: {}", health.message),
        HealthState::Unhealthy => format!("unhealthy on {image}: {}", health.message),
        HealthState::TimedOut => {
            format!("health check on {image} timed out: {}", health.message)
        }
        HealthState::Checking => format!("checking health on {image}"),
    };
    Event::new(host, Event::HEALTH, &now_rfc3339(), message)
        .with_image(image)
        .with_details(serde_json::json!({
            "state": health.state,
            "attempts": health.attempts,
            "duration_ms": health.duration_ms,
            "message": health.message,
        }))
}

/// The check under way, if any.
#[derive(Default)]
pub(crate) struct Checking {
    /// The image checked, the run's number and its task.
    running: Option<(String, u64, JoinHandle<()>)>,
    runs: u64,
}

/// A check's result, sent to the agent's loop.
pub(crate) struct Checked {
    run: u64,
    health: Health,
}

impl Drop for Checking {
    fn drop(&mut self) {
        if let Some((_, _, task)) = self.running.take() {
            task.abort();
        }
    }
}

impl Core {
    /// After a successful update to `image` (or a restart during its
    /// check): checks the machine's health, in a task, reporting
    /// `checking` meanwhile; with no check to run, it is healthy at once.
    pub(crate) async fn check_health(&mut self, image: &str) {
        self.drop_health_check();
        let checks = self.health_checks(image);
        if checks.checks.is_empty() {
            let health = checks.run(image).await;
            self.health_checked(health).await;
            return;
        }
        tracing::info!(image, checks = checks.checks.len(), "checking health");
        let health = Health {
            image: image.to_string(),
            state: HealthState::Checking,
            started: now_rfc3339(),
            ..Health::default()
        };
        self.set_health(Some(health)).await;
        self.checking.runs += 1;
        let (run, sender, image_owned) = (
            self.checking.runs,
            self.health_results.clone(),
            image.to_string(),
        );
        let task = tokio::spawn(async move {
            let health = checks.run(&image_owned).await;
            let _ = sender.send(Checked { run, health });
        });
        self.checking.running = Some((image.to_string(), run, task));
    }

    /// A check's task ended: its result counts unless the check was
    /// dropped meanwhile.
    pub(crate) async fn health_done(&mut self, checked: Checked) {
        let current = matches!(&self.checking.running, Some((_, run, _)) if *run == checked.run);
        if !current {
            return;
        }
        self.checking.running = None;
        self.health_checked(checked.health).await;
    }

    /// Drops the check under way unless it is of `image`.
    pub(crate) async fn drop_health_check_unless(&mut self, image: &str) {
        let other = matches!(&self.checking.running, Some((checked, _, _)) if checked != image);
        if other {
            tracing::info!("the desired image changed; health check dropped");
            self.drop_health_check();
            self.set_health(None).await;
        }
    }

    /// At start: a check the agent was running when it stopped runs
    /// again.
    pub(crate) async fn resume_health_check(&mut self) {
        let Some(health) = &self.applied.health else {
            return;
        };
        if health.state == HealthState::Checking
            && self.applied.image.as_deref() == Some(health.image.as_str())
        {
            let image = health.image.clone();
            tracing::info!(image, "the health check was cut short; running it again");
            self.check_health(&image).await;
        }
    }

    fn drop_health_check(&mut self) {
        if let Some((_, _, task)) = self.checking.running.take() {
            task.abort();
        }
    }

    async fn health_checked(&mut self, health: Health) {
        match health.state {
            HealthState::Healthy => tracing::info!(image = %health.image, "healthy"),
            state => tracing::warn!(image = %health.image, ?state, "unhealthy: {}", health.message),
        }
        self.send_event(health_event(&self.config.host, &health));
        self.set_health(Some(health)).await;
    }

    /// Reports `health` and keeps it in the state directory.
    async fn set_health(&mut self, health: Option<Health>) {
        self.applied.health = health.clone();
        self.keep_applied("the health check").await;
        self.report.health = health;
        self.publish();
    }

    /// What checks `image`'s health: the agent's command, then the
    /// image's own check, when the desired state is for that image.
    fn health_checks(&self, image: &str) -> Checks {
        let mut checks = Vec::new();
        if let Some(command) = &self.config.health_command {
            checks.push(Check {
                command: command.clone(),
                timeout: self.config.health_timeout,
            });
        }
        let own = self
            .current
            .as_ref()
            .filter(|c| c.state.image.as_str() == image)
            .and_then(|c| c.state.health_check.as_ref());
        if let Some(check) = own {
            checks.push(Check {
                command: check.command.clone(),
                timeout: check
                    .timeout_s
                    .map_or(self.config.health_timeout, Duration::from_secs),
            });
        }
        Checks {
            checks,
            interval: self.config.health_interval,
            env: environment(&self.config.host, image, &self.config.root),
        }
    }
}

/// A channel for check results, the sending side kept by the agent.
pub(crate) fn results() -> (
    mpsc::UnboundedSender<Checked>,
    mpsc::UnboundedReceiver<Checked>,
) {
    mpsc::unbounded_channel()
}

fn environment(host: &str, image: &str, root: &Path) -> Vec<(&'static str, String)> {
    vec![
        ("DOM_HOST", host.to_string()),
        ("DOM_IMAGE", image.to_string()),
        ("DOM_ROOT", root.display().to_string()),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn checks(commands: &[(&str, u64)]) -> Checks {
        Checks {
            checks: commands
                .iter()
                .map(|(c, ms)| Check {
                    command: c.to_string(),
                    timeout: Duration::from_millis(*ms),
                })
                .collect(),
            interval: Duration::from_millis(50),
            env: environment("h1", "web.1", Path::new("/srv/m")),
        }
    }

    #[tokio::test]
    async fn a_passing_command_is_healthy() {
        let health = checks(&[("test \"$DOM_IMAGE\" = web.1", 2000)])
            .run("web.1")
            .await;
        assert_eq!(health.state, HealthState::Healthy, "{health:?}");
        assert_eq!(health.attempts, 1);
    }

    #[tokio::test]
    async fn a_failing_command_is_retried_then_unhealthy_with_its_last_line() {
        let health = checks(&[(
            "echo starting; echo 'curl: (7) refused' >&2; echo; exit 1",
            400,
        )])
        .run("web.1")
        .await;
        assert_eq!(health.state, HealthState::Unhealthy);
        assert_eq!(health.message, "curl: (7) refused");
        assert!(health.attempts > 1, "{health:?}");
    }

    #[tokio::test]
    async fn a_hanging_command_times_out_and_is_killed_with_its_group() {
        let tmp = tempfile::tempdir().unwrap();
        let mark = tmp.path().join("mark");
        let command = format!("(sleep 1; touch '{}') & sleep 30", mark.display());
        let started = Instant::now();
        let health = checks(&[(&command, 300)]).run("web.1").await;
        assert_eq!(health.state, HealthState::TimedOut, "{health:?}");
        assert!(started.elapsed() < Duration::from_secs(5));
        std::thread::sleep(Duration::from_millis(1500));
        assert!(!mark.exists(), "the group was not killed");
    }

    #[tokio::test]
    async fn every_check_must_pass() {
        let health = checks(&[("true", 1000), ("echo image check failed; false", 100)])
            .run("web.1")
            .await;
        assert_eq!(health.state, HealthState::Unhealthy);
        assert_eq!(health.message, "image check failed");
        let none = checks(&[]).run("web.1").await;
        assert_eq!(none.state, HealthState::Healthy);
        assert_eq!(none.message, "no health check");
    }
}
