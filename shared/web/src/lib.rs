//! What the services' HTTP sides share: the dominator's status page on
//! `:6970` and the agent's on `:6969` are built the same way.
//!
//! - [`parse_flag`], [`serves`], [`listen_address`], [`bind`]: the
//!   `--http` flag (`:6970` means every interface; `off` or `""` serves
//!   nothing), checked as it is parsed, to a listening socket, with an
//!   error that names it.
//! - [`serve`]: serves an [`axum::Router`] until a shutdown future ends.
//! - [`metrics`]: `GET /metrics` for a [`prometheus_client`] registry.
//! - [`assets`]: the pages' common stylesheet and script, embedded in the
//!   binary (no build step, nothing fetched from elsewhere), and
//!   [`page`]/[`escape`] to render a page around them.
//!
//! `axum` and `prometheus_client` are re-exported, so every service uses
//! the same versions.

pub mod assets;
pub mod metrics;

use std::future::Future;
use std::net::SocketAddr;

pub use assets::{escape, page};
pub use axum;
pub use prometheus_client;
use thiserror::Error;
use tokio::net::TcpListener;

#[derive(Debug, Error)]
pub enum WebError {
    #[error("--http {flag:?} is not an address to serve HTTP on: give HOST:PORT, :PORT (every interface) or off")]
    Address { flag: String },
    #[error("cannot serve HTTP on {flag}: {source} (is another process using it? `--http off` serves nothing)")]
    Bind {
        flag: String,
        source: std::io::Error,
    },
}

/// What an `--http` flag asks to serve on: `None` for `off` or `""`
/// (both spellings are accepted by every service), else the flag.
pub fn serves(flag: &str) -> Option<&str> {
    match flag.trim() {
        "" | "off" => None,
        flag => Some(flag),
    }
}

/// Checks an `--http` flag as it is parsed (a clap `value_parser`), so a
/// value that is no address is refused before anything starts.
pub fn parse_flag(flag: &str) -> Result<String, String> {
    match serves(flag) {
        None => Ok(flag.to_string()),
        Some(address) => checked_address(address)
            .map(|_| flag.to_string())
            .map_err(|_| "not an address: give HOST:PORT, :PORT (every interface) or off".into()),
    }
}

/// The socket address for an `--http` flag: `:6970` means every
/// interface (`0.0.0.0:6970`); anything else is taken as it is
/// (`127.0.0.1:0` picks a free port).
pub fn listen_address(flag: &str) -> String {
    match flag.strip_prefix(':') {
        Some(port) => format!("0.0.0.0:{port}"),
        None => flag.to_string(),
    }
}

/// The flag's address, if it is one: an IP address and port, or a host
/// name and port (`localhost:6970`), looked up when binding.
fn checked_address(flag: &str) -> Result<String, WebError> {
    let address = listen_address(flag.trim());
    let valid = address.parse::<SocketAddr>().is_ok()
        || address.rsplit_once(':').is_some_and(|(host, port)| {
            !host.is_empty()
                && port.parse::<u16>().is_ok()
                && host
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.')
        });
    if valid {
        Ok(address)
    } else {
        Err(WebError::Address {
            flag: flag.to_string(),
        })
    }
}

/// Listens where the `--http` flag says.
pub async fn bind(flag: &str) -> Result<TcpListener, WebError> {
    let address = checked_address(flag)?;
    TcpListener::bind(address)
        .await
        .map_err(|source| WebError::Bind {
            flag: flag.to_string(),
            source,
        })
}

/// As [`bind`], for code that is not async (it still needs a Tokio
/// runtime to register the listener with).
pub fn bind_now(flag: &str) -> Result<TcpListener, WebError> {
    let address = checked_address(flag)?;
    let failed = |source| WebError::Bind {
        flag: flag.to_string(),
        source,
    };
    let listener = std::net::TcpListener::bind(address).map_err(failed)?;
    listener.set_nonblocking(true).map_err(failed)?;
    TcpListener::from_std(listener).map_err(failed)
}

/// Serves `router` on `listener` until `shutdown` completes (then lets
/// requests in flight finish) or the task is dropped.
pub async fn serve(
    listener: TcpListener,
    router: axum::Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router)
        .with_graceful_shutdown(shutdown)
        .await
}

/// Where a listener listens, for logs and tests.
pub fn local_addr(listener: &TcpListener) -> Option<SocketAddr> {
    listener.local_addr().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listen_addresses() {
        assert_eq!(listen_address(":6970"), "0.0.0.0:6970");
        assert_eq!(listen_address("127.0.0.1:80"), "127.0.0.1:80");
        assert_eq!(listen_address("[::1]:6969"), "[::1]:6969");
    }

    #[test]
    fn off_and_empty_serve_nothing() {
        assert_eq!(serves("off"), None);
        assert_eq!(serves(""), None);
        assert_eq!(serves(" "), None);
        assert_eq!(serves(":6970"), Some(":6970"));
    }

    #[test]
    fn addresses_are_checked_before_binding() {
        for good in [":6970", "127.0.0.1:0", "[::1]:6969", "localhost:6970"] {
            checked_address(good).unwrap();
        }
        for bad in [
            "nonsense",
            "6970",
            "host:",
            ":port",
            "a b:80",
            "1.2.3.4:99999",
        ] {
            let err = checked_address(bad).unwrap_err().to_string();
            assert!(err.contains(bad) && err.contains("HOST:PORT"), "{err}");
        }
    }

    #[tokio::test]
    async fn a_taken_address_is_named() {
        let first = bind("127.0.0.1:0").await.unwrap();
        let addr = first.local_addr().unwrap().to_string();
        let err = bind(&addr).await.unwrap_err().to_string();
        assert!(err.contains(&addr), "{err}");
    }
}
