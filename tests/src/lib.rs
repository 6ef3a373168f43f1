//! The shared test fixture: a real `nats-server` with JetStream on a free
//! port and its own temporary store, stopped when dropped. Tests can stop
//! and restart it (same port, same store) to test outages. Every NATS test
//! in the workspace uses it, so tests run in parallel without sharing state.
//! [`fixtures`] has the other helpers tests share.
//!
//! The server binary is `$NATS_SERVER`, else the project's pinned one in
//! `.tools/bin/nats-server` (installed by `ops/install-tools.sh`), else
//! `nats-server` on `PATH`.

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

pub mod bus;
pub mod fixtures;
pub mod s3;
pub use bus::{connect, connect_bare, set_mdb, wait_allowed, wait_desired};
pub use fixtures::{
    eventually, files_under, normal_record, skip_without, sparse_record, terminate,
    terminate_timed, Run, DEADLINE, SIGTERM_LIMIT,
};

/// A running (or stopped) nats-server owned by one test.
pub struct NatsServer {
    port: u16,
    dir: tempfile::TempDir,
    config: Option<PathBuf>,
    /// More arguments (a cluster member's name, port and routes).
    extra: Vec<String>,
    child: Option<Child>,
}

impl NatsServer {
    /// Starts a fresh server with JetStream on a free port.
    pub fn start() -> Result<Self> {
        Self::start_inner(None)
    }

    /// Starts a server from the configuration file `config` (users, TLS,
    /// permissions, JetStream and its store directory), listening on
    /// 127.0.0.1 on a free port whatever the file says.
    pub fn start_with_config(config: &Path) -> Result<Self> {
        Self::start_inner(Some(config.to_path_buf()))
    }

    fn start_inner(config: Option<PathBuf>) -> Result<Self> {
        let mut server = Self::unstarted(config, Vec::new())?;
        server.spawn()?;
        Ok(server)
    }

    fn unstarted(config: Option<PathBuf>, extra: Vec<String>) -> Result<Self> {
        Ok(Self {
            port: free_port()?,
            dir: tempfile::tempdir()?,
            config,
            extra,
            child: None,
        })
    }

    /// `tls://127.0.0.1:PORT`, for a server whose configuration asks for TLS.
    pub fn tls_url(&self) -> String {
        format!("tls://127.0.0.1:{}", self.port)
    }

    /// The server's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
    }

    /// `nats://127.0.0.1:PORT`
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The server's store directory (unless started from a configuration
    /// file, which names its own).
    pub fn store_dir(&self) -> PathBuf {
        self.dir.path().join("store")
    }

    /// Stops the server (as an outage would); its store is kept.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server again on the same port with the same store.
    pub fn restart(&mut self) -> Result<()> {
        self.stop();
        self.spawn()
    }

    fn spawn(&mut self) -> Result<()> {
        let binary = nats_server_binary();
        let log = std::fs::File::create(self.dir.path().join("server.log"))?;
        let mut command = Command::new(&binary);
        command.args(["-a", "127.0.0.1", "-p", &self.port.to_string()]);
        match &self.config {
            // The file says where JetStream stores (the server refuses a
            // second store directory from the command line).
            Some(config) => command.arg("-c").arg(config),
            None => command.args(["-js", "-sd"]).arg(self.store_dir()),
        };
        command.args(&self.extra);
        let child = command
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .with_context(|| {
                format!(
                    "cannot start {} (run ops/install-tools.sh or set NATS_SERVER)",
                    binary.display()
                )
            })?;
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return Ok(());
            }
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                bail!("nats-server exited with {status}: {}", self.log());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        bail!("nats-server did not start listening on port {}", self.port)
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A cluster of nats-servers on loopback, each with JetStream and a store
/// of its own, routed to one another: what a fleet that must survive the
/// loss of a server runs. Members can be stopped and restarted one by one.
pub struct NatsCluster {
    pub servers: Vec<NatsServer>,
}

impl NatsCluster {
    /// Starts `size` members (3 for a quorum that survives one loss) and
    /// returns once each of them listens. JetStream elects its leader a
    /// moment later: [`NatsCluster::wait_for_jetstream`] waits for that.
    pub fn start(size: usize) -> Result<Self> {
        let route_ports: Vec<u16> = (0..size).map(|_| free_port()).collect::<Result<_>>()?;
        let routes = route_ports
            .iter()
            .map(|p| format!("nats://127.0.0.1:{p}"))
            .collect::<Vec<_>>()
            .join(",");
        let mut servers = Vec::with_capacity(size);
        for (i, port) in route_ports.iter().enumerate() {
            let extra = [
                "--server_name".to_string(),
                format!("n{}", i + 1),
                "--cluster_name".into(),
                "dom-test".into(),
                "--cluster".into(),
                format!("nats://127.0.0.1:{port}"),
                "--routes".into(),
                routes.clone(),
            ];
            servers.push(NatsServer::unstarted(None, extra.to_vec())?);
        }
        for server in &mut servers {
            server.spawn()?;
        }
        Ok(Self { servers })
    }

    /// The index of the member whose server name is `name` (`n1` is the
    /// first).
    pub fn member(&self, name: &str) -> Option<usize> {
        let n: usize = name.strip_prefix('n')?.parse().ok()?;
        (1..=self.servers.len()).contains(&n).then(|| n - 1)
    }

    /// Every member's URL, comma-separated, as `--server` takes them.
    pub fn urls(&self) -> String {
        self.servers
            .iter()
            .map(NatsServer::url)
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Waits until JetStream answers through every member: its meta
    /// leader is elected and the members agree.
    pub async fn wait_for_jetstream(&self) {
        for server in self.servers.iter().filter(|s| s.child.is_some()) {
            let args = dom_bus::ConnectArgs {
                server: server.url(),
                ..dom_bus::ConnectArgs::default()
            };
            fixtures::eventually(&format!("JetStream through {}", server.url()), || async {
                let bus = dom_bus::Bus::connect(&args, "tests").await.ok()?;
                bus.jetstream_ready().await.then_some(())
            })
            .await;
        }
    }
}

/// Finds the nats-server binary to run.
pub fn nats_server_binary() -> PathBuf {
    if let Some(path) = std::env::var_os("NATS_SERVER") {
        let path = PathBuf::from(path);
        // A relative path with a directory part is relative to the
        // workspace, wherever cargo runs the test from.
        if path.is_relative() && path.components().count() > 1 {
            return repo_root().join(path);
        }
        return path;
    }
    let pinned = repo_root().join(".tools/bin/nats-server");
    if pinned.exists() {
        return pinned;
    }
    PathBuf::from("nats-server")
}

/// The workspace root.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ is inside the workspace")
        .to_path_buf()
}

/// The workspace binary `name` (`domsetup`), built by cargo when it is
/// missing or older than a source it could be built from. Cargo hands a
/// package's tests only that package's own binaries (`CARGO_BIN_EXE_*`),
/// so tests across packages ask for them. A workspace test run has built
/// them already; building them again alone would resolve their
/// dependencies' features anew and compile much of the workspace twice.
pub fn workspace_binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("the test's own path");
    // target/PROFILE/deps/TEST-HASH
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("a test binary lives in target/PROFILE/deps");
    let binary = profile_dir.join(name);
    let built = std::fs::metadata(&binary).and_then(|m| m.modified()).ok();
    if built.is_some_and(|built| newest_source().is_none_or(|source| source < built)) {
        return binary;
    }
    let target_dir = profile_dir.parent().expect("target/PROFILE");
    let profile = match profile_dir.file_name().and_then(|n| n.to_str()) {
        Some("debug") | None => "dev",
        Some(other) => other,
    };
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let status = Command::new(cargo)
        .args(["build", "--quiet", "--bin", name, "--profile", profile])
        .arg("--manifest-path")
        .arg(repo_root().join("Cargo.toml"))
        .arg("--target-dir")
        .arg(target_dir)
        .status()
        .expect("cargo runs");
    assert!(status.success(), "cargo build --bin {name} failed");
    binary
}

/// When a source of the workspace's binaries last changed.
fn newest_source() -> Option<std::time::SystemTime> {
    fn walk(dir: &Path, newest: &mut Option<std::time::SystemTime>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let Ok(meta) = entry.metadata() else { continue };
            if meta.is_dir() {
                if path
                    .file_name()
                    .is_some_and(|n| n != "target" && n != "tests")
                {
                    walk(&path, newest);
                }
            } else if path
                .extension()
                .is_some_and(|e| e == "rs" || e == "toml" || e == "lock")
            {
                let modified = meta.modified().ok();
                *newest = (*newest).max(modified);
            }
        }
    }
    let root = repo_root();
    let mut newest = None;
    for dir in ["shared", "services", "ops/secure"] {
        walk(&root.join(dir), &mut newest);
    }
    for file in ["Cargo.toml", "Cargo.lock"] {
        let modified = std::fs::metadata(root.join(file)).and_then(|m| m.modified());
        newest = newest.max(modified.ok());
    }
    newest
}

/// A TCP port nothing listens on right now.
pub fn free_port() -> Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn starts_stops_and_restarts() {
        let mut server = NatsServer::start().unwrap();
        assert!(TcpStream::connect(("127.0.0.1", server.port())).is_ok());
        server.stop();
        assert!(TcpStream::connect(("127.0.0.1", server.port())).is_err());
        server.restart().unwrap();
        assert!(TcpStream::connect(("127.0.0.1", server.port())).is_ok());
    }
}
