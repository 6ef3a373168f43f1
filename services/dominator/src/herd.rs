//! The herd: the decision loop that turns the fleet feed into desired
//! states.
//!
//! It replays the last message of every subject of the MDB, image, state,
//! control and desired-state streams, decides nothing until the replay is
//! over, then follows them. Changes are batched: a round runs
//! [`Settings::debounce`] after the change that calls for it, so a burst
//! of messages costs a decision or two, not one per message. Rounds are also paced by their
//! own cost: the next one starts no sooner than the last one took, after
//! it ended. A change after a quiet spell (longer than the debounce and
//! the last round's cost) is decided on at once, so a single change waits
//! for nothing; a burst that follows it is batched as before. A round over a large fleet takes a while (about a third of a
//! second for 100,000 machines), and while it runs no message is read; so
//! during a long burst (a new image for 100,000 machines, arriving over
//! seconds) the loop spends at least half its time taking in messages,
//! rather than deciding again and again on a few more each time. Before a
//! round, the messages already waiting are taken in. A round decides,
//! publishes only the desired states that changed, forgets spent safety
//! clearances, announces machines whose error changed and updates the
//! status.
//!
//! HighImpact grants need no state of their own: the requests are in the
//! state reports and the grants in the desired states published, so a
//! restarted dominator carries on with the grants it gave. A grant taken
//! back frees its place only in the round after its withdrawal was
//! published, so the desired states on the bus never carry more grants
//! than `--max-high-impact`, whatever order a round's publishes land in.

use std::collections::{BTreeMap, HashSet};
use std::pin::pin;
use std::sync::Arc;
use std::time::Duration;

use dom_bus::{Applied, Bus, BusError, FleetKind, FleetUpdate, Published, Standing, View};
use dom_model::controls::{control_name, Control, RolloutControl, ROLLOUT};
use dom_model::policy::RolloutPolicy;
use dom_model::{Decision, DesiredState, FleetControls};
use futures::{FutureExt, StreamExt};
use tokio::sync::watch;
use tokio::time::Instant;

use crate::notices::{self, Notices};
use crate::status::Board;
use crate::{now_rfc3339, now_unix};

/// How the dominator runs.
#[derive(Clone, Debug)]
pub struct Settings {
    /// Most machines updating at once.
    pub max_concurrent: usize,
    /// Most machines running HighImpact triggers at once.
    pub max_high_impact: usize,
    /// How images roll out: the canary, and when a rollout halts.
    pub rollout: RolloutPolicy,
    /// The longest a pause holds a machine.
    pub max_pause: Duration,
    /// How long after a change to decide, gathering what else arrives.
    pub debounce: Duration,
    /// How often to decide with nothing new, so image expiry is noticed.
    pub recheck: Duration,
    /// How often the status page's chart samples the fleet's counts.
    pub history_every: Duration,
    /// Its name for the lease among several dominators (see
    /// `dom_bus::lease`), stamped on every desired state it publishes.
    pub id: String,
    /// How often to measure the object store for `/metrics`; zero: never.
    pub store_every: Duration,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            max_concurrent: dom_model::policy::DEFAULT_MAX_UPDATING,
            max_high_impact: dom_model::policy::DEFAULT_MAX_HIGH_IMPACT,
            rollout: RolloutPolicy::default(),
            max_pause: Duration::from_secs(dom_model::controls::machine::DEFAULT_MAX_PAUSE_S),
            debounce: Duration::from_millis(75),
            recheck: Duration::from_secs(30),
            history_every: crate::history::DEFAULT_EVERY,
            id: dom_bus::stamp::host(),
            store_every: Duration::from_secs(300),
        }
    }
}

/// Sets up the fleet feed, trying again while the server cannot answer
/// (it may be restarting, or briefly reloading its accounts); fails only
/// when this credential is refused.
async fn follow(
    bus: &Bus,
) -> Result<impl futures::Stream<Item = Result<FleetUpdate, BusError>> + Send + 'static, BusError> {
    let mut wait = SETUP_RETRY;
    let mut failures = 0u32;
    loop {
        let setup = async {
            bus.ensure_streams().await?;
            bus.follow_fleet(&FleetKind::ALL).await
        };
        match setup.await {
            Ok(feed) => return Ok(feed),
            Err(e) if e.is_permission_denied() => return Err(e),
            Err(e) => {
                failures += 1;
                if failures == 1 || failures.is_multiple_of(10) {
                    tracing::warn!(error = %e, failures, "cannot follow the fleet yet; trying again");
                }
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(MAX_SETUP_RETRY);
            }
        }
    }
}

/// First and longest wait before setting the feed up again.
const SETUP_RETRY: Duration = Duration::from_millis(250);
const MAX_SETUP_RETRY: Duration = Duration::from_secs(5);

/// Desired states published at once.
const PUBLISH_IN_FLIGHT: usize = 256;
/// How soon to try again after a publish failed.
const RETRY: Duration = Duration::from_secs(1);

/// The lease that makes one of several dominators the active one.
pub const LEASE: &str = "dominator";

/// Follows the fleet and decides, for ever; publishes while it holds the
/// lease. Returns only if this credential may not read the fleet, or the
/// feed ends.
/// `lease` says where this dominator stands with [`LEASE`].
pub async fn run(
    bus: Bus,
    settings: Settings,
    board: Arc<Board>,
    lease: tokio::sync::watch::Receiver<dom_bus::lease::Standing>,
) -> Result<(), BusError> {
    let feed = follow(&bus).await?;
    let mut feed = pin!(feed);
    board.update(|status| status.id = settings.id.clone());
    let mut herd = Herd {
        lease,
        id: settings.id.clone(),
        view: View::new(FleetControls {
            max_updating: settings.max_concurrent,
            max_high_impact: settings.max_high_impact,
            rollout: settings.rollout,
            max_pause_s: settings.max_pause.as_secs(),
            ..FleetControls::default()
        }),
        bus,
        board,
        notices: Notices::default(),
        replay_rejections: BTreeMap::new(),
        changed_reports: HashSet::new(),
        waiting_since: None,
        wake_at: None,
    };
    let mut caught_up = false;
    let mut due: Option<Instant> = None;
    let mut pace = Pace::new(settings.debounce);
    loop {
        let wake = due
            .unwrap_or_else(|| Instant::now() + settings.recheck)
            .min(
                herd.wake_at
                    .unwrap_or_else(|| Instant::now() + settings.recheck),
            );
        tokio::select! {
            update = feed.next() => match update {
                None => return Err(BusError::JetStream {
                    server: herd.bus.server().to_string(),
                    reason: "the fleet feed ended".into(),
                }),
                Some(Err(e)) => tracing::warn!(error = %e, "fleet feed"),
                Some(Ok(FleetUpdate::CaughtUp)) => {
                    tracing::info!(machines = herd.view.fleet.mdb.len(), "replay over; deciding");
                    herd.caught_up().await;
                    caught_up = true;
                    due = Some(Instant::now());
                }
                Some(Ok(FleetUpdate::Message(message))) => {
                    let changed = herd.apply(&message, caught_up).await;
                    if changed && caught_up && due.is_none() {
                        due = Some(pace.next());
                    }
                }
            },
            standing = herd.lease.changed() => {
                if standing.is_err() {
                    return Err(BusError::JetStream {
                        server: herd.bus.server().to_string(),
                        reason: "the lease keeper stopped".into(),
                    });
                }
                // Taking over: decide at once, on the view followed so far.
                if herd.stand() && caught_up {
                    due = Some(Instant::now());
                }
            },
            _ = tokio::time::sleep_until(wake), if caught_up => {
                // Take in what is already waiting, so the round decides
                // on it; bounded, so a flood cannot put the round off.
                for _ in 0..DRAIN_BEFORE_ROUND {
                    match feed.next().now_or_never() {
                        Some(Some(Ok(FleetUpdate::Message(message)))) => {
                            herd.apply(&message, caught_up).await;
                        }
                        Some(Some(Err(e))) => tracing::warn!(error = %e, "fleet feed"),
                        Some(Some(Ok(FleetUpdate::CaughtUp))) => {}
                        Some(None) | None => break,
                    }
                }
                let (round, busy) = herd.round().await;
                pace.ran(busy);
                due = match round {
                    Round::Settled => None,
                    Round::Again => Some(pace.next()),
                    Round::Retry => Some(Instant::now() + RETRY),
                };
            }
        }
    }
}

/// Messages taken in, at most, before a round.
const DRAIN_BEFORE_ROUND: usize = 100_000;

/// When the next round may run: a debounce after the change that calls
/// for it, and no sooner after the last round than that round's work
/// took.
struct Pace {
    debounce: Duration,
    /// When the last round ended, and how long it took.
    last: Option<(Instant, Duration)>,
}

impl Pace {
    fn new(debounce: Duration) -> Self {
        Self {
            debounce,
            last: None,
        }
    }

    /// A round just ended, after `busy` of work (waiting for the server
    /// not counted).
    fn ran(&mut self, busy: Duration) {
        self.last = Some((Instant::now(), busy));
    }

    fn next(&self) -> Instant {
        self.next_at(Instant::now())
    }

    fn next_at(&self, now: Instant) -> Instant {
        match self.last {
            // Quiet for a while: the change is decided on at once (what
            // else is already waiting is taken in first), so one operator
            // change waits for no debounce.
            Some((ended, took)) if now >= ended + self.debounce.max(took) => now,
            Some((ended, took)) => (now + self.debounce).max(ended + took),
            None => now,
        }
    }
}

struct Herd {
    bus: Bus,
    /// Where this dominator stands with the lease.
    lease: watch::Receiver<Standing>,
    /// Its name, stamped on what it publishes.
    id: String,
    view: View,
    board: Arc<Board>,
    notices: Notices,
    /// MDB payloads refused during the replay: host, reason, sequence.
    replay_rejections: BTreeMap<String, (String, u64)>,
    /// Hosts whose state report message arrived since the last round,
    /// when the board keeps reports for the status page.
    changed_reports: HashSet<String>,
    /// When the first change the next round decides on was published.
    waiting_since: Option<std::time::SystemTime>,
    /// When the last decision said a rule reading the clock will decide
    /// otherwise (a pause ends, a machine is taken for down).
    wake_at: Option<Instant>,
}

/// What a round calls for next.
enum Round {
    /// Nothing more to do until something changes.
    Settled,
    /// It changed the view (published, forgot a clearance): decide again.
    Again,
    /// Something could not be published: try again soon.
    Retry,
}

impl Herd {
    /// Applies one message; says whether the view changed.
    async fn apply(&mut self, message: &dom_bus::FleetMessage, caught_up: bool) -> bool {
        self.board.metrics().message(message.kind);
        if message.kind == FleetKind::State && self.board.wants_reports() {
            self.changed_reports.insert(message.name.clone());
        }
        let changed = self.fold(message, caught_up).await;
        if changed && caught_up && self.waiting_since.is_none() {
            let now = std::time::SystemTime::now();
            self.waiting_since = Some(message.published.unwrap_or(now).min(now));
        }
        changed
    }

    async fn fold(&mut self, message: &dom_bus::FleetMessage, caught_up: bool) -> bool {
        match self.view.apply(message) {
            Applied::Changed => true,
            Applied::Unchanged => false,
            Applied::Skipped(why) => {
                tracing::warn!(subject_name = %message.name, kind = ?message.kind, "skipped: {why}");
                true
            }
            Applied::Rejected { host, reason } => {
                tracing::warn!(host = %message.name, sequence = message.sequence, "MDB record refused: {reason}");
                match host {
                    Some(host) if caught_up => {
                        notices::rejected(
                            &self.bus,
                            &host,
                            &reason,
                            message.sequence,
                            &now_rfc3339(),
                        )
                        .await
                    }
                    Some(host) => {
                        self.replay_rejections
                            .insert(host, (reason, message.sequence));
                    }
                    None => {}
                }
                true
            }
        }
    }

    /// The replay is over: recover the records refused payloads hid, and
    /// announce refusals nobody has announced yet.
    async fn caught_up(&mut self) {
        for host in self.bus.recover_refused(&mut self.view).await {
            tracing::info!(%host, "using the last MDB record that was not refused");
        }
        let now = now_rfc3339();
        for (host, (reason, sequence)) in std::mem::take(&mut self.replay_rejections) {
            let announced = self.bus.last_event(&host, &[notices::REJECTED]).await;
            let same = matches!(&announced, Ok(Some((_, event))) if event.message == reason
                && event.details.get("sequence").and_then(|s| s.as_u64()) == Some(sequence));
            if !same {
                notices::rejected(&self.bus, &host, &reason, sequence, &now).await;
            }
        }
    }

    /// Reads the desired state stored for `host` into the view, after a
    /// publish that expected an older one was refused. Unread, the feed
    /// brings it soon enough; the round is tried again either way.
    async fn take_stored_desired(&mut self, host: &str) {
        match self.bus.last_desired_message(host).await {
            Ok(stored) => {
                let stored = stored.as_ref().map(|m| (m.sequence, &m.payload[..]));
                self.view.desired_stored(host, stored);
            }
            Err(e) => tracing::warn!(host, error = %e, "cannot read the desired state stored"),
        }
    }

    /// Shows where this dominator stands with the lease; says whether it
    /// is active.
    fn stand(&mut self) -> bool {
        let standing = self.lease.borrow_and_update().clone();
        let active = standing.is_active();
        let holder = match standing {
            Standing::Standby { holder } => holder,
            Standing::Active { .. } => None,
        };
        tracing::info!(id = %self.id, active, active_dominator = ?holder, "lease");
        self.board.metrics().active(active);
        self.board.update(|status| {
            status.active = active;
            status.active_dominator = holder;
        });
        active
    }

    /// Runs a round; says what it calls for next and how long its own
    /// work took, waiting for publishes left out. A standby decides, for
    /// its page, and publishes nothing.
    async fn round(&mut self) -> (Round, Duration) {
        let started = Instant::now();
        let decision = self.view.decide(now_unix());
        let decided = started.elapsed();
        let issued = now_rfc3339();
        if !self.lease.borrow().is_active() {
            self.notices.observe(&decision);
            self.show(decision, 0, issued);
            return (Round::Settled, started.elapsed());
        }
        // Each publish expects the last desired state this view knows of
        // for its host, so one decided on a view that another publisher
        // has moved past is refused by the stream, not stored over it.
        let to_publish: Vec<(DesiredState, u64)> = decision
            .to_publish()
            .map(|state| {
                let after = self.view.desired_sequence(&state.host);
                let state = DesiredState {
                    issued: Some(issued.clone()),
                    publisher: Some(self.id.clone()),
                    ..state.clone()
                };
                (state, after)
            })
            .collect();
        let bus = &self.bus;
        let lease = &self.lease;
        let publishing = Instant::now();
        let results: Vec<_> = futures::stream::iter(to_publish)
            .map(|(state, after)| async move {
                // Checked before each publish and while it waits for the
                // servers: a lease lost mid-round stops it, so the loop
                // hears of it at once even when the servers are gone.
                let mut standing = lease.clone();
                let result = tokio::select! {
                    biased;
                    _ = standing.wait_for(|standing| !standing.is_active()) => {
                        Err(Published::Failed(BusError::JetStream {
                            server: bus.server().to_string(),
                            reason: "standing by: this dominator no longer holds the lease".into(),
                        }))
                    }
                    result = bus.publish_desired_after(&state, after) => result,
                };
                (state, result)
            })
            .buffer_unordered(PUBLISH_IN_FLIGHT)
            .collect()
            .await;
        let publish_wait = publishing.elapsed();
        let mut published = 0u64;
        let mut failures = 0u64;
        for (state, result) in results {
            match result {
                Ok(sequence) => {
                    tracing::debug!(
                        host = %state.host,
                        image = %state.image,
                        updates_allowed = state.updates_allowed,
                        high_impact_granted = state.high_impact_granted,
                        "desired state published"
                    );
                    self.view.published(state, sequence);
                    published += 1;
                }
                Err(Published::Refused(e)) => {
                    tracing::info!(host = %state.host, error = %e,
                        "desired state refused: another was stored since; deciding again on it");
                    self.take_stored_desired(&state.host).await;
                    failures += 1;
                }
                Err(Published::Failed(e)) => {
                    tracing::warn!(host = %state.host, error = %e, "cannot publish desired state");
                    failures += 1;
                }
            }
        }
        self.view.forget_clearances(&decision.spent_clearances);
        let halted = self.halt(&decision.halts, &issued).await;
        let mut failed = failures > 0 || !halted;
        // The events wait on the servers as the publishes do: a lease lost
        // meanwhile stops them, and what they would have said is left to
        // the events to tell, as a standby leaves it.
        let mut standing = self.lease.clone();
        let announced = tokio::select! {
            biased;
            _ = standing.wait_for(|standing| !standing.is_active()) => None,
            ok = self.notices.announce(&self.bus, &decision, &issued) => Some(ok),
        };
        match announced {
            Some(ok) => failed |= !ok,
            None => {
                self.notices.stand_by(&decision);
                failed = true;
            }
        }
        let again = published > 0 || !decision.spent_clearances.is_empty();
        let machines = decision.machines.len();
        self.show(decision, published, issued);
        let took = started.elapsed();
        let lag = self
            .waiting_since
            .take()
            .map(|since| since.elapsed().unwrap_or_default());
        self.board.metrics().round(
            took.as_secs_f64(),
            decided.as_secs_f64(),
            lag.map(|lag| lag.as_secs_f64()),
            published,
            failures,
        );
        tracing::info!(
            machines,
            published,
            decide_ms = decided.as_millis() as u64,
            publish_ms = publish_wait.as_millis() as u64,
            round_ms = took.as_millis() as u64,
            "round"
        );
        let next = match (failed, again) {
            (true, _) => Round::Retry,
            (false, true) => Round::Again,
            (false, false) => Round::Settled,
        };
        (next, took.saturating_sub(publish_wait))
    }

    /// Publishes the halts a decision made (`dom.ctl.rollout.<image>`),
    /// takes them into the view at once so the next round does not halt
    /// again, and announces them on each machine named. Says whether all
    /// were published.
    async fn halt(&mut self, halts: &[RolloutControl], when: &str) -> bool {
        let mut ok = true;
        for halt in halts {
            let control = RolloutControl {
                by: format!("dominator {}", self.id),
                when: when.to_string(),
                ..halt.clone()
            };
            let name = control_name(ROLLOUT, control.image.as_str());
            match self.bus.publish_ctl(&name, control.encode().into()).await {
                Ok(_) => {
                    tracing::warn!(image = %control.image, reason = %control.reason,
                        machines = control.machines.len(), "rollout halted");
                    notices::halted(&self.bus, &control).await;
                    self.view.control(Control::Rollout(control));
                }
                Err(e) => {
                    tracing::warn!(image = %control.image, error = %e, "cannot publish the rollout's halt");
                    ok = false;
                }
            }
        }
        ok
    }

    fn show(&mut self, decision: Decision, published: u64, when: String) {
        // A second late, so that the round sees the change.
        self.wake_at = decision.wake_at.map(|at| {
            let wait = (at - now_unix()).max(0) as u64 + 1;
            Instant::now() + Duration::from_secs(wait)
        });
        let rejected = self.view.rejected.clone();
        self.board
            .metrics()
            .fleet(&decision.summary, rejected.len());
        self.board.metrics().rollouts(&decision.rollouts);
        self.board
            .metrics()
            .machines(&decision.machines, &self.view.fleet.reports);
        let reports = std::mem::take(&mut self.changed_reports)
            .into_iter()
            .map(|host| {
                let report = self.view.fleet.reports.get(&host).cloned();
                (host, report)
            })
            .collect();
        self.board.put_reports(reports);
        self.board.update(|status| {
            status.caught_up = true;
            status.rounds += 1;
            status.desired_published += published;
            status.last_round = Some(when);
            status.rejected_mdb = rejected;
            status.decision = Some(Arc::new(decision));
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: fn(u64) -> Duration = Duration::from_millis;

    #[test]
    fn a_change_after_a_quiet_spell_is_decided_at_once_and_a_burst_is_batched() {
        let mut pace = Pace::new(MS(75));
        let start = Instant::now();
        assert_eq!(pace.next_at(start), start, "the first change");
        pace.last = Some((start, MS(10)));
        // Right after a round: the next change waits for the debounce.
        assert_eq!(pace.next_at(start + MS(5)), start + MS(80));
        // After a costly round, no sooner than its cost after it.
        pace.last = Some((start, MS(300)));
        assert_eq!(pace.next_at(start + MS(100)), start + MS(300));
        // Quiet for longer than both: at once.
        assert_eq!(pace.next_at(start + MS(400)), start + MS(400));
    }
}
