//! An image's record published again with new tags (`imagetool tag`) is
//! the same image: machines on it get no new desired state, and later
//! changes to it (an expiry) still apply.

use crate::common::*;

#[tokio::test]
async fn retagging_an_image_moves_no_machine_and_later_changes_still_apply() {
    let server = NatsServer::start().unwrap();
    let bus = connect(&server).await;
    add_image(&bus, &sparse("sparse.0")).await;
    set_mdb(&bus, "web1", "sparse.0").await;
    let dominator = dominator(&bus, 10).await;
    let first = wait_allowed(&bus, "web1", "sparse.0").await;
    let before = desired_sequence(&bus).await;
    let now = dom_bus::stamp::now_unix();

    let board = dominator.board().clone();
    let rounds = board.status().rounds;
    let tags = [("stage".to_string(), "prod".to_string())];
    let tagged = bus
        .change_image_tags(&name("sparse.0"), &tags, &[], now)
        .await
        .unwrap();
    assert_eq!(tagged.v, 3);
    // The dominator decides again on the tagged record, and publishes
    // nothing for it.
    tokio::time::timeout(DEADLINE, board.wait_for(|s| s.rounds > rounds))
        .await
        .expect("a round after the tags changed");
    assert_eq!(desired_sequence(&bus).await, before, "nothing published");
    assert_eq!(desired(&bus, "web1").await, Some(first));

    // An expiry change after the tags is still taken: the tagged record
    // is the one the dominator holds.
    // An expiry change after the tags is still taken.
    bus.change_image_expiry(&name("sparse.0"), Some(("now".into(), now)), now - 1)
        .await
        .unwrap();
    let event = wait_event(&bus, "web1", "error", |e| e.message.contains("expired")).await;
    assert!(event.message.contains("sparse.0"), "{}", event.message);
}
