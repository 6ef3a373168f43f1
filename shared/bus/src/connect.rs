//! Connecting to NATS: the options every tool shares, and [`Bus`].

use std::path::PathBuf;
use std::time::Duration;

use thiserror::Error;

use crate::subjects::{BadPrefix, Subjects};

/// How long to wait for a server before giving up on the first connect.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// Connection options shared by every tool and service.
#[derive(Clone, Debug, clap::Args)]
pub struct ConnectArgs {
    /// NATS server URL(s), comma-separated (nats://HOST:PORT, tls://HOST:PORT).
    #[arg(long, env = "DOM_SERVER", default_value = "nats://127.0.0.1:4222")]
    pub server: String,
    /// NATS credentials file (JWT and nkey seed).
    #[arg(long, env = "DOM_CREDS", value_name = "FILE")]
    pub creds: Option<PathBuf>,
    /// File holding an nkey seed to authenticate with.
    #[arg(long, env = "DOM_NKEY", value_name = "FILE")]
    pub nkey: Option<PathBuf>,
    /// CA certificate (PEM) to verify the server; implies TLS.
    #[arg(long, env = "DOM_TLS_CA", value_name = "FILE")]
    pub tls_ca: Option<PathBuf>,
    /// Client certificate (PEM) for mutual TLS; needs --tls-key.
    #[arg(long, env = "DOM_TLS_CERT", value_name = "FILE", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// Client private key (PEM) for mutual TLS; needs --tls-cert.
    #[arg(long, env = "DOM_TLS_KEY", value_name = "FILE", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Subject prefix, so several fleets can share one NATS account.
    #[arg(long, env = "DOM_PREFIX", default_value = crate::subjects::DEFAULT_PREFIX)]
    pub prefix: String,
}

impl Default for ConnectArgs {
    fn default() -> Self {
        Self {
            server: "nats://127.0.0.1:4222".into(),
            creds: None,
            nkey: None,
            tls_ca: None,
            tls_cert: None,
            tls_key: None,
            prefix: crate::subjects::DEFAULT_PREFIX.into(),
        }
    }
}

#[derive(Debug, Error)]
pub enum BusError {
    #[error("cannot reach NATS at {server}: {reason}")]
    Connect { server: String, reason: String },
    #[error("cannot read {what} {path}: {reason}")]
    Credentials {
        what: &'static str,
        path: PathBuf,
        reason: String,
    },
    #[error(transparent)]
    Prefix(#[from] BadPrefix),
    #[error("JetStream at {server}: {reason}")]
    JetStream { server: String, reason: String },
}

/// A connection to the fleet's NATS, with its JetStream context and names.
#[derive(Clone)]
pub struct Bus {
    pub client: async_nats::Client,
    pub js: async_nats::jetstream::Context,
    pub subjects: Subjects,
    server: String,
}

impl Bus {
    /// Connects, failing within a few seconds with a message naming the
    /// server when it cannot be reached. Later outages are ridden out by the
    /// client's own reconnects.
    pub async fn connect(args: &ConnectArgs, name: &str) -> Result<Self, BusError> {
        let subjects = Subjects::new(&args.prefix)?;
        let mut options = async_nats::ConnectOptions::new()
            .name(name)
            .connection_timeout(CONNECT_TIMEOUT)
            .max_reconnects(None);
        if let Some(path) = &args.creds {
            options = options
                .credentials_file(path)
                .await
                .map_err(|e| BusError::Credentials {
                    what: "credentials file",
                    path: path.clone(),
                    reason: e.to_string(),
                })?;
        }
        if let Some(path) = &args.nkey {
            let seed = std::fs::read_to_string(path).map_err(|e| BusError::Credentials {
                what: "nkey seed file",
                path: path.clone(),
                reason: e.to_string(),
            })?;
            options = options.nkey(seed.trim().to_string());
        }
        if let Some(ca) = &args.tls_ca {
            options = options.add_root_certificates(ca.clone()).require_tls(true);
        }
        if let (Some(cert), Some(key)) = (&args.tls_cert, &args.tls_key) {
            options = options
                .add_client_certificate(cert.clone(), key.clone())
                .require_tls(true);
        }
        let server = args.server.clone();
        let client = options
            .connect(server.as_str())
            .await
            .map_err(|e| BusError::Connect {
                server: server.clone(),
                reason: e.to_string(),
            })?;
        let js = async_nats::jetstream::new(client.clone());
        Ok(Self {
            client,
            js,
            subjects,
            server,
        })
    }

    /// The server URL this bus was connected with, for messages.
    pub fn server(&self) -> &str {
        &self.server
    }

    pub(crate) fn js_error(&self, reason: impl std::fmt::Display) -> BusError {
        BusError::JetStream {
            server: self.server.clone(),
            reason: reason.to_string(),
        }
    }
}
