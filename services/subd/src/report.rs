//! What the agent says about its machine: the state report it keeps up to
//! date, when a new one is worth publishing, and its events.
//!
//! A state report is published when something in it changes other than
//! the clock-driven fields (scan timings, uptime, free space, cache size):
//! a scan that finds the same tree sends nothing new.

use std::path::Path;
use std::time::Duration;

use dom_bus::stamp::now_rfc3339;
use dom_model::plan::Plan;
use dom_model::report::UpdateResult;
use dom_model::{Event, StateReport};

use crate::update::UpdateOutcome;

/// The agent's version, reported in every state report.
pub const AGENT_VERSION: &str = env!("CARGO_PKG_VERSION");

/// Whether `next` says something `published` did not: everything but the
/// clock-driven fields is compared.
pub fn worth_publishing(published: Option<&StateReport>, next: &StateReport) -> bool {
    let Some(published) = published else {
        return true;
    };
    let essence = |r: &StateReport| {
        let mut r = r.clone();
        r.scan.started = None;
        r.scan.duration_ms = 0;
        r.scan.full_scans = 0;
        r.uptime_s = 0;
        r.free_bytes = None;
        r.object_cache_bytes = 0;
        r
    };
    essence(published) != essence(next)
}

/// Free bytes on the file system holding `path`, for an unprivileged user.
pub fn free_bytes(path: &Path) -> Option<u64> {
    crate::space::room(path).map(|room| room.free)
}

/// `statvfs(2)` of the file system holding `path`.
pub(crate) fn statvfs(path: &Path) -> Option<libc::statvfs> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes()).ok()?;
    let mut st = std::mem::MaybeUninit::<libc::statvfs>::uninit();
    // SAFETY: `c` is a valid C string and `st` is written by the call
    // before it is read.
    let rc = unsafe { libc::statvfs(c.as_ptr(), st.as_mut_ptr()) };
    if rc != 0 {
        return None;
    }
    // SAFETY: statvfs succeeded, so it filled `st`.
    Some(unsafe { st.assume_init() })
}

/// The `update` event for an update of `image`.
pub fn update_event(
    host: &str,
    image: &str,
    outcome: &UpdateOutcome,
    result: &UpdateResult,
) -> Event {
    let mut message = if outcome.ok {
        format!("{image} applied: {}", changed(outcome.changed))
    } else {
        format!(
            "{image} not applied: {}",
            result.error.as_deref().unwrap_or("failed")
        )
    };
    let services = services_summary(outcome);
    if !services.is_empty() {
        message.push_str(", ");
        message.push_str(&services);
    }
    if !result.trigger_failures.is_empty() {
        message.push_str(&format!(
            "; {} service command(s) failed",
            result.trigger_failures.len()
        ));
    }
    Event::new(host, Event::UPDATE, &now_rfc3339(), message)
        .with_image(image)
        .with_details(serde_json::to_value(result).unwrap_or_default())
}

/// The `update` event for an update that failed before changing anything
/// (its objects could not be fetched).
pub fn failed_update_event(host: &str, image: &str, result: &UpdateResult) -> Event {
    let error = result.error.as_deref().unwrap_or("failed");
    Event::new(
        host,
        Event::UPDATE,
        &now_rfc3339(),
        format!("{image} not applied: {error}"),
    )
    .with_image(image)
    .with_details(serde_json::to_value(result).unwrap_or_default())
}

/// The `drift` event: the machine no longer matches `image`.
pub fn drift_event(host: &str, image: &str, plan: &Plan) -> Event {
    let mut paths: Vec<&str> = plan.changed.iter().map(String::as_str).collect();
    paths.extend(plan.metadata.iter().map(|m| m.path.as_str()));
    paths.sort_unstable();
    paths.dedup();
    paths.truncate(20);
    Event::new(
        host,
        Event::DRIFT,
        &now_rfc3339(),
        format!("drifted from {image}: {}", plan.summary()),
    )
    .with_image(image)
    .with_details(serde_json::json!({
        "deviations": plan.deviations(),
        "paths": paths,
    }))
}

/// The `rejected` event for a desired state refused.
pub fn rejected_event(host: &str, reason: &str) -> Event {
    Event::new(host, Event::REJECTED, &now_rfc3339(), reason)
}

/// An `error` event.
pub fn error_event(host: &str, image: Option<&str>, message: &str) -> Event {
    let event = Event::new(host, Event::ERROR, &now_rfc3339(), message);
    match image {
        Some(image) => event.with_image(image),
        None => event,
    }
}

fn changed(n: u64) -> String {
    match n {
        0 => "nothing changed".into(),
        1 => "1 path changed".into(),
        n => format!("{n} paths changed"),
    }
}

/// `sshd restarted, motd reloaded`
fn services_summary(outcome: &UpdateOutcome) -> String {
    let mut parts = Vec::new();
    for service in &outcome.started {
        let verb = if outcome.stopped.contains(service) {
            "restarted"
        } else {
            "started"
        };
        parts.push(format!("{service} {verb}"));
    }
    for service in &outcome.stopped {
        if !outcome.started.contains(service) {
            parts.push(format!("{service} stopped"));
        }
    }
    for service in &outcome.reloaded {
        parts.push(format!("{service} reloaded"));
    }
    if outcome.rebooted {
        parts.push("rebooting".into());
    }
    parts.join(", ")
}

/// Milliseconds, for reports.
pub fn millis(d: Duration) -> u64 {
    d.as_millis().min(u64::MAX as u128) as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clock_driven_fields_are_not_news() {
        let mut a = StateReport::new("h1");
        a.generation = 3;
        let mut b = a.clone();
        b.uptime_s = 99;
        b.scan.duration_ms = 5;
        b.free_bytes = Some(1);
        assert!(!worth_publishing(Some(&a), &b));
        b.generation = 4;
        assert!(worth_publishing(Some(&a), &b));
        assert!(worth_publishing(None, &a));
    }

    #[test]
    fn update_messages_name_the_services() {
        let outcome = UpdateOutcome {
            ok: true,
            changed: 3,
            stopped: vec!["sshd".into()],
            started: vec!["sshd".into()],
            reloaded: vec!["motd".into()],
            ..UpdateOutcome::default()
        };
        let result = outcome.to_result("image.1", "2026-11-26T09:00:00Z");
        let event = update_event("h1", "image.1", &outcome, &result);
        assert_eq!(
            event.message,
            "image.1 applied: 3 paths changed, sshd restarted, motd reloaded"
        );
        assert_eq!(event.kind, "update");
        assert_eq!(event.details["changed"], 3);
    }
}
