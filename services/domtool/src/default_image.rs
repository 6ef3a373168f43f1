//! `set-default-image` and `get-default-image`: the image the dominator
//! gives MDB machines whose record names none (`dom.ctl.default-image`).

use std::process::ExitCode;

use dom_bus::stamp::{now_rfc3339, who};
use dom_bus::{outln, Bus};
use dom_model::controls::{Control, DefaultImage, CONTROL_VERSION, DEFAULT_IMAGE};

/// `domtool set-default-image IMAGE|--none`; `None` (or `""`) clears it.
pub async fn set(bus: &Bus, image: Option<&str>, force: bool) -> anyhow::Result<ExitCode> {
    let image = match image.filter(|i| !i.trim().is_empty()) {
        Some(image) => Some(crate::images::live(bus, image, force).await?),
        None => None,
    };
    let control = DefaultImage {
        v: CONTROL_VERSION,
        image,
        by: who(),
        when: now_rfc3339(),
    };
    bus.publish_ctl(DEFAULT_IMAGE, control.encode().into())
        .await?;
    match &control.image {
        Some(image) => outln!("default image set to {image}: MDB machines that name none carry it"),
        None => outln!("no default image: MDB machines that name none are left alone"),
    }
    Ok(ExitCode::SUCCESS)
}

/// `domtool get-default-image`.
pub async fn get(bus: &Bus) -> anyhow::Result<ExitCode> {
    match crate::controls::standing(bus, DEFAULT_IMAGE).await? {
        Some(Control::DefaultImage(DefaultImage {
            image: Some(image),
            by,
            when,
            ..
        })) => {
            // The name alone on the first line, for scripts.
            outln!("{image}");
            outln!("set by {by} at {when}");
        }
        Some(Control::DefaultImage(DefaultImage { by, when, .. })) => {
            outln!("no default image (cleared by {by} at {when})")
        }
        _ => outln!("no default image"),
    }
    Ok(ExitCode::SUCCESS)
}
