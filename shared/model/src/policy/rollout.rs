//! Staged rollouts: how many machines may move to an image, and when its
//! rollout halts.

use std::fmt;
use std::str::FromStr;

use serde::Serialize;

use crate::image::ImageName;

/// The first wave of an image's rollout.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Canary {
    /// This many machines; 0 turns waves off (machines move as slots
    /// allow, as before waves).
    Machines(usize),
    /// This share of the machines requiring the image, at least one.
    Percent(u32),
}

impl Canary {
    /// The canary wave's size for an image `population` machines require.
    pub fn size(self, population: usize) -> usize {
        match self {
            Self::Machines(n) => n,
            Self::Percent(p) => (population * p as usize).div_ceil(100).max(1),
        }
    }

    /// Whether rollouts go in waves at all.
    pub fn is_off(self) -> bool {
        self == Self::Machines(0)
    }
}

impl Default for Canary {
    fn default() -> Self {
        Self::Machines(DEFAULT_CANARY)
    }
}

impl fmt::Display for Canary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Machines(n) => write!(f, "{n}"),
            Self::Percent(p) => write!(f, "{p}%"),
        }
    }
}

impl FromStr for Canary {
    type Err = String;

    /// `2` (machines) or `10%`.
    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || format!("{s:?} is not a number of machines (2) or a percentage (10%)");
        match s.trim().strip_suffix('%') {
            Some(p) => match p.trim().parse::<u32>() {
                Ok(p @ 1..=100) => Ok(Self::Percent(p)),
                _ => Err(bad()),
            },
            None => s.trim().parse().map(Self::Machines).map_err(|_| bad()),
        }
    }
}

/// Machines in the first wave unless the operators say otherwise.
pub const DEFAULT_CANARY: usize = 1;
/// Failed machines that halt a rollout unless the operators say
/// otherwise.
pub const DEFAULT_HALT_AFTER: usize = 1;

/// How rollouts proceed (the dominator's `--canary`, `--halt-after` and
/// `--halt-rate`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RolloutPolicy {
    pub canary: Canary,
    /// A rollout halts once this many of its machines failed (0: never on
    /// a count).
    pub halt_after: usize,
    /// ... or once this share (percent) of the machines it moved failed.
    pub halt_rate: Option<u32>,
}

impl Default for RolloutPolicy {
    fn default() -> Self {
        Self {
            canary: Canary::default(),
            halt_after: DEFAULT_HALT_AFTER,
            halt_rate: None,
        }
    }
}

/// Where an image's rollout stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RolloutPhase {
    /// Machines are moving, wave by wave.
    Rolling,
    /// Too many failures: nothing more moves until an operator resumes.
    Halted,
    /// An operator aborted it.
    Aborted,
    /// Every machine requiring the image carries it and is healthy.
    Done,
}

impl fmt::Display for RolloutPhase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Rolling => "rolling",
            Self::Halted => "halted",
            Self::Aborted => "aborted",
            Self::Done => "done",
        })
    }
}

/// A machine of a rollout that failed: its update to the image failed, or
/// its health check on the image did.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct FailedMachine {
    pub host: String,
    /// The image it carried before, when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    /// One line: `update failed: ...`, `unhealthy: ...`, `health check timed out`.
    pub why: String,
}

/// One image's rollout, as a decision sees it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct RolloutSummary {
    pub image: ImageName,
    pub phase: RolloutPhase,
    /// Machines whose MDB record requires the image.
    pub machines: usize,
    /// On the image and healthy.
    pub done: usize,
    /// Told to move (updates allowed) and not yet done or failed.
    pub moving: usize,
    /// Failed, forgiven failures left out.
    pub failed: Vec<FailedMachine>,
    /// Not yet told to move.
    pub waiting: usize,
    /// The current wave (0 is the canary), and how many machines the
    /// waves so far take in all.
    pub wave: usize,
    pub wave_end: usize,
    /// Why it halted or was aborted, and by whom.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub by: Option<String>,
    /// Set when this decision halts it: the halt is to be published
    /// (`dom.ctl.rollout.<image>`) and announced.
    pub halts_now: bool,
}
