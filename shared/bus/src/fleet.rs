//! The fleet's view for controllers and dashboards: the last message of
//! every subject of the MDB, image, state, control and desired-state
//! streams, replayed, then every new one as it is published.
//!
//! The dominator keeps no state of its own: it rebuilds its view from this
//! feed at start. [`FleetUpdate::CaughtUp`] says when the replay is over,
//! so that nothing is decided on half a view.

use std::collections::HashSet;

use async_nats::jetstream::consumer::{pull, AckPolicy, DeliverPolicy, ReplayPolicy};
use bytes::Bytes;
use futures::{Stream, StreamExt};

use crate::{Bus, BusError};

/// Which stream a message came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FleetKind {
    /// `dom.mdb.<host>`: MDB records.
    Mdb,
    /// `dom.image.<name>`: image records and tombstones.
    Image,
    /// `dom.state.<host>`: state reports.
    State,
    /// `dom.ctl.<control>`: fleet controls.
    Ctl,
    /// `dom.desired.<host>`: desired states.
    Desired,
}

impl FleetKind {
    pub const ALL: [FleetKind; 5] = [
        FleetKind::Mdb,
        FleetKind::Image,
        FleetKind::State,
        FleetKind::Ctl,
        FleetKind::Desired,
    ];

    /// The subject token of the kind (`mdb`, `image`, ...).
    fn token(self) -> &'static str {
        match self {
            FleetKind::Mdb => "mdb",
            FleetKind::Image => "image",
            FleetKind::State => "state",
            FleetKind::Ctl => "ctl",
            FleetKind::Desired => "desired",
        }
    }
}

/// One stored message, with the name its subject carries (host, image or
/// control). The payload is raw: decoding (and refusing what does not
/// decode) is the reader's business.
#[derive(Clone, Debug)]
pub struct FleetMessage {
    pub kind: FleetKind,
    pub name: String,
    pub payload: Bytes,
    pub sequence: u64,
    /// When the server stored it (`None` when not known).
    pub published: Option<std::time::SystemTime>,
}

/// What the feed yields.
#[derive(Clone, Debug)]
pub enum FleetUpdate {
    Message(FleetMessage),
    /// Every stream's replay is over; from here on messages are new.
    CaughtUp,
}

type Consumed = futures::stream::BoxStream<
    'static,
    Result<async_nats::jetstream::Message, async_nats::jetstream::consumer::pull::MessagesError>,
>;

/// How often the server says a quiet feed is still there. Two missed in a
/// row and the feed is followed again: an ephemeral consumer lives on one
/// server and is gone with it, so on a cluster this is how soon the
/// dominator follows on after losing a server.
/// Messages a feed asks for at once.
const FEED_BATCH: usize = 1000;

const FEED_HEARTBEAT: std::time::Duration = std::time::Duration::from_secs(1);

/// Messages of one stream as (message, messages still pending), in stream
/// order with none skipped: resumed after the last one delivered whenever
/// the consumer fails, misses its heartbeats or skips a message.
fn resuming_feed(
    bus: Bus,
    kind: FleetKind,
    first: Consumed,
) -> impl Stream<Item = (FleetMessage, u64)> + Send {
    const RETRY: std::time::Duration = std::time::Duration::from_millis(500);
    // The consumer, and the last stream and consumer sequences it gave.
    let state = (bus, Some(first), None::<u64>, 0u64);
    futures::stream::unfold(
        state,
        move |(bus, mut messages, mut last, mut delivered)| async move {
            loop {
                let Some(current) = messages.as_mut() else {
                    match bus.fleet_consumer(kind, last).await {
                        Ok(resumed) => (messages, delivered) = (Some(resumed), 0),
                        Err(e) => {
                            tracing::debug!(error = %e, "fleet feed waiting for the server");
                            tokio::time::sleep(RETRY).await;
                        }
                    }
                    continue;
                };
                match current.next().await {
                    Some(Ok(msg)) => {
                        let Ok(info) = msg.info() else { continue };
                        if info.consumer_sequence != delivered + 1 {
                            tracing::info!(?kind, after = ?last, "fleet feed skipped a message; resuming");
                            messages = None;
                            continue;
                        }
                        delivered = info.consumer_sequence;
                        let (sequence, pending) = (info.stream_sequence, info.pending);
                        last = Some(sequence);
                        let nanos = u64::try_from(info.published.unix_timestamp_nanos()).ok();
                        let message = FleetMessage {
                            kind,
                            name: bus.fleet_name(kind, &msg.subject).unwrap_or("").to_string(),
                            payload: msg.payload.clone(),
                            sequence,
                            published: nanos.map(|n| {
                                std::time::UNIX_EPOCH + std::time::Duration::from_nanos(n)
                            }),
                        };
                        return Some(((message, pending), (bus, messages, last, delivered)));
                    }
                    Some(Err(e)) => {
                        tracing::info!(error = %e, ?kind, after = ?last, "fleet feed interrupted; resuming");
                        messages = None;
                    }
                    None => {
                        messages = None;
                        tokio::time::sleep(RETRY).await;
                    }
                }
            }
        },
    )
}

impl Bus {
    /// The name a subject of `kind` carries.
    pub fn fleet_name<'a>(&self, kind: FleetKind, subject: &'a str) -> Option<&'a str> {
        subject
            .strip_prefix(self.subjects.prefix())?
            .strip_prefix('.')?
            .strip_prefix(kind.token())?
            .strip_prefix('.')
            .filter(|s| !s.is_empty())
    }

    fn fleet_stream(&self, kind: FleetKind) -> String {
        match kind {
            FleetKind::Mdb => self.subjects.mdb_stream(),
            FleetKind::Image => self.subjects.images_stream(),
            FleetKind::State => self.subjects.state_stream(),
            FleetKind::Ctl => self.subjects.ctl_stream(),
            FleetKind::Desired => self.subjects.desired_stream(),
        }
    }

    /// Replays the last message of every subject of `kinds`, yields
    /// [`FleetUpdate::CaughtUp`], then follows new messages, for ever: when
    /// the server goes away the feed waits and resumes after the last
    /// message it delivered. Only setting up can fail.
    pub async fn follow_fleet(
        &self,
        kinds: &[FleetKind],
    ) -> Result<impl Stream<Item = Result<FleetUpdate, BusError>> + Send + 'static, BusError> {
        let mut feeds = Vec::new();
        let mut replaying = HashSet::new();
        for &kind in kinds {
            let name = self.fleet_stream(kind);
            let mut stream = self
                .js
                .get_stream(&name)
                .await
                .map_err(|e| self.js_error(format!("reading stream {name}: {e}")))?;
            let info = stream
                .info()
                .await
                .map_err(|e| self.js_error(format!("reading stream {name}: {e}")))?;
            if info.state.messages > 0 {
                replaying.insert(kind);
            }
            let first = self.fleet_consumer(kind, None).await?;
            feeds.push(resuming_feed(self.clone(), kind, first).boxed());
        }
        let merged = futures::stream::select_all(feeds);
        let mut caught_up = replaying.is_empty();
        let start = caught_up.then_some(Ok(FleetUpdate::CaughtUp));
        let follow = merged.flat_map(move |(message, pending)| {
            let kind = message.kind;
            let mut out = vec![Ok(FleetUpdate::Message(message))];
            if !caught_up && pending == 0 && replaying.remove(&kind) && replaying.is_empty() {
                caught_up = true;
                out.push(Ok(FleetUpdate::CaughtUp));
            }
            futures::stream::iter(out)
        });
        Ok(futures::stream::iter(start).chain(follow))
    }

    /// A consumer of its own on the stream of `kind`, kept in memory on
    /// one server, acknowledging nothing: the last message of each subject,
    /// or everything after sequence `after`. The server removes it a while
    /// after its reader is gone.
    async fn fleet_consumer(
        &self,
        kind: FleetKind,
        after: Option<u64>,
    ) -> Result<Consumed, BusError> {
        let name = self.fleet_stream(kind);
        let failed = |e: &dyn std::fmt::Display| self.js_error(format!("following {name}: {e}"));
        let stream = self
            .js
            .get_stream_no_info(&name)
            .await
            .map_err(|e| failed(&e))?;
        let deliver_policy = match after {
            Some(sequence) => DeliverPolicy::ByStartSequence {
                start_sequence: sequence + 1,
            },
            None => DeliverPolicy::LastPerSubject,
        };
        let consumer = stream
            .create_consumer(pull::Config {
                filter_subject: self.subjects.all(kind.token()),
                deliver_policy,
                ack_policy: AckPolicy::None,
                replay_policy: ReplayPolicy::Instant,
                num_replicas: 1,
                memory_storage: true,
                inactive_threshold: std::time::Duration::from_secs(30),
                ..Default::default()
            })
            .await
            .map_err(|e| failed(&e))?;
        let messages = consumer
            .stream()
            .max_messages_per_batch(FEED_BATCH)
            .expires(FEED_HEARTBEAT * 10)
            .heartbeat(FEED_HEARTBEAT)
            .messages()
            .await
            .map_err(|e| failed(&e))?;
        Ok(messages.boxed())
    }

    /// Like [`Bus::follow_fleet`] but without consumers, for dashboards
    /// on a credential that may not create one (see [`crate::direct`]):
    /// the last message of every subject of `kinds`, then
    /// [`FleetUpdate::CaughtUp`], then each message published on their
    /// subjects as it is published (with sequence 0 and no time: it comes
    /// from a plain subscription). Whenever the connection comes back the
    /// last messages are read again, so what was published during an
    /// outage is not missed.
    pub async fn watch_fleet(
        &self,
        kinds: &[FleetKind],
    ) -> Result<impl Stream<Item = Result<FleetUpdate, BusError>> + Send + 'static, BusError> {
        let mut live = Vec::new();
        for &kind in kinds {
            let subject = self.subjects.all(kind.token());
            let subscription = self
                .client
                .subscribe(subject.clone())
                .await
                .map_err(|e| self.js_error(format!("subscribing to {subject}: {e}")))?;
            live.push(subscription.map(move |message| (kind, message)).boxed());
        }
        let reconnects = self.reconnects();
        let mut queue = std::collections::VecDeque::new();
        for message in self.last_of_kinds(kinds).await? {
            queue.push_back(FleetUpdate::Message(message));
        }
        queue.push_back(FleetUpdate::CaughtUp);
        let state = (
            self.clone(),
            kinds.to_vec(),
            futures::stream::select_all(live),
            reconnects,
            queue,
        );
        Ok(futures::stream::unfold(
            state,
            |(bus, kinds, mut live, mut reconnects, mut queue)| async move {
                loop {
                    if let Some(update) = queue.pop_front() {
                        return Some((Ok(update), (bus, kinds, live, reconnects, queue)));
                    }
                    tokio::select! {
                        message = live.next() => {
                            let (kind, message) = message?;
                            let Some(name) = bus.fleet_name(kind, &message.subject) else {
                                continue;
                            };
                            queue.push_back(FleetUpdate::Message(FleetMessage {
                                kind,
                                name: name.to_string(),
                                payload: message.payload,
                                sequence: 0,
                                published: None,
                            }));
                        }
                        changed = reconnects.changed() => {
                            changed.ok()?;
                            match bus.last_of_kinds(&kinds).await {
                                Ok(messages) => {
                                    queue.extend(messages.into_iter().map(FleetUpdate::Message))
                                }
                                Err(e) => {
                                    return Some((Err(e), (bus, kinds, live, reconnects, queue)))
                                }
                            }
                        }
                    }
                }
            },
        ))
    }

    async fn last_of_kinds(&self, kinds: &[FleetKind]) -> Result<Vec<FleetMessage>, BusError> {
        let mut out = Vec::new();
        for &kind in kinds {
            out.extend(self.last_per_subject(kind).await?);
        }
        Ok(out)
    }

    /// The last message of every subject of `kind`, in subject order,
    /// read without a consumer (see [`crate::direct`]).
    pub async fn last_per_subject(&self, kind: FleetKind) -> Result<Vec<FleetMessage>, BusError> {
        let latest = self
            .last_of_each(&self.fleet_stream(kind), &self.subjects.all(kind.token()))
            .await?;
        let mut out: Vec<FleetMessage> = latest
            .into_iter()
            .map(|message| FleetMessage {
                kind,
                name: self
                    .fleet_name(kind, &message.subject)
                    .unwrap_or("")
                    .to_string(),
                payload: message.payload,
                sequence: message.sequence,
                published: message.published,
            })
            .collect();
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    /// Publishes an MDB record (or, with an empty payload, a removal) for
    /// `host`, as `nats pub dom.mdb.<host>` would.
    pub async fn publish_mdb(&self, host: &str, payload: Bytes) -> Result<u64, BusError> {
        self.publish_fleet(self.subjects.mdb(host), payload).await
    }

    /// Publishes a fleet control (`dom.ctl.<control>`).
    pub async fn publish_ctl(&self, control: &str, payload: Bytes) -> Result<u64, BusError> {
        self.publish_fleet(self.subjects.ctl(control), payload)
            .await
    }

    async fn publish_fleet(&self, subject: String, payload: Bytes) -> Result<u64, BusError> {
        self.publish_acked(subject, payload, "message").await
    }
}
