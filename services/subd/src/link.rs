//! The agent's link to the bus, which may be down for any length of time.
//!
//! - Connecting is retried until it works (a machine may boot long before
//!   NATS is reachable); after that the client rides out outages on its
//!   own.
//! - The host's desired state is followed from the last one stored
//!   ([`Bus::follow_desired`], which reads it again on every cue and
//!   reconnect), followed again whenever a read fails, and also read every
//!   30 s whatever happens. So nothing published during an outage is
//!   missed. The same state may be handed over more than once; the agent
//!   ignores repeats.
//! - State reports and events are queued and published in order, retried
//!   until they are stored. Only the newest state report matters, so older
//!   unsent ones are dropped; events are kept, up to a bound.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use dom_bus::{Bus, ConnectArgs, DesiredMessage};
use dom_model::{Event, StateReport};
use futures::StreamExt;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

/// Longest wait between two connection attempts.
const MAX_CONNECT_BACKOFF: Duration = Duration::from_secs(5);
/// Wait before following again after a read failed, and before
/// retrying a publish.
const RETRY: Duration = Duration::from_secs(1);
/// How often the last desired state is read besides following it: a
/// safety net for a cue the connection dropped (the follow itself reads
/// again on every cue and every reconnect).
const CHECK_LAST: Duration = Duration::from_secs(30);
/// Most events kept while the bus is unreachable; the oldest go first.
const MAX_QUEUED_EVENTS: usize = 10_000;

/// What the link hands the agent.
pub enum Inbound {
    /// Connected (once; later outages are handled by the client).
    Connected(Box<Bus>),
    Desired(Box<DesiredMessage>),
}

enum Outbound {
    State(Box<StateReport>),
    Event(Box<Event>),
}

/// The running link. Dropping it stops its tasks.
pub struct Link {
    outbox: mpsc::UnboundedSender<Outbound>,
    /// Items queued and not yet published (or dropped).
    unsent: Arc<AtomicUsize>,
    tasks: Vec<JoinHandle<()>>,
}

impl Link {
    /// Connects in the background and follows `host`'s desired state,
    /// handing what arrives to `inbound`.
    pub fn start(
        connect: ConnectArgs,
        host: String,
        inbound: mpsc::UnboundedSender<Inbound>,
    ) -> Self {
        let (bus_tx, bus_rx) = watch::channel(None);
        let (outbox, queue) = mpsc::unbounded_channel();
        let follow = tokio::spawn(follow(connect, host, inbound, bus_tx));
        let unsent = Arc::new(AtomicUsize::new(0));
        let publish = tokio::spawn(publish(bus_rx, queue, unsent.clone()));
        Self {
            outbox,
            unsent,
            tasks: vec![follow, publish],
        }
    }

    /// Queues a state report, replacing any not yet published.
    pub fn send_state(&self, report: StateReport) {
        self.send(Outbound::State(Box::new(report)));
    }

    /// Queues an event.
    pub fn send_event(&self, event: Event) {
        self.send(Outbound::Event(Box::new(event)));
    }

    fn send(&self, item: Outbound) {
        self.unsent.fetch_add(1, Ordering::AcqRel);
        if self.outbox.send(item).is_err() {
            self.unsent.fetch_sub(1, Ordering::AcqRel);
        }
    }

    /// Waits (up to `limit`) until everything queued so far is published:
    /// for an agent about to stop or restart itself.
    pub async fn flush(&self, limit: Duration) {
        let deadline = tokio::time::Instant::now() + limit;
        while self.unsent.load(Ordering::Acquire) > 0 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for Link {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

async fn connect_until_up(connect: &ConnectArgs, host: &str) -> Bus {
    let mut backoff = Duration::from_millis(250);
    let mut warned = false;
    loop {
        match Bus::connect(connect, &format!("subd {host}")).await {
            Ok(bus) => {
                if warned {
                    tracing::info!(server = %connect.server, "connected to NATS");
                }
                return bus;
            }
            Err(e) => {
                if !warned {
                    tracing::warn!(error = %e, "NATS unreachable; enforcing the last known image and retrying");
                    warned = true;
                } else {
                    tracing::debug!(error = %e, "NATS still unreachable");
                }
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(MAX_CONNECT_BACKOFF);
            }
        }
    }
}

async fn follow(
    connect: ConnectArgs,
    host: String,
    inbound: mpsc::UnboundedSender<Inbound>,
    bus_tx: watch::Sender<Option<Bus>>,
) {
    let bus = connect_until_up(&connect, &host).await;
    if let Err(e) = bus.ensure_streams().await {
        // Agents may lack the permission; the streams then exist already.
        tracing::debug!(error = %e, "cannot set up streams");
    }
    let _ = bus_tx.send(Some(bus.clone()));
    if inbound
        .send(Inbound::Connected(Box::new(bus.clone())))
        .is_err()
    {
        return;
    }
    let mut failing = false;
    loop {
        match bus.follow_desired(&host, None).await {
            Ok(mut states) => {
                let mut last = 0;
                let mut check = tokio::time::interval(CHECK_LAST);
                loop {
                    // Reading the last desired state now and then bounds
                    // how late a change is seen, whatever was missed.
                    let item = tokio::select! {
                        item = states.next() => item,
                        _ = check.tick() => match bus.desired(&host).await {
                            Ok(Some(message)) => Some(Ok(message)),
                            _ => continue,
                        },
                    };
                    match item {
                        Some(Ok(message)) if message.sequence > last => {
                            failing = false;
                            last = message.sequence;
                            if inbound.send(Inbound::Desired(Box::new(message))).is_err() {
                                return;
                            }
                        }
                        Some(Ok(_)) => {}
                        Some(Err(e)) => {
                            tracing::debug!(error = %e, "following the desired state failed; following again");
                            break;
                        }
                        None => break,
                    }
                }
            }
            Err(e) if !failing => {
                tracing::warn!(error = %e, "cannot follow the desired state; retrying");
                failing = true;
            }
            Err(e) => tracing::debug!(error = %e, "cannot follow the desired state"),
        }
        tokio::time::sleep(RETRY).await;
    }
}

async fn publish(
    mut bus_rx: watch::Receiver<Option<Bus>>,
    mut queue: mpsc::UnboundedReceiver<Outbound>,
    unsent: Arc<AtomicUsize>,
) {
    let done = |n: usize| {
        unsent.fetch_sub(n, Ordering::AcqRel);
    };
    let mut events: VecDeque<Event> = VecDeque::new();
    let mut state: Option<StateReport> = None;
    let mut open = true;
    loop {
        // Take everything queued; wait for more only when nothing is left.
        if events.is_empty() && state.is_none() {
            match queue.recv().await {
                Some(item) => done(take(item, &mut events, &mut state)),
                None => return,
            }
        }
        while open {
            match queue.try_recv() {
                Ok(item) => done(take(item, &mut events, &mut state)),
                Err(mpsc::error::TryRecvError::Empty) => break,
                Err(mpsc::error::TryRecvError::Disconnected) => open = false,
            }
        }
        let bus = match bus_rx.wait_for(Option::is_some).await {
            Ok(bus) => bus.clone().expect("waited for a bus"),
            Err(_) => return,
        };
        let mut failed = false;
        while let Some(event) = events.front() {
            match bus.publish_event(event).await {
                Ok(_) => {
                    events.pop_front();
                    done(1);
                }
                Err(e) => {
                    tracing::debug!(error = %e, "cannot publish event; retrying");
                    failed = true;
                    break;
                }
            }
        }
        if !failed {
            if let Some(report) = &state {
                match bus.publish_state(report).await {
                    Ok(_) => {
                        state = None;
                        done(1);
                    }
                    Err(e) => {
                        tracing::debug!(error = %e, "cannot publish state report; retrying");
                        failed = true;
                    }
                }
            }
        }
        if failed {
            tokio::time::sleep(RETRY).await;
        } else if !open {
            return;
        }
    }
}

/// Queues one item; returns how many queued items it made redundant (a
/// state report replaced, an event dropped), which count as done.
fn take(item: Outbound, events: &mut VecDeque<Event>, state: &mut Option<StateReport>) -> usize {
    match item {
        Outbound::State(report) => usize::from(state.replace(*report).is_some()),
        Outbound::Event(event) => {
            let mut dropped = 0;
            if events.len() >= MAX_QUEUED_EVENTS {
                events.pop_front();
                dropped = 1;
                tracing::warn!("too many events waiting for NATS; dropping the oldest");
            }
            events.push_back(*event);
            dropped
        }
    }
}
