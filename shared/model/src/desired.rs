//! The desired state: what the dominator tells one machine to be.
//!
//! Published on `dom.desired.<host>` (last one kept per host), it carries
//! everything the machine's agent needs to converge without asking anyone
//! else: the image's manifest id, sparse flag, filter and triggers, an
//! optional planned image to pre-fetch, whether updates are allowed now
//! and HighImpact triggers may run, and the agent settings the dominator
//! hands out. An agent keeps a copy so
//! it can enforce its last known image while the bus is unreachable.
//!
//! [`DesiredState::decode`] trusts nothing: a payload whose image name,
//! filter or triggers would not compile is refused with a one-line reason,
//! which the agent reports back rather than acting on.

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::filter::{Filter, FilterError};
use crate::image::{HealthCheck, ImageName, ImageRecord};
use crate::object::ObjectId;
use crate::triggers::{Trigger, Triggers, TriggersError};

/// Schema version of desired states.
pub const DESIRED_STATE_VERSION: u32 = 1;
/// Longest host name accepted.
pub const MAX_HOST_LEN: usize = 253;

#[derive(Debug, Error)]
pub enum DesiredError {
    #[error("desired state is not valid: {0}")]
    Json(String),
    #[error("desired state has no schema version \"v\"")]
    NoVersion,
    #[error("desired state has schema version {0}; this reader understands version {DESIRED_STATE_VERSION}")]
    Version(u32),
    #[error(
        "desired state names an invalid host {0:?}: use letters, digits, '-', '_' and single dots"
    )]
    Host(String),
    #[error("desired state for {host}: image {image} is marked sparse but has a filter")]
    SparseWithFilter { host: String, image: String },
    #[error("desired state for {host}: image {image} is not sparse but has no filter")]
    NormalWithoutFilter { host: String, image: String },
    #[error("desired state for {host}: {source}")]
    Filter { host: String, source: FilterError },
    #[error("desired state for {host}: {source}")]
    Triggers { host: String, source: TriggersError },
    #[error("desired state for {host}: {reason}")]
    Config { host: String, reason: String },
}

/// The image a machine will be moved to next, handed out so the agent can
/// fetch its objects ahead of time.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlannedImage {
    pub image: ImageName,
    /// Object id of the planned image's manifest.
    pub manifest: ObjectId,
}

/// A share of the disk's read bandwidth, in percent to a thousandth:
/// from 0.001 (the original's emergency throttle is 0.1) to 100. On the
/// wire it is a plain JSON number (`2`, `0.1`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ScanPercent(u32);

impl ScanPercent {
    /// The full bandwidth: no limit.
    pub const FULL: Self = Self(100_000);

    /// Reads a percentage such as `2` or `0.1`; refuses what is not
    /// between 0.001 and 100.
    pub fn parse(percent: f64) -> Result<Self, String> {
        let thousandths = (percent * 1000.0).round();
        if !(1.0..=100_000.0).contains(&thousandths) {
            return Err(format!("{percent} is not between 0.001 and 100"));
        }
        Ok(Self(thousandths as u32))
    }

    /// A whole percentage, 1 to 100.
    pub fn whole(percent: u32) -> Self {
        Self(percent.clamp(1, 100) * 1000)
    }

    pub fn as_f64(self) -> f64 {
        f64::from(self.0) / 1000.0
    }

    pub fn is_full(self) -> bool {
        self >= Self::FULL
    }

    /// This share of `bytes` (per second), at least 1.
    pub fn of(self, bytes: u64) -> u64 {
        ((u128::from(bytes) * u128::from(self.0) / 100_000) as u64).max(1)
    }
}

impl std::fmt::Display for ScanPercent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}%", self.as_f64())
    }
}

impl std::str::FromStr for ScanPercent {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let number = s.trim().trim_end_matches('%');
        let percent: f64 = number
            .parse()
            .map_err(|_| format!("{s:?} is not a percentage such as 2 or 0.1"))?;
        Self::parse(percent)
    }
}

impl Serialize for ScanPercent {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        if self.0.is_multiple_of(1000) {
            serializer.serialize_u32(self.0 / 1000)
        } else {
            serializer.serialize_f64(self.as_f64())
        }
    }
}

impl<'de> Deserialize<'de> for ScanPercent {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let percent = f64::deserialize(deserializer)?;
        Self::parse(percent)
            .map_err(|why| serde::de::Error::custom(format!("scan_speed_percent {why}")))
    }
}

/// Agent settings chosen by the dominator (`domtool configure-subs`).
/// Absent fields keep the agent's own defaults.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentConfig {
    /// Share of the disk's read bandwidth the continuous scan may use.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scan_speed_percent: Option<ScanPercent>,
    /// Most bytes per second to fetch objects at.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fetch_rate: Option<u64>,
}

impl AgentConfig {
    pub fn is_empty(&self) -> bool {
        self == &Self::default()
    }

    /// These settings, with `over`'s where it has them (a machine's own
    /// over the fleet's).
    pub fn overridden_by(&self, over: &AgentConfig) -> AgentConfig {
        AgentConfig {
            scan_speed_percent: over.scan_speed_percent.or(self.scan_speed_percent),
            fetch_rate: over.fetch_rate.or(self.fetch_rate),
        }
    }
}

/// What one machine should be, published on `dom.desired.<host>`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DesiredState {
    pub v: u32,
    pub host: String,
    /// The required image.
    pub image: ImageName,
    /// Object id of its manifest.
    pub manifest: ObjectId,
    /// A sparse image only adds and updates; it never deletes.
    pub sparse: bool,
    /// Filter lines of a normal image; absent for a sparse image.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filter: Option<Vec<String>>,
    /// The image's triggers, in the Dominator's JSON form.
    #[serde(default)]
    pub triggers: Vec<Trigger>,
    /// The image to pre-fetch, while the machine is compliant.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub planned: Option<PlannedImage>,
    /// False while updates are disabled for this machine or the fleet: the
    /// agent keeps scanning and reporting but changes nothing.
    #[serde(default = "allowed")]
    pub updates_allowed: bool,
    /// The dominator's permission to run an update that fires HighImpact
    /// triggers, given to the machine whose state report asks for it
    /// (`high_impact`) while a place under the fleet's cap is free, and
    /// withdrawn once it stops asking. Absent: not granted.
    #[serde(default, skip_serializing_if = "is_false")]
    pub high_impact_granted: bool,
    #[serde(default, skip_serializing_if = "AgentConfig::is_empty")]
    pub config: AgentConfig,
    /// The image's own health check, run after an update with the agent's
    /// `--health-command`; copied from the image record.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health_check: Option<HealthCheck>,
    /// When the dominator issued it, RFC 3339.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issued: Option<String>,
    /// Which dominator published it (its `--id`), where several run for
    /// one fleet.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub publisher: Option<String>,
}

fn allowed() -> bool {
    true
}

fn is_false(b: &bool) -> bool {
    !*b
}

impl DesiredState {
    /// The desired state that puts `host` on the image `record` describes,
    /// with updates allowed and the agent's default settings.
    pub fn for_image(host: &str, record: &ImageRecord) -> Self {
        Self {
            v: DESIRED_STATE_VERSION,
            host: host.to_string(),
            image: record.name.clone(),
            manifest: record.manifest,
            sparse: record.sparse,
            filter: record.filter.clone(),
            triggers: record.triggers.clone(),
            planned: None,
            updates_allowed: true,
            high_impact_granted: false,
            config: AgentConfig::default(),
            health_check: record.health_check.clone(),
            issued: None,
            publisher: None,
        }
    }

    /// Decodes and validates a desired state from untrusted bytes.
    pub fn decode(payload: &[u8]) -> Result<Self, DesiredError> {
        match schema_version(payload).map_err(DesiredError::Json)? {
            None => return Err(DesiredError::NoVersion),
            Some(DESIRED_STATE_VERSION) => {}
            Some(v) => return Err(DesiredError::Version(v)),
        }
        let state: Self =
            serde_json::from_slice(payload).map_err(|e| DesiredError::Json(e.to_string()))?;
        state.validate()?;
        Ok(state)
    }

    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("desired states serialise")
    }

    /// Checks every rule a desired state must obey (the image names are
    /// checked as they are parsed).
    pub fn validate(&self) -> Result<(), DesiredError> {
        if self.v != DESIRED_STATE_VERSION {
            return Err(DesiredError::Version(self.v));
        }
        if !is_valid_host(&self.host) {
            return Err(DesiredError::Host(self.host.clone()));
        }
        let host = || self.host.clone();
        match (self.sparse, &self.filter) {
            (true, Some(_)) => {
                return Err(DesiredError::SparseWithFilter {
                    host: host(),
                    image: self.image.to_string(),
                })
            }
            (false, None) => {
                return Err(DesiredError::NormalWithoutFilter {
                    host: host(),
                    image: self.image.to_string(),
                })
            }
            _ => {}
        }
        self.compile_filter()
            .map_err(|source| DesiredError::Filter {
                host: host(),
                source,
            })?;
        self.compile_triggers()
            .map_err(|source| DesiredError::Triggers {
                host: host(),
                source,
            })?;
        if let Some(check) = &self.health_check {
            check.validate().map_err(|reason| DesiredError::Config {
                host: host(),
                reason,
            })?;
        }
        if self.config.fetch_rate == Some(0) {
            return Err(DesiredError::Config {
                host: host(),
                reason: "fetch_rate 0 would never fetch; leave it out for no limit".into(),
            });
        }
        Ok(())
    }

    /// The image's filter, compiled; `None` for a sparse image.
    pub fn compile_filter(&self) -> Result<Option<Filter>, FilterError> {
        self.filter.as_deref().map(Filter::new).transpose()
    }

    /// The image's triggers, compiled.
    pub fn compile_triggers(&self) -> Result<Triggers, TriggersError> {
        Triggers::new(self.triggers.clone())
    }
}

/// Whether `host` can name a machine on the bus: letters, digits, `-` and
/// `_` in dot-separated labels (`web1.example.com`), so every label is a
/// valid subject token.
pub fn is_valid_host(host: &str) -> bool {
    !host.is_empty()
        && host.len() <= MAX_HOST_LEN
        && host.split('.').all(|label| {
            !label.is_empty()
                && label
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        })
}

/// The `"v"` of a JSON payload, read before the rest so a newer schema is
/// reported as such rather than as whatever field it changed.
pub(crate) fn schema_version(payload: &[u8]) -> Result<Option<u32>, String> {
    #[derive(Deserialize)]
    struct Probe {
        #[serde(default)]
        v: Option<u32>,
    }
    serde_json::from_slice::<Probe>(payload)
        .map(|p| p.v)
        .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> DesiredState {
        DesiredState {
            health_check: None,
            v: 1,
            host: "web1.example.com".into(),
            image: ImageName::parse("web/prod/2026-11-26").unwrap(),
            manifest: ObjectId::of(b"manifest"),
            sparse: false,
            filter: Some(vec!["/etc/fstab".into(), "/var/log/.*".into()]),
            triggers: vec![Trigger {
                match_lines: vec!["/etc/ssh/.*".into()],
                service: "sshd".into(),
                ..Trigger::default()
            }],
            planned: Some(PlannedImage {
                image: ImageName::parse("web/prod/2026-11-27").unwrap(),
                manifest: ObjectId::of(b"next"),
            }),
            updates_allowed: false,
            high_impact_granted: true,
            config: AgentConfig {
                scan_speed_percent: Some(ScanPercent::whole(2)),
                fetch_rate: Some(10 << 20),
            },
            issued: Some("2026-11-26T09:00:00Z".into()),
            publisher: Some("dominator@ops1".into()),
        }
    }

    /// The sample as JSON, with one field replaced.
    fn edited(field: &str, value: serde_json::Value) -> Vec<u8> {
        let mut json = serde_json::to_value(sample()).unwrap();
        json[field] = value;
        serde_json::to_vec(&json).unwrap()
    }

    fn error(payload: &[u8]) -> String {
        let text = DesiredState::decode(payload).unwrap_err().to_string();
        assert!(!text.contains('\n'), "{text}");
        text
    }

    #[test]
    fn round_trips() {
        let state = sample();
        assert_eq!(DesiredState::decode(&state.encode()).unwrap(), state);
        let text = String::from_utf8(state.encode()).unwrap();
        assert!(
            text.starts_with(r#"{"v":1,"host":"web1.example.com""#),
            "{text}"
        );
        assert!(text.contains(r#""triggers":[{"MatchLines":["/etc/ssh/.*"],"Service":"sshd"}]"#));
        assert!(text.contains(r#""high_impact_granted":true"#), "{text}");
    }

    #[test]
    fn high_impact_grant_is_optional() {
        let mut state = sample();
        state.high_impact_granted = false;
        let text = String::from_utf8(state.encode()).unwrap();
        assert!(!text.contains("high_impact"), "{text}");
        assert!(
            !DesiredState::decode(text.as_bytes())
                .unwrap()
                .high_impact_granted
        );
        let granted = DesiredState::decode(&edited("high_impact_granted", true.into())).unwrap();
        assert!(granted.high_impact_granted);
        assert!(error(&edited("high_impact_granted", "yes".into())).contains("not valid"));
    }

    #[test]
    fn minimal_payload_takes_defaults_and_unknown_fields_are_ignored() {
        let payload = format!(
            r#"{{"v":1,"host":"h1","image":"sparse.0","manifest":"{}","sparse":true,"future":{{"x":1}}}}"#,
            ObjectId::of(b"m")
        );
        let state = DesiredState::decode(payload.as_bytes()).unwrap();
        assert!(state.updates_allowed && !state.high_impact_granted);
        assert!(state.triggers.is_empty() && state.planned.is_none());
        assert!(state.config.is_empty());
        assert!(state.compile_filter().unwrap().is_none());
        let text = String::from_utf8(state.encode()).unwrap();
        assert!(
            !text.contains("config") && !text.contains("filter"),
            "{text}"
        );
    }

    #[test]
    fn for_image_copies_the_record() {
        let record = ImageRecord {
            health_check: None,
            v: 1,
            name: ImageName::parse("image.0").unwrap(),
            manifest: ObjectId::of(b"m"),
            sparse: false,
            filter: Some(vec!["/tmp/.*".into()]),
            triggers: vec![],
            files: 1,
            bytes: 1,
            inodes: 2,
            created: "2026-11-26T09:00:00Z".into(),
            creator: "root@build1".into(),
            expires: None,
            expires_unix: None,
            objects: None,
            metadata: Default::default(),
        };
        let state = DesiredState::for_image("web1", &record);
        state.validate().unwrap();
        assert_eq!(state.image.as_str(), "image.0");
        let filter = state.compile_filter().unwrap().unwrap();
        assert!(filter.matches("/tmp/x"));
        assert!(state.compile_triggers().unwrap().is_empty());
    }

    #[test]
    fn rejects_malformed_payloads() {
        assert!(error(b"").contains("not valid"));
        assert!(error(b"{not json").contains("not valid"));
        assert!(error(b"[1,2]").contains("not valid"));
        assert!(error(br#"{"host":"h"}"#).contains("no schema version"));
        assert!(error(&edited("v", 2.into())).contains("version 2"));
        assert!(error(&edited("v", "1".into())).contains("not valid"));
        assert!(error(&edited("sparse", "no".into())).contains("not valid"));
        assert!(error(&edited("manifest", "abc".into())).contains("object id"));
        assert!(error(&edited("updates_allowed", 1.into())).contains("not valid"));
        let mut json = serde_json::to_value(sample()).unwrap();
        json.as_object_mut().unwrap().remove("image");
        assert!(error(&serde_json::to_vec(&json).unwrap()).contains("image"));
    }

    #[test]
    fn rejects_bad_names() {
        assert!(error(&edited("image", "bad name".into())).contains("bad name"));
        let planned = serde_json::json!({"image": "a..b", "manifest": ObjectId::of(b"x")});
        assert!(error(&edited("planned", planned)).contains("a..b"));
        for host in ["", "a b", "web1.", ".web1", "a..b", "a*", "a>b"] {
            assert!(
                error(&edited("host", host.into())).contains("invalid host"),
                "{host}"
            );
        }
        assert!(error(&edited("host", "h".repeat(254).into())).contains("invalid host"));
        assert!(is_valid_host("web1.example.com") && is_valid_host("db_2-a"));
    }

    #[test]
    fn rejects_bad_filters_and_triggers() {
        let text = error(&edited("filter", serde_json::json!(["/ok", "/bad["])));
        assert!(
            text.contains("web1.example.com") && text.contains("line 2"),
            "{text}"
        );
        let triggers = serde_json::json!([{"Service": "sshd", "MatchLines": ["(unclosed"]}]);
        assert!(error(&edited("triggers", triggers)).contains("sshd"));
        let triggers = serde_json::json!([{"MatchLines": ["/x"]}]);
        assert!(error(&edited("triggers", triggers)).contains("not valid"));
        let triggers = serde_json::json!([{"Service": " ", "MatchLines": ["/x"]}]);
        assert!(error(&edited("triggers", triggers)).contains("Service"));
    }

    #[test]
    fn sparse_must_match_the_filter() {
        assert!(error(&edited("sparse", true.into())).contains("sparse but has a filter"));
        assert!(error(&edited("filter", serde_json::Value::Null)).contains("no filter"));
        let mut json = serde_json::to_value(sample()).unwrap();
        json.as_object_mut().unwrap().remove("filter");
        json["sparse"] = true.into();
        DesiredState::decode(&serde_json::to_vec(&json).unwrap()).unwrap();
        // A normal image with an empty filter is fine.
        DesiredState::decode(&edited("filter", serde_json::json!([]))).unwrap();
    }

    #[test]
    fn rejects_bad_config() {
        let config = serde_json::json!({"scan_speed_percent": 0});
        assert!(error(&edited("config", config)).contains("between 0.001 and 100"));
        let config = serde_json::json!({"scan_speed_percent": 101});
        assert!(error(&edited("config", config)).contains("between 0.001 and 100"));
        // The original's emergency throttle.
        let config = serde_json::json!({"scan_speed_percent": 0.1});
        let state = DesiredState::decode(&edited("config", config)).unwrap();
        let percent = state.config.scan_speed_percent.unwrap();
        assert_eq!(percent.as_f64(), 0.1);
        assert_eq!(percent.of(100_000_000), 100_000);
        assert!(String::from_utf8(state.encode())
            .unwrap()
            .contains(r#""scan_speed_percent":0.1"#));
        let check = serde_json::json!({"command": "", "timeout_s": 5});
        assert!(error(&edited("health_check", check)).contains("empty"));
        let config = serde_json::json!({"fetch_rate": 0});
        assert!(error(&edited("config", config)).contains("fetch_rate"));
        let config = serde_json::json!({"fetch_rate": -1});
        assert!(error(&edited("config", config)).contains("not valid"));
    }
}
