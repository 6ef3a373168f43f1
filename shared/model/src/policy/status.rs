//! What a decision says: each machine's status and the fleet's summary.
//! All of it serialises to JSON for the status page.

use std::fmt;

use serde::Serialize;

use super::rollout::{RolloutPhase, RolloutSummary};
use super::safety::SafetyShutoff;
use super::Updates;
use crate::controls::RolloutControl;
use crate::desired::DesiredState;
use crate::image::ImageName;

/// Why a machine may not update now. The first that applies wins, in the
/// order listed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "hold", rename_all = "snake_case")]
pub enum HoldReason {
    /// The fleet-wide emergency stop.
    UpdatesDisabledFleet { reason: String, by: String },
    /// `DisableUpdates` in the machine's MDB record.
    DisableUpdates,
    /// The safety shutoff refused the update until an operator clears it.
    SafetyShutoff(SafetyShutoff),
    /// The safety check waits for the machine's report.
    SafetyCheckPending {
        image: ImageName,
        waiting_for: String,
    },
    /// An operator paused the machine (`domtool pause`), until
    /// `until` (RFC 3339).
    Paused {
        until: String,
        reason: String,
        by: String,
    },
    /// The image's rollout halted or was aborted: nothing more moves to
    /// it until an operator resumes it.
    RolloutStopped {
        image: ImageName,
        phase: RolloutPhase,
        reason: String,
    },
    /// The image's rollout has not reached the machine yet: it waits for
    /// the current wave to be healthy.
    WaitingForWave { image: ImageName, wave: usize },
    /// Every update slot is taken.
    WaitingForSlot,
}

impl fmt::Display for HoldReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::UpdatesDisabledFleet { reason, by } => {
                write!(f, "updates are disabled for the fleet by {by}: {reason}")
            }
            Self::DisableUpdates => f.write_str("updates are disabled in the machine's MDB record"),
            Self::SafetyShutoff(shutoff) => shutoff.fmt(f),
            Self::SafetyCheckPending { image, waiting_for } => write!(
                f,
                "waiting for {waiting_for} to run the safety check for image {image}"
            ),
            Self::Paused { until, reason, by } => {
                write!(f, "paused by {by} until {until}: {reason}")
            }
            Self::RolloutStopped {
                image,
                phase,
                reason,
            } => write!(f, "the rollout of image {image} is {phase}: {reason}"),
            Self::WaitingForWave { image, wave } => write!(
                f,
                "waiting for wave {wave} of the rollout of image {image} (the one before must be healthy)"
            ),
            Self::WaitingForSlot => f.write_str("waiting for an update slot"),
        }
    }
}

/// One machine as the dominator sees it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct MachineStatus {
    pub host: String,
    /// `RequiredImage` from the MDB.
    pub required: Option<ImageName>,
    /// `PlannedImage` from the MDB (whether handed out or not: see
    /// `desired.planned`).
    pub planned: Option<ImageName>,
    /// The image last applied, from the state report.
    pub current: Option<String>,
    /// Whether the state report shows the machine on its required image
    /// with no deviations.
    pub compliant: bool,
    /// Whether it holds an update slot.
    pub updating: bool,
    /// What is wrong, one line: the required image does not resolve, the
    /// safety shutoff, the agent's own error, a failed update.
    pub error: Option<String>,
    /// Why the planned image is not handed out, when it does not resolve.
    pub planned_error: Option<String>,
    pub held: Option<HoldReason>,
    /// An operator cleared the safety shutoff for the required image.
    pub safety_cleared: bool,
    /// Its desired state carries a HighImpact grant.
    pub high_impact: bool,
    /// Its agent asks to run HighImpact triggers for the required image
    /// (granted or waiting).
    pub high_impact_requested: bool,
    /// The desired state the machine should have: a new one, or the last
    /// one published. `None` when there is none to give (no image, or one
    /// that does not resolve, and nothing published before). `issued` is
    /// left for the publisher to stamp.
    pub desired: Option<DesiredState>,
    /// Whether `desired` differs from the last published (`issued` aside)
    /// and so is to be published.
    pub publish: bool,
}

impl MachineStatus {
    /// Whether the machine's desired state lets it change anything.
    pub fn updates_allowed(&self) -> bool {
        self.desired.as_ref().is_some_and(|d| d.updates_allowed)
    }

    /// The desired state to publish now, if any.
    pub fn to_publish(&self) -> Option<&DesiredState> {
        self.desired.as_ref().filter(|_| self.publish)
    }
}

/// Counts for the status page and metrics.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct FleetSummary {
    /// Machines in the MDB.
    pub machines: usize,
    pub compliant: usize,
    /// Machines holding an update slot, and the cap.
    pub updating: usize,
    pub max_updating: usize,
    pub waiting_for_slot: usize,
    /// Machines held for any reason (waiting for a slot included).
    pub held: usize,
    pub safety_shutoffs: usize,
    pub errors: usize,
    /// Machines in the MDB with no required image.
    pub without_image: usize,
    /// Desired states to publish now.
    pub to_publish: usize,
    /// HighImpact grants held, and the cap.
    pub high_impact: usize,
    pub max_high_impact: usize,
    /// Machines asking for a HighImpact grant and not holding one.
    pub waiting_for_high_impact: usize,
    /// Machines an operator paused.
    pub paused: usize,
    /// Machines waiting for their rollout's next wave.
    pub waiting_for_wave: usize,
    /// Machines held because their image's rollout halted or was aborted.
    pub rollout_stopped: usize,
    pub updates: Updates,
}

/// Everything [`decide`](super::decide) concludes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Decision {
    /// Every machine in the MDB, in host order.
    pub machines: Vec<MachineStatus>,
    pub summary: FleetSummary,
    /// Safety-shutoff clearances to forget: the machine is compliant with
    /// the image it was cleared for (the clearance was used), requires
    /// another image, or left the MDB.
    pub spent_clearances: Vec<String>,
    /// Hosts with a state report or a published desired state but no MDB
    /// record, in host order.
    pub unmanaged: Vec<String>,
    /// The rollout of every image some machine is not yet done moving
    /// to, or whose rollout an operator or a halt stopped, in image order.
    pub rollouts: Vec<RolloutSummary>,
    /// When (Unix seconds) a rule that reads the clock will decide
    /// otherwise: a pause ends, a machine told to move is taken for down.
    /// The dominator decides again then.
    pub wake_at: Option<i64>,
    /// Rollouts this decision halts: the controls to publish on
    /// `dom.ctl.rollout.<image>` (the publisher stamps `by` and `when`).
    pub halts: Vec<RolloutControl>,
}

impl Decision {
    pub fn machine(&self, host: &str) -> Option<&MachineStatus> {
        self.machines
            .binary_search_by(|m| m.host.as_str().cmp(host))
            .ok()
            .map(|i| &self.machines[i])
    }

    /// The rollout of `image`, if it has one.
    pub fn rollout(&self, image: &str) -> Option<&RolloutSummary> {
        self.rollouts.iter().find(|r| r.image.as_str() == image)
    }

    /// The desired states to publish now, in host order.
    pub fn to_publish(&self) -> impl Iterator<Item = &DesiredState> {
        self.machines.iter().filter_map(MachineStatus::to_publish)
    }
}
