//! What passes between the fleet and each machine's agent: desired states
//! on `dom.desired.<host>`, state reports on `dom.state.<host>` and events
//! on `dom.event.<host>.<kind>`.
//!
//! Desired states are read as [`DesiredMessage`]s, which keep a payload
//! that does not decode as an error rather than dropping it: the agent
//! must say why it refused it. Following a host's desired state
//! ([`Bus::follow_desired`]) starts with the last one stored, so an agent
//! that was down catches up, then yields each new one.

use std::time::Duration;

use async_nats::jetstream::context::PublishErrorKind;
use bytes::Bytes;
use dom_model::desired::DesiredError;
use dom_model::report::ReportError;
use dom_model::{DesiredState, Event, StateReport};
use futures::{FutureExt, StreamExt};
use thiserror::Error;

use crate::connect::{Bus, BusError};
use crate::direct::StoredMessage;

/// A state report or event that could not be read.
#[derive(Debug, Error)]
pub enum MessageError {
    #[error("{subject}: {source}")]
    Malformed {
        subject: String,
        source: ReportError,
    },
    #[error(transparent)]
    Bus(#[from] BusError),
}

/// Why a desired state on the bus cannot be used.
#[derive(Debug, Error)]
pub enum Refused {
    #[error(transparent)]
    Invalid(#[from] DesiredError),
    #[error("desired state published for host {subject_host} names host {named}")]
    OtherHost { subject_host: String, named: String },
}

/// Following one host's desired state ([`Bus::follow_desired`]).
struct Follow {
    bus: Bus,
    host: String,
    cues: async_nats::Subscriber,
    reconnects: tokio::sync::watch::Receiver<u64>,
    last: u64,
    found: Option<DesiredMessage>,
    failed: bool,
}

/// A desired state as stored on the bus.
#[derive(Debug)]
pub struct DesiredMessage {
    /// Its sequence on the desired-state stream; later ones are higher.
    pub sequence: u64,
    /// The state, or why it is refused.
    pub state: Result<DesiredState, Refused>,
}

impl DesiredMessage {
    fn new(host: &str, sequence: u64, payload: &[u8]) -> Self {
        let state = match DesiredState::decode(payload) {
            Ok(state) if state.host == host => Ok(state),
            Ok(state) => Err(Refused::OtherHost {
                subject_host: host.to_string(),
                named: state.host,
            }),
            Err(e) => Err(e.into()),
        };
        Self { sequence, state }
    }
}

/// How often a follower reads its desired state again with no cue.
pub const DESIRED_RECHECK: Duration = Duration::from_secs(15);

/// Waits before reading a desired state again, after a cue whose read
/// found nothing newer: the stream may not have stored it yet. A follower
/// reads once per cue and once after each of these at most.
pub const CUE_REREADS: &[Duration] = &[
    Duration::from_millis(2),
    Duration::from_millis(5),
    Duration::from_millis(10),
    Duration::from_millis(25),
    Duration::from_millis(50),
    Duration::from_millis(100),
    Duration::from_millis(250),
    Duration::from_millis(500),
];

/// Why a conditional publish was not stored.
#[derive(Debug)]
pub enum Published {
    /// The subject's last message was not the one expected.
    Refused(BusError),
    /// Anything else.
    Failed(BusError),
}

impl std::fmt::Display for Published {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Published::Refused(e) | Published::Failed(e) => e.fmt(f),
        }
    }
}

impl Bus {
    /// Publishes a desired state on its host's subject.
    pub async fn publish_desired(&self, state: &DesiredState) -> Result<u64, BusError> {
        self.publish_desired_payload(&state.host, state.encode().into())
            .await
    }

    /// Publishes a desired state only if the last one stored for its host
    /// is at stream sequence `after` (0: none is stored). A dominator
    /// passes the last it knows of, so that what it decided on a view
    /// another publisher has since moved past (a standby that took over
    /// while this one was cut off, its publishes buffered) is refused by
    /// the stream instead of stored over the newer state.
    pub async fn publish_desired_after(
        &self,
        state: &DesiredState,
        after: u64,
    ) -> Result<u64, Published> {
        self.publish_acked_after(
            self.subjects.desired(&state.host),
            state.encode().into(),
            "desired state",
            Some(after),
        )
        .await
    }

    /// The last message stored on `host`'s desired-state subject, as it
    /// is (its payload undecoded), if any.
    pub async fn last_desired_message(
        &self,
        host: &str,
    ) -> Result<Option<StoredMessage>, BusError> {
        let what = format!("reading desired state of {host}");
        let stream = self.subjects.desired_stream();
        self.last_on(&stream, self.subjects.desired(host), &what)
            .await
    }

    /// Publishes any payload as `host`'s desired state, as an operator
    /// with `nats pub` could; agents refuse what does not decode.
    pub async fn publish_desired_payload(
        &self,
        host: &str,
        payload: Bytes,
    ) -> Result<u64, BusError> {
        self.publish_acked(self.subjects.desired(host), payload, "desired state")
            .await
    }

    /// The last desired state stored for `host`, if any.
    pub async fn desired(&self, host: &str) -> Result<Option<DesiredMessage>, BusError> {
        let what = format!("reading desired state of {host}");
        let stream = self.subjects.desired_stream();
        let message = self
            .last_on(&stream, self.subjects.desired(host), &what)
            .await?;
        Ok(message.map(|msg| DesiredMessage::new(host, msg.sequence, &msg.payload)))
    }

    /// `host`'s last stored desired state (when its sequence is after
    /// `after`), then each newer one as it is published. An agent needs
    /// only the latest, so one published and replaced while it was not
    /// looking is skipped.
    ///
    /// No consumer is involved, since an agent may not create one
    /// (see [`crate::direct`]): a subscription to the host's subject says
    /// when to read the stored one again, with a direct get the server
    /// answers to this connection alone. What arrives on the subject is
    /// only a cue, so a message no stream stored changes nothing; as the
    /// cue may come before the stream has stored its message, a read that
    /// finds nothing newer is repeated a few times over about a second.
    /// It is also read again whenever the connection comes back, and every
    /// [`DESIRED_RECHECK`] with no cue. The stream
    /// ends with an error when a read fails; callers follow again.
    pub async fn follow_desired(
        &self,
        host: &str,
        after: Option<u64>,
    ) -> Result<futures::stream::BoxStream<'static, Result<DesiredMessage, BusError>>, BusError>
    {
        let subject = self.subjects.desired(host);
        // Subscribed before the first read, so nothing published after
        // it goes unnoticed.
        let cues = self
            .client
            .subscribe(subject)
            .await
            .map_err(|e| self.js_error(format!("following desired state of {host}: {e}")))?;
        let reconnects = self.reconnects();
        let first = self.desired(host).await?;
        let state = Follow {
            bus: self.clone(),
            host: host.to_string(),
            cues,
            reconnects,
            last: after.unwrap_or(0),
            found: first,
            failed: false,
        };
        Ok(futures::stream::unfold(state, |mut follow| async move {
            if follow.failed {
                return None;
            }
            loop {
                if let Some(message) = follow.found.take() {
                    if message.sequence > follow.last {
                        follow.last = message.sequence;
                        return Some((Ok(message), follow));
                    }
                }
                let cued = tokio::select! {
                    cue = follow.cues.next() => {
                        cue?;
                        // A burst of cues needs one read.
                        while let Some(Some(_)) = follow.cues.next().now_or_never() {}
                        true
                    }
                    changed = follow.reconnects.changed() => {
                        changed.ok()?;
                        false
                    }
                    // A cue is a plain message, delivered at most once: one
                    // lost (a remote site's link to the hub down while this
                    // connection stayed up) is made up for by reading again
                    // now and then.
                    _ = tokio::time::sleep(DESIRED_RECHECK) => false,
                };
                // The server hands a cue to subscribers before its stream
                // has necessarily stored the message: when the read finds
                // nothing newer, it is tried again, a little later each
                // time. (A cue for a message no stream stored runs out of
                // tries and changes nothing.)
                let mut waits = if cued { CUE_REREADS } else { &[] }.iter();
                loop {
                    match follow.bus.desired(&follow.host).await {
                        Ok(found) => {
                            let newer = found.as_ref().is_some_and(|m| m.sequence > follow.last);
                            follow.found = found;
                            match waits.next() {
                                Some(wait) if !newer => tokio::time::sleep(*wait).await,
                                _ => break,
                            }
                        }
                        Err(e) => {
                            // Ends after this error; the caller follows again.
                            follow.failed = true;
                            return Some((Err(e), follow));
                        }
                    }
                }
            }
        })
        .boxed())
    }

    /// Publishes a state report on its host's subject.
    pub async fn publish_state(&self, report: &StateReport) -> Result<u64, BusError> {
        let subject = self.subjects.state(&report.host);
        self.publish_acked(subject, report.encode().into(), "state report")
            .await
    }

    /// The last state report of `host`, if any.
    pub async fn state(&self, host: &str) -> Result<Option<StateReport>, MessageError> {
        let what = format!("reading state report of {host}");
        let subject = self.subjects.state(host);
        let stored = self
            .last_on(&self.subjects.state_stream(), subject.clone(), &what)
            .await?;
        stored
            .map(|msg| StateReport::decode(&msg.payload))
            .transpose()
            .map_err(|source| MessageError::Malformed { subject, source })
    }

    /// Publishes an event on `dom.event.<host>.<kind>`.
    pub async fn publish_event(&self, event: &Event) -> Result<u64, BusError> {
        let subject = self.subjects.event(&event.host, &event.kind);
        self.publish_acked(subject, event.encode().into(), "event")
            .await
    }

    /// Every stored event of `host`, oldest first. Events that do not
    /// decode are skipped with a warning.
    pub async fn events(&self, host: &str) -> Result<Vec<Event>, BusError> {
        let stream = self.subjects.events_stream();
        let filter = self.subjects.host_events(host);
        let mut messages = std::pin::pin!(self.read_stream(&stream, &filter, 1));
        let mut out = Vec::new();
        while let Some(message) = messages.next().await {
            let message = message?;
            match Event::decode(&message.payload) {
                Ok(event) if event.host == host => out.push(event),
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(subject = %message.subject, error = %e, "skipping malformed event")
                }
            }
        }
        Ok(out)
    }

    /// Publishes and waits for the stream's acknowledgement; fails at once
    /// when the server refuses this credential the subject.
    pub(crate) async fn publish_acked(
        &self,
        subject: String,
        payload: Bytes,
        what: &str,
    ) -> Result<u64, BusError> {
        self.publish_acked_after(subject, payload, what, None)
            .await
            .map_err(|e| match e {
                Published::Refused(e) | Published::Failed(e) => e,
            })
    }

    /// As [`Bus::publish_acked`]; with `after`, stored only if the last
    /// message on `subject` has that stream sequence (0: none), which the
    /// stream checks as it stores (a refusal is [`Published::Refused`]).
    pub(crate) async fn publish_acked_after(
        &self,
        subject: String,
        payload: Bytes,
        what: &str,
        after: Option<u64>,
    ) -> Result<u64, Published> {
        // One id for every attempt: a retry of a publish the stream did
        // store is dropped as a duplicate, and its ack names the first.
        let id = self.client.new_inbox();
        let after = after.map(|sequence| sequence.to_string());
        let ack = crate::elections::through_elections(
            what,
            || {
                let mut headers = async_nats::HeaderMap::new();
                headers.insert("Nats-Msg-Id", id.as_str());
                if let Some(sequence) = &after {
                    headers.insert("Nats-Expected-Last-Subject-Sequence", sequence.as_str());
                }
                let payload = payload.clone();
                self.guarded_on(&subject, async {
                    let acked = async {
                        self.js
                            .publish_with_headers(subject.clone(), headers, payload)
                            .await?
                            .await
                    };
                    match acked.await {
                        Ok(ack) => Ok(ack),
                        Err(e) if e.kind() == PublishErrorKind::StreamNotFound => {
                            Err(self.no_stream_answered(&subject, e).await)
                        }
                        Err(e) => Err(e.to_string()),
                    }
                })
            },
            crate::elections::transient,
        )
        .await
        .map_err(Published::Failed)?;
        ack.map(|ack| ack.sequence).map_err(|e| {
            let refused = e.contains("wrong last sequence");
            let e = self.js_error(format!("publishing {what} on {subject}: {e}"));
            if refused {
                Published::Refused(e)
            } else {
                Published::Failed(e)
            }
        })
    }

    /// Why no stream answered a publish on `subject`: the server says so
    /// both when no stream takes the subject and when the stream that does
    /// has no leader for a moment (its leader's server was lost). Only the
    /// second is worth waiting for, so the stream is looked up.
    async fn no_stream_answered(&self, subject: &str, error: impl std::fmt::Display) -> String {
        match self.js.stream_by_subject(subject.to_string()).await {
            Ok(stream) => format!("no responders: stream {stream} is electing its leader"),
            Err(lookup) if crate::elections::transient_error(&lookup) => lookup.to_string(),
            Err(_) => error.to_string(),
        }
    }
}
