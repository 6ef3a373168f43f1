//! The emergency stop and safety-shutoff clearances, published on
//! `dom.ctl.<control>` with who and why, and reading back the control
//! standing on one subject.

use std::process::ExitCode;

use anyhow::{bail, Context};
use dom_bus::stamp::{now_rfc3339, who};
use dom_bus::{outln, Bus};
use dom_model::controls::{
    safety_clear_control, Control, SafetyClearance, UpdatesControl, UpdatesState, CONTROL_VERSION,
    UPDATES,
};

/// `disable-updates REASON` / `enable-updates REASON`.
pub async fn set_updates(bus: &Bus, enable: bool, reason: &str) -> anyhow::Result<ExitCode> {
    if reason.trim().is_empty() {
        bail!("say why, e.g. domtool disable-updates \"bad kernel in image.7\"");
    }
    let state = if enable {
        UpdatesState::Enabled
    } else {
        UpdatesState::Disabled
    };
    let by = who();
    let control = UpdatesControl::new(state, reason, &by, &now_rfc3339());
    bus.publish_ctl(UPDATES, control.encode().into()).await?;
    let what = if enable { "enabled" } else { "disabled" };
    outln!("updates {what} for the fleet by {by}: {reason}");
    Ok(ExitCode::SUCCESS)
}

/// `clear-safety-shutoff HOST [--image IMAGE]`.
pub async fn clear_safety_shutoff(
    bus: &Bus,
    host: &str,
    image: Option<&str>,
    reason: &str,
    force: bool,
) -> anyhow::Result<ExitCode> {
    crate::mdb::check_host(host)?;
    let image = match image {
        Some(image) => crate::images::live(bus, image, force).await?,
        None => match crate::mdb::record(bus, host).await? {
            Some(record) => record.required_image.with_context(|| {
                format!("{host} has no RequiredImage in the MDB; nothing to clear")
            })?,
            None => bail!("{host} is not in the MDB"),
        },
    };
    let clearance = SafetyClearance {
        v: CONTROL_VERSION,
        host: host.to_string(),
        image: image.clone(),
        reason: reason.to_string(),
        by: who(),
        when: now_rfc3339(),
    };
    bus.publish_ctl(&safety_clear_control(host), clearance.encode().into())
        .await?;
    outln!("safety shutoff of {host} cleared for one update to {image}");
    Ok(ExitCode::SUCCESS)
}

/// The control standing on `dom.ctl.<name>` now: `None` when there is
/// none or it was withdrawn. One that does not decode is an error (the
/// dominator skips it).
pub async fn standing(bus: &Bus, name: &str) -> anyhow::Result<Option<Control>> {
    let Some(message) = bus.last_control(name).await? else {
        return Ok(None);
    };
    Ok(match Control::decode(name, &message.payload)? {
        Control::Withdrawn(_) => None,
        control => Some(control),
    })
}
