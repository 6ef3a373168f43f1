//! Staged rollouts: how many machines may move to an image, and when its
//! rollout halts.

use std::fmt;
use std::str::FromStr;

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
