//! Following a machine's desired state against a real server: every state
//! published for a machine reaches its follower, although a publish's cue
//! (the subscription's copy) can reach the agent before the stream has
//! stored the message the agent then reads.

use std::time::Duration;

use dom_bus::{BusError, DesiredMessage, Published};
use dom_model::DesiredState;
use dom_tests::connect_bare;
use dom_tests::NatsServer;
use futures::stream::BoxStream;
use futures::StreamExt;
use tokio::sync::mpsc::UnboundedReceiver;

type Follow = BoxStream<'static, Result<DesiredMessage, BusError>>;

/// The next desired state followed; none within 20 s fails the test.
async fn next_state(follow: &mut Follow) -> DesiredMessage {
    tokio::time::timeout(Duration::from_secs(20), follow.next())
        .await
        .expect("a desired state within 20 s")
        .expect("the follow goes on")
        .expect("no error")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_follower_sees_the_state_published_for_it() {
    // Many agents, each on its own connection, all told at once: the
    // race between a cue and the store shows up among them, as in a fleet.
    const HOSTS: usize = 200;
    const ROUNDS: u64 = 3;
    let server = NatsServer::start().unwrap();
    let dominator = connect_bare(&server, "dominator").await;
    dominator.ensure_streams().await.unwrap();
    let mut followers = Vec::new();
    for i in 0..HOSTS {
        let agent = connect_bare(&server, &format!("agent-{i}")).await;
        let follow = agent
            .follow_desired(&format!("host-{i:04}"), None)
            .await
            .unwrap();
        followers.push((agent, follow));
    }
    for round in 1..=ROUNDS {
        let publishes = (0..HOSTS).map(|i| {
            let dominator = dominator.clone();
            async move {
                let payload = format!("round {round}").into_bytes().into();
                dominator
                    .publish_desired_payload(&format!("host-{i:04}"), payload)
                    .await
                    .unwrap()
            }
        });
        let sequences = futures::future::join_all(publishes).await;
        for (i, ((_, follow), sequence)) in followers.iter_mut().zip(sequences).enumerate() {
            // Nothing else is published for this host: a follower that
            // missed this state would wait for ever.
            let seen = next_state(follow).await;
            assert_eq!(seen.sequence, sequence, "host-{i:04}, round {round}");
        }
    }
}

/// The sequence of the next desired state a follower in the background
/// passed on; none within 20 s fails the test.
async fn next_followed(followed: &mut UnboundedReceiver<u64>) -> Option<u64> {
    tokio::time::timeout(Duration::from_secs(20), followed.recv())
        .await
        .expect("a desired state within 20 s")
}

#[tokio::test]
async fn a_cue_for_a_message_no_stream_stored_changes_nothing() {
    let server = NatsServer::start().unwrap();
    let dominator = connect_bare(&server, "dominator").await;
    dominator.ensure_streams().await.unwrap();
    let agent = connect_bare(&server, "agent").await;
    // Followed all the time, as the agent does.
    let mut follow = agent.follow_desired("web1", None).await.unwrap();
    let (seen, mut followed) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Some(message) = follow.next().await {
            let _ = seen.send(message.expect("no error").sequence);
        }
    });
    let first = dominator
        .publish_desired_payload("web1", "first".into())
        .await
        .unwrap();
    assert_eq!(next_followed(&mut followed).await, Some(first));

    // Each read of the stored state is one request from the agent.
    let requests = || {
        agent
            .client
            .statistics()
            .out_messages
            .load(std::sync::atomic::Ordering::Relaxed)
    };
    let before = requests();

    // The stream refuses this one (wrong expected last sequence), but the
    // agent's subscription still gets it: a cue with nothing new stored.
    let mut headers = async_nats::HeaderMap::new();
    headers.insert("Nats-Expected-Last-Subject-Sequence", "999");
    let refused = dominator
        .js
        .publish_with_headers(dominator.subjects.desired("web1"), headers, "forged".into())
        .await
        .unwrap()
        .await;
    assert!(refused.is_err(), "the stream stored it: {refused:?}");
    // The agent reads on the cue and again after each wait, finds nothing
    // newer, and goes back to waiting for cues.
    let reads = 1 + dom_bus::agent::CUE_REREADS.len() as u64;
    dom_tests::eventually("the agent to read after the cue", || async {
        (requests() >= before + reads).then_some(())
    })
    .await;
    assert!(followed.try_recv().is_err(), "nothing followed for the cue");

    let second = dominator
        .publish_desired_payload("web1", "second".into())
        .await
        .unwrap();
    assert_eq!(next_followed(&mut followed).await, Some(second));
}

/// A dominator cut off from its server may have publishes in flight that
/// reach the stream only once it is back, after a standby took over and
/// published for the same machines. Each publish expects the last state
/// its publisher knew of, so the late one is refused and the newer state
/// stays.
#[tokio::test]
async fn a_desired_state_decided_before_a_newer_one_was_stored_is_refused() {
    let server = NatsServer::start().unwrap();
    let active = connect_bare(&server, "dominator-a").await;
    active.ensure_streams().await.unwrap();
    let standby = connect_bare(&server, "dominator-b").await;
    let image = dom_tests::sparse_record("sparse.0");
    let state = |publisher: &str| DesiredState {
        publisher: Some(publisher.to_string()),
        ..DesiredState::for_image("web1", &image)
    };

    // Nothing stored yet: only a publish expecting none is taken.
    let first = active.publish_desired_after(&state("a"), 0).await.unwrap();
    let refused = standby.publish_desired_after(&state("b"), 0).await;
    assert!(matches!(refused, Err(Published::Refused(_))), "{refused:?}");

    // The standby, having read `first`, publishes after it.
    let newer = standby
        .publish_desired_after(&state("b"), first)
        .await
        .unwrap();
    // The cut-off dominator's late publish still expects `first`.
    let late = active.publish_desired_after(&state("a"), first).await;
    let Err(Published::Refused(e)) = late else {
        panic!("the late publish was not refused: {late:?}");
    };
    assert!(e.to_string().contains("wrong last sequence"), "{e}");

    // What is stored is the standby's, as the refused one reads it back.
    let stored = active.last_desired_message("web1").await.unwrap().unwrap();
    assert_eq!(stored.sequence, newer);
    let stored = DesiredState::decode(&stored.payload).unwrap();
    assert_eq!(stored.publisher.as_deref(), Some("b"));
    assert!(active.last_desired_message("web2").await.unwrap().is_none());
}
