//! A minimal HTTP server for health checks and the JSON status:
//!
//! - `GET /healthz`: `200 ok` once the replay is over and decisions are
//!   being made, `503 catching up` before.
//! - `GET /status`: the [`Status`](crate::status::Status) as JSON.
//!
//! One request per connection; anything else is a 404 (or a 405 for a
//! method other than GET or HEAD).

use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::status::Board;

/// Longest request head read.
const MAX_HEAD: usize = 8 * 1024;
/// How long a client may take to send its request.
const READ_TIMEOUT: Duration = Duration::from_secs(5);

/// The listen address for `--http`: `:6970` means every interface.
pub fn listen_address(flag: &str) -> String {
    match flag.strip_prefix(':') {
        Some(port) => format!("0.0.0.0:{port}"),
        None => flag.to_string(),
    }
}

/// Serves requests until the task is dropped.
pub async fn serve(listener: TcpListener, board: Arc<Board>) {
    loop {
        match listener.accept().await {
            Ok((socket, _)) => {
                let board = board.clone();
                tokio::spawn(async move {
                    if let Err(e) = handle(socket, &board).await {
                        tracing::debug!(error = %e, "status request failed");
                    }
                });
            }
            Err(e) => {
                tracing::warn!(error = %e, "status server cannot accept; retrying");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
}

async fn handle(mut socket: TcpStream, board: &Board) -> std::io::Result<()> {
    let mut head = Vec::with_capacity(1024);
    let read = tokio::time::timeout(READ_TIMEOUT, async {
        let mut buf = [0u8; 1024];
        while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < MAX_HEAD {
            let n = socket.read(&mut buf).await?;
            if n == 0 {
                break;
            }
            head.extend_from_slice(&buf[..n]);
        }
        Ok::<_, std::io::Error>(())
    })
    .await;
    if !matches!(read, Ok(Ok(()))) {
        return Ok(());
    }
    let line = String::from_utf8_lossy(&head);
    let mut parts = line.lines().next().unwrap_or("").split_whitespace();
    let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let path = target.split('?').next().unwrap_or("");
    let (code, kind, body) = match (method, path) {
        ("GET" | "HEAD", "/healthz") if board.status().caught_up => {
            ("200 OK", "text/plain", b"ok\n".to_vec())
        }
        ("GET" | "HEAD", "/healthz") => (
            "503 Service Unavailable",
            "text/plain",
            b"catching up\n".to_vec(),
        ),
        ("GET" | "HEAD", "/status") => ("200 OK", "application/json", board.to_json()),
        ("GET" | "HEAD", _) => ("404 Not Found", "text/plain", b"not found\n".to_vec()),
        _ => (
            "405 Method Not Allowed",
            "text/plain",
            b"only GET\n".to_vec(),
        ),
    };
    let mut response = format!(
        "HTTP/1.1 {code}\r\nContent-Type: {kind}\r\nContent-Length: {}\r\n\
         Cache-Control: no-store\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    if method != "HEAD" {
        response.extend_from_slice(&body);
    }
    socket.write_all(&response).await?;
    socket.shutdown().await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listen_addresses() {
        assert_eq!(listen_address(":6970"), "0.0.0.0:6970");
        assert_eq!(listen_address("127.0.0.1:80"), "127.0.0.1:80");
    }
}
