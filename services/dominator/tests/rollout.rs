//! Desired states from MDB records and images, with state reports made up
//! by the test: machines move when the MDB says so, however it is
//! published, and only as fast as the rollout cap allows.

use std::collections::{BTreeMap, BTreeSet};

use crate::common::*;
use dom_model::DesiredState;
use futures::StreamExt;

#[tokio::test]
async fn desired_states_follow_the_mdb() {
    let server = NatsServer::start().unwrap();
    let bus = connect(&server).await;
    add_image(&bus, &sparse("sparse.0")).await;
    add_image(&bus, &sparse("sparse.1")).await;
    set_mdb(&bus, "web1", "sparse.0").await;
    set_mdb(&bus, "web2.example.com", "sparse.0").await;
    let _dominator = dominator(&bus, 10).await;

    for host in ["web1", "web2.example.com"] {
        let state = wait_allowed(&bus, host, "sparse.0").await;
        assert!(state.sparse && state.filter.is_none());
        assert_eq!(state.manifest, sparse("sparse.0").manifest);
        assert!(state.issued.is_some());
    }

    // A plain core-NATS publish from the official Python client moves a
    // machine, as `nats pub` would.
    nats_py_publish(&server, "dom.mdb.web1", r#"{"RequiredImage":"sparse.1"}"#);
    wait_allowed(&bus, "web1", "sparse.1").await;
    assert_eq!(
        desired(&bus, "web2.example.com")
            .await
            .unwrap()
            .image
            .as_str(),
        "sparse.0"
    );

    // A planned image is handed out once the machine is compliant.
    bus.publish_state(&report("web1", "sparse.1", true))
        .await
        .unwrap();
    nats_py_publish(
        &server,
        "dom.mdb.web1",
        r#"{"Hostname":"web1","RequiredImage":"sparse.1","PlannedImage":"sparse.0"}"#,
    );
    let state = wait_desired(&bus, "web1", "planned sparse.0", |d| d.planned.is_some()).await;
    assert_eq!(state.planned.unwrap().image.as_str(), "sparse.0");

    // DisableUpdates holds the machine on its image.
    nats_py_publish(
        &server,
        "dom.mdb.web1",
        r#"{"RequiredImage":"sparse.1","DisableUpdates":true}"#,
    );
    wait_desired(&bus, "web1", "updates not allowed", |d| !d.updates_allowed).await;
}

#[tokio::test]
async fn max_concurrent_is_never_exceeded() {
    const MAX: usize = 2;
    let hosts: Vec<String> = (1..=7).map(|i| format!("node{i}")).collect();
    let server = NatsServer::start().unwrap();
    let bus = connect(&server).await;
    add_image(&bus, &sparse("sparse.0")).await;
    for host in &hosts {
        bus.publish_state(&report(host, "old.0", true))
            .await
            .unwrap();
        set_mdb(&bus, host, "sparse.0").await;
    }
    // Every desired state the dominator publishes, as it is published.
    let mut published = bus
        .client
        .subscribe(bus.subjects.all("desired"))
        .await
        .unwrap();
    bus.client.flush().await.unwrap();
    let _dominator = dominator(&bus, MAX).await;

    let mut latest: BTreeMap<String, DesiredState> = BTreeMap::new();
    let mut done: BTreeSet<String> = BTreeSet::new();
    let mut most = 0;
    while done.len() < hosts.len() {
        let message = tokio::time::timeout(DEADLINE, published.next())
            .await
            .expect("the rollout goes on")
            .unwrap();
        let state = DesiredState::decode(&message.payload).unwrap();
        latest.insert(state.host.clone(), state);
        let updating: Vec<&String> = latest
            .values()
            .filter(|d| d.updates_allowed && d.image.as_str() == "sparse.0")
            .map(|d| &d.host)
            .filter(|host| !done.contains(*host))
            .collect();
        assert!(
            updating.len() <= MAX,
            "{} machines updating at once: {updating:?}",
            updating.len()
        );
        most = most.max(updating.len());
        // Once every slot there can be is taken, the machines holding
        // them update and say they are done.
        if updating.len() < MAX.min(hosts.len() - done.len()) {
            continue;
        }
        for host in updating.into_iter().cloned().collect::<Vec<_>>() {
            bus.publish_state(&report(&host, "sparse.0", true))
                .await
                .unwrap();
            done.insert(host);
        }
    }
    assert_eq!(most, MAX, "the cap is used");
}

#[tokio::test]
async fn emergency_stop_holds_and_enable_resumes() {
    let server = NatsServer::start().unwrap();
    let bus = connect(&server).await;
    add_image(&bus, &sparse("sparse.0")).await;
    add_image(&bus, &sparse("sparse.1")).await;
    for host in ["web1", "web2"] {
        set_mdb(&bus, host, "sparse.0").await;
    }
    let dominator = dominator(&bus, 10).await;
    wait_allowed(&bus, "web1", "sparse.0").await;
    wait_allowed(&bus, "web2", "sparse.0").await;

    let stop = dom_model::controls::UpdatesControl::new(
        dom_model::controls::UpdatesState::Disabled,
        "bad kernel in sparse.1",
        "alice@ops1",
        "2026-11-26T09:00:00Z",
    );
    bus.publish_ctl("updates", stop.encode().into())
        .await
        .unwrap();
    for host in ["web1", "web2"] {
        wait_desired(&bus, host, "held", |d| !d.updates_allowed).await;
    }
    // A change made while stopped is handed out, but not allowed.
    set_mdb(&bus, "web1", "sparse.1").await;
    wait_desired(&bus, "web1", "sparse.1 held", |d| {
        d.image.as_str() == "sparse.1" && !d.updates_allowed
    })
    .await;
    let status = dominator.board().status();
    let summary = &status.decision.as_ref().unwrap().summary;
    assert!(
        matches!(&summary.updates, dom_model::policy::Updates::Disabled { by, .. } if by == "alice@ops1")
    );

    let go = dom_model::controls::UpdatesControl::new(
        dom_model::controls::UpdatesState::Enabled,
        "fixed",
        "alice@ops1",
        "2026-11-26T10:00:00Z",
    );
    bus.publish_ctl("updates", go.encode().into())
        .await
        .unwrap();
    wait_allowed(&bus, "web1", "sparse.1").await;
    wait_allowed(&bus, "web2", "sparse.0").await;
}
