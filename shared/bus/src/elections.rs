//! Riding out a cluster's elections. When the server that leads a stream
//! (or JetStream's own metadata) is lost, the others elect a new leader
//! within a few seconds; requests meanwhile time out or find no one to
//! answer. Reads and acknowledged publishes are tried again for a while
//! ([`PATIENCE`]) instead of failing the tool: a publish carries a message
//! id, so a retry whose first attempt was stored after all is dropped by
//! the stream as a duplicate, and nothing is applied twice.

use std::fmt::Display;
use std::future::Future;
use std::time::{Duration, Instant};

/// How long a request is tried again while a cluster elects a leader.
pub const PATIENCE: Duration = Duration::from_secs(20);

/// Runs `attempt` until it gives a result that `transient` does not call
/// an election's (or [`PATIENCE`] has passed), waiting a little longer
/// after each.
pub async fn through_elections<R, Fut>(
    what: &str,
    mut attempt: impl FnMut() -> Fut,
    transient: impl Fn(&R) -> bool,
) -> R
where
    Fut: Future<Output = R>,
{
    let deadline = Instant::now() + PATIENCE;
    let mut wait = Duration::from_millis(100);
    loop {
        let result = attempt().await;
        if !transient(&result) || Instant::now() + wait > deadline {
            return result;
        }
        tracing::debug!(what, ?wait, "no answer from JetStream; trying again");
        tokio::time::sleep(wait).await;
        wait = (wait * 2).min(Duration::from_secs(2));
    }
}

/// Whether an error is what a request meets while a leader is elected:
/// a timeout, no responders, JetStream not available for a moment. The
/// client's error kinds differ per call, so their words are read.
pub fn transient_error(error: &impl Display) -> bool {
    let text = error.to_string().to_ascii_lowercase();
    [
        "timed out",
        "no responders",
        "temporarily unavailable",
        "jetstream not enabled",
        "no suitable peers",
        "leader",
        "(code 503",
    ]
    .iter()
    .any(|words| text.contains(words))
}

/// As [`transient_error`], for the request of a guarded call (one the
/// server may refuse this credential: that is no election's).
pub(crate) fn transient<T, E: Display>(result: &Result<Result<T, E>, crate::BusError>) -> bool {
    matches!(result, Ok(Err(e)) if transient_error(e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_election_s_errors_are_transient_and_others_not() {
        assert!(transient_error(
            &"request error: timed out: deadline has elapsed"
        ));
        assert!(transient_error(&"no responders"));
        assert!(transient_error(
            &"JetStream system temporarily unavailable (code 503, error code 10008)"
        ));
        assert!(!transient_error(
            &"stream not found (code 404, error code 10059)"
        ));
        assert!(!transient_error(&"Permissions Violation for Publish"));
    }

    #[tokio::test]
    async fn a_request_is_tried_until_it_is_answered() {
        let mut tries = 0;
        let result: Result<u32, String> = through_elections(
            "test",
            || {
                tries += 1;
                let answer = if tries < 3 {
                    Err("timed out".to_string())
                } else {
                    Ok(7)
                };
                async move { answer }
            },
            |r| r.as_ref().err().is_some_and(transient_error),
        )
        .await;
        assert_eq!((result, tries), (Ok(7), 3));
        let mut tries = 0;
        let result: Result<u32, String> = through_elections(
            "test",
            || {
                tries += 1;
                async { Err("stream not found".to_string()) }
            },
            |r| r.as_ref().err().is_some_and(transient_error),
        )
        .await;
        assert_eq!((result, tries), (Err("stream not found".into()), 1));
    }
}
