//! Connecting to NATS: the options every tool shares, and [`Bus`].

use std::path::PathBuf;
use std::time::Duration;

use thiserror::Error;

use crate::denied::Denials;
use crate::subjects::{BadPrefix, Subjects};

/// How long to wait for a server before giving up on the first connect.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// Connection options shared by every tool and service.
#[derive(Clone, Debug, clap::Args)]
pub struct ConnectArgs {
    /// NATS server URL, or several of one cluster, comma-separated
    /// (nats://a:4222,nats://b:4222; tls://HOST:PORT for TLS). The client
    /// connects to any of them and moves to another when one is lost;
    /// only to these, not to other servers the cluster announces.
    #[arg(
        long,
        env = "DOM_SERVER",
        default_value = "nats://127.0.0.1:4222",
        value_parser = checked_server_list
    )]
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
    /// The JetStream domain of the fleet's streams, when the server
    /// connected to is a leaf node with a domain of its own: at a remote
    /// site, the hub's (docs/SCALING.md).
    #[arg(long = "js-domain", env = "DOM_JS_DOMAIN", value_name = "DOMAIN")]
    pub domain: Option<String>,
    /// The JetStream domain whose object bucket to read (and write) objects
    /// in; default: the fleet's. At a remote site, the site's own, whose
    /// mirror of the hub's bucket its machines share.
    #[arg(long, env = "DOM_OBJECTS_DOMAIN", value_name = "DOMAIN")]
    pub objects_domain: Option<String>,
    /// Where objects (file contents) live, when not in the fleet's NATS
    /// object bucket: s3://BUCKET/PREFIX (S3 or S3-compatible storage;
    /// credentials and region from the AWS environment) or file:///DIR (a
    /// local directory). Images, the MDB and everything else stay on NATS.
    #[arg(long, env = "DOM_OBJECTS", value_name = "URL", value_parser = checked_objects)]
    pub objects: Option<String>,
    /// The S3 endpoint, for S3-compatible storage (http://minio:9000).
    #[arg(long, env = "AWS_ENDPOINT_URL", value_name = "URL")]
    pub s3_endpoint: Option<String>,
    /// The S3 region (default: the AWS environment's, else us-east-1).
    #[arg(long, env = "AWS_REGION", value_name = "REGION")]
    pub s3_region: Option<String>,
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
            domain: None,
            objects_domain: None,
            objects: None,
            s3_endpoint: None,
            s3_region: None,
        }
    }
}

/// The addresses of a `--server` list: comma-separated URLs (or
/// `HOST:PORT`), blanks around them ignored.
pub fn server_list(text: &str) -> Result<Vec<async_nats::ServerAddr>, BusError> {
    let bad = |reason: String| BusError::BadServer {
        list: dom_model::text::bounded(text),
        reason,
    };
    let addresses: Vec<&str> = text.split(',').map(str::trim).collect();
    if addresses.iter().all(|a| a.is_empty()) {
        return Err(bad("no server address given".into()));
    }
    addresses
        .into_iter()
        .map(|address| {
            if address.is_empty() {
                return Err(bad("an empty address between commas".into()));
            }
            address
                .parse::<async_nats::ServerAddr>()
                .map_err(|e| bad(format!("{}: {e}", dom_model::text::bounded(address))))
        })
        .collect()
}

/// For clap: a `--server` list that [`server_list`] takes, as it was given.
fn checked_server_list(text: &str) -> Result<String, String> {
    match server_list(text) {
        Ok(_) => Ok(text.to_string()),
        Err(BusError::BadServer { reason, .. }) => Err(reason),
        Err(other) => Err(other.to_string()),
    }
}

/// For clap: an `--objects` location of a kind the store opens, checked
/// at start so that a typo is an error there, not an outage later.
fn checked_objects(text: &str) -> Result<String, String> {
    let usage = "use s3://BUCKET/PREFIX or file:///DIR";
    if let Some(rest) = text.strip_prefix("s3://") {
        let bucket = rest.split('/').next().unwrap_or_default();
        if bucket.is_empty() {
            return Err(format!("no bucket named; {usage}"));
        }
        return Ok(text.to_string());
    }
    match text.strip_prefix("file://") {
        Some(path) if path.starts_with('/') => Ok(text.to_string()),
        Some(_) => Err(format!("the directory must be an absolute path; {usage}")),
        None => Err(usage.to_string()),
    }
}

#[derive(Debug, Error)]
pub enum BusError {
    #[error("bad NATS server address in {list:?}: {reason}")]
    BadServer { list: String, reason: String },
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
    #[error("permission denied: this credential may not {action} {subject}")]
    PermissionDenied {
        /// `publish to` or `subscribe to`.
        action: &'static str,
        subject: String,
    },
    #[error("{what} does not exist; an operator must create it: run `domsetup streams` with the operator's credentials")]
    Missing { what: String },
}

impl BusError {
    /// Whether the server refused this credential the action.
    pub fn is_permission_denied(&self) -> bool {
        matches!(self, BusError::PermissionDenied { .. })
    }
}

/// A connection to the fleet's NATS, with its JetStream context and names.
#[derive(Clone)]
pub struct Bus {
    pub client: async_nats::Client,
    /// JetStream, where the fleet's streams are.
    pub js: async_nats::jetstream::Context,
    /// JetStream, where the object bucket is read and written.
    pub objects_js: async_nats::jetstream::Context,
    /// `$JS.API`, or `$JS.<domain>.API`: the fleet's streams' API.
    api: String,
    /// The same for the object bucket.
    objects_api: String,
    pub subjects: Subjects,
    server: String,
    inbox_prefix: String,
    pub(crate) denials: Denials,
    /// Bumped each time the connection is (re)established.
    connects: tokio::sync::watch::Receiver<u64>,
    /// Where objects live when not in the NATS bucket (`--objects`), and
    /// the S3 endpoint and region (`--s3-endpoint`, `--s3-region`).
    pub objects: Option<String>,
    pub s3_endpoint: Option<String>,
    pub s3_region: Option<String>,
}

impl Bus {
    /// Connects, failing within a few seconds with a message naming the
    /// server when it cannot be reached. Later outages are ridden out by the
    /// client's own reconnects.
    pub async fn connect(args: &ConnectArgs, name: &str) -> Result<Self, BusError> {
        let subjects = Subjects::new(&args.prefix)?;
        let denials = Denials::new();
        let heard = denials.clone();
        let (connected, connects) = tokio::sync::watch::channel(0u64);
        let connected = std::sync::Arc::new(connected);
        let mut options = async_nats::ConnectOptions::new()
            .name(name)
            .connection_timeout(CONNECT_TIMEOUT)
            .max_reconnects(None)
            // Only the servers given, not others the cluster announces:
            // their addresses need not be reachable from here nor match
            // the TLS names, and one that lost every server it was given
            // is cut off, as its operator expects, instead of turning up
            // elsewhere (a dominator would vie there for the lease with
            // the standby taking over). Listing every server rides
            // through the loss of one.
            .ignore_discovered_servers()
            .event_callback(move |event| {
                let heard = heard.clone();
                let connected = connected.clone();
                async move {
                    match event {
                        async_nats::Event::Connected => {
                            tracing::debug!("NATS connected");
                            connected.send_modify(|n| *n += 1);
                        }
                        async_nats::Event::ServerError(async_nats::ServerError::Other(e)) => {
                            heard.server_error(&e)
                        }
                        event => tracing::debug!(%event, "NATS connection"),
                    }
                }
            });
        let mut inbox_prefix = String::from("_INBOX");
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
            let unreadable = |reason: String| BusError::Credentials {
                what: "nkey seed file",
                path: path.clone(),
                reason,
            };
            let seed = std::fs::read_to_string(path).map_err(|e| unreadable(e.to_string()))?;
            let seed = seed.trim().to_string();
            let key = nkeys::KeyPair::from_seed(&seed)
                .map_err(|e| unreadable(format!("not an nkey seed: {e}")))?;
            // Replies come back on inboxes under the credential's own
            // public key, so the server can let each credential read its
            // own replies and no one else's (see docs/SECURITY.md).
            inbox_prefix = inbox_prefix_for(&key.public_key());
            options = options.nkey(seed);
        }
        options = options.custom_inbox_prefix(&inbox_prefix);
        // The client reads these files only once it is connecting, and its
        // error then names none of them: check them here.
        for (what, path) in [
            ("TLS CA certificate", &args.tls_ca),
            ("TLS client certificate", &args.tls_cert),
            ("TLS client key", &args.tls_key),
        ] {
            if let Some(path) = path {
                readable(what, path)?;
            }
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
        let addresses = server_list(&server)?;
        let client = options
            .connect(addresses)
            .await
            .map_err(|e| connect_error(&server, args, &e))?;
        let context = |domain: Option<&String>| match domain {
            Some(domain) => async_nats::jetstream::with_domain(client.clone(), domain),
            None => async_nats::jetstream::new(client.clone()),
        };
        let api = |domain: Option<&String>| match domain {
            Some(domain) => format!("$JS.{domain}.API"),
            None => "$JS.API".to_string(),
        };
        let objects_domain = args.objects_domain.as_ref().or(args.domain.as_ref());
        Ok(Self {
            js: context(args.domain.as_ref()),
            objects_js: context(objects_domain),
            api: api(args.domain.as_ref()),
            objects_api: api(objects_domain),
            client,
            subjects,
            server,
            inbox_prefix,
            denials,
            connects,
            objects: args.objects.clone(),
            s3_endpoint: args.s3_endpoint.clone(),
            s3_region: args.s3_region.clone(),
        })
    }

    /// The JetStream API subject `rest` (`STREAM.INFO.DOM_MDB`) for
    /// `stream`, in the domain that stream is read in.
    pub fn api(&self, stream: &str, rest: &str) -> String {
        let prefix = if stream == self.subjects.object_stream() {
            &self.objects_api
        } else {
            &self.api
        };
        format!("{prefix}.{rest}")
    }

    /// The JetStream context that reaches `stream` (the object bucket's
    /// may be in another domain than the fleet's streams).
    pub fn js_for(&self, stream: &str) -> &async_nats::jetstream::Context {
        if stream == self.subjects.object_stream() {
            &self.objects_js
        } else {
            &self.js
        }
    }

    /// Changes each time the connection comes back after an outage, so
    /// what is followed by plain subscriptions can be read again.
    pub fn reconnects(&self) -> tokio::sync::watch::Receiver<u64> {
        let mut connects = self.connects.clone();
        connects.mark_unchanged();
        connects
    }

    /// The prefix of this connection's reply subjects.
    pub fn inbox_prefix(&self) -> &str {
        &self.inbox_prefix
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

/// The inbox prefix of a client authenticated by the nkey `public_key`:
/// `_INBOX.<public key>`.
pub fn inbox_prefix_for(public_key: &str) -> String {
    format!("_INBOX.{public_key}")
}

/// Fails naming `path` unless it is a file this process can read.
fn readable(what: &'static str, path: &std::path::Path) -> Result<(), BusError> {
    let unreadable = |reason: String| BusError::Credentials {
        what,
        path: path.to_path_buf(),
        reason,
    };
    let file = std::fs::File::open(path).map_err(|e| unreadable(e.to_string()))?;
    match file.metadata() {
        Ok(meta) if meta.is_dir() => Err(unreadable("it is a directory".into())),
        Ok(_) => Ok(()),
        Err(e) => Err(unreadable(e.to_string())),
    }
}

/// One line saying why the first connect failed and, where it can, what
/// to do about it.
fn connect_error(server: &str, args: &ConnectArgs, error: &async_nats::ConnectError) -> BusError {
    let reason = error.to_string();
    let lower = reason.to_lowercase();
    let tls = matches!(error.kind(), async_nats::ConnectErrorKind::Tls)
        || lower.contains("certificate")
        || lower.contains("tls");
    // rustls's words for a reply that is not TLS at all: the server
    // answered the handshake in plain text.
    // It comes back as an I/O error.
    let plain = lower.contains("invalidcontenttype") || lower.contains("corrupt message");
    let reason = if plain {
        "the server did not speak TLS: it listens in plain text there; \
         use its TLS port, or connect without the --tls-* flags"
            .to_string()
    } else if tls && args.tls_ca.is_none() {
        format!(
            "the server requires TLS and its certificate is not trusted here ({reason}); \
             pass --tls-ca with the fleet's CA certificate"
        )
    } else if matches!(
        error.kind(),
        async_nats::ConnectErrorKind::AuthorizationViolation
    ) {
        let given = if args.nkey.is_some() || args.creds.is_some() {
            "the credential given was refused"
        } else {
            "the server wants a credential: pass --nkey (or --creds)"
        };
        format!("{given} ({reason})")
    } else {
        reason
    };
    BusError::Connect {
        server: server.to_string(),
        reason,
    }
}

#[cfg(test)]
mod server_list_tests {
    use super::*;

    #[test]
    fn lists_of_servers_parse() {
        let list = server_list("nats://a:4222, nats://b:4223 ,tls://c:4224").unwrap();
        let hosts: Vec<(String, u16)> = list
            .iter()
            .map(|a| (a.host().to_string(), a.port()))
            .collect();
        assert_eq!(
            hosts,
            [("a".into(), 4222), ("b".into(), 4223), ("c".into(), 4224)]
        );
        assert!(list[2].tls_required());
        assert_eq!(server_list("127.0.0.1:4222").unwrap()[0].port(), 4222);
    }

    #[test]
    fn a_bad_list_names_the_address_at_fault() {
        let reason = |text: &str| match server_list(text) {
            Err(BusError::BadServer { reason, .. }) => reason,
            other => panic!("{text:?}: {other:?}"),
        };
        assert!(reason("nats://a:4222,nats://b:42x22").starts_with("nats://b:42x22: "));
        assert_eq!(reason(""), "no server address given");
        assert_eq!(reason(" , "), "no server address given");
        assert_eq!(
            reason("nats://a:4222,,nats://b:4222"),
            "an empty address between commas"
        );
    }
}
