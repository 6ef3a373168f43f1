//! The decision function: each machine judged on its own, then the update
//! slots handed out across the fleet.

use std::collections::{BTreeMap, BTreeSet};

use super::rollout::{judge, Member, RolloutPhase, Standing, Verdict};
use super::safety::{safety_check, SafetyVerdict};
use super::status::{Decision, FleetSummary, HoldReason, MachineStatus};
use super::{is_compliant_with, same_desired, Fleet, ImageProblem, Updates};
use crate::desired::{DesiredState, PlannedImage};
use crate::image::{ImageName, ImageRecord};
use crate::mdb::MdbRecord;
use crate::report::StateReport;
use crate::report::{Health, HealthState};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

/// Decides what every machine in the MDB should be told now. `now` is Unix
/// seconds, for image expiry. See the [module docs](super) for the rules.
pub fn decide(fleet: &Fleet, now: i64) -> Decision {
    let mut drafts: Vec<Draft> = fleet
        .mdb
        .iter()
        .map(|(host, record)| Draft::new(fleet, host, record, now))
        .collect();

    let verdicts = judge_rollouts(fleet, &mut drafts);
    gate(&mut drafts, &verdicts);

    let taken = drafts.iter().filter(|d| d.holds_slot).count();
    let mut free = fleet.controls.max_updating.saturating_sub(taken);
    let mut verdicts = verdicts;
    for draft in drafts.iter_mut().filter(|d| d.wants_slot) {
        if free > 0 {
            free -= 1;
            draft.holds_slot = true;
            // Told to move now: the rollout counts it as moving.
            if let (Target::Image(image), Some(_)) = (&draft.target, draft.report) {
                if let Some(summary) = verdicts.get_mut(&image.name).map(|v| &mut v.summary) {
                    summary.waiting = summary.waiting.saturating_sub(1);
                    summary.moving += 1;
                }
            }
        } else {
            draft.hold = Some(HoldReason::WaitingForSlot);
        }
    }

    let wake_at = drafts.iter().filter_map(|d| d.wake_at).min();
    let machines: Vec<MachineStatus> = drafts.into_iter().map(|d| d.finish(fleet)).collect();
    let summary = summarise(fleet, &machines);
    Decision {
        spent_clearances: spent_clearances(fleet),
        unmanaged: unmanaged(fleet),
        halts: verdicts.values().filter_map(|v| v.halt.clone()).collect(),
        wake_at,
        rollouts: verdicts.into_values().map(|v| v.summary).collect(),
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
    /// The image the machine is to carry: its MDB record's, the fleet's
    /// default, or the one an aborted rollout sends it back to.
    required: Option<&'a ImageName>,
    /// An operator asked for this machine to move past its rollout's waves.
    fast: bool,
    /// Unix seconds.
    now: i64,
    /// When a rule reading the clock will judge this machine otherwise.
    wake_at: Option<i64>,
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
        let paused = controls
            .paused
            .get(host)
            .filter(|p| p.ends(controls.max_pause_s) > now);
        let stop = match (&controls.updates, paused) {
            (Updates::Disabled { reason, by }, _) => Some(HoldReason::UpdatesDisabledFleet {
                reason: reason.clone(),
                by: by.clone(),
            }),
            (Updates::Enabled, _) if record.disable_updates => Some(HoldReason::DisableUpdates),
            (Updates::Enabled, Some(pause)) => Some(HoldReason::Paused {
                until: pause.until.clone(),
                reason: pause.reason.clone(),
                by: pause.by.clone(),
            }),
            (Updates::Enabled, None) => None,
        };
        let required = required_image(fleet, host, record);
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
            required,
            fast: required.is_some_and(|name| controls.fast_update.get(host) == Some(name)),
            now,
            wake_at: paused.map(|p| p.ends(controls.max_pause_s)),
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

    /// Where the machine stands in the rollout of `image`, its target.
    fn member(&mut self, fleet: &Fleet, image: &ImageRecord) -> Member<'a> {
        let name = image.name.as_str();
        let report = self.report;
        let health = report.and_then(|r| r.health.as_ref());
        let update = report
            .and_then(|r| r.last_update.as_ref())
            .filter(|u| u.image == name);
        let from = match (update, report) {
            (Some(update), _) => update.from.clone(),
            (None, Some(r)) => r.image.clone().filter(|i| i != name),
            (None, None) => None,
        };
        let failure = match (health, update) {
            (Some(health), _) if health.failed_on(name) => Some(health_failure(health)),
            (_, Some(update)) if !update.ok && !self.compliant => Some(format!(
                "update failed: {}",
                update.error.as_deref().unwrap_or("no reason given")
            )),
            _ => None,
        };
        let released = self.compliant
            || self.holds_slot
            || self
                .last
                .is_some_and(|last| last.image == image.name && last.updates_allowed);
        let checking = health.is_some_and(|h| h.image == name && h.state == HealthState::Checking);
        let standing = match failure {
            Some(why) => Standing::Failed {
                forgiven: fleet
                    .controls
                    .rollouts
                    .get(&image.name)
                    .is_some_and(|c| c.forgives(self.host)),
                why,
            },
            None if self.compliant && !checking => Standing::Done,
            None if released && self.unresponsive(fleet, image) => Standing::Unresponsive,
            None if released => Standing::Moving,
            None => Standing::Waiting,
        };
        Member {
            host: self.host,
            standing,
            from,
        }
    }

    /// Whether the machine was told to move to `image` longer ago than the
    /// rollout policy waits and its agent has not said it heard.
    fn unresponsive(&mut self, fleet: &Fleet, image: &ImageRecord) -> bool {
        let heard = self
            .report
            .is_some_and(|r| r.desired_image.as_deref() == Some(image.name.as_str()));
        if heard {
            // Most machines of a rollout: no date to read.
            return false;
        }
        let issued = self
            .last
            .filter(|last| last.image == image.name && last.updates_allowed)
            .and_then(|last| last.issued.as_deref())
            .and_then(|issued| OffsetDateTime::parse(issued, &Rfc3339).ok());
        let wait = fleet.controls.rollout.unresponsive_after_s as i64;
        let Some(deadline) = issued.map(|at| at.unix_timestamp() + wait) else {
            return false;
        };
        if deadline > self.now {
            self.wake_at = Some(self.wake_at.map_or(deadline, |w| w.min(deadline)));
        }
        deadline <= self.now
    }

    /// What the agent says is wrong: its persistent error, or a failed
    /// update to the image it is still not on.
    fn agent_error(&self, image: &ImageRecord) -> Option<String> {
        let report = self.report?;
        if let Some(error) = &report.error {
            return Some(format!("agent: {error}"));
        }
        if let Some(health) = report
            .health
            .as_ref()
            .filter(|h| h.failed_on(image.name.as_str()))
        {
            return Some(health_failure(health));
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
                let controls = &fleet.controls;
                desired.config = match controls.host_config.get(self.host) {
                    Some(own) => controls.agent_config.overridden_by(own),
                    None => controls.agent_config.clone(),
                };
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
        match (request, self.required) {
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
            required: self.required.cloned(),
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

/// The image `host` is to carry: the one its MDB record requires, or the
/// fleet's default image when it names none; except that a rollout
/// aborted with `--revert` sends the machines it names back to the image
/// they carried before.
fn required_image<'a>(
    fleet: &'a Fleet,
    host: &str,
    record: &'a MdbRecord,
) -> Option<&'a ImageName> {
    let required = record
        .required_image
        .as_ref()
        .or(fleet.controls.default_image.as_ref())?;
    let reverted = fleet
        .controls
        .rollouts
        .get(required)
        .and_then(|c| c.reverts(host));
    Some(reverted.unwrap_or(required))
}

/// One line for a failed health check.
fn health_failure(health: &Health) -> String {
    match health.state {
        HealthState::TimedOut if health.message.is_empty() => {
            format!("health check on image {} timed out", health.image)
        }
        HealthState::TimedOut => format!(
            "health check on image {} timed out: {}",
            health.image, health.message
        ),
        _ => format!("unhealthy on image {}: {}", health.image, health.message),
    }
}

/// Every image's rollout, judged from the machines that are to carry it.
fn judge_rollouts<'a>(fleet: &'a Fleet, drafts: &mut [Draft<'a>]) -> BTreeMap<ImageName, Verdict> {
    let mut members: BTreeMap<&ImageName, Vec<Member<'_>>> = BTreeMap::new();
    // A machine whose agent never reported is not in service yet, and
    // could not tell how the image does: it is no part of the waves.
    for draft in drafts.iter_mut().filter(|d| d.report.is_some()) {
        if let Target::Image(image) = draft.target {
            members
                .entry(&image.name)
                .or_default()
                .push(draft.member(fleet, image));
        }
    }
    let controls = &fleet.controls;
    let mut verdicts: BTreeMap<ImageName, Verdict> = members
        .into_iter()
        .map(|(image, members)| {
            let control = controls.rollouts.get(image);
            let verdict = judge(
                image,
                &members,
                control,
                &controls.rollout,
                controls.max_updating,
            );
            (image.clone(), verdict)
        })
        .collect();
    // A rollout stopped by a control whose machines all went elsewhere
    // is still shown, so an operator can resume or forget it.
    for (image, control) in &controls.rollouts {
        if control.stops() && !verdicts.contains_key(image) {
            let verdict = judge(
                image,
                &[],
                Some(control),
                &controls.rollout,
                controls.max_updating,
            );
            verdicts.insert(image.clone(), verdict);
        }
    }
    verdicts
}

/// Lets only as many machines start moving to each image as its rollout
/// allows, in host order; holds the rest.
fn gate(drafts: &mut [Draft<'_>], verdicts: &BTreeMap<ImageName, Verdict>) {
    let mut budgets: BTreeMap<&ImageName, usize> = verdicts
        .iter()
        .map(|(image, v)| (image, v.may_start))
        .collect();
    for draft in drafts.iter_mut().filter(|d| d.wants_slot) {
        let Target::Image(image) = draft.target else {
            continue;
        };
        if draft.fast {
            // Past the waves, a halt and the update cap: the operator
            // asked for this one machine.
            draft.wants_slot = false;
            draft.holds_slot = true;
            continue;
        }
        if draft.report.is_none() {
            continue;
        }
        let (Some(verdict), Some(budget)) =
            (verdicts.get(&image.name), budgets.get_mut(&image.name))
        else {
            continue;
        };
        let phase = verdict.summary.phase;
        if matches!(phase, RolloutPhase::Halted | RolloutPhase::Aborted) {
            draft.wants_slot = false;
            draft.hold = Some(HoldReason::RolloutStopped {
                image: image.name.clone(),
                phase,
                reason: verdict.summary.reason.clone().unwrap_or_default(),
            });
        } else if *budget == 0 {
            draft.wants_slot = false;
            draft.hold = Some(HoldReason::WaitingForWave {
                image: image.name.clone(),
                wave: verdict.next_wave,
            });
        } else if *budget != usize::MAX {
            *budget -= 1;
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
        paused: count(&|m| matches!(m.held, Some(HoldReason::Paused { .. }))),
        waiting_for_wave: count(&|m| matches!(m.held, Some(HoldReason::WaitingForWave { .. }))),
        rollout_stopped: count(&|m| matches!(m.held, Some(HoldReason::RolloutStopped { .. }))),
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
