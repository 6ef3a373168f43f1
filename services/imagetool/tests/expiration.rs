//! change-image-expiration and get-image-expiration, through the binary.

use crate::common::*;

#[test]
fn an_image_s_expiry_is_changed_shown_and_kept_in_the_stream() {
    let server = NatsServer::start().unwrap();
    let tree = examples().join("path");
    let tree = tree.to_str().unwrap();
    imagetool(&server, &["add", "web.0", tree, "", ""]).ok();
    assert_eq!(
        imagetool(&server, &["get-image-expiration", "web.0"]).ok(),
        "web.0 never expires\n"
    );
    let changed = imagetool(&server, &["change-image-expiration", "web.0", "7d"]).ok();
    assert!(changed.starts_with("web.0 expires at "), "{changed}");
    assert!(
        changed.contains("(in 7days)") || changed.contains("(in 6days 23h 59m"),
        "{changed}"
    );
    let shown = imagetool(&server, &["get-image-expiration", "web.0"]).ok();
    assert!(shown.starts_with("web.0 expires at "), "{shown}");
    // The original's spelling: the flag gives the duration.
    let changed = imagetool(
        &server,
        &["-expiresIn=1s", "change-image-expiration", "web.0"],
    )
    .ok();
    assert!(
        changed.contains("(in 1s)") || changed.contains("(in 0s)"),
        "{changed}"
    );
    std::thread::sleep(std::time::Duration::from_millis(1200));
    assert!(listed(&server).is_empty());
    let shown = imagetool(&server, &["get-image-expiration", "web.0"]).ok();
    assert!(shown.starts_with("web.0 expired at "), "{shown}");
    // Expired, it may have lost its objects: it stays expired.
    let err = imagetool(&server, &["change-image-expiration", "web.0", "never"]).one_line_error();
    assert!(err.contains("web.0 has expired"), "{err}");
    // Only the expiry changed: the content is the same as before.
    let show = imagetool(&server, &["show", "web.0"]).ok();
    assert!(!show.is_empty());

    imagetool(&server, &["-expiresIn=1h", "add", "web.1", tree, "", ""]).ok();
    let changed = imagetool(&server, &["change-image-expiration", "web.1", "never"]).ok();
    assert_eq!(changed, "web.1 never expires\n");
    assert_eq!(listed(&server), ["web.1"]);
}

#[test]
fn bad_expiry_changes_are_one_line_and_change_nothing() {
    let server = kept_and_gone();
    for (args, expect) in [
        (
            &["change-image-expiration", "kept", "soon"][..],
            "expected a duration",
        ),
        (
            &["change-image-expiration", "kept", "0s"][..],
            "expire the image now",
        ),
        (
            &["change-image-expiration", "gone", "1h"][..],
            "gone was deleted",
        ),
        (
            &["change-image-expiration", "never.0", "1h"][..],
            "never.0 does not exist",
        ),
        (
            &["get-image-expiration", "never.0"][..],
            "never.0 does not exist",
        ),
    ] {
        let err = imagetool(&server, args).one_line_error();
        assert!(err.contains(expect), "{args:?}: {err}");
    }
    assert_eq!(
        imagetool(&server, &["get-image-expiration", "kept"]).ok(),
        "kept never expires\n"
    );
}
