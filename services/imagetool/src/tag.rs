//! `imagetool tag NAME KEY=VALUE... [-delete KEY]`: change a live image's
//! tags after it was added, as a new event on its subject.
//!
//! Like an expiry change, the record is published again expecting the
//! last sequence read, with only its tags changed; the stream keeps the
//! earlier record, and the dominator takes the later one as the same
//! image, so no machine is updated for it.

use std::io::Write;

use anyhow::{bail, Result};
use dom_bus::Bus;
use dom_model::ImageName;

/// The checked arguments of `tag`.
#[derive(Clone, Debug)]
pub struct TagRequest {
    pub name: ImageName,
    pub set: Vec<(String, String)>,
    pub remove: Vec<String>,
}

impl TagRequest {
    /// Checks the arguments before anything is sent: at least one tag to
    /// set or remove, each well formed, no key twice.
    pub fn parse(name: &str, tags: &[String], remove: &[String]) -> Result<Self> {
        let name = ImageName::parse(name)?;
        let set = crate::metadata::parse_tags(tags)?;
        if set.is_empty() && remove.is_empty() {
            bail!("nothing to change: give KEY=VALUE tags to set, or -delete KEY");
        }
        for key in remove {
            // A key is what may stand before the `=` of a tag.
            dom_model::image::parse_tag(&format!("{key}="))?;
            if set.iter().any(|(k, _)| k == key) {
                bail!("tag key {key:?} is both set and deleted; give it once");
            }
        }
        Ok(Self {
            name,
            set,
            remove: remove.to_vec(),
        })
    }
}

/// Publishes the change and prints the image's tags as they now are.
pub async fn tag(bus: &Bus, request: &TagRequest, out: &mut impl Write) -> Result<()> {
    bus.ensure_image_streams().await?;
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let record = bus
        .change_image_tags(&request.name, &request.set, &request.remove, now)
        .await?;
    let tags = &record.metadata.tags;
    if tags.is_empty() {
        writeln!(out, "{} has no tags", record.name)?;
    } else {
        let list: Vec<String> = tags.iter().map(|(k, v)| format!("{k}={v}")).collect();
        writeln!(out, "{} tags: {}", record.name, list.join(" "))?;
    }
    Ok(())
}
