//! Two dominators for one fleet: the active one dies mid-rollout, the
//! standby takes over, every machine converges, and at no moment did both
//! publish desired states.

use std::time::{Duration, Instant};

use dom_model::DesiredState;
use dom_tests::{connect, eventually, wait_allowed, NatsServer};
use dominator::{Dominator, Settings};
use futures::StreamExt;

use crate::fleet_kit::{quick, sshd_source, Fleet, Machine};

fn named(id: &str) -> Settings {
    Settings {
        max_concurrent: 1,
        id: id.to_string(),
        ..quick()
    }
}

/// Waits until `dominator` says it holds the lease.
async fn wait_active(dominator: &Dominator) {
    let board = dominator.board().clone();
    eventually("the dominator active", || async {
        board.status().active.then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_standby_takes_over_mid_rollout_and_the_two_never_both_publish() {
    let server = NatsServer::start().unwrap();
    let bus = connect(&server).await;
    // Every desired state published, as it is published.
    let mut published = bus
        .client
        .subscribe(bus.subjects.all("desired"))
        .await
        .unwrap();
    let mut fleet = Fleet::on(server.url(), bus.clone(), named("dom-a")).await;
    wait_active(fleet.dominator.as_ref().unwrap()).await;
    let standby = Dominator::start(bus.clone(), named("dom-b"), None)
        .await
        .unwrap();

    let hosts = ["m0", "m1", "m2", "m3"];
    let machines: Vec<Machine> = hosts.iter().map(|h| fleet.machine(h)).collect();
    let _agents: Vec<subd::Agent> = machines.iter().map(Machine::start).collect();
    for version in 1..=2 {
        let src = sshd_source(fleet.dir.path(), version);
        fleet.add_image(&format!("v.{version}"), &src, "", "").await;
    }
    for host in hosts {
        fleet.require(host, "v.1").await;
    }
    for host in hosts {
        fleet.wait_compliant(host, "v.1").await;
    }
    assert!(!standby.board().status().active, "one active at a time");
    assert_eq!(
        standby.board().status().active_dominator.as_deref(),
        Some("dom-a")
    );

    // The rollout to v.2 goes one machine at a time; once it is under
    // way, the active dominator dies.
    for host in hosts {
        fleet.require(host, "v.2").await;
    }
    wait_allowed(&bus, "m0", "v.2").await;
    drop(fleet.dominator.take());
    let died = Instant::now();
    wait_active(&standby).await;
    let took_over = died.elapsed();
    for host in hosts {
        fleet.wait_compliant(host, "v.2").await;
    }
    eprintln!("the standby took over {took_over:?} after the active one died");

    // Who published what, in order: dom-a, then dom-b only.
    let mut publishers = Vec::new();
    while let Ok(Some(message)) =
        tokio::time::timeout(Duration::from_millis(200), published.next()).await
    {
        let state: DesiredState = serde_json::from_slice(&message.payload).unwrap();
        publishers.push(
            state
                .publisher
                .expect("a desired state names its publisher"),
        );
    }
    let switch = publishers
        .iter()
        .position(|p| p == "dom-b")
        .expect("the standby published");
    assert!(switch > 0, "{publishers:?}");
    assert!(
        publishers[..switch].iter().all(|p| p == "dom-a")
            && publishers[switch..].iter().all(|p| p == "dom-b"),
        "{publishers:?}"
    );
    assert!(standby.board().status().active);
}
