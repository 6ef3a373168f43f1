//! The dominator's decisions: one pure function from the fleet to what
//! every machine should be told.
//!
//! The dominator keeps a [`Fleet`] (the last MDB record, image message,
//! state report and published desired state per subject, plus the
//! operators' [`FleetControls`]) and calls [`decide`] whenever any of it
//! changes. The [`Decision`] says, per machine, what its desired state
//! should be and whether that differs from the one last published (only
//! then is it published), and why a machine is in error or held; its
//! [`FleetSummary`] feeds the status page and metrics.
//!
//! The rules (DESIGN §6):
//!
//! - **Required image.** An unknown, deleted or expired image puts the
//!   machine in error and leaves it as it is: its last desired state stays,
//!   and it converges once the image appears. A machine with no required
//!   image is likewise left as it is. The one thing that still reaches such
//!   a machine is a stop: while updates are disabled for the fleet or the
//!   machine, its last desired state is republished with updates not
//!   allowed (and stays so until it has an image again).
//! - **Planned image.** Handed out for pre-fetching only while the machine
//!   is compliant with its required image, and only when it names another
//!   live image.
//! - **Holds**, first match wins: updates disabled for the fleet, then
//!   `DisableUpdates` in the MDB, then the safety shutoff (see [`safety`]),
//!   then the rollout cap. A held machine's desired state does not allow
//!   updates.
//! - **Rollout cap.** At most `max_updating` machines update at once. A
//!   machine needs an update while its report does not show it compliant
//!   with its required image (or it has not reported). Machines already
//!   updating keep their slot, even past a lowered cap: those whose report
//!   says `updating`, and those whose last desired state already allowed
//!   updates to this image and which are not yet compliant. So a machine
//!   whose update fails, or which goes quiet mid-update, keeps its slot: N
//!   failures stall the rollout rather than spreading it. The free slots go
//!   to the other machines in host order.
//! - **HighImpact cap.** An agent asks in its state report before an
//!   update that fires HighImpact triggers; [`grant_high_impact`] decides
//!   which of the machines asking may go ahead, and the grant is handed
//!   out in the machine's desired state (`high_impact_granted`). Only a
//!   machine whose updates are allowed, asking for its required image,
//!   counts. A grant lasts until the machine stops asking, and keeps its
//!   place under the cap until the machine has been told it is withdrawn,
//!   so no more than the cap of published desired states carry one at any
//!   time. [`decide_with_grants`] does both steps.
//!
//! Everything is in host order and nothing reads a clock (`now` is Unix
//! seconds, for image expiry), so the same fleet always gives the same
//! decision.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde::Serialize;

use crate::controls::machine::DEFAULT_MAX_PAUSE_S;
use crate::controls::{PauseControl, RolloutControl};
use crate::desired::{AgentConfig, DesiredState};
use crate::image::{ImageMessage, ImageName, ImageRecord};
use crate::mdb::MdbRecord;
use crate::report::StateReport;

mod decide;
mod grants;
pub mod rollout;
pub mod safety;
mod status;
#[cfg(test)]
mod tests;

pub use decide::decide;
pub use grants::{
    decide_with_grants, grant_high_impact, high_impact_grants, high_impact_holders,
    high_impact_requests,
};
pub use rollout::{Canary, FailedMachine, RolloutPhase, RolloutPolicy, RolloutSummary};
pub use safety::{safety_check, SafetyRule, SafetyShutoff, SafetyVerdict};
pub use status::{Decision, FleetSummary, HoldReason, MachineStatus};

/// How many machines update at once unless the operators say otherwise.
pub const DEFAULT_MAX_UPDATING: usize = 10;
/// How many machines run HighImpact triggers at once unless the operators
/// say otherwise.
pub const DEFAULT_MAX_HIGH_IMPACT: usize = 1;

/// The fleet-wide emergency stop.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum Updates {
    #[default]
    Enabled,
    /// `domtool disable-updates "reason"`: no machine changes anything.
    Disabled { reason: String, by: String },
}

/// What the operators have said about the whole fleet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FleetControls {
    pub updates: Updates,
    /// Most machines updating at once; 0 starts no update.
    pub max_updating: usize,
    /// Most machines holding a HighImpact grant at once.
    pub max_high_impact: usize,
    /// Machines whose safety shutoff an operator cleared, each with the
    /// required image it was cleared for. A clearance is good for one
    /// update: [`Decision::spent_clearances`] lists those to forget.
    pub safety_cleared: BTreeMap<String, ImageName>,
    /// Machines to hold a HighImpact grant: [`high_impact_grants`] works
    /// it out from the reports and what was published.
    pub high_impact: BTreeSet<String>,
    /// Agent settings handed to every machine in its desired state
    /// (`dom.ctl.subs-config`).
    pub agent_config: AgentConfig,
    /// One machine's own settings, over the fleet's
    /// (`dom.ctl.subs-config.<host>`).
    pub host_config: BTreeMap<String, AgentConfig>,
    /// The image of MDB machines that name none (`dom.ctl.default-image`).
    pub default_image: Option<ImageName>,
    /// Machines paused by an operator, by host.
    pub paused: BTreeMap<String, PauseControl>,
    /// The longest a pause holds a machine, seconds.
    pub max_pause_s: u64,
    /// Machines to move past their rollout's waves, with the image.
    pub fast_update: BTreeMap<String, ImageName>,
    /// Where each image's rollout was left, when someone stopped or
    /// resumed it.
    pub rollouts: BTreeMap<ImageName, RolloutControl>,
    /// How rollouts proceed.
    pub rollout: RolloutPolicy,
}

impl Default for FleetControls {
    fn default() -> Self {
        Self {
            updates: Updates::Enabled,
            max_updating: DEFAULT_MAX_UPDATING,
            max_high_impact: DEFAULT_MAX_HIGH_IMPACT,
            safety_cleared: BTreeMap::new(),
            high_impact: BTreeSet::new(),
            agent_config: AgentConfig::default(),
            host_config: BTreeMap::new(),
            default_image: None,
            paused: BTreeMap::new(),
            max_pause_s: DEFAULT_MAX_PAUSE_S,
            fast_update: BTreeMap::new(),
            rollouts: BTreeMap::new(),
            rollout: RolloutPolicy::default(),
        }
    }
}

/// The dominator's view of the fleet: the last message per subject of
/// every stream it reads, and the operators' controls.
#[derive(Clone, Debug, Default)]
pub struct Fleet {
    /// MDB records by host.
    pub mdb: BTreeMap<String, MdbRecord>,
    /// Image records and tombstones by name; see [`Fleet::add_image`].
    pub images: BTreeMap<ImageName, ImageMessage>,
    /// The last state report per host.
    pub reports: BTreeMap<String, StateReport>,
    /// The last desired state published per host. The dominator updates it
    /// after publishing, so the next decision compares against it.
    pub desired: BTreeMap<String, DesiredState>,
    pub controls: FleetControls,
}

impl Fleet {
    /// Applies a message from `dom.mdb.<host>`: a record sets the
    /// machine, `None` (an empty payload) removes it.
    pub fn set_mdb(&mut self, host: &str, record: Option<MdbRecord>) {
        match record {
            Some(record) => self.mdb.insert(host.to_string(), record),
            None => self.mdb.remove(host),
        };
    }

    /// Applies a message from `dom.image.<name>`. Names are never reused:
    /// a tombstone replaces a record, and nothing replaces a tombstone. A
    /// later record changes an earlier one's expiry and metadata only
    /// (`imagetool change-image-expiration`, `imagetool tag`); one that
    /// differs in anything else is ignored, so an image's content never
    /// changes.
    pub fn add_image(&mut self, message: ImageMessage) {
        let name = message.name().clone();
        match (self.images.get_mut(&name), message) {
            (None, message) => {
                self.images.insert(name, message);
            }
            (Some(stored @ ImageMessage::Record(_)), message @ ImageMessage::Deleted(_)) => {
                *stored = message;
            }
            (Some(ImageMessage::Record(stored)), ImageMessage::Record(later))
                if stored.with_changeable_of(&later) == later =>
            {
                *stored = later;
            }
            _ => {}
        }
    }

    /// The live record of image `name` at `now` (Unix seconds).
    pub fn resolve(&self, name: &ImageName, now: i64) -> Result<&ImageRecord, ImageProblem> {
        match self.images.get(name) {
            None => Err(ImageProblem::Unknown(name.clone())),
            Some(ImageMessage::Deleted(t)) => Err(ImageProblem::Deleted {
                name: name.clone(),
                at: t.deleted_at.clone(),
                by: t.by.clone(),
            }),
            Some(ImageMessage::Record(r)) if r.is_expired(now) => Err(ImageProblem::Expired {
                name: name.clone(),
                at: r
                    .expires
                    .clone()
                    .unwrap_or_else(|| format!("{} (Unix time)", r.expires_unix.unwrap_or(now))),
            }),
            Some(ImageMessage::Record(r)) => Ok(r),
        }
    }
}

/// Why an image name does not resolve to a live image.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ImageProblem {
    Unknown(ImageName),
    Deleted {
        name: ImageName,
        at: String,
        by: String,
    },
    Expired {
        name: ImageName,
        at: String,
    },
}

impl fmt::Display for ImageProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Unknown(name) => write!(f, "image {name} does not exist"),
            Self::Deleted { name, at, by } => {
                write!(f, "image {name} was deleted at {at} by {by}")
            }
            Self::Expired { name, at } => write!(f, "image {name} expired at {at}"),
        }
    }
}

/// Whether two desired states tell a machine the same thing: everything
/// but `issued` and `publisher` is equal. The dominator publishes only when the new state
/// differs from the last one in this sense.
pub fn same_desired(a: &DesiredState, b: &DesiredState) -> bool {
    // Spelled out so a new field cannot be forgotten here.
    let DesiredState {
        v,
        host,
        image,
        manifest,
        sparse,
        filter,
        triggers,
        planned,
        updates_allowed,
        high_impact_granted,
        config,
        health_check,
        issued: _,
        publisher: _,
    } = a;
    *v == b.v
        && *host == b.host
        && *image == b.image
        && *manifest == b.manifest
        && *sparse == b.sparse
        && *filter == b.filter
        && *triggers == b.triggers
        && *planned == b.planned
        && *updates_allowed == b.updates_allowed
        && *high_impact_granted == b.high_impact_granted
        && *config == b.config
        && *health_check == b.health_check
}

/// Whether `report` shows the machine on `image` with no deviations.
pub fn is_compliant_with(report: Option<&StateReport>, image: &ImageName) -> bool {
    report.is_some_and(|r| {
        r.compliant
            && r.image.as_deref() == Some(image.as_str())
            && r.desired_image
                .as_deref()
                .is_none_or(|d| d == image.as_str())
    })
}
