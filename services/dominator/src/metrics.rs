//! The dominator's Prometheus metrics, served on `GET /metrics`.
//!
//! The decision loop updates them as it goes; every update is a few
//! atomic operations, so they cost a round nothing it would notice.
//! Names and meanings are listed in `docs/OPERATIONS.md`.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use dom_bus::FleetKind;
use dom_model::policy::Updates;
use dom_model::policy::{FleetSummary, HoldReason, MachineStatus, RolloutPhase, RolloutSummary};
use dom_model::StateReport;
use dom_web::prometheus_client::encoding::{EncodeMetric, MetricEncoder};
use dom_web::prometheus_client::metrics::counter::Counter;
use dom_web::prometheus_client::metrics::family::Family;
use dom_web::prometheus_client::metrics::gauge::Gauge;
use dom_web::prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use dom_web::prometheus_client::metrics::MetricType;
use dom_web::prometheus_client::registry::Registry;

/// One label, as a name and a value (the label-set derive would need
/// `prometheus_client` as a direct dependency).
type Label = Vec<(&'static str, &'static str)>;

/// The streams whose messages are counted, with their label.
const KINDS: [(FleetKind, &str); 5] = [
    (FleetKind::Mdb, "mdb"),
    (FleetKind::Image, "image"),
    (FleetKind::State, "state"),
    (FleetKind::Desired, "desired"),
    (FleetKind::Ctl, "ctl"),
];

/// Every metric the dominator exports, and the registry holding them.
#[derive(Debug)]
pub struct Metrics {
    registry: Arc<Registry>,
    rounds: Counter,
    round_seconds: Histogram,
    decide_seconds: Histogram,
    event_lag_seconds: Histogram,
    desired_published: Counter,
    publish_failures: Counter,
    /// By kind, in [`KINDS`] order, looked up once: counting a message
    /// is one atomic add.
    messages: Vec<Counter>,
    machines: Family<Label, Gauge>,
    updates_enabled: Gauge,
    caught_up: Gauge,
    active: Gauge,
    rejected_mdb: Gauge,
    sse_clients: Gauge,
    /// The object store's totals, by quantity, in [`STORE`] order.
    store: Vec<Gauge>,
    rollout_halted: Family<ImageLabel, Gauge>,
    rollout_wave: Family<ImageLabel, Gauge>,
    rollout_machines: Family<ImageLabel, Gauge>,
    rollout_unresponsive: Family<ImageLabel, Gauge>,
    /// The images whose rollout the last round exported, to drop those
    /// gone from the next.
    rollout_images: Mutex<BTreeSet<String>>,
    without_report: Gauge,
    noncompliant: Gauge,
    noncompliant_max_age: SecondsSince,
    /// Since when each machine counted in `noncompliant` has been so.
    noncompliant_since: Mutex<Since>,
    stream_bytes: Family<ImageLabel, Gauge>,
    stream_messages: Family<ImageLabel, Gauge>,
    stream_max_bytes: Family<ImageLabel, Gauge>,
    stream_max_messages: Family<ImageLabel, Gauge>,
}

/// A gauge of the seconds since an instant (0 without one), read when
/// scraped: a quiet fleet runs no rounds, and a machine stuck out of
/// compliance must still age.
#[derive(Clone, Debug, Default)]
struct SecondsSince(Arc<Mutex<Option<Instant>>>);

impl EncodeMetric for SecondsSince {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        let since = *self.0.lock().expect("metrics lock");
        let seconds = since.map_or(0, |at| at.elapsed().as_secs() as i64);
        encoder.encode_gauge(&seconds)
    }

    fn metric_type(&self) -> MetricType {
        MetricType::Gauge
    }
}

/// Since when each machine has been out of compliance, and the round that
/// last saw it so (those a round did not see are dropped).
#[derive(Debug, Default)]
struct Since {
    round: u64,
    hosts: HashMap<String, (Instant, u64)>,
}

/// Labels naming an image (and what is counted of it).
type ImageLabel = Vec<(&'static str, String)>;

/// What is counted of a rollout's machines, as
/// `dominator_rollout_machines{image=...,state=...}`.
const ROLLOUT_STATES: [&str; 4] = ["done", "moving", "failed", "waiting"];

/// What is exported of the object store, as `dominator_store{quantity=...}`.
const STORE: [&str; 5] = [
    "objects",
    "bytes",
    "unreferenced_objects",
    "unreferenced_bytes",
    "stream_bytes",
];

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

fn seconds() -> Histogram {
    // 1 ms to about 65 s.
    Histogram::new(exponential_buckets(0.001, 2.0, 17))
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("dominator");
        let metrics = Self {
            registry: Arc::default(),
            rounds: Counter::default(),
            round_seconds: seconds(),
            decide_seconds: seconds(),
            event_lag_seconds: seconds(),
            desired_published: Counter::default(),
            publish_failures: Counter::default(),
            messages: Vec::new(),
            machines: Family::default(),
            updates_enabled: Gauge::default(),
            caught_up: Gauge::default(),
            active: Gauge::default(),
            rejected_mdb: Gauge::default(),
            sse_clients: Gauge::default(),
            store: Vec::new(),
            rollout_halted: Family::default(),
            rollout_wave: Family::default(),
            rollout_machines: Family::default(),
            rollout_unresponsive: Family::default(),
            rollout_images: Mutex::default(),
            without_report: Gauge::default(),
            noncompliant: Gauge::default(),
            noncompliant_max_age: SecondsSince::default(),
            noncompliant_since: Mutex::default(),
            stream_bytes: Family::default(),
            stream_messages: Family::default(),
            stream_max_bytes: Family::default(),
            stream_max_messages: Family::default(),
        };
        registry.register(
            "rollout_halted",
            "1 while the rollout of the image is halted or aborted (domtool rollout status IMAGE says why and which machines), else 0",
            metrics.rollout_halted.clone(),
        );
        registry.register(
            "rollout_wave",
            "The wave the image's rollout is in, counted from 1 (the canary)",
            metrics.rollout_wave.clone(),
        );
        registry.register(
            "rollout_machines",
            "Machines requiring the image, by where they stand in its rollout: done (on it and healthy), moving, failed, waiting",
            metrics.rollout_machines.clone(),
        );
        registry.register(
            "rollout_unresponsive",
            "Machines told to move to the image longer ago than --unresponsive-after whose agent has not said it heard",
            metrics.rollout_unresponsive.clone(),
        );
        registry.register(
            "machines_without_report",
            "Machines in the MDB whose agent has published no state report",
            metrics.without_report.clone(),
        );
        registry.register(
            "noncompliant_machines",
            "Machines not on their required image although nothing an operator chose holds them (emergency stop, DisableUpdates, pause, a rollout's waves or halt, the update slots)",
            metrics.noncompliant.clone(),
        );
        registry.register(
            "noncompliant_max_age_seconds",
            "How long the longest-standing of dominator_noncompliant_machines has been so, as this dominator saw it",
            metrics.noncompliant_max_age.clone(),
        );
        registry.register(
            "stream_bytes",
            "Bytes each of the fleet's streams (the object bucket's included) holds on the server, measured every --store-every",
            metrics.stream_bytes.clone(),
        );
        registry.register(
            "stream_messages",
            "Messages each of the fleet's streams holds on the server, measured every --store-every",
            metrics.stream_messages.clone(),
        );
        registry.register(
            "stream_max_bytes",
            "The stream's byte limit (its oldest messages go beyond it), -1 for none",
            metrics.stream_max_bytes.clone(),
        );
        registry.register(
            "stream_max_messages",
            "The stream's message limit (its oldest messages go beyond it), -1 for none",
            metrics.stream_max_messages.clone(),
        );
        registry.register("rounds", "Decision rounds run", metrics.rounds.clone());
        registry.register(
            "round_duration_seconds",
            "How long a decision round took, publishing included",
            metrics.round_seconds.clone(),
        );
        registry.register(
            "decide_duration_seconds",
            "How long the policy took to decide, in a round",
            metrics.decide_seconds.clone(),
        );
        registry.register(
            "event_lag_seconds",
            "From the publish of the first message a round decides on to the end of that round",
            metrics.event_lag_seconds.clone(),
        );
        registry.register(
            "desired_published",
            "Desired states published",
            metrics.desired_published.clone(),
        );
        registry.register(
            "publish_failures",
            "Desired states that could not be published (retried)",
            metrics.publish_failures.clone(),
        );
        let messages = Family::<Label, Counter>::default();
        registry.register(
            "messages",
            "Fleet messages taken in, by stream",
            messages.clone(),
        );
        registry.register(
            "machines",
            "Machines in the MDB (status=\"all\"), and by status after the last round",
            metrics.machines.clone(),
        );
        registry.register(
            "updates_enabled",
            "1 while updates are enabled for the fleet, 0 during an emergency stop",
            metrics.updates_enabled.clone(),
        );
        registry.register(
            "caught_up",
            "1 once the replay of the streams is over",
            metrics.caught_up.clone(),
        );
        registry.register(
            "active",
            "1 while this dominator holds the lease and publishes, 0 while it stands by",
            metrics.active.clone(),
        );
        registry.register(
            "rejected_mdb_records",
            "Hosts whose latest MDB payload was refused",
            metrics.rejected_mdb.clone(),
        );
        registry.register(
            "status_page_clients",
            "Browsers following the live status page",
            metrics.sse_clients.clone(),
        );
        let store = Family::<Label, Gauge>::default();
        registry.register(
            "store",
            "The object store, measured every --store-every: objects and their bytes, those no live image needs, and the bucket stream's bytes on the server",
            store.clone(),
        );
        Self {
            registry: Arc::new(registry),
            store: STORE
                .iter()
                .map(|quantity| store.get_or_create(&vec![("quantity", *quantity)]).clone())
                .collect(),
            messages: KINDS
                .iter()
                .map(|(_, kind)| messages.get_or_create(&vec![("kind", *kind)]).clone())
                .collect(),
            ..metrics
        }
    }

    /// The registry, for `GET /metrics`.
    pub fn registry(&self) -> Arc<Registry> {
        self.registry.clone()
    }

    /// The registry in the text format.
    pub fn encode(&self) -> String {
        dom_web::metrics::encode(&self.registry)
    }

    pub(crate) fn message(&self, kind: FleetKind) {
        if let Some(i) = KINDS.iter().position(|(k, _)| *k == kind) {
            self.messages[i].inc();
        }
    }

    /// A round ran: `took` and `decide` in seconds, `lag` from its first
    /// message when it was called for by one.
    pub(crate) fn round(
        &self,
        took: f64,
        decide: f64,
        lag: Option<f64>,
        published: u64,
        failed: u64,
    ) {
        self.rounds.inc();
        self.round_seconds.observe(took);
        self.decide_seconds.observe(decide);
        if let Some(lag) = lag {
            self.event_lag_seconds.observe(lag);
        }
        self.desired_published.inc_by(published);
        self.publish_failures.inc_by(failed);
    }

    /// The object store as last measured.
    pub(crate) fn store(&self, usage: &dom_store::usage::Usage) {
        let values = [
            usage.objects,
            usage.bytes,
            usage.unreferenced.len() as u64,
            usage.unreferenced_bytes(),
            usage.stream_bytes,
        ];
        for (gauge, value) in self.store.iter().zip(values) {
            gauge.set(value as i64);
        }
    }

    /// Whether this dominator holds the lease.
    pub(crate) fn active(&self, active: bool) {
        self.active.set(active as i64);
    }

    pub(crate) fn fleet(&self, summary: &FleetSummary, rejected: usize) {
        self.caught_up.set(1);
        self.rejected_mdb.set(rejected as i64);
        self.updates_enabled
            .set(matches!(summary.updates, Updates::Enabled) as i64);
        let counts = [
            ("all", summary.machines),
            ("compliant", summary.compliant),
            ("updating", summary.updating),
            ("error", summary.errors),
            ("held", summary.held),
            ("waiting_for_slot", summary.waiting_for_slot),
            ("safety_shutoff", summary.safety_shutoffs),
            ("without_image", summary.without_image),
            ("high_impact", summary.high_impact),
            ("waiting_for_high_impact", summary.waiting_for_high_impact),
            ("paused", summary.paused),
            ("waiting_for_wave", summary.waiting_for_wave),
            ("rollout_stopped", summary.rollout_stopped),
        ];
        for (status, n) in counts {
            self.machines
                .get_or_create(&vec![("status", status)])
                .set(n as i64);
        }
    }

    /// Every image's rollout after a round.
    pub(crate) fn rollouts(&self, rollouts: &[RolloutSummary]) {
        let mut images = self.rollout_images.lock().expect("metrics lock");
        let now: BTreeSet<String> = rollouts.iter().map(|r| r.image.to_string()).collect();
        for gone in images.difference(&now) {
            let image = vec![("image", gone.clone())];
            self.rollout_halted.remove(&image);
            self.rollout_wave.remove(&image);
            self.rollout_unresponsive.remove(&image);
            for state in ROLLOUT_STATES {
                self.rollout_machines
                    .remove(&vec![("image", gone.clone()), ("state", state.to_string())]);
            }
        }
        for rollout in rollouts {
            let image = vec![("image", rollout.image.to_string())];
            let stopped = matches!(rollout.phase, RolloutPhase::Halted | RolloutPhase::Aborted);
            self.rollout_halted
                .get_or_create(&image)
                .set(stopped as i64);
            self.rollout_wave
                .get_or_create(&image)
                .set(rollout.wave as i64);
            self.rollout_unresponsive
                .get_or_create(&image)
                .set(rollout.unresponsive.len() as i64);
            let counts = [
                rollout.done,
                rollout.moving,
                rollout.failed.len(),
                rollout.waiting,
            ];
            for (state, n) in ROLLOUT_STATES.iter().zip(counts) {
                let labels = vec![
                    ("image", rollout.image.to_string()),
                    ("state", state.to_string()),
                ];
                self.rollout_machines.get_or_create(&labels).set(n as i64);
            }
        }
        *images = now;
    }

    /// The machines after a round, with the state reports it decided on:
    /// those without a report, and those out of compliance that nothing
    /// an operator chose holds, and since when.
    pub(crate) fn machines(
        &self,
        machines: &[MachineStatus],
        reports: &BTreeMap<String, StateReport>,
    ) {
        let without_report = machines
            .iter()
            .filter(|m| !reports.contains_key(&m.host))
            .count();
        self.without_report.set(without_report as i64);
        let now = Instant::now();
        let mut since = self.noncompliant_since.lock().expect("metrics lock");
        since.round += 1;
        let round = since.round;
        for machine in machines.iter().filter(|m| unheld_noncompliant(m)) {
            match since.hosts.get_mut(&machine.host) {
                Some(seen) => seen.1 = round,
                None => {
                    since.hosts.insert(machine.host.clone(), (now, round));
                }
            }
        }
        since.hosts.retain(|_, seen| seen.1 == round);
        self.noncompliant.set(since.hosts.len() as i64);
        *self.noncompliant_max_age.0.lock().expect("metrics lock") =
            since.hosts.values().map(|seen| seen.0).min();
    }

    /// Every stream of the fleet as last measured.
    pub(crate) fn streams(&self, streams: &[dom_bus::StreamUsage]) {
        let limit = |n: Option<u64>| n.map_or(-1, |n| n.min(i64::MAX as u64) as i64);
        for stream in streams {
            let name = vec![("stream", stream.stream.clone())];
            let gauges = [
                (&self.stream_bytes, stream.bytes.min(i64::MAX as u64) as i64),
                (
                    &self.stream_messages,
                    stream.messages.min(i64::MAX as u64) as i64,
                ),
                (&self.stream_max_bytes, limit(stream.max_bytes)),
                (&self.stream_max_messages, limit(stream.max_messages)),
            ];
            for (family, value) in gauges {
                family.get_or_create(&name).set(value);
            }
        }
    }

    pub(crate) fn clients(&self, delta: i64) {
        self.sse_clients.inc_by(delta);
    }
}

/// Whether the machine should be on its required image by now and is
/// not: it requires one, is not compliant, and nothing an operator chose
/// holds it (the emergency stop, `DisableUpdates`, a pause, its rollout's
/// waves or halt, the `--max-concurrent` update slots, each with a
/// measure of its own). Those the safety shutoff holds are counted.
fn unheld_noncompliant(machine: &MachineStatus) -> bool {
    let chosen = matches!(
        machine.held,
        Some(
            HoldReason::UpdatesDisabledFleet { .. }
                | HoldReason::DisableUpdates
                | HoldReason::Paused { .. }
                | HoldReason::WaitingForWave { .. }
                | HoldReason::RolloutStopped { .. }
                | HoldReason::WaitingForSlot
        )
    );
    machine.required.is_some() && !machine.compliant && !chosen
}

#[cfg(test)]
mod tests {
    use super::*;
    use dom_model::ImageName;

    fn machine(host: &str, compliant: bool, held: Option<HoldReason>) -> MachineStatus {
        MachineStatus {
            host: host.into(),
            required: Some(ImageName::parse("web.1").unwrap()),
            planned: None,
            current: None,
            compliant,
            updating: false,
            error: None,
            planned_error: None,
            held,
            safety_cleared: false,
            high_impact: false,
            high_impact_requested: false,
            desired: None,
            publish: false,
        }
    }

    fn since(metrics: &Metrics) -> Vec<String> {
        let since = metrics.noncompliant_since.lock().unwrap();
        let mut hosts: Vec<String> = since.hosts.keys().cloned().collect();
        hosts.sort();
        hosts
    }

    #[test]
    fn machines_held_by_choice_are_not_counted_and_a_compliant_one_drops_out() {
        let metrics = Metrics::new();
        let round = [
            machine("stuck", false, None),
            machine("fixed", false, None),
            machine("disabled", false, Some(HoldReason::DisableUpdates)),
            machine("queued", false, Some(HoldReason::WaitingForSlot)),
            machine("done", true, None),
        ];
        metrics.machines(&round, &BTreeMap::new());
        assert_eq!(since(&metrics), ["fixed", "stuck"]);
        let first = metrics.noncompliant_since.lock().unwrap().hosts["stuck"].0;

        let mut next = round.clone();
        next[1].compliant = true;
        metrics.machines(&next, &BTreeMap::new());
        assert_eq!(since(&metrics), ["stuck"]);
        // Still counted from when it was first seen.
        assert_eq!(
            metrics.noncompliant_since.lock().unwrap().hosts["stuck"].0,
            first
        );
        let text = metrics.encode();
        assert!(
            text.contains("dominator_noncompliant_machines 1\n"),
            "{text}"
        );
        assert!(
            text.contains("dominator_machines_without_report 5\n"),
            "{text}"
        );
        assert!(
            text.contains("dominator_noncompliant_max_age_seconds 0\n"),
            "{text}"
        );

        metrics.machines(&[], &BTreeMap::new());
        assert!(since(&metrics).is_empty());
    }
}
