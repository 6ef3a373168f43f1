//! The safety shutoff: refuse an update that looks like it would wipe a
//! machine.
//!
//! A normal image makes the machine's tree exactly the image, so a wrong
//! image (a tiny one on a database server, say) deletes almost everything.
//! As in the original, an update to a normal image is refused when the
//! image has fewer than half as many inodes as the machine, or when the
//! agent's plan would delete more than half of the machine's inodes. The
//! machine stays held, its status saying why, until an operator clears the
//! shutoff once for that image (`domtool clear-safety-shutoff HOST`) or the
//! MDB tag `DisableSafetyCheck` turns the check off for the machine.
//!
//! Both numbers come from the machine's state report: `scan.inodes`, and
//! `would_delete` from the agent's plan against the image it was told to
//! carry. Until the report has them the update waits, so the first desired
//! state for a new image goes out with updates not allowed, the agent plans
//! against it and reports, and only then is the update judged.

use std::fmt;

use serde::Serialize;

use crate::image::{ImageName, ImageRecord};
use crate::report::StateReport;

/// Which rule refused the update.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SafetyRule {
    /// The image has fewer than half the machine's inodes.
    TooFewInodes,
    /// The plan would delete more than half the machine's inodes.
    TooManyDeletes,
}

/// An update refused by the safety shutoff.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct SafetyShutoff {
    pub host: String,
    pub image: ImageName,
    pub rule: SafetyRule,
    pub image_inodes: u64,
    pub machine_inodes: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub would_delete: Option<u64>,
}

impl fmt::Display for SafetyShutoff {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Self {
            host,
            image,
            machine_inodes,
            ..
        } = self;
        match self.rule {
            SafetyRule::TooFewInodes => write!(
                f,
                "safety shutoff: image {image} has {} inodes, fewer than half of the \
                 {machine_inodes} on the machine",
                self.image_inodes
            )?,
            SafetyRule::TooManyDeletes => write!(
                f,
                "safety shutoff: updating to image {image} would delete {} of the \
                 {machine_inodes} inodes on the machine, more than half",
                self.would_delete.unwrap_or_default()
            )?,
        }
        write!(
            f,
            "; if that is intended, run `domtool clear-safety-shutoff {host}`"
        )
    }
}

/// What the safety check says about an update.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SafetyVerdict {
    /// Nothing against it.
    Pass,
    /// The report lacks what the check needs; says what it waits for.
    Pending(String),
    Shutoff(SafetyShutoff),
}

/// Judges the update of `host` to `image` by the machine's last report.
/// Sparse images never delete and always pass. The caller skips the check
/// for machines tagged `DisableSafetyCheck` and for cleared shutoffs.
pub fn safety_check(
    host: &str,
    image: &ImageRecord,
    report: Option<&StateReport>,
) -> SafetyVerdict {
    if image.sparse {
        return SafetyVerdict::Pass;
    }
    let Some(report) = report else {
        return SafetyVerdict::Pending("the machine's first state report".into());
    };
    let Some(machine_inodes) = report.scan.inodes else {
        return SafetyVerdict::Pending("the machine's inode count from a complete scan".into());
    };
    let shutoff = |rule, would_delete| {
        SafetyVerdict::Shutoff(SafetyShutoff {
            host: host.to_string(),
            image: image.name.clone(),
            rule,
            image_inodes: image.inodes,
            machine_inodes,
            would_delete,
        })
    };
    // The original's integer halves, kept so both judge alike.
    let half = machine_inodes / 2;
    if image.inodes < half {
        return shutoff(SafetyRule::TooFewInodes, None);
    }
    let planned_for_image = report.desired_image.as_deref() == Some(image.name.as_str());
    match report.would_delete {
        Some(n) if planned_for_image && n > half => shutoff(SafetyRule::TooManyDeletes, Some(n)),
        Some(_) if planned_for_image => SafetyVerdict::Pass,
        _ => SafetyVerdict::Pending(format!("the machine's plan for image {}", image.name)),
    }
}
