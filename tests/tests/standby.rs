//! Two dominators for one fleet: the active one dies mid-rollout, or on a
//! cluster loses the server it is connected to, which also leads the
//! lease; the standby takes over, every machine converges, and at no
//! moment did both publish desired states.

use std::time::{Duration, Instant};

use dom_bus::Layout;
use dom_model::DesiredState;
use dom_tests::{connect, eventually, wait_allowed, NatsCluster, NatsServer};
use dominator::{Dominator, Settings};
use futures::StreamExt;

use crate::fleet_kit::{lead_from, quick, sshd_source, Fleet, Machine};

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
    let _agents = on_v1(&fleet, &hosts).await;
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
    let publishers = publishers(&mut published).await;
    handed_over_once(&publishers);
    assert!(standby.board().status().active);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_active_dominator_stopped_cleanly_hands_the_lease_on_at_once() {
    let server = NatsServer::start().unwrap();
    let bus = connect(&server).await;
    let mut fleet = Fleet::on(server.url(), bus.clone(), named("dom-a")).await;
    wait_active(fleet.dominator.as_ref().unwrap()).await;
    let holder = || async {
        bus.lease_holder(dominator::herd::LEASE)
            .await
            .map(|l| l.holder)
    };
    assert_eq!(holder().await.as_deref(), Some("dom-a"));

    // As on SIGTERM: the lease is freed before `stop` returns, where a
    // dominator that died leaves it held until it expires.
    fleet.dominator.take().unwrap().stop().await;
    assert_eq!(holder().await, None);

    let standby = Dominator::start(bus.clone(), named("dom-b"), None)
        .await
        .unwrap();
    wait_active(&standby).await;
    assert_eq!(holder().await.as_deref(), Some("dom-b"));

    // Dropped, as a crash: the lease stays with dom-b until it expires.
    drop(standby);
    assert_eq!(holder().await.as_deref(), Some("dom-b"));
}

/// Machines `hosts` with their agents, on v.1 of sshd_source, and v.2
/// added.
async fn on_v1(fleet: &Fleet, hosts: &[&str]) -> Vec<subd::Agent> {
    let machines: Vec<Machine> = hosts.iter().map(|h| fleet.machine(h)).collect();
    let agents = machines.iter().map(Machine::start).collect();
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
    agents
}

/// `publishers` is dom-a's desired states, then dom-b's only.
fn handed_over_once(publishers: &[String]) {
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
}

/// Who published each desired state `published` has seen, in order.
async fn publishers(published: &mut async_nats::Subscriber) -> Vec<String> {
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
    publishers
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn on_a_cluster_the_standby_takes_over_when_the_active_one_s_server_and_lease_leader_is_lost()
{
    let mut cluster = NatsCluster::start(3).unwrap();
    cluster.wait_for_jetstream().await;
    // Everything on three copies; each dominator connected to one server
    // only, the machines to all three.
    let [n1, n2, n3] = [0, 1, 2].map(|i| &cluster.servers[i]);
    let bus = connect(n3).await;
    let three = Layout {
        replicas: Some(3),
        tags: Vec::new(),
    };
    bus.ensure_streams_laid_out(&three).await.unwrap();
    // n1 leads the lease and the desired states: losing it costs both
    // elections.
    for stream in [bus.subjects.lease_stream(), bus.subjects.desired_stream()] {
        eventually("a leader elected", || async {
            let places = bus.stream_places().await.ok()?;
            places
                .iter()
                .find(|p| p.stream == stream)?
                .leader
                .as_ref()
                .map(|_| ())
        })
        .await;
        lead_from(&bus, &stream, "n1").await;
    }
    let mut published = bus
        .client
        .subscribe(bus.subjects.all("desired"))
        .await
        .unwrap();
    let fleet = Fleet::without_dominator(cluster.urls(), bus.clone());
    let active = Dominator::start(connect(n1).await, named("dom-a"), None)
        .await
        .unwrap();
    wait_active(&active).await;
    let standby = Dominator::start(connect(n2).await, named("dom-b"), None)
        .await
        .unwrap();

    let hosts = ["m0", "m1", "m2"];
    let _agents = on_v1(&fleet, &hosts).await;
    assert!(!standby.board().status().active, "one active at a time");

    // The rollout to v.2 starts; the server of the active dominator and
    // the lease's leader goes.
    for host in hosts {
        fleet.require(host, "v.2").await;
    }
    wait_allowed(&bus, "m0", "v.2").await;
    cluster.servers[0].stop();
    let lost = Instant::now();
    wait_active(&standby).await;
    eprintln!(
        "the standby took over {:?} after the server was lost",
        lost.elapsed()
    );
    for host in hosts {
        fleet.wait_compliant(host, "v.2").await;
    }
    assert!(!active.board().status().active, "cut off, it let go");

    let publishers = publishers(&mut published).await;
    handed_over_once(&publishers);
}
