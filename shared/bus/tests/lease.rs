//! A lease's holder cut off from the servers: it says it stands by once
//! its lease could end, while its renewal is still unanswered.

use std::time::{Duration, Instant};

use dom_bus::lease::LEASE_TTL;
use dom_bus::Standing;
use dom_tests::{connect, NatsServer};

#[tokio::test]
async fn a_holder_cut_off_from_the_servers_stands_by_before_its_lease_could_end() {
    let mut server = NatsServer::start().unwrap();
    let bus = connect(&server).await;
    let (mut standing, _release) = bus.hold_lease("test", "a");
    tokio::time::timeout(
        Duration::from_secs(10),
        standing.wait_for(|s| matches!(s, Standing::Active { .. })),
    )
    .await
    .expect("the lease taken")
    .unwrap();
    server.stop();
    let lost = Instant::now();
    tokio::time::timeout(
        LEASE_TTL,
        standing.wait_for(|s| matches!(s, Standing::Standby { .. })),
    )
    .await
    .expect("standing by before the lease could end")
    .unwrap();
    assert!(lost.elapsed() < LEASE_TTL);
}
