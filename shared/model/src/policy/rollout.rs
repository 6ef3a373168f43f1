//! Staged rollouts: how many machines may move to an image, and when its
//! rollout halts.

use std::fmt;
use std::str::FromStr;

use serde::Serialize;

use crate::controls::{RolloutControl, RolloutMachine, RolloutState};
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

/// Seconds after which a machine told to move that has not answered no
/// longer holds its rollout back, unless the operators say otherwise.
pub const DEFAULT_UNRESPONSIVE_AFTER_S: u64 = 300;

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
    /// A machine told to move that has not even said it heard (its state
    /// report does not name the image) this many seconds after its
    /// desired state was issued is taken for down: it no longer holds the
    /// next wave back.
    pub unresponsive_after_s: u64,
}

impl Default for RolloutPolicy {
    fn default() -> Self {
        Self {
            canary: Canary::default(),
            halt_after: DEFAULT_HALT_AFTER,
            halt_rate: None,
            unresponsive_after_s: DEFAULT_UNRESPONSIVE_AFTER_S,
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
    /// Told to move, and silent since for longer than the dominator's
    /// `--unresponsive-after`: taken for down, they hold no wave back.
    pub unresponsive: Vec<String>,
    /// The current wave, counted from 1 (the canary), and how many
    /// machines the waves up to it take in all (all of them once the
    /// waves have grown to the update cap).
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

/// Each wave is this many times the one before, up to the update cap.
pub const WAVE_GROWTH: usize = 4;

/// Where one machine requiring the image stands in its rollout.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum Standing {
    /// On the image and healthy.
    Done,
    /// Told to move, not done yet (updating, or its health being checked).
    Moving,
    /// Told to move long enough ago, and its agent has not said it heard:
    /// taken for down, it holds no wave back.
    Unresponsive,
    /// Its update to the image, or its health check on it, failed.
    Failed { why: String, forgiven: bool },
    /// Not told to move yet.
    Waiting,
}

/// One machine requiring the image.
#[derive(Clone, Debug)]
pub(super) struct Member<'a> {
    pub host: &'a str,
    pub standing: Standing,
    /// The image it carried before, when known.
    pub from: Option<String>,
}

/// What the rollout of one image allows this round.
#[derive(Clone, Debug)]
pub(super) struct Verdict {
    pub summary: RolloutSummary,
    /// How many more machines may be told to move now; `usize::MAX`: no
    /// limit but the update cap.
    pub may_start: usize,
    /// The wave the waiting machines wait for, counted from 1.
    pub next_wave: usize,
    /// The halt to publish, when this round halts it.
    pub halt: Option<RolloutControl>,
}

/// The cumulative ends of the waves: the canary, then each wave
/// [`WAVE_GROWTH`] times the one before, until a wave would be as large as
/// `cap`. That last wave has no end (`usize::MAX`): from there only the
/// update cap limits the machines moving. The canary is always a wave of
/// its own.
fn wave_ends(canary: usize, cap: usize) -> Vec<usize> {
    let mut ends = Vec::new();
    let (mut size, mut end) = (canary.max(1), 0usize);
    while size < cap {
        end = end.saturating_add(size);
        ends.push(end);
        size = size.saturating_mul(WAVE_GROWTH);
    }
    if ends.is_empty() {
        ends.push(canary.max(1));
    }
    ends.push(usize::MAX);
    ends
}

/// Judges the rollout of `image` from its machines (in host order), the
/// control last published for it, and the fleet's rollout policy and cap.
pub(super) fn judge(
    image: &ImageName,
    members: &[Member<'_>],
    control: Option<&RolloutControl>,
    policy: &RolloutPolicy,
    cap: usize,
) -> Verdict {
    let count = |f: fn(&Standing) -> bool| members.iter().filter(|m| f(&m.standing)).count();
    let done = count(|s| *s == Standing::Done);
    let moving = count(|s| *s == Standing::Moving);
    let waiting = count(|s| *s == Standing::Waiting);
    let failed: Vec<FailedMachine> = members
        .iter()
        .filter_map(|m| match &m.standing {
            Standing::Failed { why, forgiven } => Some((m, why, *forgiven)),
            _ => None,
        })
        .map(|(m, why, forgiven)| {
            let why = if forgiven {
                format!("{why} (forgiven)")
            } else {
                why.clone()
            };
            FailedMachine {
                host: m.host.to_string(),
                from: m.from.clone(),
                why,
            }
        })
        .collect();
    let counting = count(|s| {
        matches!(
            s,
            Standing::Failed {
                forgiven: false,
                ..
            }
        )
    });
    let unresponsive: Vec<String> = members
        .iter()
        .filter(|m| m.standing == Standing::Unresponsive)
        .map(|m| m.host.to_string())
        .collect();
    let moved = members.len() - waiting;

    // The waves: `wave` is the one being filled, or waited for.
    let canary = control
        .and_then(RolloutControl::canary)
        .unwrap_or(policy.canary);
    let ends = wave_ends(canary.size(members.len()), cap.max(1));
    let wave = ends
        .iter()
        .position(|&end| moved < end)
        .unwrap_or(ends.len() - 1);
    let wave_start = wave.checked_sub(1).map_or(0, |w| ends[w]);
    let sliding = wave == ends.len() - 1;
    // Every machine moved so far is done, or failed and forgiven.
    let settled = moving == 0 && counting == 0;
    // A wave opens once the ones before it settled, and stays open.
    let open = moved > wave_start || settled;
    let may_start = match (canary.is_off(), open, sliding) {
        (true, _, _) => usize::MAX,
        (false, false, _) => 0,
        (false, true, true) => usize::MAX,
        (false, true, false) => ends[wave] - moved,
    };
    // A failure in a wave that has nothing left to move can never let
    // the next one open.
    let stuck = !canary.is_off() && counting > 0 && moving == 0 && !sliding;

    // The halt.
    let mut phase = match control.map(|c| c.state) {
        Some(RolloutState::Halted) => RolloutPhase::Halted,
        Some(RolloutState::Aborted) => RolloutPhase::Aborted,
        _ if waiting == 0 && moving == 0 && counting == 0 => RolloutPhase::Done,
        _ => RolloutPhase::Rolling,
    };
    let (mut reason, mut by) = match control.filter(|c| c.stops()) {
        Some(c) => (Some(c.reason.clone()), Some(c.by.clone())),
        None => (None, None),
    };
    let mut halt = None;
    if phase == RolloutPhase::Rolling {
        if let Some(why) = halt_reason(policy, counting, moved, stuck) {
            phase = RolloutPhase::Halted;
            reason = Some(why.clone());
            by = None;
            halt = Some(RolloutControl {
                v: crate::controls::CONTROL_VERSION,
                image: image.clone(),
                state: RolloutState::Halted,
                reason: why,
                machines: members
                    .iter()
                    .filter_map(|m| match &m.standing {
                        Standing::Failed { why, .. } => Some(RolloutMachine {
                            host: m.host.to_string(),
                            from: m.from.as_deref().and_then(|f| ImageName::parse(f).ok()),
                            why: why.clone(),
                        }),
                        _ => None,
                    })
                    .collect(),
                revert: false,
                canary: control.and_then(|c| c.canary.clone()),
                by: String::new(),
                when: String::new(),
            });
        }
    }
    let stopped = matches!(phase, RolloutPhase::Halted | RolloutPhase::Aborted);
    Verdict {
        summary: RolloutSummary {
            image: image.clone(),
            phase,
            machines: members.len(),
            done,
            moving,
            failed,
            waiting,
            unresponsive,
            wave: wave + 1,
            wave_end: if sliding { members.len() } else { ends[wave] },
            reason,
            by,
            halts_now: halt.is_some(),
        },
        may_start: if stopped { 0 } else { may_start },
        // Counted from 1, the canary, for people.
        next_wave: if open && !sliding { wave + 2 } else { wave + 1 },
        halt,
    }
}

/// Why the rollout halts now, if it does: too many failures, or a wave
/// that can no longer become healthy.
fn halt_reason(policy: &RolloutPolicy, failed: usize, moved: usize, stuck: bool) -> Option<String> {
    if failed == 0 {
        return None;
    }
    let of = format!("{failed} of the {moved} machines it moved failed");
    if policy.halt_after > 0 && failed >= policy.halt_after {
        return Some(format!("{of} (--halt-after {})", policy.halt_after));
    }
    if let Some(rate) = policy.halt_rate {
        if failed * 100 >= rate as usize * moved {
            return Some(format!("{of} (--halt-rate {rate}%)"));
        }
    }
    if stuck {
        return Some(format!("{of}: the next wave cannot start"));
    }
    None
}
