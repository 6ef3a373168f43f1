//! `domtool mdb`: the machine database, one record per host on
//! `dom.mdb.<host>`.

use std::collections::BTreeMap;
use std::process::ExitCode;

use anyhow::{bail, Context};
use bytes::Bytes;
use dom_bus::{outln, Bus, FleetKind};
use dom_model::desired::is_valid_host;
use dom_model::mdb::{diff_mdb, parse_mdb_file};
use dom_model::text::bounded;
use dom_model::{ImageName, MdbChange, MdbRecord};

use crate::cli::MdbCommand;
use crate::images::{live, refusal, Images};

pub async fn run(bus: &Bus, command: MdbCommand) -> anyhow::Result<ExitCode> {
    match command {
        MdbCommand::Set {
            host,
            required,
            planned,
            disable_updates,
            tags,
            force,
        } => {
            check_host(&host)?;
            let mut record = record(bus, &host)
                .await?
                .unwrap_or_else(|| MdbRecord::new(&host));
            record.required_image = Some(live(bus, &required, force).await?);
            record.planned_image = match planned {
                Some(planned) => Some(live(bus, &planned, force).await?),
                None => None,
            };
            record.disable_updates = disable_updates;
            for tag in tags {
                let (key, value) = tag
                    .split_once('=')
                    .with_context(|| format!("tag {tag:?} is not KEY=VALUE"))?;
                record.tags.insert(key.to_string(), value.to_string());
            }
            bus.publish_mdb(&host, record.encode().into()).await?;
            outln!("{}", String::from_utf8_lossy(&record.encode()));
            Ok(ExitCode::SUCCESS)
        }
        MdbCommand::Get { host } => {
            check_host(&host)?;
            match record(bus, &host).await? {
                Some(record) => {
                    outln!("{}", serde_json::to_string_pretty(&record)?);
                    Ok(ExitCode::SUCCESS)
                }
                None => bail!("{host} is not in the MDB"),
            }
        }
        MdbCommand::Remove { host } => {
            check_host(&host)?;
            if record(bus, &host).await?.is_none() {
                bail!("{host} is not in the MDB");
            }
            bus.publish_mdb(&host, Bytes::new()).await?;
            outln!("{host} removed from the MDB");
            Ok(ExitCode::SUCCESS)
        }
        MdbCommand::Load {
            file,
            replace,
            force,
        } => {
            let bytes =
                std::fs::read(&file).with_context(|| format!("cannot read {}", file.display()))?;
            let records = parse_mdb_file(&bytes).with_context(|| format!("{}", file.display()))?;
            if !force {
                check_images(&Images::all(bus).await?, &records)
                    .with_context(|| format!("{}", file.display()))?;
            }
            let current: Vec<MdbRecord> = mdb(bus).await?.into_values().collect();
            let changes: Vec<MdbChange> = diff_mdb(&current, &records)
                .into_iter()
                .filter(|c| replace || matches!(c, MdbChange::Set(_)))
                .collect();
            let (mut set, mut removed) = (0, 0);
            for change in &changes {
                match change {
                    MdbChange::Set(record) => {
                        bus.publish_mdb(&record.hostname, record.encode().into())
                            .await?;
                        set += 1;
                    }
                    MdbChange::Remove(host) => {
                        bus.publish_mdb(host, Bytes::new()).await?;
                        removed += 1;
                    }
                }
            }
            let unchanged = records.len() - set;
            outln!("{set} set, {removed} removed, {unchanged} unchanged");
            Ok(ExitCode::SUCCESS)
        }
        MdbCommand::Export => {
            let records: Vec<MdbRecord> = mdb(bus).await?.into_values().collect();
            outln!("{}", serde_json::to_string_pretty(&records)?);
            Ok(ExitCode::SUCCESS)
        }
    }
}

pub fn check_host(host: &str) -> anyhow::Result<()> {
    if !is_valid_host(host) {
        bail!("invalid host {host:?}: use letters, digits, '-', '_' and single dots");
    }
    Ok(())
}

/// The MDB now, by host, as the dominator holds it: a host whose latest
/// payload was refused keeps the last record that was not.
pub async fn mdb(bus: &Bus) -> anyhow::Result<BTreeMap<String, MdbRecord>> {
    let view = bus.view_of(&[FleetKind::Mdb]).await?;
    for (host, reason) in &view.rejected {
        tracing::warn!("{host}: latest MDB record refused, the one before it stands: {reason}");
    }
    Ok(view.fleet.mdb)
}

/// `host`'s record now, if any, as the dominator holds it: when the latest
/// payload was refused, the last record that was not (with a warning).
pub async fn record(bus: &Bus, host: &str) -> anyhow::Result<Option<MdbRecord>> {
    let Some(message) = bus.last_mdb_message(host).await? else {
        return Ok(None);
    };
    match MdbRecord::decode(host, &message.payload) {
        Ok(record) => Ok(record),
        Err(e) => {
            let reason = bounded(&e.to_string());
            tracing::warn!("{host}: latest MDB record refused, the one before it stands: {reason}");
            Ok(bus.last_good_mdb(host).await?.flatten())
        }
    }
}

/// Refuses the first record naming an image that does not resolve.
fn check_images(images: &Images, records: &[MdbRecord]) -> anyhow::Result<()> {
    for record in records {
        for (field, image) in [
            ("RequiredImage", &record.required_image),
            ("PlannedImage", &record.planned_image),
        ] {
            if let Some(problem) = image.as_ref().and_then(|image| images.problem(image)) {
                bail!("{}: {field}: {}", record.hostname, refusal(&problem));
            }
        }
    }
    Ok(())
}

/// `payload`, an MDB record as stored, requiring `image` instead: every
/// other field is kept as it was, unknown ones included, and the field is
/// found without regard to case, as [`MdbRecord::decode`] reads it.
pub fn with_required_image(
    host: &str,
    payload: &[u8],
    image: &ImageName,
) -> anyhow::Result<Vec<u8>> {
    let mut object: serde_json::Map<String, serde_json::Value> =
        serde_json::from_slice(payload).with_context(|| format!("the MDB record of {host}"))?;
    object.retain(|key, _| !key.eq_ignore_ascii_case("RequiredImage"));
    object.insert("RequiredImage".into(), image.as_str().into());
    let edited = serde_json::to_vec(&object).expect("JSON serialises");
    MdbRecord::decode(host, &edited)?;
    Ok(edited)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_required_image_keeps_every_other_field() {
        let stored = br#"{"hostname":"web1","requiredimage":"web.6","PlannedImage":"web.8",
            "IpAddress":"10.0.0.1","Tags":{"Role":"web"}}"#;
        let image = ImageName::parse("web.7").unwrap();
        let edited = with_required_image("web1", stored, &image).unwrap();
        let value: serde_json::Value = serde_json::from_slice(&edited).unwrap();
        assert_eq!(
            value,
            serde_json::json!({"hostname": "web1", "RequiredImage": "web.7",
                "PlannedImage": "web.8", "IpAddress": "10.0.0.1", "Tags": {"Role": "web"}})
        );
        let record = MdbRecord::decode("web1", &edited).unwrap().unwrap();
        assert_eq!(record.required_image, Some(image.clone()));
        assert!(with_required_image("web1", b"[1]", &image).is_err());
    }
}
