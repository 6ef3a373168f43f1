//! Decisions for small fleets, one rule at a time. Image resolution is in
//! `images`, the rollout cap in `rollout`, the safety shutoff in `safety`,
//! HighImpact grants in `high_impact`.

use super::*;
use crate::desired::PlannedImage;
use crate::image::Tombstone;
use crate::object::ObjectId;
use crate::report::UpdateResult;

mod high_impact;
mod images;
mod rollout;
mod safety;
mod waves;

const NOW: i64 = 1_800_000_000;
/// Inodes on every test machine unless a test says otherwise.
const MACHINE_INODES: u64 = 1000;

fn name(s: &str) -> ImageName {
    ImageName::parse(s).unwrap()
}

/// A normal image about the size of the test machines.
fn normal(image: &str) -> ImageRecord {
    ImageRecord {
        health_check: None,
        v: 1,
        name: name(image),
        manifest: ObjectId::of(image.as_bytes()),
        sparse: false,
        filter: Some(vec!["/var/log/.*".into()]),
        triggers: vec![],
        files: 600,
        bytes: 1 << 20,
        inodes: MACHINE_INODES,
        created: "2026-11-26T09:00:00Z".into(),
        creator: "root@build1".into(),
        expires: None,
        expires_unix: None,
        objects: None,
        metadata: Default::default(),
    }
}

fn sparse(image: &str) -> ImageRecord {
    ImageRecord {
        sparse: true,
        filter: None,
        inodes: 3,
        ..normal(image)
    }
}

fn tombstone(image: &str) -> ImageMessage {
    ImageMessage::Deleted(Tombstone {
        v: 1,
        name: name(image),
        deleted: true,
        deleted_at: "2026-11-26T10:00:00Z".into(),
        by: "root@build1".into(),
    })
}

/// What an agent reports once it has planned against `image`: its scan,
/// and compliance or the work left.
fn planned(host: &str, image: &str, compliant: bool) -> StateReport {
    let mut report = StateReport::new(host);
    report.scan.inodes = Some(MACHINE_INODES);
    report.desired_image = Some(image.into());
    report.compliant = compliant;
    report.would_delete = Some(if compliant { 0 } else { 10 });
    if compliant {
        report.image = Some(image.into());
    } else {
        report.deviations = 10;
    }
    report
}

/// A machine compliant with `image`.
fn on(host: &str, image: &str) -> StateReport {
    planned(host, image, true)
}

/// A fleet under construction.
struct Setup(Fleet);

/// A fleet whose rollouts go without waves, as before waves were
/// introduced, so each test looks at one rule; `waves` tests turn them on.
fn fleet() -> Setup {
    let mut fleet = Fleet::default();
    fleet.controls.rollout.canary = Canary::Machines(0);
    fleet.controls.rollout.halt_after = 0;
    Setup(fleet)
}

impl Setup {
    fn image(mut self, record: ImageRecord) -> Self {
        self.0.add_image(ImageMessage::Record(record));
        self
    }

    fn message(mut self, message: ImageMessage) -> Self {
        self.0.add_image(message);
        self
    }

    fn machine(self, host: &str, required: &str) -> Self {
        self.record(MdbRecord::new(host).requiring(name(required)))
    }

    fn record(mut self, record: MdbRecord) -> Self {
        self.0.mdb.insert(record.hostname.clone(), record);
        self
    }

    fn report(mut self, report: StateReport) -> Self {
        self.0.reports.insert(report.host.clone(), report);
        self
    }

    fn published(mut self, desired: DesiredState) -> Self {
        self.0.desired.insert(desired.host.clone(), desired);
        self
    }

    fn controls(mut self, edit: impl FnOnce(&mut FleetControls)) -> Self {
        edit(&mut self.0.controls);
        self
    }

    fn decide(&self) -> Decision {
        decide(&self.0, NOW)
    }

    /// Decides, and records what was published as the dominator would.
    fn round(&mut self) -> Decision {
        let decision = self.decide();
        publish(&mut self.0, &decision);
        decision
    }

    fn status(&self, host: &str) -> MachineStatus {
        self.decide()
            .machine(host)
            .expect("host in the MDB")
            .clone()
    }
}

fn publish(fleet: &mut Fleet, decision: &Decision) {
    for desired in decision.to_publish() {
        let mut desired = desired.clone();
        // At NOW: just issued.
        desired.issued = Some("2027-01-15T08:00:00Z".into());
        fleet.desired.insert(desired.host.clone(), desired);
    }
}

fn allowed(image: &ImageRecord, host: &str) -> DesiredState {
    DesiredState::for_image(host, image)
}

fn not_allowed(image: &ImageRecord, host: &str) -> DesiredState {
    DesiredState {
        updates_allowed: false,
        ..allowed(image, host)
    }
}

fn disabled(fleet: &mut FleetControls) {
    fleet.updates = Updates::Disabled {
        reason: "bad rollout".into(),
        by: "alice".into(),
    };
}

#[test]
fn a_new_machine_gets_its_image_and_it_is_published_once() {
    let image = sparse("sparse.0");
    let mut setup = fleet().image(image.clone()).machine("web1", "sparse.0");
    let decision = setup.round();
    let web1 = decision.machine("web1").unwrap();
    assert_eq!(web1.desired, Some(allowed(&image, "web1")));
    assert!(web1.publish && web1.updating && web1.held.is_none() && web1.error.is_none());
    assert_eq!(decision.to_publish().count(), 1);
    // Nothing changed: nothing to publish, though the desired state stays.
    let again = setup.round();
    let web1 = again.machine("web1").unwrap();
    assert!(!web1.publish && web1.desired.is_some());
    assert_eq!(again.to_publish().count(), 0);
    assert_eq!(again.summary.to_publish, 0);
}

#[test]
fn publish_only_on_change_ignores_issued() {
    let image = sparse("sparse.0");
    let mut last = allowed(&image, "web1");
    last.issued = Some("2020-01-01T00:00:00Z".into());
    let setup = fleet()
        .image(image.clone())
        .machine("web1", "sparse.0")
        .published(last.clone());
    assert!(!setup.status("web1").publish);
    // Any other difference is published.
    let mut other = last.clone();
    other.updates_allowed = false;
    assert!(setup.published(other).status("web1").publish);
    let mut b = last.clone();
    b.issued = None;
    assert!(same_desired(&last, &b));
    b.config.fetch_rate = Some(1);
    assert!(!same_desired(&last, &b));
}

#[test]
fn the_desired_state_copies_the_image_and_the_agent_config() {
    let mut image = normal("image.1");
    image.triggers = vec![crate::triggers::Trigger {
        match_lines: vec!["/etc/ssh/.*".into()],
        service: "sshd".into(),
        ..Default::default()
    }];
    let status = fleet()
        .image(image.clone())
        .machine("web1", "image.1")
        .report(planned("web1", "image.1", false))
        .controls(|c| {
            c.agent_config.scan_speed_percent = Some(crate::desired::ScanPercent::whole(5))
        })
        .status("web1");
    let desired = status.desired.unwrap();
    assert_eq!(desired.manifest, image.manifest);
    assert_eq!(desired.filter, image.filter);
    assert_eq!(desired.triggers, image.triggers);
    assert_eq!(
        desired.config.scan_speed_percent,
        Some(crate::desired::ScanPercent::whole(5))
    );
    assert!(desired.updates_allowed && desired.issued.is_none());
    desired.validate().unwrap();
}

#[test]
fn planned_image_is_handed_out_only_while_compliant() {
    let setup = || {
        fleet()
            .image(normal("image.1"))
            .image(normal("image.2"))
            .record(MdbRecord {
                planned_image: Some(name("image.2")),
                ..MdbRecord::new("web1").requiring(name("image.1"))
            })
    };
    let expected = Some(PlannedImage {
        image: name("image.2"),
        manifest: normal("image.2").manifest,
    });
    let status = setup().report(on("web1", "image.1")).status("web1");
    assert_eq!(status.desired.unwrap().planned, expected);
    assert_eq!(status.planned, Some(name("image.2")));
    for report in [
        None,
        Some(planned("web1", "image.1", false)),
        Some(on("web1", "image.0")),
        Some(StateReport {
            desired_image: Some("image.0".into()),
            ..on("web1", "image.1")
        }),
    ] {
        let mut s = setup();
        if let Some(report) = report.clone() {
            s = s.report(report);
        }
        let desired = s.status("web1").desired.unwrap();
        assert_eq!(desired.planned, None, "{report:?}");
    }
}

#[test]
fn planned_image_must_be_live_and_another_image() {
    let record = |planned_image: &str| MdbRecord {
        planned_image: Some(name(planned_image)),
        ..MdbRecord::new("web1").requiring(name("image.1"))
    };
    let mut expired = normal("old.0");
    expired.expires_unix = Some(NOW - 1);
    let base = fleet()
        .image(normal("image.1"))
        .image(expired)
        .image(normal("gone.0"))
        .message(tombstone("gone.0"))
        .report(on("web1", "image.1"));
    for (planned_image, error) in [
        ("missing.0", Some("planned image missing.0 does not exist")),
        ("gone.0", Some("planned image gone.0 was deleted")),
        ("old.0", Some("planned image old.0 expired at")),
        ("image.1", None),
    ] {
        let status = fleet_with(&base, record(planned_image)).status("web1");
        assert_eq!(status.desired.unwrap().planned, None, "{planned_image}");
        match error {
            Some(error) => assert!(status.planned_error.unwrap().starts_with(error)),
            None => assert_eq!(status.planned_error, None),
        }
        assert!(status.error.is_none(), "{planned_image}");
    }
}

fn fleet_with(base: &Setup, record: MdbRecord) -> Setup {
    Setup(base.0.clone()).record(record)
}

#[test]
fn disable_updates_holds_the_machine() {
    let image = sparse("sparse.1");
    let status = fleet()
        .image(image.clone())
        .record(MdbRecord {
            disable_updates: true,
            ..MdbRecord::new("web1").requiring(name("sparse.1"))
        })
        .status("web1");
    assert_eq!(status.held, Some(HoldReason::DisableUpdates));
    assert_eq!(status.desired, Some(not_allowed(&image, "web1")));
    assert!(status.publish && !status.updating);
}

#[test]
fn the_fleet_stop_holds_every_machine_first() {
    let image = sparse("sparse.1");
    let decision = fleet()
        .image(image.clone())
        .machine("web1", "sparse.1")
        .record(MdbRecord {
            disable_updates: true,
            ..MdbRecord::new("web2").requiring(name("sparse.1"))
        })
        .report(on("web3", "sparse.1"))
        .machine("web3", "sparse.1")
        .published(allowed(&image, "web3"))
        .controls(disabled)
        .decide();
    let stop = HoldReason::UpdatesDisabledFleet {
        reason: "bad rollout".into(),
        by: "alice".into(),
    };
    for status in &decision.machines {
        assert_eq!(status.held.as_ref(), Some(&stop), "{}", status.host);
        assert!(!status.updates_allowed() && status.publish && !status.updating);
    }
    assert_eq!(
        stop.to_string(),
        "updates are disabled for the fleet by alice: bad rollout"
    );
    assert_eq!(decision.summary.held, 3);
    assert_eq!(decision.summary.compliant, 1);
}

#[test]
fn agent_errors_are_reported() {
    let base = || {
        fleet()
            .image(sparse("sparse.1"))
            .machine("web1", "sparse.1")
    };
    let mut report = planned("web1", "sparse.1", false);
    report.error = Some("desired state for web1: bad filter".into());
    let status = base().report(report.clone()).status("web1");
    assert_eq!(
        status.error.as_deref(),
        Some("agent: desired state for web1: bad filter")
    );

    report.error = None;
    report.last_update = Some(UpdateResult {
        image: "sparse.1".into(),
        started: "2026-11-26T09:00:00Z".into(),
        ok: false,
        error: Some("fetching objects: bucket unreachable".into()),
        ..UpdateResult::default()
    });
    let status = base().report(report.clone()).status("web1");
    assert_eq!(
        status.error.as_deref(),
        Some("update to image sparse.1 failed: fetching objects: bucket unreachable")
    );
    // A failure on the way to another image, or one since put right, is history.
    let mut other = report.clone();
    other.last_update.as_mut().unwrap().image = "sparse.0".into();
    assert!(base().report(other).status("web1").error.is_none());
    let mut fixed = on("web1", "sparse.1");
    fixed.last_update = report.last_update;
    assert!(base().report(fixed).status("web1").error.is_none());
}

#[test]
fn summary_lookup_and_unmanaged_hosts() {
    let image = sparse("sparse.1");
    let decision = fleet()
        .image(image.clone())
        .machine("web1", "sparse.1")
        .report(on("web1", "sparse.1"))
        .machine("web2", "missing.0")
        .record(MdbRecord::new("spare1"))
        .report(on("old1", "sparse.1"))
        .published(allowed(&image, "old2"))
        .controls(|c| {
            c.high_impact.insert("web1".into());
        })
        .decide();
    let hosts: Vec<_> = decision.machines.iter().map(|m| m.host.as_str()).collect();
    assert_eq!(hosts, ["spare1", "web1", "web2"]);
    assert!(decision.machine("old1").is_none());
    assert!(decision.machine("web1").unwrap().high_impact);
    assert_eq!(decision.unmanaged, ["old1", "old2"]);
    let summary = &decision.summary;
    assert_eq!(
        (
            summary.machines,
            summary.compliant,
            summary.errors,
            summary.without_image
        ),
        (3, 1, 1, 1)
    );
    assert_eq!(
        (summary.high_impact, summary.max_high_impact),
        (1, DEFAULT_MAX_HIGH_IMPACT)
    );
    assert_eq!(summary.updates, Updates::Enabled);
}

#[test]
fn statuses_serialise_for_the_status_page() {
    let decision = fleet()
        .image(sparse("sparse.1"))
        .machine("web1", "sparse.1")
        .machine("web2", "sparse.1")
        .controls(|c| c.max_updating = 1)
        .decide();
    let json = serde_json::to_value(&decision).unwrap();
    assert_eq!(
        json["machines"][1]["held"],
        serde_json::json!({"hold": "waiting_for_slot"})
    );
    assert_eq!(json["machines"][0]["desired"]["image"], "sparse.1");
    assert_eq!(
        json["summary"]["updates"],
        serde_json::json!({"state": "enabled"})
    );
}
