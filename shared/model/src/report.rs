//! What a machine says back: its state report and its events.
//!
//! A [`StateReport`] on `dom.state.<host>` (last one kept per host) is the
//! machine's current standing: scan progress, the image last applied,
//! compliance, fetch and update activity, the last update's result, and the
//! agent's health. The dominator's policy and every dashboard read it. It
//! is also how an agent asks to run HighImpact triggers
//! ([`HighImpactRequest`]); the grant comes back in its desired state.
//!
//! An [`Event`] on `dom.event.<host>.<kind>` is an audit record of one
//! thing that happened (an update applied, drift found, a desired state
//! rejected), kept for a while so operators can see a machine's history.
//!
//! Timestamps are RFC 3339 strings supplied by the writer; nothing here
//! reads a clock.

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::desired::{is_valid_host, schema_version};

/// Schema version of state reports and events.
pub const REPORT_VERSION: u32 = 1;
/// Longest event kind accepted.
pub const MAX_KIND_LEN: usize = 64;

#[derive(Debug, Error)]
pub enum ReportError {
    #[error("{what} is not valid: {reason}")]
    Json { what: &'static str, reason: String },
    #[error("{0} has no schema version \"v\"")]
    NoVersion(&'static str),
    #[error("{what} has schema version {v}; this reader understands version {REPORT_VERSION}")]
    Version { what: &'static str, v: u32 },
    #[error(
        "{what} names an invalid host {host:?}: use letters, digits, '-', '_' and single dots"
    )]
    Host { what: &'static str, host: String },
    #[error("event kind {0:?} is not one word of letters, digits, '-' or '_'")]
    Kind(String),
}

/// Progress of the agent's continuous scan.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScanStats {
    /// When the last complete scan started, RFC 3339.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started: Option<String>,
    /// How long it took.
    #[serde(default)]
    pub duration_ms: u64,
    /// Regular files it found, and their total size.
    #[serde(default)]
    pub files: u64,
    #[serde(default)]
    pub bytes: u64,
    /// Complete scans since the agent started.
    #[serde(default)]
    pub full_scans: u64,
    /// Every entry the last complete scan found (directories, files,
    /// symlinks, devices; hard links once per path), leaving out the paths
    /// the scan skips. The dominator's safety shutoff compares it with the
    /// image's inode count. Absent when unknown.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inodes: Option<u64>,
}

/// The result of one update.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UpdateResult {
    /// The image being applied.
    pub image: String,
    /// The image the machine carried before (its last image applied),
    /// absent on a machine's first update. `domtool rollout abort
    /// --revert` sends a machine back to it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    /// When the update started, RFC 3339.
    pub started: String,
    #[serde(default)]
    pub duration_ms: u64,
    pub ok: bool,
    /// Why it failed, when it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Services whose stop, start or reload failed, one line each.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub trigger_failures: Vec<String>,
    /// Time between the first service stopped and the last started: how
    /// long the machine was in transition. Absent when nothing was stopped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transition_ms: Option<u64>,
    /// Paths created, replaced, deleted or given new metadata.
    #[serde(default)]
    pub changed: u64,
    #[serde(default)]
    pub fetched_objects: u64,
    #[serde(default)]
    pub fetched_bytes: u64,
}

/// Where a health check stands.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HealthState {
    /// The check is running (and being retried) after an update.
    #[default]
    Checking,
    /// It passed, or the machine has no health check and its update
    /// succeeded.
    Healthy,
    /// It kept failing until its time was up; `message` is the command's
    /// last output line.
    Unhealthy,
    /// Its last try was still running when its time was up.
    TimedOut,
}

impl HealthState {
    /// Whether the check is over and failed.
    pub fn failed(self) -> bool {
        matches!(self, Self::Unhealthy | Self::TimedOut)
    }
}

/// The health of a machine after its last update: the agent's
/// `--health-command` and the image's own check, run once the triggers
/// have started their services, retried for a bounded time.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Health {
    /// The image the update applied.
    pub image: String,
    pub state: HealthState,
    /// For people: the failing command's last output line, or what was
    /// checked.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message: String,
    /// When the check started, RFC 3339.
    #[serde(default)]
    pub started: String,
    /// Tries so far, and how long they took in all.
    #[serde(default)]
    pub attempts: u32,
    #[serde(default)]
    pub duration_ms: u64,
}

impl Health {
    /// Whether this says the machine is healthy on `image`.
    pub fn healthy_on(&self, image: &str) -> bool {
        self.image == image && self.state == HealthState::Healthy
    }

    /// Whether this says the check on `image` is over and failed.
    pub fn failed_on(&self, image: &str) -> bool {
        self.image == image && self.state.failed()
    }
}

/// An agent's request to run an update that fires HighImpact triggers.
/// The agent changes nothing until its desired state carries
/// `high_impact_granted`, and withdraws the request once the update ran.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HighImpactRequest {
    /// The image the update puts the machine on (its desired image).
    pub image: String,
    /// The services whose HighImpact triggers fire, for people.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub services: Vec<String>,
}

/// A machine's current standing, published on `dom.state.<host>`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StateReport {
    pub v: u32,
    pub host: String,
    /// Grows by one each time the scan finds something new; a scan that
    /// finds nothing new keeps it and publishes nothing.
    #[serde(default)]
    pub generation: u64,
    #[serde(default)]
    pub scan: ScanStats,
    /// The image last applied successfully.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// The image the agent was last told to carry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub desired_image: Option<String>,
    /// Whether the machine matches `desired_image` (no deviations).
    #[serde(default)]
    pub compliant: bool,
    /// Paths that differ from the desired image.
    #[serde(default)]
    pub deviations: u64,
    /// Paths the agent's plan against `desired_image` would remove (its
    /// `clear` and `deletes`), computed whether or not updates are allowed,
    /// so the dominator's safety shutoff can judge an update before it is
    /// allowed. Absent when unknown.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub would_delete: Option<u64>,
    #[serde(default)]
    pub fetching: bool,
    #[serde(default)]
    pub updating: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_update: Option<UpdateResult>,
    /// Present while the agent waits for the dominator's permission to run
    /// HighImpact triggers, and while it uses it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub high_impact: Option<HighImpactRequest>,
    /// The health check after the last successful update; absent until
    /// one ran (older agents never send it: their machines count as
    /// healthy once compliant).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health: Option<Health>,
    /// The scan's current read limit, bytes per second, after the
    /// dominator's settings (`domtool configure-subs`); absent: no limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scan_rate: Option<u64>,
    /// Bytes held in the agent's object cache.
    #[serde(default)]
    pub object_cache_bytes: u64,
    /// Free space on the managed file system.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub free_bytes: Option<u64>,
    #[serde(default)]
    pub agent_version: String,
    #[serde(default)]
    pub uptime_s: u64,
    /// A persistent problem, such as a desired state the agent refused; it
    /// stays until the cause goes away.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl StateReport {
    /// An empty report for `host`, to be filled in.
    pub fn new(host: &str) -> Self {
        Self {
            v: REPORT_VERSION,
            host: host.to_string(),
            ..Self::default()
        }
    }

    /// Decodes and validates a state report from untrusted bytes.
    pub fn decode(payload: &[u8]) -> Result<Self, ReportError> {
        let report: Self = decode_versioned("state report", payload)?;
        report.validate()?;
        Ok(report)
    }

    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("state reports serialise")
    }

    pub fn validate(&self) -> Result<(), ReportError> {
        check_common("state report", self.v, &self.host)
    }
}

/// One thing that happened on a machine, published on
/// `dom.event.<host>.<kind>`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Event {
    pub v: u32,
    pub host: String,
    /// What happened, one subject token: see the `Event::*` kinds.
    pub kind: String,
    /// When, RFC 3339.
    pub time: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// One line for people.
    #[serde(default)]
    pub message: String,
    /// Anything structured worth keeping (an update result, a plan's
    /// counts); `null` when there is nothing.
    #[serde(default, skip_serializing_if = "serde_json::Value::is_null")]
    pub details: serde_json::Value,
}

impl Event {
    /// An update was applied (or failed).
    pub const UPDATE: &'static str = "update";
    /// The scan found the machine no longer matches its image.
    pub const DRIFT: &'static str = "drift";
    /// Something went wrong outside an update (a fetch, a scan).
    pub const ERROR: &'static str = "error";
    /// A desired state was refused.
    pub const REJECTED: &'static str = "rejected";
    /// A health check after an update finished (healthy or not).
    pub const HEALTH: &'static str = "health";
    /// The agent served a capture of its machine (`imagetool adds`).
    pub const CAPTURE: &'static str = "capture";

    pub fn new(host: &str, kind: &str, time: &str, message: impl Into<String>) -> Self {
        Self {
            v: REPORT_VERSION,
            host: host.to_string(),
            kind: kind.to_string(),
            time: time.to_string(),
            image: None,
            message: message.into(),
            details: serde_json::Value::Null,
        }
    }

    pub fn with_image(mut self, image: impl Into<String>) -> Self {
        self.image = Some(image.into());
        self
    }

    pub fn with_details(mut self, details: serde_json::Value) -> Self {
        self.details = details;
        self
    }

    /// Decodes and validates an event from untrusted bytes.
    pub fn decode(payload: &[u8]) -> Result<Self, ReportError> {
        let event: Self = decode_versioned("event", payload)?;
        event.validate()?;
        Ok(event)
    }

    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("events serialise")
    }

    pub fn validate(&self) -> Result<(), ReportError> {
        check_common("event", self.v, &self.host)?;
        if !is_valid_kind(&self.kind) {
            return Err(ReportError::Kind(self.kind.clone()));
        }
        Ok(())
    }
}

/// Whether `kind` can be the last token of an event subject.
pub fn is_valid_kind(kind: &str) -> bool {
    !kind.is_empty()
        && kind.len() <= MAX_KIND_LEN
        && kind
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

fn decode_versioned<T: serde::de::DeserializeOwned>(
    what: &'static str,
    payload: &[u8],
) -> Result<T, ReportError> {
    let json = |reason: String| ReportError::Json { what, reason };
    match schema_version(payload).map_err(json)? {
        None => return Err(ReportError::NoVersion(what)),
        Some(REPORT_VERSION) => {}
        Some(v) => return Err(ReportError::Version { what, v }),
    }
    serde_json::from_slice(payload).map_err(|e| json(e.to_string()))
}

fn check_common(what: &'static str, v: u32, host: &str) -> Result<(), ReportError> {
    if v != REPORT_VERSION {
        return Err(ReportError::Version { what, v });
    }
    if !is_valid_host(host) {
        return Err(ReportError::Host {
            what,
            host: host.to_string(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report() -> StateReport {
        StateReport {
            generation: 42,
            scan: ScanStats {
                started: Some("2026-11-26T09:00:00Z".into()),
                duration_ms: 1500,
                files: 30_000,
                bytes: 1 << 30,
                full_scans: 7,
                inodes: Some(31_000),
            },
            image: Some("image.0".into()),
            desired_image: Some("image.1".into()),
            compliant: false,
            deviations: 12,
            would_delete: Some(2),
            fetching: true,
            last_update: Some(UpdateResult {
                from: None,
                image: "image.0".into(),
                started: "2026-11-26T08:00:00Z".into(),
                duration_ms: 900,
                ok: false,
                error: Some("fetching objects: bucket unreachable".into()),
                trigger_failures: vec!["sshd start: exit status 1".into()],
                transition_ms: Some(400),
                changed: 3,
                fetched_objects: 2,
                fetched_bytes: 4096,
            }),
            high_impact: Some(HighImpactRequest {
                image: "image.1".into(),
                services: vec!["postgres".into()],
            }),
            object_cache_bytes: 8192,
            free_bytes: Some(1 << 33),
            agent_version: "0.1.0".into(),
            uptime_s: 3600,
            error: None,
            ..StateReport::new("web1.example.com")
        }
    }

    fn edited(field: &str, value: serde_json::Value) -> Vec<u8> {
        let mut json = serde_json::to_value(report()).unwrap();
        json[field] = value;
        serde_json::to_vec(&json).unwrap()
    }

    fn report_error(payload: &[u8]) -> String {
        let text = StateReport::decode(payload).unwrap_err().to_string();
        assert!(!text.contains('\n'), "{text}");
        text
    }

    fn event_error(payload: &[u8]) -> String {
        let text = Event::decode(payload).unwrap_err().to_string();
        assert!(!text.contains('\n'), "{text}");
        text
    }

    #[test]
    fn state_report_round_trips() {
        let r = report();
        assert_eq!(StateReport::decode(&r.encode()).unwrap(), r);
        let fresh = StateReport::new("h1");
        assert_eq!(StateReport::decode(&fresh.encode()).unwrap(), fresh);
        let text = String::from_utf8(fresh.encode()).unwrap();
        assert!(text.starts_with(r#"{"v":1,"host":"h1""#), "{text}");
        assert!(
            !text.contains("last_update") && !text.contains("error"),
            "{text}"
        );
        assert!(!text.contains("high_impact"), "{text}");
    }

    #[test]
    fn high_impact_request_round_trips_and_is_optional() {
        let text = String::from_utf8(report().encode()).unwrap();
        assert!(
            text.contains(r#""high_impact":{"image":"image.1","services":["postgres"]}"#),
            "{text}"
        );
        let bare = br#"{"v":1,"host":"h1","high_impact":{"image":"image.1"}}"#;
        let request = StateReport::decode(bare).unwrap().high_impact.unwrap();
        assert_eq!(request.image, "image.1");
        assert!(request.services.is_empty());
        let old = StateReport::decode(br#"{"v":1,"host":"h1"}"#).unwrap();
        assert!(old.high_impact.is_none());
        assert!(report_error(&edited("high_impact", serde_json::json!({}))).contains("image"));
        assert!(report_error(&edited("high_impact", "image.1".into())).contains("not valid"));
    }

    #[test]
    fn state_report_tolerates_unknown_and_missing_fields() {
        let r =
            StateReport::decode(br#"{"v":1,"host":"h1","new_field":[1],"scan":{"later":true}}"#)
                .unwrap();
        assert_eq!(r, StateReport::new("h1"));
    }

    #[test]
    fn state_report_rejects_malformed_payloads() {
        assert!(report_error(b"{").contains("state report is not valid"));
        assert!(report_error(br#"{"host":"h1"}"#).contains("no schema version"));
        assert!(report_error(&edited("v", 2.into())).contains("version 2"));
        assert!(report_error(&edited("generation", "many".into())).contains("not valid"));
        assert!(report_error(&edited("deviations", (-1).into())).contains("not valid"));
        assert!(report_error(&edited("compliant", "yes".into())).contains("not valid"));
        let update = serde_json::json!({"image": "x", "started": "t"});
        assert!(report_error(&edited("last_update", update)).contains("ok"));
        assert!(report_error(&edited("host", "a b".into())).contains("invalid host"));
        assert!(report_error(&edited("host", serde_json::Value::Null)).contains("not valid"));
    }

    #[test]
    fn event_round_trips() {
        let event = Event::new(
            "web1.example.com",
            Event::UPDATE,
            "2026-11-26T09:00:01Z",
            "image.1 applied: 3 paths changed, sshd restarted",
        )
        .with_image("image.1")
        .with_details(serde_json::json!({"changed": 3, "transition_ms": 400}));
        assert_eq!(Event::decode(&event.encode()).unwrap(), event);
        let bare = Event::new("h1", Event::DRIFT, "2026-11-26T09:00:01Z", "2 deviations");
        let text = String::from_utf8(bare.encode()).unwrap();
        assert!(
            !text.contains("details") && !text.contains("image"),
            "{text}"
        );
        assert_eq!(Event::decode(text.as_bytes()).unwrap(), bare);
        let extra = br#"{"v":1,"host":"h1","kind":"error","time":"t","other":1}"#;
        let event = Event::decode(extra).unwrap();
        assert!(event.message.is_empty() && event.details.is_null());
    }

    #[test]
    fn event_rejects_malformed_payloads() {
        let good = Event::new("h1", Event::REJECTED, "t", "bad filter");
        let edited = |field: &str, value: serde_json::Value| {
            let mut json = serde_json::to_value(&good).unwrap();
            json[field] = value;
            serde_json::to_vec(&json).unwrap()
        };
        assert!(event_error(b"null").contains("event is not valid"));
        assert!(event_error(&edited("v", 3.into())).contains("version 3"));
        assert!(event_error(&edited("kind", "a.b".into())).contains("event kind"));
        assert!(event_error(&edited("kind", "".into())).contains("event kind"));
        assert!(event_error(&edited("kind", "*".into())).contains("event kind"));
        assert!(event_error(&edited("host", "".into())).contains("invalid host"));
        assert!(event_error(&edited("time", 5.into())).contains("not valid"));
        assert!(event_error(&edited("message", false.into())).contains("not valid"));
        assert!(event_error(br#"{"v":1,"host":"h1","kind":"update"}"#).contains("time"));
    }
}
