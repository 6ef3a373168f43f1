//! The fleet feed against a real server: the last message of every subject
//! is replayed, the end of the replay is marked, new messages follow, and
//! the feed survives a server restart.

use std::time::Duration;

use bytes::Bytes;
use dom_bus::{Bus, ConnectArgs, FleetKind, FleetMessage, FleetUpdate};
use dom_tests::connect;
use dom_tests::NatsServer;
use futures::{Stream, StreamExt};

async fn next<S>(feed: &mut S) -> FleetUpdate
where
    S: Stream<Item = Result<FleetUpdate, dom_bus::BusError>> + Unpin,
{
    tokio::time::timeout(Duration::from_secs(20), feed.next())
        .await
        .expect("an update within 20 s")
        .expect("the feed goes on")
        .expect("no error")
}

fn message(update: FleetUpdate) -> FleetMessage {
    match update {
        FleetUpdate::Message(m) => m,
        FleetUpdate::CaughtUp => panic!("expected a message, got the end of the replay"),
    }
}

#[tokio::test]
async fn replays_the_last_of_each_subject_then_follows() {
    let mut server = NatsServer::start().unwrap();
    let bus = connect(&server).await;
    bus.publish_mdb("web1", Bytes::from_static(br#"{"RequiredImage":"a"}"#))
        .await
        .unwrap();
    bus.publish_mdb("web1", Bytes::from_static(br#"{"RequiredImage":"b"}"#))
        .await
        .unwrap();
    bus.publish_mdb(
        "db1.example.com",
        Bytes::from_static(br#"{"RequiredImage":"c"}"#),
    )
    .await
    .unwrap();

    let feed = bus
        .follow_fleet(&[FleetKind::Mdb, FleetKind::Ctl])
        .await
        .unwrap();
    let mut feed = Box::pin(feed);
    let mut replayed = [
        message(next(&mut feed).await),
        message(next(&mut feed).await),
    ];
    replayed.sort_by(|a, b| a.name.cmp(&b.name));
    assert_eq!(replayed[0].name, "db1.example.com");
    assert_eq!(replayed[1].name, "web1");
    assert_eq!(&replayed[1].payload[..], br#"{"RequiredImage":"b"}"#);
    assert!(matches!(next(&mut feed).await, FleetUpdate::CaughtUp));

    bus.publish_ctl("updates", Bytes::from_static(b"{}"))
        .await
        .unwrap();
    let new = message(next(&mut feed).await);
    assert_eq!((new.kind, new.name.as_str()), (FleetKind::Ctl, "updates"));

    // A server restart: the feed picks up where it was.
    server.restart().unwrap();
    let mut bus2 = None;
    for _ in 0..100 {
        if let Ok(b) = Bus::connect(
            &ConnectArgs {
                server: server.url(),
                ..Default::default()
            },
            "fleet-test-2",
        )
        .await
        {
            bus2 = Some(b);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    bus2.unwrap()
        .publish_mdb("web2", Bytes::new())
        .await
        .unwrap();
    let after = message(next(&mut feed).await);
    assert_eq!((after.kind, after.name.as_str()), (FleetKind::Mdb, "web2"));
    assert!(after.payload.is_empty());

    let snapshot = bus.last_per_subject(FleetKind::Mdb).await.unwrap();
    let names: Vec<_> = snapshot.iter().map(|m| m.name.as_str()).collect();
    assert_eq!(names, ["db1.example.com", "web1", "web2"]);
}

#[tokio::test]
async fn an_empty_fleet_is_caught_up_at_once() {
    let server = NatsServer::start().unwrap();
    let bus = connect(&server).await;
    let mut feed = Box::pin(bus.follow_fleet(&FleetKind::ALL).await.unwrap());
    assert!(matches!(next(&mut feed).await, FleetUpdate::CaughtUp));
    assert!(bus
        .last_per_subject(FleetKind::State)
        .await
        .unwrap()
        .is_empty());
}

/// Reading without a consumer, as builders, agents and viewers must: every
/// message of a filter from a sequence on, over more pages than one, and
/// the last message of each subject.
#[tokio::test]
async fn streams_are_read_in_pages_without_a_consumer() {
    let server = NatsServer::start().unwrap();
    let bus = connect(&server).await;
    let hosts = 2_500;
    for round in 0..2 {
        let publishes = (0..hosts).map(|i| {
            let bus = bus.clone();
            async move {
                let payload = Bytes::from(format!("{{\"round\":{round}}}"));
                bus.publish_mdb(&format!("web{i}"), payload).await.unwrap()
            }
        });
        futures::future::join_all(publishes).await;
    }
    let stream = bus.subjects.mdb_stream();

    let all: Vec<_> = bus
        .read_stream(&stream, &bus.subjects.all("mdb"), 1)
        .map(|m| m.unwrap())
        .collect()
        .await;
    assert_eq!(all.len(), 2 * hosts);
    assert!(all.windows(2).all(|w| w[0].sequence < w[1].sequence));
    assert!(all.iter().all(|m| m.published.is_some()));

    let from = all[4_000].sequence;
    let rest = bus.read_stream(&stream, &bus.subjects.all("mdb"), from);
    assert_eq!(rest.count().await, 1_000);

    let one: Vec<_> = bus
        .read_stream(&stream, &bus.subjects.mdb("web7"), 1)
        .map(|m| m.unwrap().payload)
        .collect()
        .await;
    assert_eq!(
        one,
        vec![Bytes::from("{\"round\":0}"), Bytes::from("{\"round\":1}")]
    );

    let last = bus.last_per_subject(FleetKind::Mdb).await.unwrap();
    assert_eq!(last.len(), hosts);
    assert!(last.iter().all(|m| m.payload == "{\"round\":1}"));

    let none = bus.read_stream(&stream, &bus.subjects.mdb("nobody"), 1);
    assert_eq!(none.count().await, 0);
}
