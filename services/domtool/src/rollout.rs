//! `domtool rollout status|resume|abort`: an image's rollout, as the
//! dominator's policy judges it on a snapshot of the streams, and the
//! operators' say on it (`dom.ctl.rollout.<image>`).
//!
//! The dominator halts a rollout on its own when too many of its machines
//! fail; `resume` forgives those failures and lets it go on, `abort`
//! stops it for good (until resumed), naming the machines it reached
//! that are not done and what each carried before, so `--revert` can
//! send them back.

use std::process::ExitCode;

use anyhow::bail;
use dom_bus::stamp::{now_rfc3339, now_unix, who};
use dom_bus::{outln, Bus};
use dom_model::controls::{
    control_name, Control, RolloutControl, RolloutMachine, RolloutState, CONTROL_VERSION, ROLLOUT,
};
use dom_model::policy::{RolloutPhase, RolloutSummary};
use dom_model::{Decision, Fleet, ImageName};

use crate::cli::RolloutCommand;
use crate::wait::{standing, Standing};

pub async fn run(bus: &Bus, command: RolloutCommand) -> anyhow::Result<ExitCode> {
    match command {
        RolloutCommand::Status { image } => status(bus, image.as_deref()).await,
        RolloutCommand::Resume { image, reason } => resume(bus, &image, &reason).await,
        RolloutCommand::Canary { image, canary } => set_canary(bus, &image, &canary).await,
        RolloutCommand::Abort {
            image,
            revert,
            reason,
        } => abort(bus, &image, revert, &reason).await,
    }
}

/// One line for a rollout: phase, wave and counts, and why it stopped.
pub fn summary_line(rollout: &RolloutSummary) -> String {
    let mut line = format!(
        "rollout of {} {}: {} of {} done, {} moving, {} failed, {} waiting; wave {} (to {} machines)",
        rollout.image,
        rollout.phase,
        rollout.done,
        rollout.machines,
        rollout.moving,
        rollout.failed.len(),
        rollout.waiting,
        rollout.wave,
        rollout.wave_end,
    );
    if let Some(reason) = &rollout.reason {
        line.push_str(&format!("; {reason}"));
    }
    if let Some(by) = &rollout.by {
        line.push_str(&format!(" (by {by})"));
    }
    line
}

fn control_line(control: &RolloutControl) -> String {
    let state = match control.state {
        RolloutState::Halted => "halted",
        RolloutState::Resumed => "resumed",
        RolloutState::Aborted if control.revert => "aborted, reverting",
        RolloutState::Aborted => "aborted",
        RolloutState::Configured => "configured",
    };
    let canary = match &control.canary {
        Some(canary) => format!(", its own canary {canary}"),
        None => String::new(),
    };
    let reason = match control.reason.as_str() {
        "" => String::new(),
        reason => format!(": {reason}"),
    };
    let machines = match control.machines.len() {
        0 => String::new(),
        1 => "; 1 machine named".to_string(),
        n => format!("; {n} machines named"),
    };
    format!(
        "last control: {state} by {} at {}{reason}{machines}{canary}",
        control.by, control.when
    )
}

/// `domtool rollout status [IMAGE]`.
async fn status(bus: &Bus, image: Option<&str>) -> anyhow::Result<ExitCode> {
    let image = image.map(ImageName::parse).transpose()?;
    let mut view = bus.fleet_view().await?;
    let decision = view.decide(now_unix());
    let controls = &view.fleet.controls.rollouts;
    let images: Vec<ImageName> = match &image {
        Some(image) => vec![image.clone()],
        None => {
            let mut all: Vec<ImageName> = decision
                .rollouts
                .iter()
                .map(|r| r.image.clone())
                .chain(controls.keys().cloned())
                .collect();
            all.sort();
            all.dedup();
            all
        }
    };
    if images.is_empty() {
        outln!("no rollouts");
    }
    for image in &images {
        match decision.rollout(image.as_str()) {
            Some(rollout) => {
                outln!("{}", summary_line(rollout));
                for failed in &rollout.failed {
                    let from = failed
                        .from
                        .as_deref()
                        .map(|f| format!(" (from {f})"))
                        .unwrap_or_default();
                    outln!("  failed {}{from}: {}", failed.host, failed.why);
                }
                if !rollout.unresponsive.is_empty() {
                    outln!(
                        "  not answering (taken for down, holding no wave back): {}",
                        rollout.unresponsive.join(", ")
                    );
                }
            }
            None => outln!("no rollout of {image}"),
        }
        if let Some(control) = controls.get(image) {
            outln!("  {}", control_line(control));
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `domtool rollout resume IMAGE`.
async fn resume(bus: &Bus, image: &str, reason: &str) -> anyhow::Result<ExitCode> {
    let image = ImageName::parse(image)?;
    let name = control_name(ROLLOUT, image.as_str());
    let stopped = match crate::controls::standing(bus, &name).await? {
        Some(Control::Rollout(control)) if control.stops() => control,
        Some(Control::Rollout(_)) => {
            bail!("the rollout of {image} is not halted or aborted; nothing to resume")
        }
        _ => bail!("the rollout of {image} was never halted or aborted; nothing to resume"),
    };
    // Every failure standing now is forgiven: those the halt named, and
    // any that came in after it (the rest of its wave).
    let stopped_canary = stopped.canary.clone();
    let mut machines = stopped.machines;
    let mut view = bus.fleet_view().await?;
    let decision = view.decide(now_unix());
    for failed in decision
        .rollout(image.as_str())
        .map_or(&[][..], |r| &r.failed[..])
    {
        if !machines.iter().any(|m| m.host == failed.host) {
            machines.push(RolloutMachine {
                host: failed.host.clone(),
                from: failed
                    .from
                    .as_deref()
                    .and_then(|f| ImageName::parse(f).ok()),
                why: failed.why.clone(),
            });
        }
    }
    let control = RolloutControl {
        canary: stopped_canary,
        v: CONTROL_VERSION,
        image: image.clone(),
        state: RolloutState::Resumed,
        reason: reason.to_string(),
        machines,
        revert: false,
        by: who(),
        when: now_rfc3339(),
    };
    bus.publish_ctl(&name, control.encode().into()).await?;
    let forgiven = control.machines.len();
    outln!(
        "rollout of {image} resumed by {}; {forgiven} machines' failures forgiven",
        control.by
    );
    Ok(ExitCode::SUCCESS)
}

/// The canary the standing control of `image`'s rollout gives it.
async fn standing_canary(bus: &Bus, image: &ImageName) -> anyhow::Result<Option<String>> {
    let name = control_name(ROLLOUT, image.as_str());
    Ok(match crate::controls::standing(bus, &name).await? {
        Some(Control::Rollout(control)) => control.canary,
        _ => None,
    })
}

/// `domtool rollout canary IMAGE N|P%`: the image's own first wave, kept
/// with whatever stands for its rollout (a halt stays a halt).
async fn set_canary(bus: &Bus, image: &str, canary: &str) -> anyhow::Result<ExitCode> {
    let image = ImageName::parse(image)?;
    let parsed: dom_model::policy::Canary = canary
        .parse()
        .map_err(|why| anyhow::anyhow!("canary {why}"))?;
    let name = control_name(ROLLOUT, image.as_str());
    let control = match crate::controls::standing(bus, &name).await? {
        Some(Control::Rollout(standing)) => RolloutControl {
            canary: Some(parsed.to_string()),
            by: who(),
            when: now_rfc3339(),
            ..standing
        },
        _ => RolloutControl {
            v: CONTROL_VERSION,
            image: image.clone(),
            state: RolloutState::Configured,
            reason: String::new(),
            machines: Vec::new(),
            revert: false,
            canary: Some(parsed.to_string()),
            by: who(),
            when: now_rfc3339(),
        },
    };
    bus.publish_ctl(&name, control.encode().into()).await?;
    outln!(
        "the rollout of {image} starts with a canary of {parsed}{}, set by {}",
        if parsed.is_off() { " (no waves)" } else { "" },
        control.by
    );
    Ok(ExitCode::SUCCESS)
}

/// `domtool rollout abort IMAGE [--revert]`.
async fn abort(bus: &Bus, image: &str, revert: bool, reason: &str) -> anyhow::Result<ExitCode> {
    let image = ImageName::parse(image)?;
    let mut view = bus.fleet_view().await?;
    let decision = view.decide(now_unix());
    let machines = reached(&view.fleet, &decision, &image);
    if decision.rollout(image.as_str()).is_none()
        && !decision
            .machines
            .iter()
            .any(|m| m.required.as_ref() == Some(&image))
    {
        bail!("no rollout of {image}: no machine requires it");
    }
    if let Some(RolloutPhase::Done) = decision.rollout(image.as_str()).map(|r| r.phase) {
        bail!("the rollout of {image} is done; nothing to abort");
    }
    let control = RolloutControl {
        canary: standing_canary(bus, &image).await?,
        v: CONTROL_VERSION,
        image: image.clone(),
        state: RolloutState::Aborted,
        reason: reason.to_string(),
        machines,
        revert,
        by: who(),
        when: now_rfc3339(),
    };
    bus.publish_ctl(
        &control_name(ROLLOUT, image.as_str()),
        control.encode().into(),
    )
    .await?;
    outln!("rollout of {image} aborted by {}", control.by);
    for machine in &control.machines {
        let back = match (&machine.from, revert) {
            (Some(from), true) => format!(", going back to {from}"),
            (None, true) => ", no image to go back to".to_string(),
            (_, false) => String::new(),
        };
        outln!("  {}: {}{back}", machine.host, machine.why);
    }
    Ok(ExitCode::SUCCESS)
}

/// The machines requiring `image` that its rollout reached (told to move
/// to it, or that tried) and that are not on it and healthy, each with
/// the image it carried before.
pub fn reached(fleet: &Fleet, decision: &Decision, image: &ImageName) -> Vec<RolloutMachine> {
    let mut machines = Vec::new();
    for machine in &decision.machines {
        if machine.required.as_ref() != Some(image) {
            continue;
        }
        let report = fleet.reports.get(&machine.host);
        let desired = fleet.desired.get(&machine.host);
        let told = desired.is_some_and(|d| &d.image == image && d.updates_allowed);
        let tried = report
            .and_then(|r| r.last_update.as_ref())
            .is_some_and(|u| u.image == image.as_str());
        if !told && !tried {
            continue;
        }
        let why = match standing(report, image.as_str(), None) {
            Standing::There => continue,
            Standing::Failed(why) => why,
            Standing::NotYet(at) => format!("not done: {at}"),
        };
        machines.push(RolloutMachine {
            host: machine.host.clone(),
            from: report
                .and_then(|r| from(r, image))
                .and_then(|f| ImageName::parse(&f).ok()),
            why,
        });
    }
    machines
}

/// The image a machine carried before the rollout of `image` reached it.
fn from(report: &dom_model::StateReport, image: &ImageName) -> Option<String> {
    match &report.last_update {
        Some(update) if update.image == image.as_str() && update.from.is_some() => {
            update.from.clone()
        }
        _ => report.image.clone().filter(|i| i != image.as_str()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dom_model::policy::FailedMachine;

    #[test]
    fn a_halted_rollout_reads_in_one_line() {
        let rollout = RolloutSummary {
            image: ImageName::parse("web.7").unwrap(),
            phase: RolloutPhase::Halted,
            machines: 10,
            done: 3,
            moving: 0,
            failed: vec![FailedMachine {
                host: "web4".into(),
                from: Some("web.6".into()),
                why: "unhealthy: curl: (7) refused".into(),
            }],
            waiting: 6,
            unresponsive: vec![],
            wave: 1,
            wave_end: 4,
            reason: Some("1 of 4 machines failed (--halt-after 1)".into()),
            by: Some("dominator@ops1".into()),
            halts_now: false,
        };
        assert_eq!(
            summary_line(&rollout),
            "rollout of web.7 halted: 3 of 10 done, 0 moving, 1 failed, 6 waiting; \
             wave 1 (to 4 machines); 1 of 4 machines failed (--halt-after 1) (by dominator@ops1)"
        );
    }

    #[test]
    fn an_abort_names_machines_reached_and_not_done_with_their_image_before() {
        let image = ImageName::parse("web.7").unwrap();
        let mut fleet = Fleet::default();
        for host in ["web1", "web2", "web3", "web4"] {
            let record = dom_model::MdbRecord::new(host).requiring(image.clone());
            fleet.set_mdb(host, Some(record));
        }
        let report = |image: &str, compliant: bool| {
            let mut r = dom_model::StateReport::new("x");
            r.image = Some(image.into());
            r.desired_image = Some("web.7".into());
            r.compliant = compliant;
            r
        };
        // web1 updated and is not healthy yet; web2 is done; web3's update
        // failed; web4 was never reached.
        let mut web1 = report("web.7", true);
        web1.health = Some(dom_model::report::Health {
            image: "web.7".into(),
            ..Default::default()
        });
        web1.last_update = Some(dom_model::report::UpdateResult {
            image: "web.7".into(),
            from: Some("web.6".into()),
            ok: true,
            ..Default::default()
        });
        let mut web3 = report("web.5", false);
        web3.last_update = Some(dom_model::report::UpdateResult {
            image: "web.7".into(),
            error: Some("no space left".into()),
            ..Default::default()
        });
        fleet.reports.insert("web1".into(), web1);
        fleet.reports.insert("web2".into(), report("web.7", true));
        fleet.reports.insert("web3".into(), web3);
        fleet.reports.insert("web4".into(), report("web.6", false));
        let decision = dom_model::policy::decide(&fleet, 0);
        let machines = reached(&fleet, &decision, &image);
        let named: Vec<(&str, Option<&str>)> = machines
            .iter()
            .map(|m| (m.host.as_str(), m.from.as_ref().map(|f| f.as_str())))
            .collect();
        assert_eq!(named, [("web1", Some("web.6")), ("web3", Some("web.5"))]);
        assert_eq!(machines[1].why, "update to web.7 failed: no space left");
        assert!(machines[0]
            .why
            .starts_with("not done: on web.7, health check running"));
    }
}
