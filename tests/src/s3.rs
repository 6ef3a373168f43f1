//! A real S3-compatible server for tests: moto in server mode (PyPI
//! `moto[server]`, installed by `ops/install-tools.sh`), on a free port,
//! stopped when dropped. docs/STORAGE.md says why moto.
//!
//! The binary is `$MOTO_SERVER`, else `.tools/bin/moto_server`, else
//! `moto_server` on `PATH`.

use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::{free_port, repo_root};

/// The credentials and region the AWS clients read from the environment;
/// the server takes any.
pub const ENV: [(&str, &str); 3] = [
    ("AWS_ACCESS_KEY_ID", "testing"),
    ("AWS_SECRET_ACCESS_KEY", "testing"),
    ("AWS_REGION", "us-east-1"),
];

pub struct S3Server {
    port: u16,
    child: Child,
}

impl S3Server {
    /// Starts a server and sets [`ENV`] for this process (each test runs in
    /// a process of its own).
    pub fn start() -> Result<Self> {
        for (key, value) in ENV {
            std::env::set_var(key, value);
        }
        let port = free_port()?;
        let binary = moto_server_binary();
        let child = Command::new(&binary)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| {
                format!(
                    "cannot start {} (run ops/install-tools.sh or set MOTO_SERVER)",
                    binary.display()
                )
            })?;
        let mut server = Self { port, child };
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return Ok(server);
            }
            if let Ok(Some(status)) = server.child.try_wait() {
                bail!("moto_server exited with {status}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        bail!("moto_server did not start listening on port {port}")
    }

    /// `http://127.0.0.1:PORT`, for `--s3-endpoint`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Makes bucket `name`.
    pub async fn bucket(&self, name: &str) -> Result<()> {
        let response = reqwest::Client::new()
            .put(format!("{}/{name}", self.endpoint()))
            .send()
            .await?;
        if !response.status().is_success() {
            bail!("creating bucket {name}: {}", response.status());
        }
        Ok(())
    }

    /// Replaces what the server holds at `key` of `bucket` (as a broken or
    /// hostile writer would), past the store's own checks.
    pub async fn overwrite(&self, bucket: &str, key: &str, content: Vec<u8>) -> Result<()> {
        use object_store::ObjectStore;
        let client = object_store::aws::AmazonS3Builder::from_env()
            .with_bucket_name(bucket)
            .with_endpoint(self.endpoint())
            .with_allow_http(true)
            .build()?;
        client
            .put(&object_store::path::Path::from(key), content.into())
            .await
            .with_context(|| format!("writing {bucket}/{key}"))?;
        Ok(())
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn moto_server_binary() -> PathBuf {
    if let Some(path) = std::env::var_os("MOTO_SERVER") {
        return PathBuf::from(path);
    }
    let pinned = repo_root().join(".tools/bin/moto_server");
    if pinned.exists() {
        return pinned;
    }
    PathBuf::from("moto_server")
}
