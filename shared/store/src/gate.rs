//! The gate between adds and object collections: a collection deletes
//! objects no live image needs, and an add may be about to publish an
//! image that needs some of them (found stored, so not uploaded again).
//! The two never run at once.
//!
//! The gate is one message in the bucket's stream, under a name that is no
//! object id (so listings of objects skip it): the adds under way and the
//! collection, if one runs, each with who it is and when it last said it
//! still runs. Every change is published expecting the last sequence read,
//! so two changes made from the same state cannot both be stored; the
//! loser reads again and decides again. An add enters only when no
//! collection runs, a collection only when no add does.
//!
//! One that dies leaves its entry behind; an entry not renewed for
//! [`STALE`] is dropped by the next change. Holders renew every
//! [`RENEW_EVERY`]; one whose renewals failed for longer than it may trust
//! its entry gives up before it acts on it.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::context::PublishErrorKind;
use async_nats::jetstream::stream::DirectGetErrorKind;
use base64::engine::general_purpose::URL_SAFE;
use base64::Engine;
use serde::{Deserialize, Serialize};

use crate::{NatsStore, StoreError};

/// The gate's name in the bucket; no object is named so (ids are hex).
const GATE_NAME: &str = ".gate";
/// An entry not renewed for this long belongs to one that died.
pub const STALE: Duration = Duration::from_secs(60);
/// How often a holder renews its entry.
pub const RENEW_EVERY: Duration = Duration::from_secs(10);
/// How long a holder trusts its entry after its last renewal: well within
/// [`STALE`], so that it stops before anyone else may drop the entry.
const TRUSTED: Duration = Duration::from_secs(40);
/// How often a refused change is tried again before giving up.
const TRIES: u32 = 100;

/// What the gate holds.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Gate {
    /// Adds under way, by token.
    #[serde(default)]
    pub adds: BTreeMap<String, Holder>,
    /// The collection under way, if one is.
    #[serde(default)]
    pub collecting: Option<(String, Holder)>,
}

/// Who holds an entry, and when (Unix seconds) it last said it still runs.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Holder {
    pub by: String,
    pub renewed: i64,
}

/// Which side of the gate an entry is on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    Add,
    Collect,
}

impl Gate {
    /// Drops the entries not renewed since `now - STALE`.
    fn prune(&mut self, now: i64) {
        let stale = now - STALE.as_secs() as i64;
        self.adds.retain(|_, holder| holder.renewed > stale);
        if self
            .collecting
            .as_ref()
            .is_some_and(|(_, holder)| holder.renewed <= stale)
        {
            self.collecting = None;
        }
    }

    /// Why `side` may not enter now, if it may not.
    fn closed_to(&self, side: Side) -> Option<String> {
        match (side, &self.collecting) {
            (_, Some((_, holder))) => {
                Some(format!("an object collection by {} is running", holder.by))
            }
            (Side::Collect, None) if !self.adds.is_empty() => {
                let by: Vec<&str> = self.adds.values().map(|h| h.by.as_str()).collect();
                Some(format!(
                    "{} image add(s) running (by {})",
                    by.len(),
                    by.join(", ")
                ))
            }
            _ => None,
        }
    }

    fn holds(&self, side: Side, token: &str) -> bool {
        match side {
            Side::Add => self.adds.contains_key(token),
            Side::Collect => self.collecting.as_ref().is_some_and(|(t, _)| t == token),
        }
    }
}

fn now_unix() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

/// What a change to the gate decided.
enum Change<T> {
    /// Store the changed gate, then answer this.
    Store(T),
    /// Leave the gate as it is, and answer this.
    Keep(T),
}

impl NatsStore {
    fn gate_subject(&self) -> String {
        format!("{}{}", self.meta_prefix, URL_SAFE.encode(GATE_NAME))
    }

    /// The gate as stored, with its message's sequence (0: none yet).
    pub async fn gate(&self) -> Result<(Gate, u64), StoreError> {
        let failed = |e: &dyn std::fmt::Display| StoreError::Backend(format!("the gate: {e}"));
        let stream = self
            .js
            .get_stream_no_info(&self.stream)
            .await
            .map_err(|e| failed(&e))?;
        match stream
            .direct_get_last_for_subject(self.gate_subject())
            .await
        {
            Ok(message) => {
                let gate = serde_json::from_slice(&message.payload).unwrap_or_else(|e| {
                    // Anyone who may store objects could have put it there;
                    // an unreadable gate holds nobody, and the next change
                    // replaces it.
                    tracing::warn!(error = %e, "unreadable gate; taking it as empty");
                    Gate::default()
                });
                Ok((gate, message.sequence))
            }
            Err(e) if e.kind() == DirectGetErrorKind::NotFound => Ok((Gate::default(), 0)),
            Err(e) => Err(failed(&e)),
        }
    }

    /// Reads the gate, applies `change` (with stale entries dropped) and
    /// stores the result if `change` says so, expecting what it read to be
    /// the last; a change refused for that is made again on what is there.
    async fn change_gate<T>(
        &self,
        mut change: impl FnMut(&mut Gate) -> Change<T>,
    ) -> Result<T, StoreError> {
        let failed = |e: &dyn std::fmt::Display| StoreError::Backend(format!("the gate: {e}"));
        for _ in 0..TRIES {
            let (mut gate, sequence) = self.gate().await?;
            gate.prune(now_unix());
            let answer = match change(&mut gate) {
                Change::Keep(answer) => return Ok(answer),
                Change::Store(answer) => answer,
            };
            let mut headers = async_nats::HeaderMap::new();
            headers.insert(async_nats::header::NATS_ROLLUP, "sub");
            headers.insert(
                async_nats::header::NATS_EXPECTED_LAST_SUBJECT_SEQUENCE,
                sequence.to_string().as_str(),
            );
            let payload = serde_json::to_vec(&gate).map_err(|e| failed(&e))?;
            let ack = self
                .js
                .publish_with_headers(self.gate_subject(), headers, payload.into())
                .await
                .map_err(|e| failed(&e))?
                .await;
            match ack {
                Ok(_) => return Ok(answer),
                // Changed meanwhile, or read from a copy behind the leader.
                Err(e) if e.kind() == PublishErrorKind::WrongLastSequence => {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                Err(e) => return Err(failed(&e)),
            }
        }
        Err(failed(&"too busy: it changed under every try"))
    }

    /// Enters the gate on `side` as `by`, waiting while the other side
    /// holds it: `waiting` is told why, once, and the wait ends with an
    /// error after `patience`.
    pub async fn enter_gate(
        &self,
        side: Side,
        by: &str,
        patience: Duration,
        waiting: impl FnOnce(&str),
    ) -> Result<Pass, StoreError> {
        let token = nuid::next().to_string();
        let give_up = tokio::time::Instant::now() + patience;
        let mut waiting = Some(waiting);
        loop {
            let closed = self
                .change_gate(|gate| match gate.closed_to(side) {
                    Some(why) => Change::Keep(Some(why)),
                    None => {
                        let holder = Holder {
                            by: by.to_string(),
                            renewed: now_unix(),
                        };
                        match side {
                            Side::Add => drop(gate.adds.insert(token.clone(), holder)),
                            Side::Collect => gate.collecting = Some((token.clone(), holder)),
                        }
                        Change::Store(None)
                    }
                })
                .await?;
            let Some(why) = closed else { break };
            if tokio::time::Instant::now() >= give_up {
                return Err(StoreError::Busy(why));
            }
            if let Some(tell) = waiting.take() {
                tell(&why);
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        Ok(Pass::new(self.clone(), side, token))
    }
}

/// A place at the gate that may no longer be trusted: one that holds
/// it stops before it acts.
#[derive(Debug, thiserror::Error)]
#[error(
    "lost its place at the gate between adds and collections (renewed {0} s ago); run it again"
)]
pub struct Lapsed(i64);

/// A place held at the gate, renewed in the background until
/// [`Pass::leave`].
pub struct Pass {
    store: NatsStore,
    side: Side,
    token: String,
    /// When (Unix seconds) the entry was last renewed.
    renewed: Arc<AtomicI64>,
    /// The entry was found gone: someone took it as stale.
    lost: Arc<AtomicBool>,
    renewer: tokio::task::JoinHandle<()>,
}

impl Pass {
    fn new(store: NatsStore, side: Side, token: String) -> Self {
        let renewed = Arc::new(AtomicI64::new(now_unix()));
        let lost = Arc::new(AtomicBool::new(false));
        let renewer = tokio::spawn({
            let (store, token, renewed, lost) =
                (store.clone(), token.clone(), renewed.clone(), lost.clone());
            async move {
                loop {
                    tokio::time::sleep(RENEW_EVERY).await;
                    let now = now_unix();
                    let held = store
                        .change_gate(|gate| {
                            if !gate.holds(side, &token) {
                                return Change::Keep(false);
                            }
                            let holder = match side {
                                Side::Add => gate.adds.get_mut(&token),
                                Side::Collect => gate.collecting.as_mut().map(|(_, h)| h),
                            };
                            if let Some(holder) = holder {
                                holder.renewed = now;
                            }
                            Change::Store(true)
                        })
                        .await;
                    match held {
                        Ok(true) => renewed.store(now, Ordering::Relaxed),
                        Ok(false) => {
                            lost.store(true, Ordering::Relaxed);
                            return;
                        }
                        Err(e) => tracing::warn!(error = %e, "cannot renew the gate; trying again"),
                    }
                }
            }
        });
        Self {
            store,
            side,
            token,
            renewed,
            lost,
            renewer,
        }
    }

    /// Whether the place is still held, as far as may be trusted: an
    /// error, to stop on, if it is not.
    pub fn check(&self) -> Result<(), Lapsed> {
        let since = now_unix() - self.renewed.load(Ordering::Relaxed);
        if self.lost.load(Ordering::Relaxed) || since > TRUSTED.as_secs() as i64 {
            return Err(Lapsed(since));
        }
        Ok(())
    }

    /// Gives the place up.
    pub async fn leave(self) -> Result<(), StoreError> {
        self.renewer.abort();
        let (side, token) = (self.side, self.token.clone());
        self.store
            .change_gate(|gate| {
                if !gate.holds(side, &token) {
                    return Change::Keep(());
                }
                match side {
                    Side::Add => drop(gate.adds.remove(&token)),
                    Side::Collect => gate.collecting = None,
                }
                Change::Store(())
            })
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn holder(by: &str, renewed: i64) -> Holder {
        Holder {
            by: by.into(),
            renewed,
        }
    }

    #[test]
    fn each_side_is_kept_out_while_the_other_holds_the_gate() {
        let mut gate = Gate::default();
        assert_eq!(gate.closed_to(Side::Add), None);
        assert_eq!(gate.closed_to(Side::Collect), None);
        gate.adds.insert("a".into(), holder("builder@b1", 100));
        assert_eq!(gate.closed_to(Side::Add), None);
        assert_eq!(
            gate.closed_to(Side::Collect).as_deref(),
            Some("1 image add(s) running (by builder@b1)")
        );
        gate.adds.clear();
        gate.collecting = Some(("c".into(), holder("op@o1", 100)));
        assert!(gate.closed_to(Side::Add).unwrap().contains("op@o1"));
        assert!(gate.closed_to(Side::Collect).is_some());
    }

    #[test]
    fn entries_not_renewed_for_a_minute_are_dropped() {
        let mut gate = Gate::default();
        gate.adds.insert("old".into(), holder("x", 1000));
        gate.adds.insert("new".into(), holder("y", 1050));
        gate.collecting = Some(("c".into(), holder("z", 1000)));
        gate.prune(1000 + STALE.as_secs() as i64);
        assert_eq!(gate.adds.keys().collect::<Vec<_>>(), ["new"]);
        assert_eq!(gate.collecting, None);
    }
}
