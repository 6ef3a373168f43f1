//! A fleet on a three-server cluster: streams raised to three replicas in
//! place with nothing lost, and every tool given the list of servers
//! working on through the loss of one of them.

use std::process::Command;

use dom_bus::{Bus, ConnectArgs};
use dom_store::{ContentStore, NatsStore};
use dom_tests::{eventually, repo_root, workspace_binary, NatsCluster, Run};

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
