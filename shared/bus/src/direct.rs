//! Reading streams without consumers: batched direct gets.
//!
//! A JetStream consumer delivers to whatever subject its creator names, and
//! nats-server does not check that subject against the creator's
//! permissions. So in a secured fleet only the operator and the dominator,
//! who live in the streams' own account, may create consumers; builders,
//! agents and viewers read with direct gets, whose answers the server
//! sends back into the asker's own account (docs/SECURITY.md).
//!
//! [`Bus::read_stream`] reads every message of a subject filter from a
//! sequence on, a page of messages per request (`batch` and `max_bytes` of
//! the direct-get API, nats-server 2.11 or newer), and
//! [`Bus::last_of_each`] keeps the last message of each subject.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use futures::{Stream, StreamExt};

use crate::connect::{Bus, BusError};

/// Messages per direct-get request.
const PAGE_MESSAGES: usize = 1024;
/// Bytes per direct-get request (the server stops a page at this size).
const PAGE_BYTES: usize = 8 << 20;
/// How long to wait for the next message of a page.
const PAGE_WAIT: Duration = Duration::from_secs(10);

/// One stored message, as a direct get returns it.
#[derive(Clone, Debug)]
pub struct StoredMessage {
    pub subject: String,
    pub sequence: u64,
    pub payload: Bytes,
    /// When the server stored it, when it said.
    pub published: Option<SystemTime>,
}

/// One page of a read: its messages and where the next one starts (`None`
/// when nothing more matched when it was read).
struct Page {
    messages: Vec<StoredMessage>,
    next: Option<u64>,
}

impl Bus {
    /// Every message of `stream` whose subject matches `filter`, from stream
    /// sequence `from` on, oldest first, as stored when each page is read.
    pub fn read_stream(
        &self,
        stream: &str,
        filter: &str,
        from: u64,
    ) -> impl Stream<Item = Result<StoredMessage, BusError>> + Send + 'static {
        self.read_stream_range(stream, filter, from..=u64::MAX)
    }

    /// As [`Bus::read_stream`], for the messages whose sequences are in
    /// `sequences`; no page asks for more messages than the range can
    /// hold, so nothing past its end is read.
    pub fn read_stream_range(
        &self,
        stream: &str,
        filter: &str,
        sequences: std::ops::RangeInclusive<u64>,
    ) -> impl Stream<Item = Result<StoredMessage, BusError>> + Send + 'static {
        let last = *sequences.end();
        let state = (
            self.clone(),
            stream.to_string(),
            filter.to_string(),
            Some((*sequences.start()).max(1)).filter(|from| *from <= last),
        );
        futures::stream::unfold(state, move |(bus, stream, filter, next)| async move {
            let from = next?;
            let batch = (last - from).saturating_add(1).min(PAGE_MESSAGES as u64) as usize;
            match bus.read_page(&stream, &filter, from, batch).await {
                Ok(page) => {
                    let messages = page.messages.into_iter().filter(|m| m.sequence <= last);
                    let next = page.next.filter(|next| *next <= last);
                    Some((
                        futures::stream::iter(messages.map(Ok).collect::<Vec<_>>()),
                        (bus, stream, filter, next),
                    ))
                }
                Err(e) => Some((
                    futures::stream::iter(vec![Err(e)]),
                    (bus, stream, filter, None),
                )),
            }
        })
        .flatten()
    }

    /// The last stored message of each subject of `stream` matching
    /// `filter`, in subject order.
    pub async fn last_of_each(
        &self,
        stream: &str,
        filter: &str,
    ) -> Result<Vec<StoredMessage>, BusError> {
        let mut last = BTreeMap::new();
        let mut messages = std::pin::pin!(self.read_stream(stream, filter, 1));
        while let Some(message) = messages.next().await {
            let message = message?;
            last.insert(message.subject.clone(), message);
        }
        Ok(last.into_values().collect())
    }

    async fn read_page(
        &self,
        stream: &str,
        filter: &str,
        from: u64,
        batch: usize,
    ) -> Result<Page, BusError> {
        let failed = |e: &dyn std::fmt::Display| self.js_error(format!("reading {stream}: {e}"));
        let request_subject = self.api(stream, &format!("DIRECT.GET.{stream}"));
        let request = serde_json::json!({
            "seq": from,
            "next_by_subj": filter,
            "batch": batch,
            "max_bytes": PAGE_BYTES,
        });
        let inbox = self.client.new_inbox();
        let work = async {
            let mut replies = self
                .client
                .subscribe(inbox.clone())
                .await
                .map_err(|e| failed(&e))?;
            self.client
                .publish_with_reply(request_subject.clone(), inbox, request.to_string().into())
                .await
                .map_err(|e| failed(&e))?;
            let mut messages = Vec::new();
            loop {
                let reply = tokio::time::timeout(PAGE_WAIT, replies.next())
                    .await
                    .map_err(|_| failed(&"no answer from the server"))?
                    .ok_or_else(|| failed(&"connection closed"))?;
                match reply.status.map(u16::from) {
                    None => messages.push(stored(&reply).ok_or_else(|| failed(&"bad reply"))?),
                    // End of the page: more may follow it.
                    Some(204) => {
                        let pending = header_u64(&reply, "Nats-Num-Pending").unwrap_or(0);
                        let next = match messages.last() {
                            Some(last) if pending > 0 => Some(last.sequence + 1),
                            _ => None,
                        };
                        return Ok(Page { messages, next });
                    }
                    // Nothing (more) matches.
                    Some(404) => {
                        return Ok(Page {
                            messages,
                            next: None,
                        })
                    }
                    Some(code) => {
                        let why = reply.description.clone().unwrap_or_default();
                        return Err(failed(&format!("direct get refused: {code} {why}")));
                    }
                }
            }
        };
        self.guarded_on(&request_subject, work).await?
    }
}

fn header<'a>(message: &'a async_nats::Message, name: &str) -> Option<&'a str> {
    message.headers.as_ref()?.get(name).map(|v| v.as_str())
}

fn header_u64(message: &async_nats::Message, name: &str) -> Option<u64> {
    header(message, name)?.parse().ok()
}

fn stored(message: &async_nats::Message) -> Option<StoredMessage> {
    let published = header(message, "Nats-Time-Stamp").and_then(|stamp| {
        let time =
            time::OffsetDateTime::parse(stamp, &time::format_description::well_known::Rfc3339)
                .ok()?;
        let nanos = u64::try_from(time.unix_timestamp_nanos()).ok()?;
        Some(std::time::UNIX_EPOCH + Duration::from_nanos(nanos))
    });
    Some(StoredMessage {
        subject: header(message, "Nats-Subject")?.to_string(),
        sequence: header_u64(message, "Nats-Sequence")?,
        payload: message.payload.clone(),
        published,
    })
}
