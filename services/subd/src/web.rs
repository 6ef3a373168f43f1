//! The agent's HTTP side (`--http`, default `:6969`; off when empty): a
//! small status page, its JSON, and Prometheus metrics.
//!
//! - `GET /`: the machine at a glance: image, compliance, deviations,
//!   the last scan and update (with its transition window), the error,
//!   the latest events; it refreshes itself every few seconds.
//! - `GET /status`: the same as JSON: `report` (the last state report
//!   made, published or not) and `events` (latest first).
//! - `GET /metrics`: the metrics below, for Prometheus; among them the
//!   rate limits in force (`subd_scan_rate_limit_bytes_per_second`,
//!   `subd_fetch_rate_limit_bytes_per_second`, 0 for none), which follow
//!   the dominator's `configure-subs` as desired states bring it.
//! - `GET /healthz`: `200 ok` while the agent's loop runs.
//!
//! Nothing here reads the bus or the disk: the agent's loop records what
//! it does in an [`Observed`], and the server reads that.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use dom_model::report::{HealthState, UpdateResult};
use dom_model::{Event, StateReport};
use dom_web::axum::extract::State;
use dom_web::axum::http::StatusCode;
use dom_web::axum::response::{Html, IntoResponse, Json};
use dom_web::axum::routing::get;
use dom_web::axum::Router;
use dom_web::prometheus_client::metrics::counter::Counter;
use dom_web::prometheus_client::metrics::family::Family;
use dom_web::prometheus_client::metrics::gauge::Gauge;
use dom_web::prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use dom_web::prometheus_client::registry::Registry;
use dom_web::{escape, page};
use serde::Serialize;

/// Events the page and `/status` keep.
const EVENTS_KEPT: usize = 20;
/// How often the page reloads itself, seconds.
const REFRESH_S: u32 = 5;

/// What the agent's loop records for the HTTP side.
pub struct Observed {
    host: String,
    report: Mutex<Option<StateReport>>,
    events: Mutex<VecDeque<Event>>,
    running: AtomicBool,
    metrics: Metrics,
    registry: Arc<Registry>,
}

/// The agent's metrics, all prefixed `subd_`.
struct Metrics {
    scans: Counter,
    scan_seconds: Histogram,
    scan_bytes_per_second: Gauge<f64, AtomicU64>,
    scanned_files: Gauge,
    scan_hashed_bytes: Counter,
    rehashing: Gauge,
    generation: Gauge,
    deviations: Gauge,
    compliant: Gauge,
    updating: Gauge,
    updates: Family<Labels, Counter>,
    update_seconds: Histogram,
    transition_window_seconds: Histogram,
    trigger_failures: Counter,
    fetched_bytes: Counter,
    fetched_objects: Counter,
    object_cache_bytes: Gauge<i64, AtomicI64>,
    free_bytes: Gauge<i64, AtomicI64>,
    scan_rate_limit: Gauge<i64, AtomicI64>,
    fetch_rate_limit: Gauge<i64, AtomicI64>,
    healthy: Gauge,
    reports: Counter,
    events: Family<Labels, Counter>,
}

/// A metric's labels: name and value pairs.
type Labels = Vec<(&'static str, String)>;

impl Metrics {
    fn new() -> Self {
        let seconds = || Histogram::new(exponential_buckets(0.001, 4.0, 12));
        Self {
            scans: Counter::default(),
            scan_seconds: seconds(),
            scan_bytes_per_second: Gauge::default(),
            scanned_files: Gauge::default(),
            scan_hashed_bytes: Counter::default(),
            rehashing: Gauge::default(),
            generation: Gauge::default(),
            deviations: Gauge::default(),
            compliant: Gauge::default(),
            updating: Gauge::default(),
            updates: Family::default(),
            update_seconds: seconds(),
            transition_window_seconds: seconds(),
            trigger_failures: Counter::default(),
            fetched_bytes: Counter::default(),
            fetched_objects: Counter::default(),
            object_cache_bytes: Gauge::default(),
            free_bytes: Gauge::default(),
            scan_rate_limit: Gauge::default(),
            fetch_rate_limit: Gauge::default(),
            healthy: Gauge::default(),
            reports: Counter::default(),
            events: Family::default(),
        }
    }

    /// A registry of every metric: field, name (after `subd_`), help.
    fn registry(&self) -> Registry {
        let mut registry = Registry::with_prefix("subd");
        macro_rules! register {
            ($($field:ident: $name:literal, $help:literal;)*) => {
                $(registry.register($name, $help, self.$field.clone());)*
            };
        }
        register! {
            scans: "scans", "Scans of the tree finished";
            scan_seconds: "scan_seconds", "How long each scan took";
            scan_bytes_per_second: "scan_bytes_per_second", "Bytes read per second by the last scan";
            scanned_files: "scanned_files", "Regular files the last scan found";
            scan_hashed_bytes: "scan_hashed_bytes", "Bytes quick scans read and hashed (the rest the hash cache knew)";
            rehashing: "rehash_running", "1 while a full rehash of the tree is under way";
            generation: "generation", "Grows by one each time a scan finds the tree changed";
            deviations: "deviations", "Paths that differ from the required image";
            compliant: "compliant", "1 when the tree matches the required image";
            updating: "updating", "1 while an update changes the tree";
            updates: "updates", "Updates run, by result (ok, failed)";
            update_seconds: "update_seconds", "How long each update took, fetch included";
            transition_window_seconds: "transition_window_seconds", "Time from the first service stopped to the last started, per update";
            trigger_failures: "trigger_failures", "Service stops, starts or reloads that failed";
            fetched_bytes: "fetched_bytes", "Bytes fetched for updates";
            fetched_objects: "fetched_objects", "Objects fetched for updates";
            object_cache_bytes: "object_cache_bytes", "Bytes held in the object cache";
            free_bytes: "free_bytes", "Free bytes on the root's file system";
            scan_rate_limit: "scan_rate_limit_bytes_per_second", "Bytes per second background scans may read now (0: no limit)";
            fetch_rate_limit: "fetch_rate_limit_bytes_per_second", "Bytes per second objects may be fetched at now (0: no limit)";
            healthy: "healthy", "1 when the health check after the last update passed, 0 while it runs or after it failed";
            reports: "state_reports", "State reports published";
            events: "events", "Events published, by kind";
        }
        registry
    }
}

impl Observed {
    pub fn new(host: &str) -> Self {
        let metrics = Metrics::new();
        let registry = metrics.registry();
        Self {
            host: host.to_string(),
            report: Mutex::new(None),
            events: Mutex::new(VecDeque::new()),
            running: AtomicBool::new(true),
            metrics,
            registry: Arc::new(registry),
        }
    }

    /// A scan of `files` regular files holding `bytes`, of which it read
    /// `hashed`, ended after `duration`.
    pub(crate) fn scanned(&self, duration: Duration, files: u64, bytes: u64, hashed: u64) {
        let m = &self.metrics;
        m.scans.inc();
        m.scan_hashed_bytes.inc_by(hashed);
        m.scan_seconds.observe(duration.as_secs_f64());
        m.scanned_files.set(files as i64);
        if !duration.is_zero() {
            m.scan_bytes_per_second
                .set(bytes as f64 / duration.as_secs_f64());
        }
    }

    /// A full rehash started (`true`) or ended.
    pub(crate) fn rehashing(&self, running: bool) {
        self.metrics.rehashing.set(i64::from(running));
    }

    /// An update ended.
    pub(crate) fn updated(&self, result: &UpdateResult) {
        let m = &self.metrics;
        let outcome = if result.ok { "ok" } else { "failed" };
        m.updates
            .get_or_create(&vec![("result", outcome.to_string())])
            .inc();
        m.update_seconds
            .observe(Duration::from_millis(result.duration_ms).as_secs_f64());
        if let Some(window) = result.transition_ms {
            m.transition_window_seconds
                .observe(Duration::from_millis(window).as_secs_f64());
        }
        m.trigger_failures
            .inc_by(result.trigger_failures.len() as u64);
        m.fetched_bytes.inc_by(result.fetched_bytes);
        m.fetched_objects.inc_by(result.fetched_objects);
    }

    /// The scan and fetch rate limits now (`None`: no limit).
    pub(crate) fn rate_limits(&self, scan: Option<u64>, fetch: Option<u64>) {
        let gauge = |limit: Option<u64>| limit.unwrap_or(0).min(i64::MAX as u64) as i64;
        self.metrics.scan_rate_limit.set(gauge(scan));
        self.metrics.fetch_rate_limit.set(gauge(fetch));
    }

    /// The loop made this report; `published`: it went to the bus.
    pub(crate) fn reported(&self, report: &StateReport, published: bool) {
        let m = &self.metrics;
        m.generation.set(report.generation as i64);
        m.deviations.set(report.deviations as i64);
        m.compliant.set(i64::from(report.compliant));
        m.updating.set(i64::from(report.updating));
        let healthy = report
            .health
            .as_ref()
            .is_some_and(|h| h.state == HealthState::Healthy);
        m.healthy.set(i64::from(healthy));
        m.object_cache_bytes
            .set(report.object_cache_bytes.min(i64::MAX as u64) as i64);
        if let Some(free) = report.free_bytes {
            m.free_bytes.set(free.min(i64::MAX as u64) as i64);
        }
        if published {
            m.reports.inc();
        }
        *self.report.lock().expect("report lock") = Some(report.clone());
    }

    /// The loop sent an event.
    pub(crate) fn event(&self, event: &Event) {
        self.metrics
            .events
            .get_or_create(&vec![("kind", event.kind.clone())])
            .inc();
        let mut events = self.events.lock().expect("events lock");
        if events.len() == EVENTS_KEPT {
            events.pop_back();
        }
        events.push_front(event.clone());
    }

    /// The agent's loop ended.
    pub(crate) fn stopped(&self) {
        self.running.store(false, Ordering::Relaxed);
    }

    fn snapshot(&self) -> Snapshot {
        Snapshot {
            host: self.host.clone(),
            report: self.report.lock().expect("report lock").clone(),
            events: self
                .events
                .lock()
                .expect("events lock")
                .iter()
                .cloned()
                .collect(),
        }
    }
}

/// What `/status` answers.
#[derive(Serialize)]
struct Snapshot {
    host: String,
    report: Option<StateReport>,
    /// Latest first.
    events: Vec<Event>,
}

/// Serves the agent's HTTP side on `listener` until the task is dropped.
pub(crate) async fn serve(listener: tokio::net::TcpListener, observed: Arc<Observed>) {
    let addr = listener.local_addr().ok();
    let router = router(observed);
    if let Err(e) = dom_web::serve(listener, router, std::future::pending()).await {
        tracing::warn!(?addr, error = %e, "status server stopped");
    }
}

/// Binds the `--http` address now, so a bad one is refused at start.
pub(crate) fn bind(flag: &str) -> Result<(tokio::net::TcpListener, SocketAddr), String> {
    let listener = dom_web::bind_now(flag).map_err(|e| e.to_string())?;
    let local = listener
        .local_addr()
        .map_err(|e| format!("cannot serve HTTP on {flag}: {e}"))?;
    Ok((listener, local))
}

fn router(observed: Arc<Observed>) -> Router {
    Router::new()
        .route("/", get(status_page))
        .route("/status", get(status_json))
        .route("/healthz", get(healthz))
        .with_state(observed.clone())
        .merge(dom_web::metrics::route(observed.registry.clone()))
        .merge(dom_web::assets::routes())
}

async fn healthz(State(observed): State<Arc<Observed>>) -> impl IntoResponse {
    if observed.running.load(Ordering::Relaxed) {
        (StatusCode::OK, "ok\n")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "stopped\n")
    }
}

async fn status_json(State(observed): State<Arc<Observed>>) -> Json<Snapshot> {
    Json(observed.snapshot())
}

async fn status_page(State(observed): State<Arc<Observed>>) -> Html<String> {
    let snapshot = observed.snapshot();
    let mut body = format!(r#"<meta http-equiv="refresh" content="{REFRESH_S}">"#);
    body.push_str(&render_report(snapshot.report.as_ref()));
    body.push_str("<h2>Latest events</h2>");
    if snapshot.events.is_empty() {
        body.push_str("<p>None since the agent started.</p>");
    } else {
        body.push_str("<table><tr><th>time</th><th>kind</th><th>image</th><th>message</th></tr>");
        for event in &snapshot.events {
            body.push_str(&format!(
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                escape(&event.time),
                escape(&event.kind),
                escape(event.image.as_deref().unwrap_or("")),
                escape(&event.message)
            ));
        }
        body.push_str("</table>");
    }
    page(
        &format!("subd on {}", snapshot.host),
        &[("/status", "JSON"), ("/metrics", "metrics")],
        &body,
    )
}

/// The report as a two-column table.
fn render_report(report: Option<&StateReport>) -> String {
    let Some(r) = report else {
        return "<p>No scan has finished yet.</p>".into();
    };
    let or_dash = |s: Option<&str>| escape(s.unwrap_or("-"));
    let compliance = if r.compliant {
        "yes".to_string()
    } else {
        format!("no: {} deviations", r.deviations)
    };
    let mut rows = vec![
        ("image", or_dash(r.image.as_deref())),
        ("required image", or_dash(r.desired_image.as_deref())),
        ("compliant", compliance),
        ("generation", r.generation.to_string()),
        (
            "last scan",
            format!(
                "{}: {} files, {} bytes in {} ms",
                or_dash(r.scan.started.as_deref()),
                r.scan.files,
                r.scan.bytes,
                r.scan.duration_ms
            ),
        ),
    ];
    if r.fetching || r.updating {
        let doing = if r.updating { "updating" } else { "fetching" };
        rows.push(("now", doing.to_string()));
    }
    if let Some(u) = &r.last_update {
        let outcome = match (&u.error, u.ok) {
            (_, true) => "ok".to_string(),
            (Some(e), false) => format!("failed: {e}"),
            (None, false) => "failed".to_string(),
        };
        let window = u
            .transition_ms
            .map(|w| format!(", services in transition for {w} ms"))
            .unwrap_or_default();
        rows.push((
            "last update",
            escape(&format!(
                "{} to {}: {outcome}, {} changed in {} ms{window}",
                u.started, u.image, u.changed, u.duration_ms
            )),
        ));
        for failure in &u.trigger_failures {
            rows.push(("trigger failure", escape(failure)));
        }
    }
    if let Some(h) = &r.health {
        let state = match h.state {
            HealthState::Checking => "checking",
            HealthState::Healthy => "healthy",
            HealthState::Unhealthy => "unhealthy",
            HealthState::TimedOut => "timed out",
        };
        let text = escape(&format!(
            "{state} on {} ({} tries, {} ms){}",
            h.image,
            h.attempts,
            h.duration_ms,
            if h.message.is_empty() {
                String::new()
            } else {
                format!(": {}", h.message)
            }
        ));
        let value = if h.state.failed() {
            format!(r#"<span class="bad">{text}</span>"#)
        } else {
            text
        };
        rows.push(("health", value));
    }
    if let Some(error) = &r.error {
        rows.push((
            "error",
            format!(r#"<span class="bad">{}</span>"#, escape(error)),
        ));
    }
    let mut html = String::from("<table>");
    for (name, value) in rows {
        html.push_str(&format!("<tr><th>{name}</th><td>{value}</td></tr>"));
    }
    html.push_str("</table>");
    html
}
