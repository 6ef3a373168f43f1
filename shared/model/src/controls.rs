//! Fleet controls: what operators say to the whole fleet on
//! `dom.ctl.<control>` (the `DOM_CTL` stream keeps the last 16 of each).
//!
//! - `dom.ctl.updates` ([`UpdatesControl`]): the emergency stop. The last
//!   message wins: `"disabled"` holds every machine, `"enabled"` lets them
//!   go again. Each says why, who and when.
//! - `dom.ctl.safety-clear.<host>` ([`SafetyClearance`]): an operator
//!   clears the safety shutoff of one machine for one image, once. One
//!   subject per host, so the last message per subject is every clearance
//!   still standing.
//!
//! - `dom.ctl.rollout.<image>` ([`RolloutControl`]): where an image's
//!   rollout was left: halted (by the dominator), resumed or aborted (by
//!   an operator).
//! - `dom.ctl.pause.<host>`, `dom.ctl.fast-update.<host>`,
//!   `dom.ctl.subs-config[.<host>]` and `dom.ctl.default-image`: see
//!   [`machine`].
//!
//! Every payload is JSON with `"v": 1`; unknown fields are ignored and
//! controls this reader does not know are skipped, so newer tools can add
//! controls without breaking older dominators.

use crate::desired::is_valid_host;
use crate::policy::Updates;
use crate::ImageName;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use thiserror::Error;

pub mod machine;
pub mod rollout;

pub use machine::{DefaultImage, FastUpdate, PauseControl, SubsConfig};
pub use rollout::{RolloutControl, RolloutMachine, RolloutState};

/// Schema version of control payloads.
pub const CONTROL_VERSION: u32 = 1;
/// The control name of the emergency stop.
pub const UPDATES: &str = "updates";
/// The control name prefix of safety-shutoff clearances.
pub const SAFETY_CLEAR: &str = "safety-clear";
/// The control name prefix of rollouts (`rollout.<image>`).
pub const ROLLOUT: &str = "rollout";
/// The control name prefix of paused machines (`pause.<host>`).
pub const PAUSE: &str = "pause";
/// The control name prefix of fast updates (`fast-update.<host>`).
pub const FAST_UPDATE: &str = "fast-update";
/// The control name of the fleet's agent settings; a machine's own are
/// `subs-config.<host>`.
pub const SUBS_CONFIG: &str = "subs-config";
/// The control name of the default image.
pub const DEFAULT_IMAGE: &str = "default-image";

/// The control name `PREFIX.<name>`.
pub fn control_name(prefix: &str, name: &str) -> String {
    format!("{prefix}.{name}")
}

#[derive(Debug, Error, PartialEq, Eq)]
pub enum ControlError {
    #[error("control {control}: not valid: {reason}")]
    Json { control: String, reason: String },
    #[error(
        "control {control}: schema version {v}; this reader understands version {CONTROL_VERSION}"
    )]
    Version { control: String, v: u32 },
    #[error("control {control}: {reason}")]
    Invalid { control: String, reason: String },
}

/// Whether updates are on or off.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UpdatesState {
    Enabled,
    Disabled,
}

/// `dom.ctl.updates`: the fleet-wide emergency stop.
///
/// ```json
/// {"v":1,"updates":"disabled","reason":"bad kernel in image.7",
///  "by":"alice@ops1","when":"2026-11-26T09:00:00Z"}
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UpdatesControl {
    pub v: u32,
    pub updates: UpdatesState,
    #[serde(default)]
    pub reason: String,
    /// Who said so, `user@host`.
    #[serde(default)]
    pub by: String,
    /// When, RFC 3339.
    #[serde(default)]
    pub when: String,
}

impl UpdatesControl {
    pub fn new(updates: UpdatesState, reason: &str, by: &str, when: &str) -> Self {
        Self {
            v: CONTROL_VERSION,
            updates,
            reason: reason.into(),
            by: by.into(),
            when: when.into(),
        }
    }

    /// What the policy makes of it.
    pub fn to_policy(&self) -> Updates {
        match self.updates {
            UpdatesState::Enabled => Updates::Enabled,
            UpdatesState::Disabled => Updates::Disabled {
                reason: self.reason.clone(),
                by: self.by.clone(),
            },
        }
    }

    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("controls serialise")
    }
}

/// `dom.ctl.safety-clear.<host>`: lets one update of `host` to `image`
/// past the safety shutoff.
///
/// ```json
/// {"v":1,"host":"db1","image":"db/2026-11-26","reason":"new layout",
///  "by":"alice@ops1","when":"2026-11-26T09:00:00Z"}
/// ```
///
/// A clearance is spent once the machine is compliant with the image,
/// requires another image or leaves the MDB; one whose machine reports a
/// successful update to the image that started at or after `when` is spent
/// too, so a restarted dominator does not reuse it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SafetyClearance {
    pub v: u32,
    pub host: String,
    pub image: ImageName,
    #[serde(default)]
    pub reason: String,
    #[serde(default)]
    pub by: String,
    #[serde(default)]
    pub when: String,
}

impl SafetyClearance {
    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("controls serialise")
    }
}

/// The control name of `host`'s clearance: `safety-clear.<host>`.
pub fn safety_clear_control(host: &str) -> String {
    control_name(SAFETY_CLEAR, host)
}

/// A control message, decoded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Control {
    Updates(UpdatesControl),
    SafetyClear(SafetyClearance),
    Rollout(RolloutControl),
    Pause(PauseControl),
    FastUpdate(FastUpdate),
    SubsConfig(SubsConfig),
    DefaultImage(DefaultImage),
    /// A control published with an empty payload: withdrawn.
    Withdrawn(String),
    /// A control this reader does not know.
    Unknown(String),
}

impl Control {
    /// Decodes the payload of `dom.ctl.<control>`.
    pub fn decode(control: &str, payload: &[u8]) -> Result<Self, ControlError> {
        let Some(kind) = Kind::of(control) else {
            return Ok(Self::Unknown(control.into()));
        };
        if payload.iter().all(u8::is_ascii_whitespace) {
            return Ok(Self::Withdrawn(control.into()));
        }
        let invalid = |reason: String| ControlError::Invalid {
            control: control.into(),
            reason,
        };
        #[derive(Deserialize)]
        struct Probe {
            v: Option<u32>,
        }
        let probe: Probe = parse(control, payload)?;
        match probe.v {
            Some(CONTROL_VERSION) => {}
            Some(v) => {
                return Err(ControlError::Version {
                    control: control.into(),
                    v,
                })
            }
            None => return Err(invalid("no schema version \"v\"".into())),
        }
        let names_host = |host: &str, named: &str| {
            if is_valid_host(host) && named == host {
                Ok(())
            } else {
                Err(invalid(format!("names host {named:?}")))
            }
        };
        Ok(match kind {
            Kind::Updates => Self::Updates(parse(control, payload)?),
            Kind::SafetyClear(host) => {
                let clearance: SafetyClearance = parse(control, payload)?;
                names_host(host, &clearance.host)?;
                Self::SafetyClear(clearance)
            }
            Kind::Rollout(image) => {
                let rollout: RolloutControl = parse(control, payload)?;
                if rollout.image.as_str() != image {
                    return Err(invalid(format!("names image {}", rollout.image)));
                }
                if let Some(canary) = &rollout.canary {
                    canary
                        .parse::<crate::policy::Canary>()
                        .map_err(|why| invalid(format!("canary {why}")))?;
                }
                Self::Rollout(rollout)
            }
            Kind::Pause(host) => {
                let pause: PauseControl = parse(control, payload)?;
                names_host(host, &pause.host)?;
                Self::Pause(pause)
            }
            Kind::FastUpdate(host) => {
                let fast: FastUpdate = parse(control, payload)?;
                names_host(host, &fast.host)?;
                Self::FastUpdate(fast)
            }
            Kind::SubsConfig(host) => {
                let config: SubsConfig = parse(control, payload)?;
                match (host, config.host.as_deref()) {
                    (None, None) => {}
                    (Some(host), Some(named)) => names_host(host, named)?,
                    (_, named) => return Err(invalid(format!("names host {named:?}"))),
                }
                if config.config.fetch_rate == Some(0) {
                    return Err(invalid("fetch_rate 0 would never fetch".into()));
                }
                Self::SubsConfig(config)
            }
            Kind::DefaultImage => Self::DefaultImage(parse(control, payload)?),
        })
    }

    /// The name of the control this is (`updates`, `pause.<host>`, ...).
    pub fn name(&self) -> String {
        match self {
            Self::Updates(_) => UPDATES.into(),
            Self::SafetyClear(c) => safety_clear_control(&c.host),
            Self::Rollout(r) => control_name(ROLLOUT, r.image.as_str()),
            Self::Pause(p) => control_name(PAUSE, &p.host),
            Self::FastUpdate(f) => control_name(FAST_UPDATE, &f.host),
            Self::SubsConfig(c) => match &c.host {
                Some(host) => control_name(SUBS_CONFIG, host),
                None => SUBS_CONFIG.into(),
            },
            Self::DefaultImage(_) => DEFAULT_IMAGE.into(),
            Self::Withdrawn(name) | Self::Unknown(name) => name.clone(),
        }
    }
}

/// Which control a name is, and what it names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind<'a> {
    Updates,
    SafetyClear(&'a str),
    Rollout(&'a str),
    Pause(&'a str),
    FastUpdate(&'a str),
    /// The fleet's (`None`) or one machine's.
    SubsConfig(Option<&'a str>),
    DefaultImage,
}

impl<'a> Kind<'a> {
    /// The kind of control `name`; `None` for one this reader does not
    /// know.
    pub fn of(name: &'a str) -> Option<Self> {
        match name {
            UPDATES => return Some(Self::Updates),
            SUBS_CONFIG => return Some(Self::SubsConfig(None)),
            DEFAULT_IMAGE => return Some(Self::DefaultImage),
            _ => {}
        }
        let (prefix, rest) = name.split_once('.')?;
        Some(match prefix {
            SAFETY_CLEAR => Self::SafetyClear(rest),
            ROLLOUT => Self::Rollout(rest),
            PAUSE => Self::Pause(rest),
            FAST_UPDATE => Self::FastUpdate(rest),
            SUBS_CONFIG => Self::SubsConfig(Some(rest)),
            _ => return None,
        })
    }
}

fn parse<T: DeserializeOwned>(control: &str, payload: &[u8]) -> Result<T, ControlError> {
    serde_json::from_slice(payload).map_err(|e| ControlError::Json {
        control: control.into(),
        reason: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::desired::AgentConfig;

    #[test]
    fn updates_round_trip() {
        let c = UpdatesControl::new(UpdatesState::Disabled, "bad kernel", "alice@ops1", "t");
        let text = String::from_utf8(c.encode()).unwrap();
        assert!(text.contains(r#""updates":"disabled""#), "{text}");
        assert_eq!(
            Control::decode(UPDATES, text.as_bytes()).unwrap(),
            Control::Updates(c.clone())
        );
        assert_eq!(
            c.to_policy(),
            Updates::Disabled {
                reason: "bad kernel".into(),
                by: "alice@ops1".into()
            }
        );
    }

    #[test]
    fn clearances_name_their_host() {
        let c = SafetyClearance {
            v: 1,
            host: "db1.example.com".into(),
            image: ImageName::parse("db.1").unwrap(),
            reason: String::new(),
            by: "a@b".into(),
            when: "t".into(),
        };
        let control = safety_clear_control("db1.example.com");
        assert_eq!(
            Control::decode(&control, &c.encode()).unwrap(),
            Control::SafetyClear(c.clone())
        );
        assert!(Control::decode("safety-clear.db2", &c.encode()).is_err());
    }

    #[test]
    fn the_newer_controls_round_trip_and_name_what_their_subject_names() {
        let image = ImageName::parse("web/prod.7").unwrap();
        let rollout = RolloutControl {
            v: 1,
            image: image.clone(),
            state: RolloutState::Halted,
            reason: "2 of 2 failed".into(),
            machines: vec![RolloutMachine {
                host: "web1".into(),
                from: Some(ImageName::parse("web/prod.6").unwrap()),
                why: "unhealthy".into(),
            }],
            revert: false,
            canary: Some("10%".into()),
            by: "dominator@ops1".into(),
            when: "t".into(),
        };
        let name = control_name(ROLLOUT, image.as_str());
        assert_eq!(name, "rollout.web/prod.7");
        let decoded = Control::decode(&name, &rollout.encode()).unwrap();
        assert_eq!(decoded, Control::Rollout(rollout.clone()));
        assert_eq!(decoded.name(), name);
        assert!(Control::decode("rollout.web/prod.8", &rollout.encode()).is_err());

        let pause = PauseControl {
            v: 1,
            host: "web1".into(),
            until: "u".into(),
            until_unix: 10_000,
            reason: "leak".into(),
            by: "a@b".into(),
            when: "w".into(),
            when_unix: 1_000,
        };
        assert_eq!(
            Control::decode("pause.web1", &pause.encode()).unwrap(),
            Control::Pause(pause.clone())
        );
        assert!(Control::decode("pause.web2", &pause.encode()).is_err());
        assert_eq!(pause.ends(3_600), 4_600, "capped");
        assert_eq!(pause.ends(86_400), 10_000);

        let fleet = SubsConfig {
            v: 1,
            host: None,
            config: AgentConfig {
                scan_speed_percent: Some("0.1".parse().unwrap()),
                fetch_rate: None,
            },
            by: "a@b".into(),
            when: "w".into(),
        };
        let text = String::from_utf8(fleet.encode()).unwrap();
        assert!(text.contains(r#""scan_speed_percent":0.1"#), "{text}");
        assert_eq!(
            Control::decode(SUBS_CONFIG, text.as_bytes()).unwrap(),
            Control::SubsConfig(fleet.clone())
        );
        assert!(Control::decode("subs-config.web1", text.as_bytes()).is_err());
        let one = SubsConfig {
            host: Some("web1".into()),
            ..fleet
        };
        assert!(Control::decode("subs-config.web1", &one.encode()).is_ok());
        assert!(Control::decode(SUBS_CONFIG, &one.encode()).is_err());
        let zero = br#"{"v":1,"config":{"fetch_rate":0}}"#;
        assert!(Control::decode(SUBS_CONFIG, zero).is_err());
        let slow = br#"{"v":1,"config":{"scan_speed_percent":0}}"#;
        let err = Control::decode(SUBS_CONFIG, slow).unwrap_err().to_string();
        assert!(err.contains("scan_speed_percent"), "{err}");

        let default = DefaultImage {
            v: 1,
            image: Some(image),
            by: "a@b".into(),
            when: "w".into(),
        };
        assert_eq!(
            Control::decode(DEFAULT_IMAGE, &default.encode()).unwrap(),
            Control::DefaultImage(default)
        );
        let fast = br#"{"v":1,"host":"web1","image":"web.7"}"#;
        assert!(matches!(
            Control::decode("fast-update.web1", fast),
            Ok(Control::FastUpdate(_))
        ));
        assert!(Control::decode(
            "fast-update.web1",
            br#"{"v":1,"host":"web1","image":"a b"}"#
        )
        .is_err());
        assert_eq!(
            Control::decode("pause.web1", b" ").unwrap(),
            Control::Withdrawn("pause.web1".into())
        );
    }

    #[test]
    fn refuses_malformed_and_skips_unknown() {
        assert!(matches!(
            Control::decode("limits", b"{"),
            Ok(Control::Unknown(_))
        ));
        assert!(matches!(
            Control::decode(UPDATES, b""),
            Ok(Control::Withdrawn(_))
        ));
        assert!(Control::decode(UPDATES, b"{not json").is_err());
        assert!(Control::decode(UPDATES, br#"{"updates":"disabled"}"#).is_err());
        let err = Control::decode(UPDATES, br#"{"v":2,"updates":"disabled"}"#).unwrap_err();
        assert!(err.to_string().contains("version 2"), "{err}");
        assert!(Control::decode(UPDATES, br#"{"v":1,"updates":"maybe"}"#).is_err());
    }
}
