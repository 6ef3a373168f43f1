//! Capturing a live machine (`imagetool adds`): an operator asks a host's
//! agent, on `dom.capture.<host>`, for the tree of its last scan and for
//! the contents of its files, one chunk per request.
//!
//! Every request has exactly one reply, so the asker sets the pace: the
//! agent never holds more than one chunk per request in memory, and a
//! slow uploader simply asks less often. The tree comes as the model's
//! manifest encoding, cut into chunks when it is larger than one message
//! may be; each chunk names the manifest's id, so a tree that changes
//! between two chunks is noticed. No stream captures these subjects:
//! nothing here is stored, and only the operator may ask
//! ([`crate::roles`]).
//!
//! A reply carries its bytes as the payload and what they are in
//! headers, so that file contents cross the wire as they are.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_nats::{HeaderMap, Message};
use bytes::Bytes;
use dom_model::ObjectId;
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use thiserror::Error;
use tokio::sync::oneshot;

use crate::connect::{Bus, BusError};

/// The largest chunk an agent sends; less when the server's payload limit
/// is smaller.
pub const MAX_CHUNK: usize = 512 * 1024;

/// How long an asker waits for an agent's reply.
pub const ANSWER_WAIT: Duration = Duration::from_secs(5);

/// The token after an asker's inbox prefix that marks a capture's answer.
pub const CAPTURE_INBOX: &str = "capture";

/// The protocol's version, in every request.
pub const CAPTURE_VERSION: u32 = 1;

/// Reply header: the whole tree's or object's length in bytes.
const TOTAL: &str = "Dom-Total";
/// Reply header: the id of the manifest a tree chunk is part of.
const MANIFEST: &str = "Dom-Manifest";
/// Reply header: why the agent could not answer.
const ERROR: &str = "Dom-Error";

/// What an asker wants.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CaptureRequest {
    pub v: u32,
    /// One capture's requests share this, so the agent can tally them.
    pub session: String,
    /// Who asks, as they say (for the audit event).
    #[serde(default)]
    pub by: String,
    #[serde(flatten)]
    pub ask: Ask,
}

/// One request's question.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "ask", rename_all = "lowercase")]
pub enum Ask {
    /// The encoded tree from `offset`; `manifest`, once known, is the
    /// tree the earlier chunks came from.
    Tree {
        offset: u64,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        manifest: Option<ObjectId>,
    },
    /// An object's bytes from `offset`.
    Object { object: ObjectId, offset: u64 },
    /// The capture is over: the agent reports what it served.
    Done,
}

/// One chunk of an answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Chunk {
    /// The length of the whole tree or object.
    pub total: u64,
    /// For tree chunks, the manifest's id.
    pub manifest: Option<ObjectId>,
    pub data: Bytes,
}

/// Why a capture request failed.
#[derive(Debug, Error)]
pub enum CaptureError {
    #[error("no agent answered for {host} on {subject}; is subd running and connected?")]
    NoAgent { host: String, subject: String },
    #[error("{host}: {reason}")]
    Refused { host: String, reason: String },
    #[error("{host} sent a malformed reply on {subject}: {reason}")]
    Malformed {
        host: String,
        subject: String,
        reason: String,
    },
    #[error(transparent)]
    Bus(#[from] BusError),
}

/// A request as an agent receives it, with where to answer.
pub struct Asked {
    /// The request, or why it does not decode.
    pub request: Result<CaptureRequest, String>,
    reply: Option<async_nats::Subject>,
}

/// Where the answers to one asker's capture requests come: an inbox only
/// captures use, `PREFIX.capture.TOKEN.N` under the connection's inbox
/// prefix (a permission can name captures' answers apart from any other).
/// One subscription takes them all and hands each to the request it
/// answers.
pub struct CaptureAnswers {
    prefix: String,
    pending: Arc<Mutex<HashMap<u64, oneshot::Sender<Message>>>>,
    next: AtomicU64,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for CaptureAnswers {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Bus {
    /// Subscribes to the answers of capture requests this connection
    /// makes; see [`Bus::ask_capture`].
    pub async fn capture_answers(&self) -> Result<CaptureAnswers, BusError> {
        let inbox = self.client.new_inbox();
        let (prefix, token) = inbox.rsplit_once('.').expect("an inbox has a prefix");
        let prefix = format!("{prefix}.{CAPTURE_INBOX}.{token}");
        let mut answers = self
            .client
            .subscribe(format!("{prefix}.*"))
            .await
            .map_err(|e| BusError::Connect {
                server: self.server().to_string(),
                reason: e.to_string(),
            })?;
        let pending: Arc<Mutex<HashMap<u64, oneshot::Sender<Message>>>> = Arc::default();
        let task = tokio::spawn({
            let pending = pending.clone();
            async move {
                while let Some(message) = answers.next().await {
                    let asked = message
                        .subject
                        .rsplit('.')
                        .next()
                        .and_then(|n| n.parse().ok());
                    let waiting = asked.and_then(|n| pending.lock().expect("pending").remove(&n));
                    if let Some(waiting) = waiting {
                        let _ = waiting.send(message);
                    }
                }
            }
        });
        Ok(CaptureAnswers {
            prefix,
            pending,
            next: AtomicU64::new(0),
            task,
        })
    }

    /// Asks `host`'s agent one question, the answer coming to `answers`,
    /// waiting [`ANSWER_WAIT`] at most.
    pub async fn ask_capture(
        &self,
        answers: &CaptureAnswers,
        host: &str,
        request: &CaptureRequest,
    ) -> Result<Chunk, CaptureError> {
        let subject = self.subjects.capture(host);
        let payload = Bytes::from(serde_json::to_vec(request).expect("requests serialise"));
        let no_agent = || CaptureError::NoAgent {
            host: host.to_string(),
            subject: subject.clone(),
        };
        let n = answers.next.fetch_add(1, Ordering::Relaxed);
        let (answered, answer) = oneshot::channel();
        answers.pending.lock().expect("pending").insert(n, answered);
        let asked = async {
            self.client
                .publish_with_reply(subject.clone(), format!("{}.{n}", answers.prefix), payload)
                .await
                .map_err(|e| BusError::Connect {
                    server: self.server().to_string(),
                    reason: e.to_string(),
                })?;
            match tokio::time::timeout(ANSWER_WAIT, answer).await {
                Ok(Ok(message))
                    if message.status == Some(async_nats::StatusCode::NO_RESPONDERS) =>
                {
                    Err(no_agent())
                }
                Ok(Ok(message)) => Ok(message),
                Ok(Err(_)) | Err(_) => Err(no_agent()),
            }
        };
        let asked = self.guarded_on(&subject, asked).await;
        answers.pending.lock().expect("pending").remove(&n);
        read_chunk(host, &subject, &asked??)
    }

    /// Subscribes to this host's capture subject: the requests operators
    /// send its agent.
    pub async fn capture_requests(
        &self,
        host: &str,
    ) -> Result<futures::stream::BoxStream<'static, Asked>, BusError> {
        let subject = self.subjects.capture(host);
        let subscriber = self
            .client
            .subscribe(subject.clone())
            .await
            .map_err(|e| self.js_error(format!("subscribing to {subject}: {e}")))?;
        Ok(subscriber
            .map(|message| Asked {
                request: serde_json::from_slice::<CaptureRequest>(&message.payload)
                    .map_err(|e| format!("malformed capture request: {e}"))
                    .and_then(|r| match r.v {
                        CAPTURE_VERSION => Ok(r),
                        v => Err(format!("capture request version {v} is not supported")),
                    }),
                reply: message.reply,
            })
            .boxed())
    }

    /// The largest chunk this connection's server lets an agent send.
    pub fn capture_chunk_limit(&self) -> usize {
        let max = self.client.server_info().max_payload;
        // Room for the headers.
        MAX_CHUNK.min(max.saturating_sub(4096).max(4096))
    }

    /// Answers a request: a chunk, or why not.
    pub async fn answer_capture(
        &self,
        asked: &Asked,
        answer: Result<Chunk, String>,
    ) -> Result<(), BusError> {
        let Some(reply) = asked.reply.clone() else {
            return Ok(());
        };
        let mut headers = HeaderMap::new();
        let payload = match answer {
            Ok(chunk) => {
                headers.insert(TOTAL, chunk.total.to_string().as_str());
                if let Some(id) = chunk.manifest {
                    headers.insert(MANIFEST, id.to_hex().as_str());
                }
                chunk.data
            }
            Err(reason) => {
                // A header value is one line.
                headers.insert(ERROR, reason.replace(['\r', '\n'], " ").as_str());
                Bytes::new()
            }
        };
        self.client
            .publish_with_headers(reply, headers, payload)
            .await
            .map_err(|e| self.js_error(format!("answering a capture request: {e}")))
    }
}

/// Reads an agent's reply.
fn read_chunk(host: &str, subject: &str, message: &Message) -> Result<Chunk, CaptureError> {
    let malformed = |reason: &str| CaptureError::Malformed {
        host: host.to_string(),
        subject: subject.to_string(),
        reason: reason.to_string(),
    };
    let headers = message
        .headers
        .as_ref()
        .ok_or_else(|| malformed("no headers"))?;
    if let Some(reason) = headers.get(ERROR) {
        return Err(CaptureError::Refused {
            host: host.to_string(),
            reason: reason.as_str().to_string(),
        });
    }
    let total = headers
        .get(TOTAL)
        .and_then(|v| v.as_str().parse::<u64>().ok())
        .ok_or_else(|| malformed("no total length"))?;
    let manifest = headers
        .get(MANIFEST)
        .map(|v| v.as_str().parse::<ObjectId>())
        .transpose()
        .map_err(|_| malformed("bad manifest id"))?;
    Ok(Chunk {
        total,
        manifest,
        data: message.payload.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_read_as_json() {
        let id = ObjectId::of(b"x");
        let request = CaptureRequest {
            v: CAPTURE_VERSION,
            session: "s".into(),
            by: "ops@h".into(),
            ask: Ask::Object {
                object: id,
                offset: 3,
            },
        };
        let text = serde_json::to_string(&request).unwrap();
        assert!(text.contains(r#""ask":"object""#), "{text}");
        assert_eq!(
            serde_json::from_str::<CaptureRequest>(&text).unwrap(),
            request
        );
        let tree: CaptureRequest =
            serde_json::from_str(r#"{"v":1,"session":"s","ask":"tree","offset":0}"#).unwrap();
        assert_eq!(
            tree.ask,
            Ask::Tree {
                offset: 0,
                manifest: None
            }
        );
    }
}
