//! `domtool fast-update HOST [--image IMAGE]`: move one machine now, past
//! its rollout's waves, and wait for it to get there.
//!
//! With `--image` the machine's MDB record first requires the image (its
//! other fields, unknown ones included, kept as stored). Then the
//! fast-update control (`dom.ctl.fast-update.<host>`) asks the dominator
//! to let the machine update at once, and the tool waits as
//! `wait --ignore-earlier` does: a failure reported before the request is
//! not this update's.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context};
use dom_bus::stamp::{now_rfc3339, who};
use dom_bus::{outln, Bus};
use dom_model::controls::{control_name, FastUpdate, CONTROL_VERSION, FAST_UPDATE};
use dom_model::{ImageName, MdbRecord};

use crate::wait::Waiter;

/// What `fast-update` was asked to do.
#[derive(Debug)]
pub struct Request {
    pub host: String,
    pub image: Option<String>,
    pub timeout: Duration,
    pub no_wait: bool,
    pub force: bool,
}

/// `domtool fast-update`.
pub async fn fast_update(bus: &Bus, request: Request) -> anyhow::Result<ExitCode> {
    let host = request.host.as_str();
    crate::mdb::check_host(host)?;
    let image = match &request.image {
        Some(image) => crate::images::live(bus, image, request.force).await?,
        None => match crate::mdb::record(bus, host).await? {
            Some(record) => record.required_image.with_context(|| {
                format!("{host} has no RequiredImage in the MDB; name one with --image")
            })?,
            None => bail!("{host} is not in the MDB"),
        },
    };
    // Hear where the machine stands before changing anything, so that
    // only what happens after the request counts.
    let waiter = match request.no_wait {
        true => None,
        false => Some(Waiter::start(bus, &[host.to_string()], image.clone(), true).await?),
    };
    if request.image.is_some() {
        require(bus, host, &image).await?;
    }
    let control = FastUpdate {
        v: CONTROL_VERSION,
        host: host.to_string(),
        image: image.clone(),
        by: who(),
        when: now_rfc3339(),
    };
    bus.publish_ctl(&control_name(FAST_UPDATE, host), control.encode().into())
        .await?;
    outln!("fast update of {host} to {image} asked for");
    match waiter {
        Some(waiter) => waiter.run(request.timeout).await,
        None => Ok(ExitCode::SUCCESS),
    }
}

/// Publishes `host`'s MDB record requiring `image`, keeping the rest of
/// the record as it is stored.
async fn require(bus: &Bus, host: &str, image: &ImageName) -> anyhow::Result<()> {
    let stored = bus.last_mdb_message(host).await?;
    let (payload, record) =
        match stored.map(|message| (MdbRecord::decode(host, &message.payload), message.payload)) {
            Some((Ok(Some(record)), payload)) => (payload.to_vec(), record),
            // A refused payload: start from the record the dominator holds.
            Some((Err(_), _)) => match crate::mdb::record(bus, host).await? {
                Some(record) => (record.encode(), record),
                None => bail!("{host} is not in the MDB; add it with domtool mdb set"),
            },
            Some((Ok(None), _)) | None => {
                bail!("{host} is not in the MDB; add it with domtool mdb set")
            }
        };
    if record.required_image.as_ref() == Some(image) {
        return Ok(());
    }
    let edited = crate::mdb::with_required_image(host, &payload, image)?;
    bus.publish_mdb(host, edited.into()).await?;
    outln!("{host} now requires {image} in the MDB");
    Ok(())
}
