//! What the services' HTTP sides share: the dominator's status page on
//! `:6970` and the agent's on `:6969` are built the same way.
//!
//! - [`listen_address`], [`bind`]: the `--http` flag (`:6970` means every
//!   interface) to a listening socket, with an error that names it.
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
    #[error("cannot serve HTTP on {flag}: {source} (is another process using it? `--http off` serves nothing)")]
    Bind {
        flag: String,
        source: std::io::Error,
    },
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

/// Listens where the `--http` flag says.
pub async fn bind(flag: &str) -> Result<TcpListener, WebError> {
    TcpListener::bind(listen_address(flag))
        .await
        .map_err(|source| WebError::Bind {
            flag: flag.to_string(),
            source,
        })
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

    #[tokio::test]
    async fn a_taken_address_is_named() {
        let first = bind("127.0.0.1:0").await.unwrap();
        let addr = first.local_addr().unwrap().to_string();
        let err = bind(&addr).await.unwrap_err().to_string();
        assert!(err.contains(&addr), "{err}");
    }
}
