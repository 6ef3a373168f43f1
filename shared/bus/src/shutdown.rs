//! Stopping a service: SIGINT (Ctrl-C) and SIGTERM (what systemd and
//! `kill` send) mean the same thing, "stop cleanly", and a service that
//! stops so exits 0. The dominator, mdbd and subd take the future
//! [`signalled`] returns as their `run`'s shutdown; tests pass any other.
//!
//! One-shot commands (imagetool, domtool, domsetup) keep the default: a
//! command interrupted did not do what it was asked, and its exit status
//! says so.

use std::future::Future;

use tokio::signal::unix::{signal, SignalKind};

/// Completes when the process receives SIGINT or SIGTERM.
///
/// The handlers are installed when this is called, not when the future is
/// first polled, so a signal that arrives while the service is still
/// connecting is not lost. Call it on a Tokio runtime.
pub fn signalled() -> impl Future<Output = ()> + Send + 'static {
    let interrupt = signal(SignalKind::interrupt());
    let terminate = signal(SignalKind::terminate());
    async move {
        match (interrupt, terminate) {
            (Ok(mut interrupt), Ok(mut terminate)) => {
                tokio::select! {
                    _ = interrupt.recv() => {}
                    _ = terminate.recv() => {}
                }
            }
            (Ok(mut one), Err(e)) | (Err(e), Ok(mut one)) => {
                tracing::warn!(error = %e, "cannot listen for one of SIGINT and SIGTERM");
                one.recv().await;
            }
            (Err(e), Err(_)) => {
                tracing::warn!(error = %e, "cannot listen for SIGINT or SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    }
}
