//! Resolving the required image: unknown, deleted and expired images,
//! and machines left as they are.

use super::*;

#[test]
fn an_unknown_image_is_an_error_and_the_machine_is_left_alone() {
    let old = sparse("sparse.0");
    let base = fleet().image(old.clone()).machine("web1", "sparse.1");
    let status = base.status("web1");
    assert_eq!(
        status.error.as_deref(),
        Some("image sparse.1 does not exist")
    );
    assert_eq!((status.desired, status.publish), (None, false));

    let last = allowed(&old, "web1");
    let status = base
        .published(last.clone())
        .report(on("web1", "sparse.0"))
        .status("web1");
    assert_eq!(status.desired, Some(last));
    assert!(!status.publish && !status.updating && status.held.is_none());
    assert_eq!(status.current.as_deref(), Some("sparse.0"));
}

#[test]
fn deleted_and_expired_images_are_errors() {
    let setup = fleet()
        .image(sparse("gone.0"))
        .message(tombstone("gone.0"))
        .machine("web1", "gone.0");
    let error = setup.status("web1").error.unwrap();
    assert_eq!(
        error,
        "image gone.0 was deleted at 2026-11-26T10:00:00Z by root@build1"
    );

    let mut expiring = sparse("test.0");
    expiring.expires = Some("2027-01-15T08:00:00Z".into());
    expiring.expires_unix = Some(NOW);
    let setup = fleet().image(expiring.clone()).machine("web1", "test.0");
    let status = setup.status("web1");
    assert_eq!(
        status.error.as_deref(),
        Some("image test.0 expired at 2027-01-15T08:00:00Z")
    );
    assert!(status.desired.is_none());
    expiring.expires_unix = Some(NOW + 1);
    let status = fleet()
        .image(expiring)
        .machine("web1", "test.0")
        .status("web1");
    assert!(status.error.is_none() && status.publish);
}

#[test]
fn a_machine_converges_once_its_image_appears() {
    let mut setup = fleet().machine("web1", "sparse.1");
    assert!(setup.round().machine("web1").unwrap().error.is_some());
    setup = setup.image(sparse("sparse.1"));
    let status = setup.round().machine("web1").unwrap().clone();
    assert!(status.error.is_none() && status.publish && status.updates_allowed());
    assert_eq!(status.desired.unwrap().image, name("sparse.1"));
}

#[test]
fn names_are_never_reused() {
    let mut fleet = Fleet::default();
    fleet.add_image(ImageMessage::Record(sparse("x")));
    let mut other = sparse("x");
    other.manifest = ObjectId::of(b"other");
    fleet.add_image(ImageMessage::Record(other.clone()));
    assert_eq!(fleet.resolve(&name("x"), NOW), Ok(&sparse("x")));
    fleet.add_image(tombstone("x"));
    fleet.add_image(ImageMessage::Record(other));
    assert!(matches!(
        fleet.resolve(&name("x"), NOW),
        Err(ImageProblem::Deleted { .. })
    ));
}

#[test]
fn a_later_record_changes_the_expiry_and_nothing_else() {
    let mut fleet = Fleet::default();
    fleet.add_image(ImageMessage::Record(sparse("x")));
    let mut expiring = sparse("x");
    expiring.expires = Some("2027-01-15T08:00:00Z".into());
    expiring.expires_unix = Some(NOW);
    fleet.add_image(ImageMessage::Record(expiring.clone()));
    assert!(matches!(
        fleet.resolve(&name("x"), NOW),
        Err(ImageProblem::Expired { .. })
    ));
    // Content and expiry changed together: ignored, whatever the expiry.
    let mut other = sparse("x");
    other.manifest = ObjectId::of(b"other");
    fleet.add_image(ImageMessage::Record(other));
    assert!(fleet.resolve(&name("x"), NOW).is_err());
    // Back to never expiring.
    fleet.add_image(ImageMessage::Record(sparse("x")));
    assert_eq!(fleet.resolve(&name("x"), NOW), Ok(&sparse("x")));
}

#[test]
fn a_later_record_with_new_tags_is_the_same_image_and_moves_no_machine() {
    let old = sparse("sparse.0");
    let mut tagged = old.clone();
    tagged.metadata.tags.insert("stage".into(), "prod".into());
    tagged.v = tagged.schema_version();
    let status = fleet()
        .image(old.clone())
        .image(tagged.clone())
        .machine("web1", "sparse.0")
        .published(allowed(&old, "web1"))
        .report(on("web1", "sparse.0"))
        .status("web1");
    assert_eq!(status.desired, Some(allowed(&old, "web1")));
    assert!(!status.publish && !status.updating && status.compliant);
    // The tags are taken, and a later expiry change still applies.
    let mut fleet = Fleet::default();
    fleet.add_image(ImageMessage::Record(old));
    fleet.add_image(ImageMessage::Record(tagged.clone()));
    assert_eq!(fleet.resolve(&name("sparse.0"), NOW), Ok(&tagged));
    let mut expiring = tagged.clone();
    expiring.expires_unix = Some(NOW);
    fleet.add_image(ImageMessage::Record(expiring));
    assert!(fleet.resolve(&name("sparse.0"), NOW).is_err());
}

#[test]
fn a_machine_without_an_image_has_nothing_to_do() {
    let setup = fleet().record(MdbRecord::new("spare1"));
    let decision = setup.decide();
    let status = decision.machine("spare1").unwrap();
    assert!(status.error.is_none() && status.desired.is_none() && !status.publish);
    assert!(!status.compliant && !status.updating);
    assert_eq!(decision.summary.without_image, 1);
}

#[test]
fn a_stop_still_reaches_a_machine_left_alone_and_sticks_until_it_has_an_image() {
    let old = sparse("sparse.0");
    let mut setup = fleet()
        .image(old.clone())
        .machine("web1", "missing.0")
        .record(MdbRecord::new("web2"))
        .published(allowed(&old, "web1"))
        .published(allowed(&old, "web2"))
        .controls(disabled);
    let decision = setup.round();
    for host in ["web1", "web2"] {
        let status = decision.machine(host).unwrap();
        assert_eq!(status.desired, Some(not_allowed(&old, host)), "{host}");
        assert!(status.publish, "{host}");
        assert!(matches!(
            status.held,
            Some(HoldReason::UpdatesDisabledFleet { .. })
        ));
    }
    setup.0.controls.updates = Updates::Enabled;
    let decision = setup.round();
    assert!(!decision.machine("web1").unwrap().updates_allowed());
    assert_eq!(decision.to_publish().count(), 0);
    setup = setup.image(sparse("missing.0"));
    assert!(setup.round().machine("web1").unwrap().updates_allowed());
}
