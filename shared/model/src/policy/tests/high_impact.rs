//! HighImpact grants: requests from the state reports, grants in the
//! desired states, at most `max_high_impact` published at any time.

use super::*;
use crate::report::HighImpactRequest;

/// `count` machines `h0`, `h1`, ... on their way to `image`, each asking
/// to run HighImpact triggers for it.
fn asking(image: &ImageRecord, count: usize) -> Setup {
    (0..count).fold(fleet().image(image.clone()), |s, i| {
        let host = format!("h{i}");
        s.machine(&host, image.name.as_str())
            .report(asks(&host, image.name.as_str()))
    })
}

/// A machine not yet on `image`, asking for a HighImpact grant for it.
fn asks(host: &str, image: &str) -> StateReport {
    StateReport {
        high_impact: Some(HighImpactRequest {
            image: image.into(),
            services: vec!["postgres".into()],
        }),
        ..planned(host, image, false)
    }
}

impl Setup {
    /// A dominator's round: grants, decision, publication.
    fn grant_round(&mut self) -> Decision {
        let decision = decide_with_grants(&mut self.0, NOW);
        publish(&mut self.0, &decision);
        decision
    }

    /// Hosts whose published desired state carries a grant.
    fn holders(&self) -> Vec<String> {
        high_impact_holders(&self.0).into_iter().collect()
    }
}

fn granted(decision: &Decision) -> Vec<&str> {
    decision
        .machines
        .iter()
        .filter(|m| m.desired.as_ref().is_some_and(|d| d.high_impact_granted))
        .map(|m| m.host.as_str())
        .collect()
}

#[test]
fn the_grant_travels_in_the_desired_state_up_to_the_cap() {
    let image = sparse("sparse.1");
    let mut setup = asking(&image, 3).controls(|c| c.max_high_impact = 2);
    let decision = setup.grant_round();
    assert_eq!(granted(&decision), ["h0", "h1"]);
    let h0 = decision.machine("h0").unwrap();
    assert!(h0.high_impact && h0.high_impact_requested && h0.publish);
    let h2 = decision.machine("h2").unwrap();
    assert!(!h2.high_impact && h2.high_impact_requested && h2.updates_allowed());
    let summary = &decision.summary;
    assert_eq!(
        (
            summary.high_impact,
            summary.max_high_impact,
            summary.waiting_for_high_impact
        ),
        (2, 2, 1)
    );
    // Nothing changed: nothing more to publish.
    let again = setup.grant_round();
    assert_eq!(again.summary.to_publish, 0);
    assert_eq!(granted(&again), ["h0", "h1"]);
}

#[test]
fn a_withdrawn_grant_frees_its_place_once_the_withdrawal_is_published() {
    let image = sparse("sparse.1");
    let mut setup = asking(&image, 2);
    assert_eq!(granted(&setup.grant_round()), ["h0"]);
    // h0 updated and stopped asking.
    setup = setup.report(on("h0", "sparse.1"));
    let decision = setup.grant_round();
    assert_eq!(granted(&decision), Vec::<&str>::new());
    assert!(decision.machine("h0").unwrap().publish);
    assert!(!decision.machine("h1").unwrap().publish);
    assert!(setup.holders().is_empty());
    let decision = setup.grant_round();
    assert_eq!(granted(&decision), ["h1"]);
    assert_eq!(setup.holders(), ["h1"]);
}

#[test]
fn a_grant_not_yet_withdrawn_still_counts() {
    let image = sparse("sparse.1");
    // h0 was told it may go ahead and has stopped asking, but its
    // withdrawal is not published yet (say the publish failed).
    let mut held = allowed(&image, "h0");
    held.high_impact_granted = true;
    let mut setup = asking(&image, 2)
        .report(on("h0", "sparse.1"))
        .published(held);
    let decision = decide_with_grants(&mut setup.0, NOW);
    assert_eq!(granted(&decision), Vec::<&str>::new());
    assert!(decision.machine("h0").unwrap().publish);
    assert!(!decision.machine("h1").unwrap().high_impact);
}

#[test]
fn grants_are_rebuilt_from_the_published_desired_states() {
    // A restarted dominator: no grants in its controls, but h1's last
    // desired state carries one and h1 still asks. h1 keeps it and nothing
    // is published.
    let image = sparse("sparse.1");
    let mut held = allowed(&image, "h1");
    held.high_impact_granted = true;
    let mut setup = asking(&image, 3)
        .published(not_allowed(&image, "h0"))
        .published(held)
        .published(not_allowed(&image, "h2"))
        .controls(|c| c.max_updating = 1);
    let decision = setup.grant_round();
    assert_eq!(granted(&decision), ["h1"]);
    assert_eq!(decision.summary.to_publish, 0);
}

#[test]
fn a_lowered_cap_takes_no_grant_back() {
    let image = sparse("sparse.1");
    let mut setup = asking(&image, 3).controls(|c| c.max_high_impact = 3);
    assert_eq!(granted(&setup.grant_round()), ["h0", "h1", "h2"]);
    setup = setup.controls(|c| c.max_high_impact = 1);
    let decision = setup.grant_round();
    assert_eq!(granted(&decision), ["h0", "h1", "h2"]);
    assert_eq!(decision.summary.to_publish, 0);
    // As they finish, the grants go and none is handed out again until
    // fewer than one is held.
    setup = setup
        .report(on("h0", "sparse.1"))
        .report(asks("h3", "sparse.1"));
    setup = setup.machine("h3", "sparse.1");
    setup.grant_round();
    assert_eq!(granted(&setup.grant_round()), ["h1", "h2"]);
}

#[test]
fn only_machines_that_may_update_and_ask_for_their_image_count() {
    let image = sparse("sparse.1");
    let mut setup = asking(&image, 5)
        .image(sparse("sparse.2"))
        .controls(|c| {
            c.max_high_impact = 5;
            c.max_updating = 3;
        })
        .record(MdbRecord {
            disable_updates: true,
            ..MdbRecord::new("h0").requiring(name("sparse.1"))
        })
        // h1 asks for an image it is no longer required to carry.
        .machine("h1", "sparse.2")
        .report(StateReport {
            updating: true,
            ..asks("h3", "sparse.1")
        });
    let decision = setup.grant_round();
    // h3 reports an update, h1 and h2 took the other slots, h4 waits.
    assert_eq!(
        decision.machine("h4").unwrap().held,
        Some(HoldReason::WaitingForSlot)
    );
    assert_eq!(granted(&decision), ["h2", "h3"]);
    assert!(!decision.machine("h1").unwrap().high_impact_requested);
    // h0 (held by its MDB record) and h4 ask and wait.
    assert_eq!(decision.summary.waiting_for_high_impact, 2);

    // The emergency stop withdraws every grant.
    setup = setup.controls(disabled);
    let decision = setup.grant_round();
    assert_eq!(granted(&decision), Vec::<&str>::new());
    assert!(setup.holders().is_empty());
}

#[test]
fn with_a_cap_of_one_the_fleet_takes_turns() {
    let image = sparse("sparse.1");
    let mut setup = asking(&image, 4);
    let mut served = Vec::new();
    for _ in 0..20 {
        setup.grant_round();
        let holders = setup.holders();
        assert!(holders.len() <= 1, "{holders:?}");
        // The holder updates and stops asking.
        for host in holders {
            served.push(host.clone());
            setup = setup.report(on(&host, "sparse.1"));
        }
    }
    assert_eq!(served, ["h0", "h1", "h2", "h3"]);
}

#[test]
fn a_grant_is_news_to_publish() {
    let image = sparse("sparse.1");
    let a = allowed(&image, "h0");
    let mut b = a.clone();
    b.high_impact_granted = true;
    assert!(!same_desired(&a, &b));
    b.high_impact_granted = false;
    b.issued = Some("2026-11-26T09:00:00Z".into());
    assert!(same_desired(&a, &b));
}
