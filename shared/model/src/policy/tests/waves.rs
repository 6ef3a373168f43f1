//! Staged rollouts: the canary, growing waves, halts, resume and abort,
//! and the controls about one machine (pause, fast update, settings,
//! default image).

use super::*;
use crate::controls::{FastUpdate, PauseControl, RolloutMachine, RolloutState};
use crate::report::{Health, HealthState};

/// `count` machines `h00`, `h01`, ... on `old`, all required to be on
/// `new`, rolled out with a canary of `canary` under a cap of 10.
fn moving(old: &ImageRecord, new: &ImageRecord, count: usize, canary: usize) -> Setup {
    (0..count)
        .fold(fleet().image(old.clone()).image(new.clone()), |s, i| {
            let host = format!("h{i:02}");
            s.machine(&host, new.name.as_str())
                .report(on(&host, old.name.as_str()))
        })
        .controls(|c| {
            c.rollout.canary = Canary::Machines(canary);
            c.rollout.halt_after = 1;
        })
}

fn told_to_move<'a>(decision: &'a Decision, image: &ImageRecord) -> Vec<&'a str> {
    decision
        .machines
        .iter()
        .filter(|m| {
            m.desired
                .as_ref()
                .is_some_and(|d| d.image == image.name && d.updates_allowed)
        })
        .map(|m| m.host.as_str())
        .collect()
}

/// The agent of `host` reports it applied `image`, and how its health
/// check went.
fn arrived(setup: Setup, host: &str, image: &str, from: &str, state: HealthState) -> Setup {
    let mut report = on(host, image);
    report.last_update = Some(UpdateResult {
        image: image.into(),
        from: Some(from.into()),
        ok: true,
        ..UpdateResult::default()
    });
    report.health = Some(Health {
        image: image.into(),
        state,
        message: match state {
            HealthState::Unhealthy => "curl: (7) connection refused".into(),
            _ => String::new(),
        },
        ..Health::default()
    });
    setup.report(report)
}

fn hosts(range: std::ops::Range<usize>) -> Vec<String> {
    range.map(|i| format!("h{i:02}")).collect()
}

#[test]
fn a_new_image_goes_to_the_canary_first_and_the_rest_wait_for_the_next_wave() {
    let (old, new) = (sparse("web.1"), sparse("web.2"));
    let mut setup = moving(&old, &new, 20, 2);
    let decision = setup.round();
    assert_eq!(told_to_move(&decision, &new), ["h00", "h01"]);
    let h05 = decision.machine("h05").unwrap();
    assert_eq!(
        h05.held,
        Some(HoldReason::WaitingForWave {
            image: new.name.clone(),
            wave: 2
        })
    );
    assert!(h05.held.as_ref().unwrap().to_string().contains("wave 2"));
    let rollout = decision.rollout("web.2").unwrap();
    assert_eq!(rollout.phase, RolloutPhase::Rolling);
    assert_eq!(
        (rollout.wave, rollout.wave_end, rollout.machines),
        (1, 2, 20)
    );
    assert_eq!((rollout.moving, rollout.waiting, rollout.done), (2, 18, 0));
    // Nothing more moves while the canary is still on its way.
    let again = setup.round();
    assert_eq!(told_to_move(&again, &new), ["h00", "h01"]);
    assert!(again.halts.is_empty());
}

#[test]
fn each_wave_starts_once_the_one_before_is_healthy_and_then_the_cap_alone_limits() {
    let (old, new) = (sparse("web.1"), sparse("web.2"));
    let mut setup = moving(&old, &new, 20, 2);
    setup.round();
    // One of the canary is healthy, the other still checking: no wave 2.
    setup = arrived(setup, "h00", "web.2", "web.1", HealthState::Healthy);
    setup = arrived(setup, "h01", "web.2", "web.1", HealthState::Checking);
    assert_eq!(told_to_move(&setup.round(), &new).len(), 2);
    // Both healthy: wave 2 is 4 times the canary.
    setup = arrived(setup, "h01", "web.2", "web.1", HealthState::Healthy);
    let decision = setup.round();
    assert_eq!(told_to_move(&decision, &new), hosts(0..10));
    let rollout = decision.rollout("web.2").unwrap();
    assert_eq!((rollout.wave, rollout.wave_end, rollout.done), (2, 10, 2));
    // Wave 2 healthy: the next wave is as large as the cap, so from there
    // the rest move as slots free up, as without waves.
    for host in hosts(2..10) {
        setup = arrived(setup, &host, "web.2", "web.1", HealthState::Healthy);
    }
    let decision = setup.round();
    assert_eq!(told_to_move(&decision, &new), hosts(0..20));
    assert_eq!(decision.summary.updating, 10);
    for host in hosts(10..20) {
        setup = arrived(setup, &host, "web.2", "web.1", HealthState::Healthy);
    }
    let decision = setup.round();
    let rollout = decision.rollout("web.2").unwrap();
    assert_eq!(rollout.phase, RolloutPhase::Done);
    assert_eq!((rollout.done, rollout.machines), (20, 20));
}

#[test]
fn an_unhealthy_canary_halts_the_rollout_and_nothing_more_moves() {
    let (old, new) = (sparse("web.1"), sparse("web.2"));
    let mut setup = moving(&old, &new, 20, 2).controls(|c| c.rollout.halt_after = 3);
    setup.round();
    setup = arrived(setup, "h00", "web.2", "web.1", HealthState::Unhealthy);
    // h01 still checking: with --halt-after 3, one failure waits for the
    // wave to finish.
    setup = arrived(setup, "h01", "web.2", "web.1", HealthState::Checking);
    let decision = setup.round();
    assert!(decision.halts.is_empty());
    assert_eq!(told_to_move(&decision, &new).len(), 2);
    setup = arrived(setup, "h01", "web.2", "web.1", HealthState::TimedOut);
    let decision = setup.round();
    let [halt] = &decision.halts[..] else {
        panic!("one halt: {:?}", decision.halts)
    };
    assert_eq!(halt.image, new.name);
    assert_eq!(halt.state, RolloutState::Halted);
    assert!(
        halt.reason.contains("2 of the 2 machines"),
        "{}",
        halt.reason
    );
    let failed: Vec<(&str, Option<&str>)> = halt
        .machines
        .iter()
        .map(|m| (m.host.as_str(), m.from.as_ref().map(|f| f.as_str())))
        .collect();
    assert_eq!(failed, [("h00", Some("web.1")), ("h01", Some("web.1"))]);
    assert!(
        halt.machines[0].why.contains("curl: (7)"),
        "{:?}",
        halt.machines
    );
    assert!(
        halt.machines[1].why.contains("timed out"),
        "{:?}",
        halt.machines
    );
    assert_eq!(told_to_move(&decision, &new).len(), 2);
    let rollout = decision.rollout("web.2").unwrap();
    assert!(rollout.halts_now && rollout.phase == RolloutPhase::Halted);
    // The halt published, the next rounds hold every waiting machine.
    setup = setup.controls(|c| {
        c.rollouts.insert(new.name.clone(), halt.clone());
    });
    let decision = setup.round();
    assert!(decision.halts.is_empty());
    assert_eq!(told_to_move(&decision, &new), ["h00", "h01"]);
    let held = decision.machine("h02").unwrap().held.clone().unwrap();
    assert!(matches!(
        held,
        HoldReason::RolloutStopped {
            phase: RolloutPhase::Halted,
            ..
        }
    ));
    assert!(held.to_string().contains("halted"), "{held}");
    let h00 = decision.machine("h00").unwrap();
    assert!(
        h00.error.as_deref().unwrap().contains("curl: (7)"),
        "{h00:?}"
    );
}

#[test]
fn the_default_halts_on_the_first_failed_update() {
    let (old, new) = (sparse("web.1"), sparse("web.2"));
    let mut setup = moving(&old, &new, 20, 1);
    setup.round();
    let mut report = planned("h00", "web.2", false);
    report.image = Some("web.1".into());
    report.last_update = Some(UpdateResult {
        image: "web.2".into(),
        from: Some("web.1".into()),
        ok: false,
        error: Some("cannot write /etc/motd".into()),
        ..UpdateResult::default()
    });
    setup = setup.report(report);
    let decision = setup.round();
    let halt = &decision.halts[0];
    assert!(halt.reason.contains("--halt-after 1"), "{}", halt.reason);
    assert!(
        halt.machines[0].why.contains("cannot write"),
        "{:?}",
        halt.machines
    );
}

#[test]
fn a_resume_forgives_the_failures_it_names_and_the_next_wave_starts() {
    let (old, new) = (sparse("web.1"), sparse("web.2"));
    let mut setup = moving(&old, &new, 20, 2);
    setup.round();
    setup = arrived(setup, "h00", "web.2", "web.1", HealthState::Unhealthy);
    setup = arrived(setup, "h01", "web.2", "web.1", HealthState::Healthy);
    let halt = setup.round().halts[0].clone();
    let resume = RolloutControl {
        state: RolloutState::Resumed,
        by: "alice@ops1".into(),
        ..halt
    };
    setup = setup.controls(|c| {
        c.rollouts.insert(new.name.clone(), resume);
    });
    let decision = setup.round();
    assert!(decision.halts.is_empty());
    assert_eq!(told_to_move(&decision, &new), hosts(0..10));
    let rollout = decision.rollout("web.2").unwrap();
    assert_eq!(rollout.phase, RolloutPhase::Rolling);
    assert!(
        rollout.failed[0].why.contains("forgiven"),
        "{:?}",
        rollout.failed
    );
    // A new failure halts it again, naming the forgiven one too, so
    // that the next resume forgives both.
    setup = arrived(setup, "h05", "web.2", "web.1", HealthState::Unhealthy);
    let again = setup.round();
    let hosts: Vec<&str> = again.halts[0]
        .machines
        .iter()
        .map(|m| m.host.as_str())
        .collect();
    assert_eq!(hosts, ["h00", "h05"]);
}

#[test]
fn an_abort_with_revert_sends_the_machines_it_names_back() {
    let (old, new) = (sparse("web.1"), sparse("web.2"));
    let mut setup = moving(&old, &new, 4, 2);
    setup.round();
    setup = arrived(setup, "h00", "web.2", "web.1", HealthState::Unhealthy);
    let abort = RolloutControl {
        canary: Default::default(),
        v: 1,
        image: new.name.clone(),
        state: RolloutState::Aborted,
        reason: "bad build".into(),
        machines: vec![RolloutMachine {
            host: "h00".into(),
            from: Some(old.name.clone()),
            why: String::new(),
        }],
        revert: true,
        by: "alice@ops1".into(),
        when: "t".into(),
    };
    setup = setup.controls(|c| {
        c.rollouts.insert(new.name.clone(), abort.clone());
    });
    let decision = setup.round();
    let h00 = decision.machine("h00").unwrap();
    assert_eq!(h00.desired.as_ref().unwrap().image, old.name);
    assert_eq!(h00.required, Some(old.name.clone()));
    let h02 = decision.machine("h02").unwrap();
    assert!(matches!(
        h02.held,
        Some(HoldReason::RolloutStopped {
            phase: RolloutPhase::Aborted,
            ..
        })
    ));
    // Without --revert, the machine stays where the rollout put it.
    setup = setup.controls(|c| {
        c.rollouts.insert(
            new.name.clone(),
            RolloutControl {
                revert: false,
                ..abort
            },
        );
    });
    let decision = setup.round();
    assert_eq!(
        decision
            .machine("h00")
            .unwrap()
            .desired
            .as_ref()
            .unwrap()
            .image,
        new.name
    );
}

#[test]
fn a_fast_update_moves_one_machine_past_the_waves_and_the_halt() {
    let (old, new) = (sparse("web.1"), sparse("web.2"));
    let mut setup = moving(&old, &new, 6, 1);
    setup.round();
    setup = arrived(setup, "h00", "web.2", "web.1", HealthState::Unhealthy);
    let halt = setup.round().halts[0].clone();
    setup = setup.controls(|c| {
        c.rollouts.insert(new.name.clone(), halt);
        c.fast_update.insert("h04".into(), new.name.clone());
    });
    let decision = setup.round();
    assert_eq!(told_to_move(&decision, &new), ["h00", "h04"]);
    let _ = FastUpdate {
        v: 1,
        host: "h04".into(),
        image: new.name.clone(),
        by: String::new(),
        when: String::new(),
    };
}

#[test]
fn a_pause_holds_the_machine_until_it_runs_out_within_the_cap() {
    let image = sparse("web.2");
    let pause = PauseControl {
        v: 1,
        host: "web1".into(),
        until: "later".into(),
        until_unix: NOW + 7200,
        reason: "debugging a leak".into(),
        by: "alice@ops1".into(),
        when: "now".into(),
        when_unix: NOW - 60,
    };
    let setup = fleet()
        .image(image.clone())
        .machine("web1", "web.2")
        .controls(|c| {
            c.paused.insert("web1".into(), pause.clone());
        });
    let web1 = setup.status("web1");
    assert!(
        matches!(&web1.held, Some(HoldReason::Paused { reason, .. }) if reason == "debugging a leak")
    );
    assert!(!web1.updates_allowed());
    assert!(web1.held.unwrap().to_string().contains("alice@ops1"));
    // Past its end, the machine goes.
    let later = decide(&setup.0, NOW + 7200);
    assert!(later.machine("web1").unwrap().updates_allowed());
    // A pause longer than the cap ends at the cap.
    let capped = setup.controls(|c| c.max_pause_s = 600);
    let decision = decide(&capped.0, NOW + 600);
    assert!(decision.machine("web1").unwrap().updates_allowed());
}

#[test]
fn the_default_image_applies_to_machines_naming_none() {
    let image = sparse("base.3");
    let setup = fleet()
        .image(image.clone())
        .record(MdbRecord::new("bare1"))
        .machine("web1", "base.3");
    assert!(setup.status("bare1").desired.is_none());
    let setup = setup.controls(|c| c.default_image = Some(image.name.clone()));
    let bare1 = setup.status("bare1");
    assert_eq!(bare1.desired.unwrap().image, image.name);
    assert_eq!(bare1.required, Some(image.name.clone()));
}

#[test]
fn a_machine_s_own_settings_go_over_the_fleet_s() {
    use crate::desired::{AgentConfig, ScanPercent};
    let image = sparse("base.3");
    let setup = fleet()
        .image(image)
        .machine("web1", "base.3")
        .machine("web2", "base.3")
        .controls(|c| {
            c.agent_config = AgentConfig {
                scan_speed_percent: Some(ScanPercent::whole(2)),
                fetch_rate: Some(1 << 20),
            };
            c.host_config.insert(
                "web2".into(),
                AgentConfig {
                    scan_speed_percent: Some("0.1".parse().unwrap()),
                    fetch_rate: None,
                },
            );
        });
    let config = |host: &str| setup.status(host).desired.unwrap().config;
    assert_eq!(
        config("web1").scan_speed_percent,
        Some(ScanPercent::whole(2))
    );
    assert_eq!(config("web2").scan_speed_percent.unwrap().as_f64(), 0.1);
    assert_eq!(config("web2").fetch_rate, Some(1 << 20));
}

#[test]
fn a_machine_that_never_reported_is_no_canary_and_gets_its_image_at_once() {
    let (old, new) = (sparse("web.1"), sparse("web.2"));
    let decision = moving(&old, &new, 4, 1)
        .machine("a-new-one", "web.2")
        .decide();
    assert_eq!(told_to_move(&decision, &new), ["a-new-one", "h00"]);
    let rollout = decision.rollout("web.2").unwrap();
    assert_eq!(
        (rollout.machines, rollout.moving, rollout.waiting),
        (4, 1, 3)
    );
}

#[test]
fn a_machine_told_to_move_that_never_answers_holds_no_wave_back() {
    let (old, new) = (sparse("web.1"), sparse("web.2"));
    let mut setup = moving(&old, &new, 6, 1);
    setup.round();
    // h00, the canary, is down: its report still names the old image.
    let decision = decide(&setup.0, NOW + 299);
    assert_eq!(told_to_move(&decision, &new), ["h00"]);
    let decision = decide(&setup.0, NOW + 300);
    assert_eq!(told_to_move(&decision, &new), hosts(0..5));
    let rollout = decision.rollout("web.2").unwrap();
    assert_eq!(rollout.unresponsive, ["h00"]);
    assert_eq!(rollout.phase, RolloutPhase::Rolling);
    // One that said it heard (its report names the new image) is moving,
    // however long it takes.
    let mut heard = on("h00", "web.1");
    heard.desired_image = Some("web.2".into());
    heard.compliant = false;
    setup = setup.report(heard);
    let decision = decide(&setup.0, NOW + 3600);
    assert_eq!(told_to_move(&decision, &new), ["h00"]);
}

#[test]
fn an_image_s_own_canary_goes_over_the_fleet_s_and_its_halt_keeps_it() {
    let (old, new) = (sparse("web.1"), sparse("web.2"));
    let own = RolloutControl {
        v: 1,
        image: new.name.clone(),
        state: RolloutState::Configured,
        reason: String::new(),
        machines: vec![],
        revert: false,
        canary: Some("15%".into()),
        by: "alice@ops1".into(),
        when: "t".into(),
    };
    let mut setup = moving(&old, &new, 20, 1).controls(|c| {
        c.rollouts.insert(new.name.clone(), own);
    });
    let decision = setup.round();
    assert_eq!(told_to_move(&decision, &new), hosts(0..3), "15% of 20");
    assert_eq!(
        decision.rollout("web.2").unwrap().phase,
        RolloutPhase::Rolling
    );
    setup = arrived(setup, "h00", "web.2", "web.1", HealthState::Unhealthy);
    let halt = &setup.round().halts[0];
    assert_eq!(halt.canary.as_deref(), Some("15%"));
}
