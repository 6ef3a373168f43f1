//! The decision function: each machine judged on its own, then the update
//! slots handed out across the fleet.

use std::collections::BTreeSet;

use super::safety::{safety_check, SafetyVerdict};
use super::status::{Decision, FleetSummary, HoldReason, MachineStatus};
use super::{is_compliant_with, same_desired, Fleet, ImageProblem, Updates};
use crate::desired::{DesiredState, PlannedImage};
use crate::image::ImageRecord;
use crate::mdb::MdbRecord;
use crate::report::StateReport;

/// Decides what every machine in the MDB should be told now. `now` is Unix
/// seconds, for image expiry. See the [module docs](super) for the rules.
pub fn decide(fleet: &Fleet, now: i64) -> Decision {
    let mut drafts: Vec<Draft> = fleet
        .mdb
        .iter()
        .map(|(host, record)| Draft::new(fleet, host, record, now))
        .collect();

    let taken = drafts.iter().filter(|d| d.holds_slot).count();
    let mut free = fleet.controls.max_updating.saturating_sub(taken);
    for draft in drafts.iter_mut().filter(|d| d.wants_slot) {
        if free > 0 {
            free -= 1;
            draft.holds_slot = true;
        } else {
            draft.hold = Some(HoldReason::WaitingForSlot);
        }
    }

    let machines: Vec<MachineStatus> = drafts.into_iter().map(|d| d.finish(fleet)).collect();
    let summary = summarise(fleet, &machines);
    Decision {
        spent_clearances: spent_clearances(fleet),
        unmanaged: unmanaged(fleet),
        rollouts: Vec::new(),
        spent_fast_updates: Vec::new(),
        expired_pauses: Vec::new(),
        machines,
        summary,
    }
}

/// What the machine is to carry.
enum Target<'a> {
    /// No `RequiredImage`: nothing to do.
    None,
    Problem(ImageProblem),
    Image(&'a ImageRecord),
}

/// One machine, judged before the update slots are handed out.
struct Draft<'a> {
    host: &'a str,
    record: &'a MdbRecord,
    report: Option<&'a StateReport>,
    last: Option<&'a DesiredState>,
    target: Target<'a>,
    /// A live planned image to hand out, and why the planned one is not
    /// live when it is not.
    planned: Option<&'a ImageRecord>,
    planned_error: Option<String>,
    compliant: bool,
    /// Held by the fleet stop or the MDB.
    stopped: bool,
    hold: Option<HoldReason>,
    error: Option<String>,
    safety_cleared: bool,
    holds_slot: bool,
    wants_slot: bool,
}

impl<'a> Draft<'a> {
    fn new(fleet: &'a Fleet, host: &'a str, record: &'a MdbRecord, now: i64) -> Self {
        let controls = &fleet.controls;
        let report = fleet.reports.get(host);
        let last = fleet.desired.get(host);
        let stop = match &controls.updates {
            Updates::Disabled { reason, by } => Some(HoldReason::UpdatesDisabledFleet {
                reason: reason.clone(),
                by: by.clone(),
            }),
            Updates::Enabled if record.disable_updates => Some(HoldReason::DisableUpdates),
            Updates::Enabled => None,
        };
        let required = record.required_image.as_ref();
        let target = match required.map(|name| fleet.resolve(name, now)) {
            None => Target::None,
            Some(Err(problem)) => Target::Problem(problem),
            Some(Ok(image)) => Target::Image(image),
        };
        let compliant = required.is_some_and(|name| is_compliant_with(report, name));
        let (planned, planned_error) = match &record.planned_image {
            Some(name) if Some(name) != required => match fleet.resolve(name, now) {
                Ok(image) => (Some(image), None),
                Err(problem) => (None, Some(format!("planned {problem}"))),
            },
            _ => (None, None),
        };
        let mut draft = Self {
            host,
            record,
            report,
            last,
            target,
            planned,
            planned_error,
            compliant,
            stopped: stop.is_some(),
            hold: stop,
            error: None,
            safety_cleared: required
                .is_some_and(|name| controls.safety_cleared.get(host) == Some(name)),
            holds_slot: report.is_some_and(|r| r.updating),
            wants_slot: false,
        };
        match &draft.target {
            Target::None => {}
            Target::Problem(problem) => draft.error = Some(problem.to_string()),
            Target::Image(image) => draft.judge_update(image),
        }
        draft
    }

    /// The safety check and the slot wish of a machine with a live image.
    fn judge_update(&mut self, image: &ImageRecord) {
        let needs_update = !self.compliant;
        let checked = !self.record.safety_check_disabled() && !self.safety_cleared;
        if needs_update && checked {
            match safety_check(self.host, image, self.report) {
                SafetyVerdict::Pass => {}
                SafetyVerdict::Pending(waiting_for) => {
                    self.hold.get_or_insert(HoldReason::SafetyCheckPending {
                        image: image.name.clone(),
                        waiting_for,
                    });
                }
                SafetyVerdict::Shutoff(shutoff) => {
                    self.error = Some(shutoff.to_string());
                    self.hold.get_or_insert(HoldReason::SafetyShutoff(shutoff));
                }
            }
        }
        if self.error.is_none() {
            self.error = self.agent_error(image);
        }
        let in_progress = needs_update
            && self.last.is_some_and(|last| {
                last.image == image.name && last.manifest == image.manifest && last.updates_allowed
            });
        if self.hold.is_none() {
            self.holds_slot |= in_progress;
            self.wants_slot = needs_update && !self.holds_slot;
        }
    }

    /// What the agent says is wrong: its persistent error, or a failed
    /// update to the image it is still not on.
    fn agent_error(&self, image: &ImageRecord) -> Option<String> {
        let report = self.report?;
        if let Some(error) = &report.error {
            return Some(format!("agent: {error}"));
        }
        let update = report.last_update.as_ref()?;
        (!update.ok && !self.compliant && update.image == image.name.as_str()).then(|| {
            let why = update.error.as_deref().unwrap_or("no reason given");
            format!("update to image {} failed: {why}", image.name)
        })
    }

    fn desired(&self, fleet: &Fleet) -> Option<DesiredState> {
        let mut desired = self.target_desired(fleet)?;
        desired.high_impact_granted =
            desired.updates_allowed && fleet.controls.high_impact.contains(self.host);
        Some(desired)
    }

    fn target_desired(&self, fleet: &Fleet) -> Option<DesiredState> {
        match self.target {
            Target::Image(image) => {
                let mut desired = DesiredState::for_image(self.host, image);
                desired.planned =
                    self.planned
                        .filter(|_| self.compliant)
                        .map(|planned| PlannedImage {
                            image: planned.name.clone(),
                            manifest: planned.manifest,
                        });
                desired.updates_allowed = self.hold.is_none();
                desired.config = fleet.controls.agent_config.clone();
                Some(desired)
            }
            // Left as it is, except that a stop still stops it.
            Target::None | Target::Problem(_) => self.last.map(|last| {
                let mut desired = last.clone();
                desired.updates_allowed &= !self.stopped;
                desired
            }),
        }
    }

    /// Whether the agent asks to run HighImpact triggers for the required
    /// image.
    fn asks_high_impact(&self) -> bool {
        let request = self.report.and_then(|r| r.high_impact.as_ref());
        match (request, &self.record.required_image) {
            (Some(request), Some(required)) => request.image == required.as_str(),
            _ => false,
        }
    }

    fn finish(self, fleet: &Fleet) -> MachineStatus {
        let desired = self.desired(fleet);
        let high_impact_requested = self.asks_high_impact();
        let publish = match (&desired, self.last) {
            (Some(new), Some(last)) => !same_desired(new, last),
            (Some(_), None) => true,
            (None, _) => false,
        };
        MachineStatus {
            host: self.host.to_string(),
            required: self.record.required_image.clone(),
            planned: self.record.planned_image.clone(),
            current: self.report.and_then(|r| r.image.clone()),
            compliant: self.compliant,
            updating: self.holds_slot,
            error: self.error,
            planned_error: self.planned_error,
            held: self.hold,
            safety_cleared: self.safety_cleared,
            high_impact: desired.as_ref().is_some_and(|d| d.high_impact_granted),
            high_impact_requested,
            desired,
            publish,
        }
    }
}

fn summarise(fleet: &Fleet, machines: &[MachineStatus]) -> FleetSummary {
    let count = |f: &dyn Fn(&MachineStatus) -> bool| machines.iter().filter(|m| f(m)).count();
    FleetSummary {
        machines: machines.len(),
        compliant: count(&|m| m.compliant),
        updating: count(&|m| m.updating),
        max_updating: fleet.controls.max_updating,
        waiting_for_slot: count(&|m| m.held == Some(HoldReason::WaitingForSlot)),
        held: count(&|m| m.held.is_some()),
        safety_shutoffs: count(&|m| matches!(m.held, Some(HoldReason::SafetyShutoff(_)))),
        errors: count(&|m| m.error.is_some()),
        without_image: count(&|m| m.required.is_none()),
        to_publish: count(&|m| m.publish),
        high_impact: count(&|m| m.high_impact),
        waiting_for_high_impact: count(&|m| m.high_impact_requested && !m.high_impact),
        max_high_impact: fleet.controls.max_high_impact,
        updates: fleet.controls.updates.clone(),
    }
}

/// Clearances that have done their job or no longer apply.
fn spent_clearances(fleet: &Fleet) -> Vec<String> {
    fleet
        .controls
        .safety_cleared
        .iter()
        .filter(|(host, image)| {
            fleet.mdb.get(*host).is_none_or(|record| {
                record.required_image.as_ref() != Some(*image)
                    || is_compliant_with(fleet.reports.get(*host), image)
            })
        })
        .map(|(host, _)| host.clone())
        .collect()
}

fn unmanaged(fleet: &Fleet) -> Vec<String> {
    let known: BTreeSet<&String> = fleet.reports.keys().chain(fleet.desired.keys()).collect();
    known
        .into_iter()
        .filter(|host| !fleet.mdb.contains_key(*host))
        .cloned()
        .collect()
}
