//! `status`, `list-subs` and `show`: the fleet as the dominator judges it,
//! computed with the same policy on a snapshot of the streams.

use std::process::ExitCode;

use anyhow::bail;
use dom_bus::stamp::now_unix;
use dom_bus::{outln, Bus};
use dom_model::policy::{HoldReason, RolloutPhase, Updates};
use dom_model::report::UpdateResult;
use dom_model::{Decision, FleetControls, MachineStatus};

/// `domtool status`.
pub async fn status(bus: &Bus) -> anyhow::Result<ExitCode> {
    let mut view = bus.fleet_view().await?;
    let now = now_unix();
    let decision = view.decide(now);
    outln!("{}", summary_line(&decision));
    let mut rows = vec![[
        "HOST",
        "REQUIRED",
        "CURRENT",
        "COMPLIANT",
        "LAST UPDATE",
        "ERROR",
    ]
    .map(String::from)];
    for machine in &decision.machines {
        let report = view.fleet.reports.get(&machine.host);
        rows.push([
            machine.host.clone(),
            or_dash(machine.required.as_ref().map(|i| i.to_string())),
            or_dash(machine.current.clone()),
            match report {
                None => "?".into(),
                Some(_) if machine.compliant => "yes".into(),
                Some(_) => "no".into(),
            },
            or_dash(report.and_then(|r| r.last_update.as_ref()).map(last_update)),
            or_dash(
                problem(machine, view.rejected.get(&machine.host))
                    .or_else(|| paused(&view.fleet.controls, &machine.host, now)),
            ),
        ]);
    }
    print_table(&rows);
    for rollout in &decision.rollouts {
        if rollout.phase != RolloutPhase::Done {
            outln!("{}", crate::rollout::summary_line(rollout));
        }
    }
    for host in &decision.unmanaged {
        outln!("{host}: not in the MDB (has a state report or a desired state)");
    }
    Ok(ExitCode::SUCCESS)
}

/// `domtool list-subs`.
pub async fn list_subs(bus: &Bus) -> anyhow::Result<ExitCode> {
    for host in crate::mdb::mdb(bus).await?.keys() {
        outln!("{host}");
    }
    Ok(ExitCode::SUCCESS)
}

/// `domtool show HOST`.
pub async fn show(bus: &Bus, host: &str, events: usize) -> anyhow::Result<ExitCode> {
    crate::mdb::check_host(host)?;
    let mut view = bus.fleet_view().await?;
    let decision = view.decide(now_unix());
    let machine = decision.machine(host);
    let report = view.fleet.reports.get(host);
    let desired = view.fleet.desired.get(host);
    if machine.is_none() && report.is_none() && desired.is_none() {
        bail!("{host} is not in the MDB and has never reported");
    }
    outln!("host:      {host}");
    match view.fleet.mdb.get(host) {
        Some(record) => outln!("mdb:       {}", String::from_utf8_lossy(&record.encode())),
        None => outln!("mdb:       (not in the MDB)"),
    }
    if let Some(reason) = view.rejected.get(host) {
        outln!("refused:   {reason}");
    }
    match desired {
        Some(d) => {
            let allowed = if d.updates_allowed {
                "updates allowed"
            } else {
                "updates held"
            };
            let kind = if d.sparse { "sparse" } else { "normal" };
            let planned = d
                .planned
                .as_ref()
                .map(|p| format!(", pre-fetch {}", p.image))
                .unwrap_or_default();
            let issued = d.issued.as_deref().unwrap_or("-");
            outln!(
                "desired:   {} ({kind}), {allowed}{planned}, issued {issued}",
                d.image
            );
        }
        None => outln!("desired:   (none published)"),
    }
    match report {
        Some(r) => {
            outln!(
                "state:     generation {}, image {}, {} ({} deviations){}{}",
                r.generation,
                r.image.as_deref().unwrap_or("-"),
                if r.compliant {
                    "compliant"
                } else {
                    "not compliant"
                },
                r.deviations,
                if r.fetching { ", fetching" } else { "" },
                if r.updating { ", updating" } else { "" },
            );
            outln!(
                "agent:     version {}, up {}s, {} files scanned",
                or_dash(Some(r.agent_version.clone()).filter(|v| !v.is_empty())),
                r.uptime_s,
                r.scan.files
            );
            if let Some(update) = &r.last_update {
                outln!("update:    {}", last_update(update));
            }
            if let Some(error) = &r.error {
                outln!("agent error: {error}");
            }
        }
        None => outln!("state:     (no report yet)"),
    }
    if let Some(machine) = machine {
        if let Some(error) = &machine.error {
            outln!("error:     {error}");
        }
        if let Some(held) = &machine.held {
            outln!("held:      {held}");
        }
        if let Some(error) = &machine.planned_error {
            outln!("planned:   {error}");
        }
    }
    let controls = &view.fleet.controls;
    if let Some(pause) = controls.paused.get(host) {
        outln!(
            "paused:    by {} until {}: {}",
            pause.by,
            pause.until,
            pause.reason
        );
    }
    if let Some(image) = controls.fast_update.get(host) {
        outln!("fast update to {image} asked for");
    }
    let all = bus.events(host).await?;
    if !all.is_empty() {
        outln!("events:");
        for event in &all[all.len().saturating_sub(events)..] {
            outln!("  {}", crate::watch::event_line(event));
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn summary_line(decision: &Decision) -> String {
    let s = &decision.summary;
    let mut line = format!(
        "{} machines, {} compliant, {} updating (of at most {}), {} in error",
        s.machines, s.compliant, s.updating, s.max_updating, s.errors
    );
    if let Updates::Disabled { reason, by } = &s.updates {
        line.push_str(&format!("; UPDATES DISABLED by {by}: {reason}"));
    }
    line
}

/// The error column: the machine's error, a refused MDB record, or why it
/// is held (waiting for a slot is no problem).
fn problem(machine: &MachineStatus, refused: Option<&String>) -> Option<String> {
    if let Some(error) = &machine.error {
        return Some(error.clone());
    }
    if let Some(refused) = refused {
        return Some(format!("MDB record refused: {refused}"));
    }
    match &machine.held {
        None | Some(HoldReason::WaitingForSlot | HoldReason::WaitingForWave { .. }) => None,
        Some(held) => Some(format!("held: {held}")),
    }
}

/// A pause still standing, when the decision gives no other reason to
/// show (a dominator whose policy predates pauses does not hold for it).
fn paused(controls: &FleetControls, host: &str, now: i64) -> Option<String> {
    let pause = controls.paused.get(host)?;
    (pause.ends(controls.max_pause_s) > now).then(|| {
        let held = HoldReason::Paused {
            until: pause.until.clone(),
            reason: pause.reason.clone(),
            by: pause.by.clone(),
        };
        format!("held: {held}")
    })
}

fn last_update(update: &UpdateResult) -> String {
    let outcome = match (&update.error, update.ok) {
        (_, true) => "ok".to_string(),
        (Some(error), false) => format!("failed: {error}"),
        (None, false) => "failed".to_string(),
    };
    format!("{} {} {outcome}", update.started, update.image)
}

fn or_dash(value: Option<String>) -> String {
    value.unwrap_or_else(|| "-".into())
}

/// Prints rows in columns, the last one unpadded.
fn print_table(rows: &[[String; 6]]) {
    let mut widths = [0usize; 6];
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    for row in rows {
        let mut line = String::new();
        for (i, cell) in row.iter().enumerate() {
            if i + 1 == row.len() {
                line.push_str(cell);
            } else {
                line.push_str(&format!("{cell:<width$}  ", width = widths[i]));
            }
        }
        outln!("{}", line.trim_end());
    }
}
