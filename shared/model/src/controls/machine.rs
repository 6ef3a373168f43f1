//! Controls about one machine, and the fleet's agent settings and default
//! image.
//!
//! - `dom.ctl.pause.<host>` ([`PauseControl`]): hold one machine until a
//!   time, with who and why (`domtool pause HOST --for 2h "reason"`). An
//!   empty payload resumes it; so does the time passing.
//! - `dom.ctl.fast-update.<host>` ([`FastUpdate`]): move one machine to an
//!   image past its rollout's waves (`domtool fast-update`). Spent once the
//!   machine is compliant with it or its MDB requires another image.
//! - `dom.ctl.subs-config` and `dom.ctl.subs-config.<host>`
//!   ([`SubsConfig`]): agent settings for every machine, or for one, handed
//!   out in `DesiredState.config` (`domtool configure-subs`).
//! - `dom.ctl.default-image` ([`DefaultImage`]): the image of MDB machines
//!   that name none (`domtool set-default-image`).

use serde::{Deserialize, Serialize};

use crate::desired::AgentConfig;
use crate::ImageName;

/// The longest a pause may last unless the dominator is told otherwise
/// (`dominator --max-pause`), as the original caps `pause-sub-updates`.
pub const DEFAULT_MAX_PAUSE_S: u64 = 24 * 3600;
/// The shortest pause `domtool pause` accepts, as the original.
pub const MIN_PAUSE_S: u64 = 60;

/// `dom.ctl.pause.<host>`.
///
/// ```json
/// {"v":1,"host":"web1","until":"2026-11-26T11:00:00Z","until_unix":1795777200,
///  "reason":"debugging a leak","by":"alice@ops1","when":"2026-11-26T09:00:00Z",
///  "when_unix":1795770000}
/// ```
///
/// The dominator holds the machine while `until_unix` is ahead, but no
/// longer than its `--max-pause` after `when_unix`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PauseControl {
    pub v: u32,
    pub host: String,
    /// When it ends, RFC 3339 and Unix seconds.
    pub until: String,
    pub until_unix: i64,
    pub reason: String,
    #[serde(default)]
    pub by: String,
    #[serde(default)]
    pub when: String,
    /// When it was asked for, Unix seconds.
    pub when_unix: i64,
}

impl PauseControl {
    /// When the pause ends (Unix seconds), at most `max_s` after it was
    /// asked for.
    pub fn ends(&self, max_s: u64) -> i64 {
        self.until_unix
            .min(self.when_unix.saturating_add(max_s as i64))
    }

    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("controls serialise")
    }
}

/// `dom.ctl.fast-update.<host>`.
///
/// ```json
/// {"v":1,"host":"web1","image":"web.7","by":"alice@ops1","when":"2026-11-26T09:00:00Z"}
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FastUpdate {
    pub v: u32,
    pub host: String,
    pub image: ImageName,
    #[serde(default)]
    pub by: String,
    #[serde(default)]
    pub when: String,
}

impl FastUpdate {
    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("controls serialise")
    }
}

/// `dom.ctl.subs-config` (every machine) or `dom.ctl.subs-config.<host>`
/// (one machine, over the fleet's).
///
/// ```json
/// {"v":1,"config":{"scan_speed_percent":0.1,"fetch_rate":1048576},
///  "by":"alice@ops1","when":"2026-11-26T09:00:00Z"}
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubsConfig {
    pub v: u32,
    /// The one machine it is for; absent: the fleet.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    pub config: AgentConfig,
    #[serde(default)]
    pub by: String,
    #[serde(default)]
    pub when: String,
}

impl SubsConfig {
    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("controls serialise")
    }
}

/// `dom.ctl.default-image`.
///
/// ```json
/// {"v":1,"image":"base.3","by":"alice@ops1","when":"2026-11-26T09:00:00Z"}
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DefaultImage {
    pub v: u32,
    /// Absent: no default (machines without a RequiredImage are left
    /// alone).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<ImageName>,
    #[serde(default)]
    pub by: String,
    #[serde(default)]
    pub when: String,
}

impl DefaultImage {
    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("controls serialise")
    }
}
