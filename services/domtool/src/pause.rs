//! `pause HOST --for DURATION REASON` and `resume HOST`: holding one
//! machine for a while (`dom.ctl.pause.<host>`), as the original's
//! `pause-sub-updates`. The pause says when it ends, so nobody has to
//! remember to resume it; the dominator caps it at its `--max-pause`.

use std::process::ExitCode;
use std::time::{Duration, SystemTime};

use anyhow::bail;
use bytes::Bytes;
use dom_bus::stamp::{now_unix, rfc3339, who};
use dom_bus::{outln, Bus};
use dom_model::controls::machine::{DEFAULT_MAX_PAUSE_S, MIN_PAUSE_S};
use dom_model::controls::{control_name, Control, PauseControl, CONTROL_VERSION, PAUSE};

/// Refuses a pause too short to matter or longer than the dominator
/// holds one by default.
pub fn check_duration(duration: Duration) -> anyhow::Result<()> {
    let shown = humantime::format_duration(duration);
    if duration.as_secs() < MIN_PAUSE_S {
        bail!("a pause of {shown} is too short: pause for at least 1m");
    }
    if duration.as_secs() > DEFAULT_MAX_PAUSE_S {
        bail!("a pause of {shown} is too long: pause for at most 24h, and pause again if need be");
    }
    Ok(())
}

/// `domtool pause HOST --for DURATION REASON`.
pub async fn pause(
    bus: &Bus,
    host: &str,
    duration: Duration,
    reason: &str,
    force: bool,
) -> anyhow::Result<ExitCode> {
    crate::mdb::check_host(host)?;
    check_duration(duration)?;
    if reason.trim().is_empty() {
        bail!("say why, e.g. domtool pause {host} --for 2h \"debugging a leak\"");
    }
    if !force && crate::mdb::record(bus, host).await?.is_none() {
        bail!("{host} is not in the MDB; pause it anyway with --force");
    }
    let now = SystemTime::now();
    let now_s = now
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    let pause = PauseControl {
        v: CONTROL_VERSION,
        host: host.to_string(),
        until: rfc3339(now + duration),
        until_unix: now_s + duration.as_secs() as i64,
        reason: reason.to_string(),
        by: who(),
        when: rfc3339(now),
        when_unix: now_s,
    };
    bus.publish_ctl(&control_name(PAUSE, host), pause.encode().into())
        .await?;
    outln!(
        "{host} paused until {} ({}) by {}: {reason}",
        pause.until,
        humantime::format_duration(duration),
        pause.by
    );
    Ok(ExitCode::SUCCESS)
}

/// `domtool resume HOST`.
pub async fn resume(bus: &Bus, host: &str) -> anyhow::Result<ExitCode> {
    crate::mdb::check_host(host)?;
    let name = control_name(PAUSE, host);
    match crate::controls::standing(bus, &name).await? {
        Some(Control::Pause(pause)) => {
            bus.publish_ctl(&name, Bytes::new()).await?;
            let over = if pause.until_unix <= now_unix() {
                "was over at"
            } else {
                "was to last until"
            };
            outln!(
                "{host} resumed; its pause by {} {over} {}: {}",
                pause.by,
                pause.until,
                pause.reason
            );
        }
        _ => outln!("{host} is not paused"),
    }
    Ok(ExitCode::SUCCESS)
}
