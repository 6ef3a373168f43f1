//! Which servers of a cluster a connection uses: only those it was given.
//! One given a single server is cut off while that server is down, even
//! though the cluster announces its other members, and comes back with it.

use std::time::Duration;

use async_nats::connection::State;
use dom_bus::{Bus, ConnectArgs};
use dom_tests::{eventually, NatsCluster};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_given_one_server_of_a_cluster_does_not_move_to_the_others() {
    let mut cluster = NatsCluster::start(3).unwrap();
    cluster.wait_for_jetstream().await;
    let args = ConnectArgs {
        server: cluster.servers[0].url(),
        ..ConnectArgs::default()
    };
    let bus = Bus::connect(&args, "tests").await.unwrap();
    // By now the server has told the client of n2 and n3.
    assert!(bus.jetstream_ready().await);

    cluster.servers[0].stop();
    let connected = || async { (bus.client.connection_state() == State::Connected).then_some(()) };
    eventually("the connection lost", || async {
        connected().await.is_none().then_some(())
    })
    .await;
    // A client that took up the servers announced would be back within
    // milliseconds, on n2 or n3.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_ne!(bus.client.connection_state(), State::Connected);

    cluster.servers[0].restart().unwrap();
    eventually("the connection back on its server", connected).await;
}
