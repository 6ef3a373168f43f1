//! `match-triggers`: which services a change to some paths would stop and
//! start (or reload), by an image's triggers or a triggers file, matched
//! exactly as the agent matches them during an update
//! ([`Triggers::matching`]). A release pipeline asks this before it
//! publishes, to see what a change will restart and whether any of it is
//! high impact. The original's `match-triggers IMAGE TRIGGERSFILE`,
//! which of a file's triggers an image's paths fire, works as written.

use std::io::Write;
use std::path::Path;

use anyhow::{Context, Result};
use dom_bus::Bus;
use dom_model::{path, ImageName, Manifest, Trigger, Triggers};

/// Whose triggers: an image's, or a local triggers file's.
pub enum TriggersFrom {
    Image(ImageName),
    File(std::path::PathBuf),
}

impl TriggersFrom {
    /// An existing file is a triggers file; anything else names an image.
    pub fn parse(arg: &str) -> Result<Self> {
        if Path::new(arg).is_file() {
            return Ok(Self::File(arg.into()));
        }
        ImageName::parse(arg)
            .map(Self::Image)
            .with_context(|| format!("{arg:?} is neither a triggers file nor an image name"))
    }

    /// Reads the triggers from the file, if they come from one.
    pub fn read_file(&self) -> Result<Option<Triggers>> {
        let Self::File(file) = self else {
            return Ok(None);
        };
        let text = std::fs::read_to_string(file)
            .with_context(|| format!("cannot read triggers file {}", file.display()))?;
        let triggers =
            Triggers::parse(&text).with_context(|| format!("triggers file {}", file.display()))?;
        Ok(Some(triggers))
    }
}

/// The original's form, `match-triggers IMAGE TRIGGERSFILE`: one PATH
/// that is a local file holding triggers, after an image name that is no
/// local file. Anything else is this tool's `NAME|TRIGGERSFILE PATH...`.
pub fn original_form(name: &str, paths: &[String]) -> Option<(ImageName, Triggers)> {
    let [file] = paths else {
        return None;
    };
    if Path::new(name).exists() || !Path::new(file).is_file() {
        return None;
    }
    let image = ImageName::parse(name).ok()?;
    let triggers = Triggers::parse(&std::fs::read_to_string(file).ok()?).ok()?;
    Some((image, triggers))
}

/// Prints, as the original does, the triggers that some path of
/// `manifest` fires, as JSON in the order they would run.
pub fn print_fired_in(
    triggers: &Triggers,
    manifest: &Manifest,
    out: &mut impl Write,
) -> Result<()> {
    let fired = triggers.matching(manifest.entries.iter().map(|e| e.path.as_str()));
    writeln!(out, "{}", serde_json::to_string_pretty(&fired)?)?;
    Ok(())
}

/// Checks the paths: each an absolute, normalised image path.
pub fn parse_paths(paths: &[String]) -> Result<()> {
    for p in paths {
        path::normalise(p).with_context(|| format!("path {p:?}"))?;
    }
    Ok(())
}

/// The triggers of image `name`.
pub async fn image_triggers(bus: &Bus, name: &ImageName) -> Result<Triggers> {
    bus.ensure_image_streams().await?;
    let record = bus.image_record(name).await?;
    Triggers::new(record.triggers).with_context(|| format!("image {name}: triggers"))
}

/// Prints the triggers `paths` fire, in the order they would run: one
/// line each, `SERVICE ACTION` then `high-impact` and `reboot` where they
/// apply, or the fired triggers as JSON.
pub fn print_matches(
    triggers: &Triggers,
    paths: &[String],
    json: bool,
    out: &mut impl Write,
) -> Result<()> {
    let fired = triggers.matching(paths);
    if json {
        writeln!(out, "{}", serde_json::to_string_pretty(&fired)?)?;
        return Ok(());
    }
    for trigger in fired {
        writeln!(out, "{}", line(trigger))?;
    }
    Ok(())
}

/// `sshd restart`, `nginx reload`, `kernel restart high-impact reboot`.
fn line(trigger: &Trigger) -> String {
    let mut words = vec![
        trigger.service.as_str(),
        if trigger.do_reload {
            "reload"
        } else {
            "restart"
        },
    ];
    if trigger.high_impact {
        words.push("high-impact");
    }
    if trigger.do_reboot {
        words.push("reboot");
    }
    words.join(" ")
}
