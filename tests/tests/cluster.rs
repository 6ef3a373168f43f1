//! A fleet on a three-server cluster: streams raised to three replicas in
//! place, with an agent at work, nothing lost, every tool given the list of servers working
//! on through the loss of one of them, and a rollout that loses the server
//! leading its streams midway.

use std::process::Command;

use dom_bus::{Bus, ConnectArgs, Layout};
use dom_store::{ContentStore, NatsStore};
use dom_tests::fixtures::image_name as name;
use dom_tests::{eventually, repo_root, workspace_binary, NatsCluster, Run};
use dominator::Settings;

use crate::fleet_kit::{lead_from, quick, sshd_source, Fleet, Machine};

/// Runs the workspace binary `name` with `args` against `servers`.
fn tool(name: &str, servers: &str, args: &[&str]) -> Run {
    Run::from(
        Command::new(workspace_binary(name))
            .args(args)
            .env("DOM_SERVER", servers)
            .output()
            .unwrap_or_else(|e| panic!("{name} runs: {e}")),
    )
}

async fn connect(servers: &str) -> Bus {
    let args = ConnectArgs {
        server: servers.to_string(),
        ..ConnectArgs::default()
    };
    Bus::connect(&args, "tests").await.expect("connects")
}

/// Waits until every stream of the fleet has `replicas` copies, all
/// current.
async fn wait_replicated(bus: &Bus, replicas: usize) -> Vec<dom_bus::StreamPlace> {
    eventually(
        &format!("every stream on {replicas} current copies"),
        || async {
            let places = bus.stream_places().await.ok()?;
            places
                .iter()
                .all(|p| {
                    p.replicas == replicas
                        && p.leader.is_some()
                        && p.followers.len() == replicas - 1
                        && p.followers
                            .iter()
                            .all(|(_, current, lag)| *current && *lag == 0)
                })
                .then_some(places)
        },
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_raised_to_three_replicas_keep_everything_and_survive_a_lost_server() {
    let mut cluster = NatsCluster::start(3).unwrap();
    cluster.wait_for_jetstream().await;
    let servers = cluster.urls();

    // A fleet set up as one server would have it: one copy of each.
    let bus = connect(&servers).await;
    bus.ensure_streams().await.unwrap();
    let examples = repo_root().join("ops/examples");
    let tree = examples.join("path");
    // imagetool in-process: as a dependency of these tests, its binary
    // would be built again with other features.
    let request = imagetool::add::AddRequest::parse("sparse.0", &tree, "", "", None)
        .unwrap()
        .with_hash_cache(None);
    imagetool::add::add(&bus, request, false).await.unwrap();
    tool(
        "domtool",
        &servers,
        &["mdb", "set", "web1", "--required", "sparse.0"],
    )
    .ok();
    // A dominator and an agent at work while the streams are raised.
    let fleet = Fleet::on(servers.clone(), bus.clone(), quick()).await;
    let web1 = fleet.machine("web1");
    let _agent = web1.start();
    fleet.wait_compliant("web1", "sparse.0").await;
    let before = bus.stream_places().await.unwrap();
    assert!(before.iter().all(|p| p.replicas == 1), "{before:?}");

    // Raised in place.
    let shown = tool("domsetup", &servers, &["streams", "--replicas", "3"]).ok();
    for place in &before {
        let line = shown
            .lines()
            .find(|l| l.starts_with(&format!("{} ", place.stream)))
            .unwrap_or_else(|| panic!("{} listed: {shown}", place.stream));
        let columns: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(columns[1], "3", "{line}");
    }
    let after = wait_replicated(&bus, 3).await;
    for (was, is) in before.iter().zip(&after) {
        assert_eq!(
            (&was.stream, was.messages),
            (&is.stream, is.messages),
            "nothing lost"
        );
    }
    // Nobody noticed: the machine still reports compliance, no error.
    fleet.wait_compliant("web1", "sparse.0").await;
    let events = bus.events("web1").await.unwrap();
    assert!(
        events.iter().all(|e| e.kind != dom_model::Event::ERROR),
        "{events:?}"
    );
    // Run again, nothing changes; --show only shows.
    tool("domsetup", &servers, &["streams", "--replicas", "3"]).ok();
    let shown = tool("domsetup", &servers, &["streams", "--show"]).ok();
    assert!(!shown.contains("set up"), "{shown}");
    assert!(shown.contains(" current"), "{shown}");

    // A server goes; the tools, given the list, carry on.
    cluster.servers[0].stop();
    let moved = tool(
        "domtool",
        &servers,
        &[
            "mdb",
            "set",
            "web1",
            "--required",
            "sparse.0",
            "--disable-updates",
        ],
    );
    let moved = moved.ok();
    assert!(!moved.is_empty());
    let record = tool("domtool", &servers, &["mdb", "get", "web1"]).ok();
    assert!(record.contains("sparse.0"), "{record}");
    let after_loss = connect(&servers).await;
    let mut listed = Vec::new();
    imagetool::inspect::list(&after_loss, false, &mut listed)
        .await
        .unwrap();
    assert_eq!(String::from_utf8(listed).unwrap(), "sparse.0\n");
    let got = tempfile::tempdir().unwrap();
    let into = got.path().join("tree");
    let name = dom_tests::fixtures::image_name("sparse.0");
    imagetool::get::get(&after_loss, &name, &into)
        .await
        .unwrap();
    assert_eq!(
        std::fs::read(into.join("etc/ssh/sshd.conf")).unwrap(),
        std::fs::read(tree.join("etc/ssh/sshd.conf")).unwrap()
    );

    // Back, it catches up with what it missed.
    cluster.servers[0].restart().unwrap();
    let survivor = connect(&cluster.servers[1].url()).await;
    wait_replicated(&survivor, 3).await;
    let store = NatsStore::open(&survivor).await.unwrap();
    let image = survivor
        .image_record(&dom_tests::fixtures::image_name("sparse.0"))
        .await
        .unwrap();
    assert!(store.manifest(image.manifest).await.is_ok());
}

/// The images `host`'s update events say were applied, in order.
async fn applied_on(bus: &Bus, host: &str) -> Vec<String> {
    bus.events(host)
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.kind == dom_model::Event::UPDATE && e.details["ok"] == true)
        .filter_map(|e| e.image)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_server_lost_mid_rollout_loses_nothing_and_applies_nothing_twice() {
    let mut cluster = NatsCluster::start(3).unwrap();
    cluster.wait_for_jetstream().await;
    let servers = cluster.urls();
    let bus = connect(&servers).await;
    let three = Layout {
        replicas: Some(3),
        tags: Vec::new(),
    };
    bus.ensure_streams_laid_out(&three).await.unwrap();
    wait_replicated(&bus, 3).await;

    // Five machines on v.1; the dominator moves two at a time.
    let settings = Settings {
        max_concurrent: 2,
        ..quick()
    };
    let fleet = Fleet::on(servers.clone(), bus.clone(), settings).await;
    let hosts = ["m0", "m1", "m2", "m3", "m4"];
    let machines: Vec<Machine> = hosts.iter().map(|h| fleet.machine(h)).collect();
    let _agents: Vec<subd::Agent> = machines.iter().map(Machine::start).collect();
    for version in 1..=3 {
        let src = sshd_source(fleet.dir.path(), version);
        fleet
            .add_image(&format!("v.{version}"), &src, "", "triggers.sshd")
            .await;
    }
    for host in hosts {
        fleet.require(host, "v.1").await;
    }
    for m in &machines {
        fleet.wait_compliant(&m.host, "v.1").await;
        m.clear_calls();
    }

    // One server leads the MDB, the desired states and the objects.
    let desired = bus.subjects.desired_stream();
    let leader = bus
        .stream_places()
        .await
        .unwrap()
        .into_iter()
        .find(|p| p.stream == desired)
        .and_then(|p| p.leader)
        .expect("DOM_DESIRED has a leader");
    for stream in [bus.subjects.mdb_stream(), bus.subjects.object_stream()] {
        lead_from(&bus, &stream, &leader).await;
    }
    let victim = cluster.member(&leader).expect("the leader is one of ours");

    // The rollout to v.2 starts, and that server is killed at once.
    for host in hosts {
        fleet.require(host, "v.2").await;
    }
    cluster.servers[victim].stop();

    // Through a server still up, m4 is sent on to v.3 meanwhile.
    let survivor = cluster.servers[(victim + 1) % 3].url();
    let other = connect(&survivor).await;
    let record = dom_model::MdbRecord::new("m4").requiring(name("v.3"));
    other
        .publish_mdb("m4", record.encode().into())
        .await
        .unwrap();

    for m in &machines[..4] {
        fleet.wait_compliant(&m.host, "v.2").await;
        assert!(m.read("etc/ssh/sshd.conf").unwrap().contains("# version 2"));
    }
    fleet.wait_compliant("m4", "v.3").await;
    assert!(machines[4]
        .read("etc/ssh/sshd.conf")
        .unwrap()
        .contains("# version 3"));

    // Each update was applied once: one event and one restart of sshd
    // per image a machine moved to.
    for m in &machines {
        let applied = applied_on(&other, &m.host).await;
        let moved: Vec<&String> = applied.iter().filter(|i| *i != "v.1").collect();
        let mut distinct = moved.clone();
        distinct.dedup();
        assert_eq!(moved, distinct, "{}: {applied:?}", m.host);
        let starts = m.calls().iter().filter(|c| *c == "sshd start").count();
        assert_eq!(starts, moved.len(), "{}: {:?}", m.host, m.calls());
    }

    // Back, the server catches up.
    cluster.servers[victim].restart().unwrap();
    wait_replicated(&other, 3).await;
}
