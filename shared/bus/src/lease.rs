//! A lease on the bus, so that of several processes able to do one job
//! exactly one does it: the active dominator among standbys.
//!
//! The lease `NAME` is the last message on `dom.lease.NAME` in
//! `DOM_LEASE`, whose messages the stream drops [`LEASE_TTL`] after they
//! were stored. A process takes a free lease by publishing its name there
//! on condition that the subject holds no message, and keeps it by
//! publishing again, every [`RENEW_EVERY`], on condition that the last
//! message is its own previous one. The stream checks each condition as it
//! stores, on its leader, so two can never both take or keep it. A
//! holder that dies stops renewing; its last message expires and a
//! standby, asking every [`TAKE_EVERY`], takes the lease.
//!
//! A holder that stops cleanly ([`Release::release`]) first stops acting,
//! then deletes its last message by its sequence, so a standby takes the
//! lease at its next try instead of waiting for the message to expire.
//!
//! A holder counts itself active only until [`LEASE_TTL`] minus a margin
//! after it *sent* its last successful renewal: by then the stream has
//! not yet dropped that message, so nobody else can hold the lease yet,
//! whatever happened to the acknowledgement. So two holders are never
//! active at once, even when a holder is cut off from the servers. It
//! stands by at that moment even while a renewal still waits for an
//! answer, so that what it says of itself is never stale.

use std::future::Future;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use crate::agent::Published;
use crate::connect::Bus;

/// How long a lease outlives its holder's last renewal.
pub const LEASE_TTL: Duration = Duration::from_secs(4);
/// How often a holder renews.
pub const RENEW_EVERY: Duration = Duration::from_millis(1000);
/// How often a standby tries to take the lease.
pub const TAKE_EVERY: Duration = Duration::from_millis(500);
/// How long a standby waits for the answer to one try. While the stream
/// elects a leader (4 to 9 s in nats-server once its leader is lost), a
/// try goes unanswered; one given up soon is made again, so the standby
/// takes the lease within about a second of the new leader, instead of
/// after the publish's own retries (up to 20 s, backing off to 2 s).
pub const TAKE_WAIT: Duration = Duration::from_millis(1000);
/// Of the lease's time, what a holder leaves unused: the stream's clock
/// started when it stored the renewal, a little after it was sent.
const MARGIN: Duration = Duration::from_millis(1000);

/// What the lease's message says.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseRecord {
    /// Who holds it.
    pub holder: String,
    /// Since when, RFC 3339.
    pub since: String,
}

/// Where a process stands with a lease.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Standing {
    /// It holds the lease, and may act until `until`.
    Active { until: Instant },
    /// Another holds it (who, when known), or nobody could take it yet.
    Standby { holder: Option<String> },
}

impl Standing {
    /// Whether it may act now.
    pub fn is_active(&self) -> bool {
        matches!(self, Standing::Active { until } if Instant::now() < *until)
    }
}

impl Bus {
    /// Tries for the lease `name` as `holder`, for as long as the returned
    /// receiver lives, keeping it once taken. The receiver says where
    /// `holder` stands; check [`Standing::is_active`] right before each act.
    ///
    /// A process restarted under the same `holder` name takes its own
    /// lease back at once, so names must be unique (one per host).
    ///
    /// Dropping the [`Release`] leaves the lease to expire, as a crash
    /// does; [`Release::release`] hands it on at once.
    pub fn hold_lease(&self, name: &str, holder: &str) -> (watch::Receiver<Standing>, Release) {
        let (tx, rx) = watch::channel(Standing::Standby { holder: None });
        let (release, released) = watch::channel(false);
        let keeper = Keeper {
            bus: self.clone(),
            subject: self.subjects.lease(name),
            record: LeaseRecord {
                holder: holder.to_string(),
                since: crate::stamp::now_rfc3339(),
            },
            tx,
        };
        let task = tokio::spawn(keeper.run(released));
        (
            rx,
            Release {
                release,
                task: Some(task),
            },
        )
    }

    /// Who holds the lease `name`, if anybody.
    pub async fn lease_holder(&self, name: &str) -> Option<LeaseRecord> {
        self.lease_message(name).await.map(|(record, _)| record)
    }

    /// The lease `name`'s record and its stream sequence, if it is held.
    async fn lease_message(&self, name: &str) -> Option<(LeaseRecord, u64)> {
        let last = self
            .last_on(
                &self.subjects.lease_stream(),
                self.subjects.lease(name),
                "reading a lease",
            )
            .await
            .ok()??;
        let record = serde_json::from_slice(&last.payload).ok()?;
        Some((record, last.sequence))
    }
}

/// Ends a holder's hold on a lease (see [`Bus::hold_lease`]).
pub struct Release {
    release: watch::Sender<bool>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Release {
    /// Stops acting on the lease and, if it is held, frees it for a
    /// standby; waits at most [`RELEASE_WAIT`] for the servers.
    pub async fn release(mut self) {
        self.release.send_replace(true);
        if let Some(task) = self.task.as_mut() {
            // Past the wait, dropping `self` stops the keeper.
            let _ = tokio::time::timeout(RELEASE_WAIT, task).await;
        }
    }
}

impl Drop for Release {
    fn drop(&mut self) {
        // Dropped without `release`: the holder stops renewing, as a
        // holder that died would.
        if let Some(task) = &self.task {
            task.abort();
        }
    }
}

/// How long [`Release::release`] waits for the servers.
pub const RELEASE_WAIT: Duration = Duration::from_secs(2);

struct Keeper {
    bus: Bus,
    subject: String,
    record: LeaseRecord,
    tx: watch::Sender<Standing>,
}

impl Keeper {
    async fn run(self, mut released: watch::Receiver<bool>) {
        let name = self.subject.rsplit('.').next().unwrap_or("").to_string();
        let payload: bytes::Bytes = serde_json::to_vec(&self.record)
            .expect("a lease record serialises")
            .into();
        // The sequence of the last message this holder stored, and until
        // when it may act on it.
        let mut held: Option<(u64, Instant)> = None;
        loop {
            // Released first: whoever acted on the lease has stopped,
            // so nothing may listen any more.
            if *released.borrow() {
                return self
                    .release(&name, held.map(|(sequence, _)| sequence))
                    .await;
            }
            if self.tx.is_closed() {
                return;
            }
            let after = held.map_or(0, |(sequence, _)| sequence);
            let sent = Instant::now();
            let publish = self.bus.publish_acked_after(
                self.subject.clone(),
                payload.clone(),
                "a lease",
                Some(after),
            );
            let stored = match held {
                Some((_, until)) => self.answered(publish, until).await,
                // Abandoned unanswered, the try may still be stored: the
                // next one is then refused, reads the lease as this
                // holder's, and renews it before acting.
                None => match tokio::time::timeout(TAKE_WAIT, publish).await {
                    Ok(stored) => stored,
                    Err(_) => {
                        tracing::debug!(lease = %name, "no answer to taking the lease yet");
                        wait(TAKE_EVERY, &mut released).await;
                        continue;
                    }
                },
            };
            held = match stored {
                Ok(sequence) => {
                    if held.is_none() {
                        tracing::info!(lease = %name, holder = %self.record.holder, "lease taken: active");
                    }
                    Some((sequence, sent + LEASE_TTL - MARGIN))
                }
                Err(Published::Refused(_)) => {
                    match self.bus.lease_message(&name).await {
                        // Its own, from before a restart: taken back by
                        // renewing it (it acts once that succeeds).
                        Some((other, sequence)) if other.holder == self.record.holder => {
                            Some((sequence, Instant::now()))
                        }
                        other => {
                            let other = other.map(|(record, _)| record);
                            if held.is_some() {
                                tracing::warn!(lease = %name, holder = ?other.as_ref().map(|o| &o.holder), "lease lost: standing by");
                            }
                            self.stand_by(other.map(|o| o.holder));
                            None
                        }
                    }
                }
                Err(Published::Failed(e)) => {
                    tracing::warn!(lease = %name, error = %e, "cannot renew or take the lease");
                    held
                }
            };
            match held {
                Some((_, until)) if Instant::now() < until => {
                    // Receivers hear of becoming active; a renewal only
                    // moves `until` on.
                    self.tx.send_if_modified(|standing| {
                        let was_active = matches!(standing, Standing::Active { .. });
                        *standing = Standing::Active { until };
                        !was_active
                    });
                    wait(RENEW_EVERY, &mut released).await;
                }
                Some(_) => {
                    // Could not renew in time: act no more, but try to
                    // keep the lease if it is still ours.
                    self.stand_by(None);
                    wait(TAKE_EVERY, &mut released).await;
                }
                None => wait(TAKE_EVERY, &mut released).await,
            }
        }
    }

    /// Waits for `publish`, which the servers may leave unanswered for a
    /// long while (one cut off from them, or electing a leader). A holder
    /// whose lease could end meanwhile, at `until`, stands by at that
    /// moment, so that it says it may act no more, and goes on waiting.
    async fn answered<T>(&self, publish: impl Future<Output = T>, until: Instant) -> T {
        let mut publish = std::pin::pin!(publish);
        tokio::select! {
            answer = &mut publish => answer,
            () = tokio::time::sleep_until(until.into()) => {
                self.stand_by(None);
                publish.await
            }
        }
    }

    /// Stops acting, then deletes the lease's message if it is this
    /// holder's (`held`, its sequence). A renewal that raced the delete
    /// is refused, since the subject no longer ends with it; one that was
    /// stored before leaves the lease to expire.
    async fn release(&self, name: &str, held: Option<u64>) {
        self.stand_by(None);
        let Some(sequence) = held else { return };
        let stream = self.bus.subjects.lease_stream();
        let deleted = async {
            let stream = self.bus.js.get_stream_no_info(&stream).await?;
            stream.delete_message(sequence).await.map_err(Into::into)
        };
        let deleted: Result<bool, Box<dyn std::error::Error + Send + Sync>> = deleted.await;
        match deleted {
            Ok(_) => tracing::info!(lease = %name, holder = %self.record.holder, "lease released"),
            Err(e) => {
                tracing::warn!(lease = %name, error = %e, "cannot release the lease; it expires by itself")
            }
        }
    }

    fn stand_by(&self, holder: Option<String>) {
        self.tx.send_if_modified(|standing| {
            let next = Standing::Standby {
                holder: holder.clone(),
            };
            let changed = *standing != next;
            *standing = next;
            changed
        });
    }
}

/// Sleeps for `period`, or until the holder is released.
async fn wait(period: Duration, released: &mut watch::Receiver<bool>) {
    tokio::select! {
        () = tokio::time::sleep(period) => {}
        _ = released.wait_for(|released| *released) => {}
    }
}
