//! Helpers every crate's tests share: waiting for a condition with a
//! deadline, the outcome of running a tool, and made-up image records.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::process::{Child, ExitStatus, Output};
use std::time::{Duration, Instant};

use dom_model::{ImageName, ImageRecord, ObjectId, StateReport};

/// How long any condition may take to come true.
pub const DEADLINE: Duration = Duration::from_secs(60);

/// Waits until `check` returns `Some`, polling; panics naming `what` after
/// [`DEADLINE`].
pub async fn eventually<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Every file (anything but a directory) under `dir`, at any depth,
/// sorted.
pub fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut dirs = vec![dir.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).expect("readable directory") {
            let entry = entry.expect("readable entry");
            if entry.file_type().expect("file type").is_dir() {
                dirs.push(entry.path());
            } else {
                files.push(entry.path());
            }
        }
    }
    files.sort();
    files
}

/// What a tool run by a test did.
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl From<Output> for Run {
    fn from(output: Output) -> Self {
        Self {
            code: output.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }
}

impl Run {
    /// Runs `command`, reads the first line it prints and closes the pipe,
    /// as `| head -1` does; returns that line and what else it did.
    pub fn first_line_then_close(mut command: std::process::Command) -> (String, Run) {
        use std::io::BufRead;
        command
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        let mut child = command.spawn().expect("the command starts");
        let mut stdout = std::io::BufReader::new(child.stdout.take().expect("piped"));
        let mut first = String::new();
        stdout.read_line(&mut first).expect("the first line");
        drop(stdout);
        let output = child.wait_with_output().expect("the command ends");
        (first, Run::from(output))
    }

    /// Asserts success and returns stdout.
    #[track_caller]
    pub fn ok(self) -> String {
        assert_eq!(
            self.code, 0,
            "stdout: {}\nstderr: {}",
            self.stdout, self.stderr
        );
        self.stdout
    }

    /// Asserts a non-zero exit with exactly one line on stderr, and
    /// returns that line.
    #[track_caller]
    pub fn one_line_error(self) -> String {
        assert_ne!(self.code, 0, "expected failure; stdout: {}", self.stdout);
        let lines: Vec<_> = self.stderr.lines().collect();
        assert_eq!(lines.len(), 1, "expected one line, got: {:?}", self.stderr);
        assert!(!self.stderr.contains("panicked"), "{}", self.stderr);
        lines[0].to_string()
    }
}

/// How long a service may take to stop once asked.
pub const STOP_LIMIT: Duration = Duration::from_secs(10);

/// How long a service with nothing to finish may take to exit on SIGTERM:
/// what the units in ops/systemd/ promise.
pub const SIGTERM_LIMIT: Duration = Duration::from_secs(5);

/// Sends SIGTERM (what systemd sends) to `child` and waits for it to
/// exit; panics, killing it, if it takes longer than [`STOP_LIMIT`].
pub fn terminate(child: &mut Child) -> ExitStatus {
    terminate_timed(child).0
}

/// [`terminate`], and how long the child took to exit.
pub fn terminate_timed(child: &mut Child) -> (ExitStatus, Duration) {
    // SAFETY: kill(2) on our own child, which has not been reaped.
    unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
    let asked = Instant::now();
    loop {
        if let Some(status) = child.try_wait().expect("wait for the child") {
            return (status, asked.elapsed());
        }
        if asked.elapsed() > STOP_LIMIT {
            let _ = child.kill();
            panic!("still running {STOP_LIMIT:?} after SIGTERM");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

pub fn image_name(image: &str) -> ImageName {
    ImageName::parse(image).unwrap()
}

/// A sparse image record of one 10-byte file (3 inodes); its manifest
/// need not exist, for tests of what never reads it.
pub fn sparse_record(image: &str) -> ImageRecord {
    ImageRecord {
        health_check: None,
        v: 1,
        name: image_name(image),
        manifest: ObjectId::of(image.as_bytes()),
        sparse: true,
        filter: None,
        triggers: vec![],
        files: 1,
        bytes: 10,
        inodes: 3,
        created: "2026-11-26T09:00:00Z".into(),
        creator: "root@build1".into(),
        expires: None,
        expires_unix: None,
        objects: None,
        metadata: Default::default(),
    }
}

/// A normal image record with `inodes` entries, filtering `/etc/hostname`.
pub fn normal_record(image: &str, inodes: u64) -> ImageRecord {
    ImageRecord {
        sparse: false,
        filter: Some(vec!["/etc/hostname".into()]),
        inodes,
        ..sparse_record(image)
    }
}

/// The state report of a machine with 1000 inodes that has planned against
/// `image`: compliant, or with 5 deviations and 5 inodes it would delete.
pub fn planned_report(host: &str, image: &str, compliant: bool) -> StateReport {
    let mut report = StateReport::new(host);
    report.scan.inodes = Some(1000);
    report.desired_image = Some(image.into());
    report.would_delete = Some(if compliant { 0 } else { 5 });
    report.compliant = compliant;
    report.deviations = if compliant { 0 } else { 5 };
    if compliant {
        report.image = Some(image.into());
    }
    report
}

/// Copies the tree `from` to `to` (directories and regular files).
pub fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_tree(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

/// A service command in `dir` that appends `ACTION NAME`, one call a line,
/// to `dir/service.log`: returns the script and the log.
pub fn service_recorder(dir: &Path) -> (PathBuf, PathBuf) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(dir).unwrap();
    let log = dir.join("service.log");
    let script = dir.join("service");
    let text = format!("#!/bin/sh\necho \"$1 $2\" >> '{}'\n", log.display());
    std::fs::write(&script, text).unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    (script, log)
}

/// The calls a [`service_recorder`] script has logged to `log` so far, one
/// line each (`sshd stop`).
pub fn recorded_calls(log: &Path) -> Vec<String> {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect()
}

/// What a test does when a tool it needs (Chromium, promtool,
/// systemd-analyze) is missing: prints that it was skipped and why, or,
/// with `DOM_REQUIRE_TOOLS=1` (as CI sets), fails, so a missing tool
/// cannot pass for a passing test there.
pub fn skip_without(why: &str) {
    if std::env::var_os("DOM_REQUIRE_TOOLS").is_some_and(|v| v == "1") {
        panic!("DOM_REQUIRE_TOOLS=1 and {why}");
    }
    eprintln!("skipped: {why}");
}
