//! The rollout cap: how many machines update at once, and who waits.

use super::*;

/// `count` machines `h0`, `h1`, ... all required to be on `image`.
fn machines(image: &ImageRecord, count: usize) -> Setup {
    (0..count).fold(fleet().image(image.clone()), |s, i| {
        s.machine(&format!("h{i}"), image.name.as_str())
    })
}

fn updating(decision: &Decision) -> Vec<&str> {
    decision
        .machines
        .iter()
        .filter(|m| m.updating)
        .map(|m| m.host.as_str())
        .collect()
}

fn waiting(decision: &Decision) -> Vec<&str> {
    decision
        .machines
        .iter()
        .filter(|m| m.held == Some(HoldReason::WaitingForSlot))
        .map(|m| m.host.as_str())
        .collect()
}

#[test]
fn at_most_n_machines_update_and_the_rest_wait_in_host_order() {
    let image = sparse("sparse.1");
    let decision = machines(&image, 5)
        .controls(|c| c.max_updating = 2)
        .decide();
    assert_eq!(updating(&decision), ["h0", "h1"]);
    assert_eq!(waiting(&decision), ["h2", "h3", "h4"]);
    for m in &decision.machines {
        assert_eq!(m.updates_allowed(), m.updating, "{}", m.host);
        assert!(m.publish, "{}", m.host);
    }
    assert_eq!(
        decision.machine("h4").unwrap().desired,
        Some(not_allowed(&image, "h4"))
    );
    let summary = &decision.summary;
    assert_eq!((summary.updating, summary.max_updating), (2, 2));
    assert_eq!((summary.waiting_for_slot, summary.held), (3, 3));
}

#[test]
fn machines_already_updating_keep_their_slot() {
    let image = sparse("sparse.1");
    // h3 and h4 were let through earlier and are not compliant yet.
    let decision = machines(&image, 5)
        .published(allowed(&image, "h3"))
        .published(allowed(&image, "h4"))
        .controls(|c| c.max_updating = 3)
        .decide();
    assert_eq!(updating(&decision), ["h0", "h3", "h4"]);
    assert_eq!(waiting(&decision), ["h1", "h2"]);
    assert!(!decision.machine("h3").unwrap().publish);
}

#[test]
fn a_machine_reporting_an_update_holds_a_slot_even_past_a_lowered_cap() {
    let image = sparse("sparse.1");
    let busy = |host: &str| StateReport {
        updating: true,
        ..planned(host, "sparse.0", false)
    };
    let decision = machines(&image, 4)
        .report(busy("h2"))
        .report(busy("h3"))
        .controls(|c| c.max_updating = 1)
        .decide();
    assert_eq!(updating(&decision), ["h2", "h3"]);
    assert_eq!(waiting(&decision), ["h0", "h1"]);
    // Whatever it is doing, a machine reporting an update counts, even one
    // that is held or has no image that resolves.
    let decision = machines(&image, 2)
        .machine("h9", "missing.0")
        .report(busy("h9"))
        .controls(|c| c.max_updating = 1)
        .decide();
    assert_eq!(updating(&decision), ["h9"]);
    assert_eq!(waiting(&decision), ["h0", "h1"]);
}

#[test]
fn a_previous_grant_for_another_image_holds_no_slot() {
    let old = sparse("sparse.0");
    let image = sparse("sparse.1");
    let decision = machines(&image, 3)
        .image(old.clone())
        .published(allowed(&old, "h2"))
        .report(on("h2", "sparse.0"))
        .controls(|c| c.max_updating = 1)
        .decide();
    assert_eq!(updating(&decision), ["h0"]);
    assert_eq!(waiting(&decision), ["h1", "h2"]);
}

#[test]
fn compliant_machines_take_no_slot() {
    let image = sparse("sparse.1");
    let decision = machines(&image, 3)
        .report(on("h0", "sparse.1"))
        .report(on("h1", "sparse.1"))
        .controls(|c| c.max_updating = 1)
        .decide();
    assert_eq!(updating(&decision), ["h2"]);
    assert!(waiting(&decision).is_empty());
    let h0 = decision.machine("h0").unwrap();
    assert!(h0.compliant && h0.updates_allowed() && h0.held.is_none());
}

#[test]
fn a_cap_of_zero_starts_nothing() {
    let image = sparse("sparse.1");
    let decision = machines(&image, 2)
        .controls(|c| c.max_updating = 0)
        .decide();
    assert!(updating(&decision).is_empty());
    assert_eq!(waiting(&decision), ["h0", "h1"]);
}

#[test]
fn held_machines_take_no_slot() {
    let image = sparse("sparse.1");
    let decision = machines(&image, 3)
        .record(MdbRecord {
            disable_updates: true,
            ..MdbRecord::new("h0").requiring(name("sparse.1"))
        })
        .published(allowed(&image, "h0"))
        .controls(|c| c.max_updating = 1)
        .decide();
    assert_eq!(
        decision.machine("h0").unwrap().held,
        Some(HoldReason::DisableUpdates)
    );
    assert_eq!(updating(&decision), ["h1"]);
    // Under the fleet stop no one updates, and no slot is given.
    let decision = machines(&image, 3)
        .published(allowed(&image, "h0"))
        .controls(disabled)
        .decide();
    assert!(updating(&decision).is_empty() && waiting(&decision).is_empty());
}

#[test]
fn a_failed_update_keeps_its_slot_so_failures_stall_the_rollout() {
    let image = sparse("sparse.1");
    let mut failed = planned("h0", "sparse.1", false);
    failed.last_update = Some(UpdateResult {
        image: "sparse.1".into(),
        ok: false,
        error: Some("disk full".into()),
        ..UpdateResult::default()
    });
    let decision = machines(&image, 3)
        .published(allowed(&image, "h0"))
        .report(failed)
        .controls(|c| c.max_updating = 1)
        .decide();
    assert_eq!(updating(&decision), ["h0"]);
    assert_eq!(waiting(&decision), ["h1", "h2"]);
    assert!(decision.machine("h0").unwrap().error.is_some());
}

/// Runs the dominator and the agents together: each round the dominator
/// decides and publishes, and every machine allowed to update converges.
#[test]
fn a_rollout_runs_through_the_fleet_in_waves_never_past_the_cap() {
    let image = sparse("sparse.1");
    let mut setup = machines(&image, 7).controls(|c| c.max_updating = 3);
    let mut waves = Vec::new();
    for _ in 0..10 {
        let decision = setup.round();
        let moving: Vec<String> = decision
            .machines
            .iter()
            .filter(|m| m.updates_allowed() && !m.compliant)
            .map(|m| m.host.clone())
            .collect();
        assert!(moving.len() <= 3, "{moving:?}");
        if moving.is_empty() {
            assert_eq!(decision.summary.compliant, 7);
            break;
        }
        for host in &moving {
            setup = setup.report(on(host, "sparse.1"));
        }
        waves.push(moving);
    }
    assert_eq!(
        waves,
        [vec!["h0", "h1", "h2"], vec!["h3", "h4", "h5"], vec!["h6"]]
    );
    // Once done, nothing more is published.
    assert_eq!(setup.round().to_publish().count(), 0);
}

#[test]
fn the_same_fleet_always_gives_the_same_decision() {
    let image = sparse("sparse.1");
    let hosts = ["web7", "db1", "web10", "app3", "web2", "cache1"];
    let build = |order: &[&str]| {
        order
            .iter()
            .fold(fleet().image(image.clone()), |s, h| {
                s.machine(h, "sparse.1")
            })
            .published(allowed(&image, "web7"))
            .controls(|c| c.max_updating = 3)
    };
    let first = build(&hosts).decide();
    let mut reversed = hosts;
    reversed.reverse();
    assert_eq!(build(&reversed).decide(), first);
    assert_eq!(build(&hosts).decide(), first);
    assert_eq!(updating(&first), ["app3", "cache1", "web7"]);
}
