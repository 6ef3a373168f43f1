//! The safety shutoff: when an update to a normal image is refused, when it
//! waits for the machine's report, and how it is cleared.

use super::*;

fn small(image: &str, inodes: u64) -> ImageRecord {
    ImageRecord {
        inodes,
        ..normal(image)
    }
}

fn deleting(host: &str, image: &str, would_delete: u64) -> StateReport {
    StateReport {
        would_delete: Some(would_delete),
        ..planned(host, image, false)
    }
}

fn shutoff(status: &MachineStatus) -> &SafetyShutoff {
    match &status.held {
        Some(HoldReason::SafetyShutoff(s)) => s,
        other => panic!("{}: held {other:?}", status.host),
    }
}

#[test]
fn refuses_an_image_with_fewer_than_half_the_machines_inodes() {
    let image = small("tiny.0", 499);
    let setup = fleet()
        .image(image.clone())
        .machine("db1", "tiny.0")
        .report(deleting("db1", "tiny.0", 0));
    let decision = setup.decide();
    let status = decision.machine("db1").unwrap();
    let s = shutoff(status);
    assert_eq!(
        (s.rule, s.image_inodes, s.machine_inodes),
        (SafetyRule::TooFewInodes, 499, 1000)
    );
    assert_eq!(
        status.error.as_deref(),
        Some(
            "safety shutoff: image tiny.0 has 499 inodes, fewer than half of the 1000 on the \
             machine; if that is intended, run `domtool clear-safety-shutoff db1`"
        )
    );
    assert_eq!(status.desired, Some(not_allowed(&image, "db1")));
    assert!(!status.updating);
    assert_eq!(decision.summary.safety_shutoffs, 1);
    // Exactly half is allowed.
    let status = fleet()
        .image(small("half.0", 500))
        .machine("db1", "half.0")
        .report(deleting("db1", "half.0", 0))
        .status("db1");
    assert!(status.held.is_none() && status.updates_allowed());
}

#[test]
fn refuses_a_plan_deleting_more_than_half_the_machines_inodes() {
    let base = || fleet().image(normal("image.1")).machine("web1", "image.1");
    let status = base()
        .report(deleting("web1", "image.1", 501))
        .status("web1");
    let s = shutoff(&status);
    assert_eq!(
        (s.rule, s.would_delete),
        (SafetyRule::TooManyDeletes, Some(501))
    );
    assert!(status.error.unwrap().starts_with(
        "safety shutoff: updating to image image.1 would delete 501 of the 1000 inodes"
    ));
    let status = base()
        .report(deleting("web1", "image.1", 500))
        .status("web1");
    assert!(status.held.is_none() && status.updates_allowed());
}

#[test]
fn waits_for_the_machines_report_before_allowing_an_update() {
    let image = normal("image.1");
    let base = || fleet().image(image.clone()).machine("web1", "image.1");
    let pending = |status: &MachineStatus| match &status.held {
        Some(HoldReason::SafetyCheckPending { image, waiting_for }) => {
            assert_eq!(image.as_str(), "image.1");
            waiting_for.clone()
        }
        other => panic!("held {other:?}"),
    };
    let no_inodes = StateReport {
        scan: Default::default(),
        ..deleting("web1", "image.1", 0)
    };
    let other_plan = deleting("web1", "image.0", 0);
    let no_plan = StateReport {
        would_delete: None,
        ..deleting("web1", "image.1", 0)
    };
    let cases = [
        (None, "the machine's first state report"),
        (
            Some(no_inodes),
            "the machine's inode count from a complete scan",
        ),
        (Some(other_plan), "the machine's plan for image image.1"),
        (Some(no_plan), "the machine's plan for image image.1"),
    ];
    for (report, expected) in cases {
        let mut setup = base();
        if let Some(report) = report {
            setup = setup.report(report);
        }
        let status = setup.status("web1");
        assert_eq!(pending(&status), expected);
        // The image goes out, so the agent can plan against it, but not
        // the permission to apply it.
        assert_eq!(status.desired, Some(not_allowed(&image, "web1")));
        assert!(status.publish && !status.updating && status.error.is_none());
    }
    let text = HoldReason::SafetyCheckPending {
        image: name("image.1"),
        waiting_for: "the machine's first state report".into(),
    }
    .to_string();
    assert_eq!(
        text,
        "waiting for the machine's first state report to run the safety check for image image.1"
    );
}

#[test]
fn the_two_phase_start_of_a_normal_image() {
    let image = normal("image.1");
    let mut setup = fleet().image(image.clone()).machine("web1", "image.1");
    let first = setup.round();
    assert!(!first.machine("web1").unwrap().updates_allowed());
    // The agent plans against image.1 and reports; now it may update.
    setup = setup.report(deleting("web1", "image.1", 10));
    let second = setup.round();
    let status = second.machine("web1").unwrap();
    assert!(status.updates_allowed() && status.publish && status.updating);
    setup = setup.report(on("web1", "image.1"));
    let third = setup.round();
    assert!(third.machine("web1").unwrap().compliant);
    assert_eq!(third.to_publish().count(), 0);
}

#[test]
fn sparse_images_tagged_machines_and_compliant_machines_are_not_checked() {
    // A sparse image deletes nothing.
    let status = fleet()
        .image(sparse("sparse.1"))
        .machine("web1", "sparse.1")
        .status("web1");
    assert!(status.held.is_none() && status.updates_allowed());
    // The tag turns the check off.
    for value in ["true", ""] {
        let mut record = MdbRecord::new("web1").requiring(name("tiny.0"));
        record
            .tags
            .insert("DisableSafetyCheck".into(), value.into());
        let status = fleet()
            .image(small("tiny.0", 1))
            .record(record)
            .report(deleting("web1", "tiny.0", 999))
            .status("web1");
        assert!(
            status.held.is_none() && status.updates_allowed(),
            "{value:?}"
        );
    }
    let mut record = MdbRecord::new("web1").requiring(name("tiny.0"));
    record
        .tags
        .insert("DisableSafetyCheck".into(), "false".into());
    let status = fleet()
        .image(small("tiny.0", 1))
        .record(record)
        .report(deleting("web1", "tiny.0", 0))
        .status("web1");
    shutoff(&status);
    // A compliant machine has nothing to update, whatever its size.
    let status = fleet()
        .image(small("tiny.0", 1))
        .machine("web1", "tiny.0")
        .report(on("web1", "tiny.0"))
        .status("web1");
    assert!(status.held.is_none() && status.updates_allowed() && status.error.is_none());
}

#[test]
fn a_clearance_lets_one_update_through_for_its_image_only() {
    let base = || {
        fleet()
            .image(small("tiny.0", 1))
            .image(small("tiny.1", 1))
            .machine("db1", "tiny.0")
            .report(deleting("db1", "tiny.0", 999))
    };
    let cleared = |image: &str| {
        let image = name(image);
        move |c: &mut FleetControls| {
            c.safety_cleared.insert("db1".into(), image);
        }
    };
    let decision = base().controls(cleared("tiny.0")).decide();
    let status = decision.machine("db1").unwrap();
    assert!(status.safety_cleared && status.updates_allowed() && status.error.is_none());
    assert!(decision.spent_clearances.is_empty());

    // Cleared for another image: the check stands, and the clearance is spent.
    let decision = base().controls(cleared("tiny.1")).decide();
    let status = decision.machine("db1").unwrap();
    assert!(!status.safety_cleared);
    shutoff(status);
    assert_eq!(decision.spent_clearances, ["db1"]);

    // Used: once the machine is on the image, the clearance is spent.
    let decision = base()
        .report(on("db1", "tiny.0"))
        .controls(cleared("tiny.0"))
        .decide();
    assert_eq!(decision.spent_clearances, ["db1"]);

    // A machine gone from the MDB needs none.
    let decision = fleet()
        .controls(|c| {
            c.safety_cleared.insert("old1".into(), name("x"));
        })
        .decide();
    assert_eq!(decision.spent_clearances, ["old1"]);
}

#[test]
fn the_shutoff_outranks_the_slot_and_is_outranked_by_stops() {
    let image = small("tiny.0", 1);
    let decision = fleet()
        .image(image.clone())
        .image(sparse("sparse.1"))
        .machine("a1", "tiny.0")
        .report(deleting("a1", "tiny.0", 0))
        .published(allowed(&image, "a1"))
        .machine("b1", "sparse.1")
        .controls(|c| c.max_updating = 1)
        .decide();
    // a1 had been allowed, but the shutoff takes its slot back.
    shutoff(decision.machine("a1").unwrap());
    assert!(!decision.machine("a1").unwrap().updating);
    assert!(decision.machine("b1").unwrap().updating);

    let status = fleet()
        .image(image)
        .machine("a1", "tiny.0")
        .report(deleting("a1", "tiny.0", 0))
        .controls(disabled)
        .status("a1");
    assert!(matches!(
        status.held,
        Some(HoldReason::UpdatesDisabledFleet { .. })
    ));
    // The shutoff still shows, so operators see it before re-enabling.
    assert!(status.error.unwrap().starts_with("safety shutoff"));
}

#[test]
fn safety_check_judges_one_report() {
    let image = small("image.1", 400);
    let report = deleting("web1", "image.1", 0);
    assert!(matches!(
        safety_check("web1", &image, Some(&report)),
        SafetyVerdict::Shutoff(SafetyShutoff {
            rule: SafetyRule::TooFewInodes,
            ..
        })
    ));
    assert_eq!(
        safety_check("web1", &sparse("s"), None),
        SafetyVerdict::Pass
    );
    // An empty machine has nothing to lose.
    let empty = StateReport {
        scan: crate::report::ScanStats {
            inodes: Some(0),
            ..Default::default()
        },
        ..deleting("web1", "image.1", 0)
    };
    assert_eq!(
        safety_check("web1", &image, Some(&empty)),
        SafetyVerdict::Pass
    );
}
