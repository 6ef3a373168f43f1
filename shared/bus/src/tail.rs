//! Following what happens: the fleet's recent events then each new one,
//! and every message under the fleet's prefix as the server sees it, for
//! `domtool watch` and status screens.
//!
//! Both read without a consumer, so a viewer's credential will do.

use std::collections::HashMap;

use bytes::Bytes;
use dom_model::Event;
use futures::{Stream, StreamExt};

use crate::connect::{Bus, BusError};
use crate::fleet::FleetKind;

/// One message heard under the fleet's prefix.
#[derive(Clone, Debug)]
pub enum Heard {
    /// On a fleet stream's subject (MDB, image, state, control, desired
    /// state): its kind, the name the subject carries, the payload.
    Fleet {
        kind: FleetKind,
        name: String,
        payload: Bytes,
    },
    /// On an event subject: the event, or why it does not decode.
    Event {
        subject: String,
        event: Result<Event, String>,
    },
}

impl Bus {
    /// A subscription to every event subject, for
    /// [`Bus::recent_events_then`].
    pub async fn subscribe_events(&self) -> Result<async_nats::Subscriber, BusError> {
        let subject = self.subjects.all("event");
        let live = self
            .guarded_on(&subject, self.client.subscribe(subject.clone()))
            .await?
            .map_err(|e| self.js_error(format!("subscribing to {subject}: {e}")))?;
        self.flush().await?;
        Ok(live)
    }

    /// The last `n` events, oldest first, then every new one, each with
    /// the number of events still to come of those stored when it was
    /// read; and how many there are to read. Events that do not decode
    /// are left out: anyone may publish on an event subject.
    pub async fn recent_events(
        &self,
        n: usize,
    ) -> Result<
        (
            impl Stream<Item = Result<(Event, u64), BusError>> + Send + 'static,
            u64,
        ),
        BusError,
    > {
        let live = self.subscribe_events().await?;
        self.recent_events_then(n, live).await
    }

    /// [`Bus::recent_events`] with the subscription for new events already
    /// made. An event published after it was made and before the stored
    /// ones are read arrives both ways; it is shown once.
    pub async fn recent_events_then(
        &self,
        n: usize,
        live: async_nats::Subscriber,
    ) -> Result<
        (
            impl Stream<Item = Result<(Event, u64), BusError>> + Send + 'static,
            u64,
        ),
        BusError,
    > {
        let filter = self.subjects.all("event");
        let name = self.subjects.events_stream();
        let failed = |e: &dyn std::fmt::Display| self.js_error(format!("reading {name}: {e}"));
        let mut stream = self.js.get_stream(&name).await.map_err(|e| failed(&e))?;
        let state = stream.info().await.map_err(|e| failed(&e))?.state.clone();
        let start = state
            .last_sequence
            .saturating_sub(n as u64)
            .max(state.first_sequence)
            .max(1);
        let mut stored = Vec::new();
        // What was read, so that the same message coming in live is
        // dropped: each stored copy stands for at most one live one.
        let mut read_payloads: HashMap<Bytes, usize> = HashMap::new();
        let mut read = std::pin::pin!(self.read_stream(&name, &filter, start));
        while let Some(message) = read.next().await {
            let payload = message?.payload;
            if let Ok(event) = Event::decode(&payload) {
                stored.push(event);
                *read_payloads.entry(payload).or_default() += 1;
            }
        }
        let count = stored.len() as u64;
        let replay = stored
            .into_iter()
            .enumerate()
            .map(move |(i, event)| Ok((event, count - 1 - i as u64)));
        let live = live.filter_map(move |message| {
            let seen = match read_payloads.get_mut(&message.payload) {
                Some(copies) => {
                    *copies -= 1;
                    if *copies == 0 {
                        read_payloads.remove(&message.payload);
                    }
                    true
                }
                None => false,
            };
            let event = if seen {
                None
            } else {
                Event::decode(&message.payload)
                    .ok()
                    .map(|event| Ok((event, 0)))
            };
            async move { event }
        });
        Ok((futures::stream::iter(replay).chain(live), count))
    }

    /// Every message published under the fleet's prefix from now on, in
    /// the order the server saw them (one subscription for all), as
    /// [`Heard`]. Subjects that are neither a fleet stream's nor an
    /// event's are left out.
    pub async fn hear_all(&self) -> Result<impl Stream<Item = Heard> + Send + 'static, BusError> {
        let subject = format!("{}.>", self.subjects.prefix());
        let messages = self
            .guarded_on(&subject, self.client.subscribe(subject.clone()))
            .await?
            .map_err(|e| self.js_error(format!("subscribing to {subject}: {e}")))?;
        self.flush().await?;
        let bus = self.clone();
        let events = format!("{}.event.", self.subjects.prefix());
        Ok(messages.filter_map(move |message| {
            let subject = message.subject.as_str();
            let heard = match FleetKind::ALL
                .into_iter()
                .find_map(|kind| Some((kind, bus.fleet_name(kind, subject)?)))
            {
                Some((kind, name)) => Some(Heard::Fleet {
                    kind,
                    name: name.to_string(),
                    payload: message.payload.clone(),
                }),
                None if subject.starts_with(&events) => Some(Heard::Event {
                    subject: subject.to_string(),
                    event: Event::decode(&message.payload).map_err(|e| e.to_string()),
                }),
                None => None,
            };
            async move { heard }
        }))
    }

    /// Waits until the server has seen everything sent so far
    /// (subscriptions included).
    pub async fn flush(&self) -> Result<(), BusError> {
        self.client.flush().await.map_err(|e| BusError::Connect {
            server: self.server().to_string(),
            reason: e.to_string(),
        })
    }
}
