//! Rollout controls: `dom.ctl.rollout.<image>`.
//!
//! The one subject of each image's rollout carries where it stands when
//! someone stopped or restarted it. The dominator writes `halted` when
//! failures pass its threshold; an operator writes `resumed` or
//! `aborted` (`domtool rollout resume|abort IMAGE`). The last message
//! wins, so a restarted dominator reads the same standing back. A rollout
//! nobody has halted has no message at all: its progress is in the desired
//! states and the state reports, where the dominator reads it again after
//! a restart (see `policy::rollout`).

use serde::{Deserialize, Serialize};

use crate::ImageName;

/// Where an image's rollout was left.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RolloutState {
    /// Stopped by the dominator: nothing more moves to the image.
    Halted,
    /// Going again after a halt; the failures named are forgiven.
    Resumed,
    /// Stopped by an operator for good, until resumed: nothing more moves
    /// to the image, and with `revert` the machines named go back.
    Aborted,
    /// An operator set how this image's rollout goes (its `canary`); it
    /// goes on as it would without the control.
    Configured,
}

/// One machine named by a rollout control.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RolloutMachine {
    pub host: String,
    /// The image it carried before the rollout reached it, if known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<ImageName>,
    /// Why it counts as failed, for people.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub why: String,
}

/// `dom.ctl.rollout.<image>`.
///
/// ```json
/// {"v":1,"image":"web.7","state":"halted",
///  "reason":"2 of 2 machines failed (--halt-after 1)",
///  "machines":[{"host":"web1","from":"web.6","why":"unhealthy: curl: (7) refused"}],
///  "by":"dominator@ops1","when":"2026-11-26T09:00:00Z"}
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RolloutControl {
    pub v: u32,
    pub image: ImageName,
    pub state: RolloutState,
    #[serde(default)]
    pub reason: String,
    /// Halted: the machines that failed. Resumed: those whose failures
    /// are forgiven (they no longer count towards a halt). Aborted: the
    /// machines the rollout reached that are not on the image and healthy.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub machines: Vec<RolloutMachine>,
    /// Aborted: send `machines` back to their `from` image while their MDB
    /// record still requires this one.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub revert: bool,
    /// This image's own canary (`2`, `10%`), over the dominator's
    /// `--canary` (`domtool rollout canary IMAGE N`). Every later control
    /// of the image carries it on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub canary: Option<String>,
    #[serde(default)]
    pub by: String,
    #[serde(default)]
    pub when: String,
}

impl RolloutControl {
    /// Whether nothing more may move to the image.
    pub fn stops(&self) -> bool {
        matches!(self.state, RolloutState::Halted | RolloutState::Aborted)
    }

    /// This image's own canary, when it has one that reads.
    pub fn canary(&self) -> Option<crate::policy::Canary> {
        self.canary.as_deref().and_then(|c| c.parse().ok())
    }

    /// Whether `host`'s failures are forgiven by a resume.
    pub fn forgives(&self, host: &str) -> bool {
        self.state == RolloutState::Resumed && self.machines.iter().any(|m| m.host == host)
    }

    /// The image an abort with `revert` sends `host` back to.
    pub fn reverts(&self, host: &str) -> Option<&ImageName> {
        if self.state != RolloutState::Aborted || !self.revert {
            return None;
        }
        self.machines
            .iter()
            .find(|m| m.host == host)
            .and_then(|m| m.from.as_ref())
    }

    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("controls serialise")
    }
}
