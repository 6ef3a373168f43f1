//! Permission violations, reported the moment the server refuses.
//!
//! When a credential may not publish to a subject, nats-server drops the
//! message and says so on the connection (`-ERR 'Permissions Violation
//! for Publish to "dom.desired.web1"'`); the publish itself would only
//! time out waiting for an acknowledgement that never comes. [`Denials`]
//! hears those errors (through the client's event callback) and
//! [`Bus::guarded`] races each publish or request against them, so a
//! denied write fails at once, saying which subject, and changes nothing.

use std::future::Future;

use tokio::sync::broadcast;

use crate::connect::{Bus, BusError};

/// What the server refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Denied {
    /// `publish` or `subscribe`.
    pub action: &'static str,
    pub subject: String,
}

impl Denied {
    /// Reads a server error such as `Permissions Violation for Publish to
    /// "dom.x"` (the client has already taken off the quotes around it).
    pub fn parse(error: &str) -> Option<Self> {
        let rest = error.trim().strip_prefix("Permissions Violation for ")?;
        let (action, rest) = if let Some(rest) = rest.strip_prefix("Publish to ") {
            ("publish", rest)
        } else if let Some(rest) = rest.strip_prefix("Subscription to ") {
            ("subscribe", rest)
        } else {
            return None;
        };
        let subject = rest.strip_prefix('"')?.split('"').next()?;
        Some(Self {
            action,
            subject: subject.to_string(),
        })
    }
}

/// The violations of one connection, as they arrive.
#[derive(Clone, Debug)]
pub(crate) struct Denials {
    tx: broadcast::Sender<Denied>,
}

impl Denials {
    pub(crate) fn new() -> Self {
        Self {
            tx: broadcast::channel(256).0,
        }
    }

    /// Called from the client's event callback with each server error.
    pub(crate) fn server_error(&self, error: &str) {
        if let Some(denied) = Denied::parse(error) {
            tracing::debug!(action = denied.action, subject = %denied.subject, "permission denied");
            let _ = self.tx.send(denied);
        }
    }

    fn subscribe(&self) -> broadcast::Receiver<Denied> {
        self.tx.subscribe()
    }
}

impl Bus {
    /// Runs `work` (a publish or request that starts when first polled),
    /// failing with [`BusError::PermissionDenied`] as soon as the server
    /// refuses a publish to a subject `denies` picks, or a subscription to
    /// this connection's inboxes, which every request needs.
    pub async fn guarded<T>(
        &self,
        denies: impl Fn(&str) -> bool,
        work: impl Future<Output = T>,
    ) -> Result<T, BusError> {
        let mut denials = self.denials.subscribe();
        let mut work = std::pin::pin!(work);
        loop {
            tokio::select! {
                biased;
                done = &mut work => return Ok(done),
                denied = denials.recv() => match denied {
                    Ok(Denied { action: "publish", subject }) if denies(&subject) => {
                        return Err(BusError::PermissionDenied { action: "publish to", subject });
                    }
                    Ok(Denied { action: "subscribe", subject })
                        if subject.starts_with(self.inbox_prefix()) =>
                    {
                        return Err(BusError::PermissionDenied { action: "subscribe to", subject });
                    }
                    Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {}
                    Err(broadcast::error::RecvError::Closed) => return Ok(work.await),
                },
            }
        }
    }

    /// [`Bus::guarded`] for work that publishes to `subject` only.
    pub async fn guarded_on<T>(
        &self,
        subject: &str,
        work: impl Future<Output = T>,
    ) -> Result<T, BusError> {
        self.guarded(|denied| denied == subject, work).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_violations() {
        assert_eq!(
            Denied::parse(r#"Permissions Violation for Publish to "dom.desired.web1""#),
            Some(Denied {
                action: "publish",
                subject: "dom.desired.web1".into()
            })
        );
        assert_eq!(
            Denied::parse(
                r#"Permissions Violation for Subscription to "_INBOX.x.*" using queue "q""#
            ),
            Some(Denied {
                action: "subscribe",
                subject: "_INBOX.x.*".into()
            })
        );
        assert_eq!(Denied::parse("Authorization Violation"), None);
        assert_eq!(Denied::parse("Permissions Violation for Publish to"), None);
    }
}
