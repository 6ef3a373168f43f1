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
//! Every payload is JSON with `"v": 1`; unknown fields are ignored and
//! controls this reader does not know are skipped, so newer tools can add
//! controls without breaking older dominators.

use crate::desired::is_valid_host;
use crate::policy::Updates;
use crate::ImageName;
use serde::{Deserialize, Serialize};
use thiserror::Error;

/// Schema version of control payloads.
pub const CONTROL_VERSION: u32 = 1;
/// The control name of the emergency stop.
pub const UPDATES: &str = "updates";
/// The control name prefix of safety-shutoff clearances.
pub const SAFETY_CLEAR: &str = "safety-clear";

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
    format!("{SAFETY_CLEAR}.{host}")
}

/// A control message, decoded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Control {
    Updates(UpdatesControl),
    SafetyClear(SafetyClearance),
    /// A control published with an empty payload: withdrawn.
    Withdrawn(String),
    /// A control this reader does not know.
    Unknown(String),
}

impl Control {
    /// Decodes the payload of `dom.ctl.<control>`.
    pub fn decode(control: &str, payload: &[u8]) -> Result<Self, ControlError> {
        let known = control == UPDATES || control.starts_with(&format!("{SAFETY_CLEAR}."));
        if !known {
            return Ok(Self::Unknown(control.into()));
        }
        if payload.iter().all(u8::is_ascii_whitespace) {
            return Ok(Self::Withdrawn(control.into()));
        }
        let json = |e: serde_json::Error| ControlError::Json {
            control: control.into(),
            reason: e.to_string(),
        };
        #[derive(Deserialize)]
        struct Probe {
            v: Option<u32>,
        }
        let probe: Probe = serde_json::from_slice(payload).map_err(json)?;
        match probe.v {
            Some(CONTROL_VERSION) => {}
            Some(v) => {
                return Err(ControlError::Version {
                    control: control.into(),
                    v,
                })
            }
            None => {
                return Err(ControlError::Invalid {
                    control: control.into(),
                    reason: "no schema version \"v\"".into(),
                })
            }
        }
        if control == UPDATES {
            return Ok(Self::Updates(
                serde_json::from_slice(payload).map_err(json)?,
            ));
        }
        let host = &control[SAFETY_CLEAR.len() + 1..];
        let clearance: SafetyClearance = serde_json::from_slice(payload).map_err(json)?;
        if !is_valid_host(host) || clearance.host != host {
            return Err(ControlError::Invalid {
                control: control.into(),
                reason: format!("names host {:?}", clearance.host),
            });
        }
        Ok(Self::SafetyClear(clearance))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
