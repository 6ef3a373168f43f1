//! Paths whose type differs between the machine and the image, and what
//! may not be removed to change it.

use super::*;

#[test]
fn type_changes_are_cleared_first() {
    let image = edit(
        &["/etc/ssh/sshd.conf"],
        &[
            ("/etc/ssh", file("now a file")),
            ("/srv", symlink("/data/srv")),
            ("/opt", dir()),
            ("/bin", symlink("usr/bin")),
            ("/dev/null", file("")),
            ("/dev/zero", chr(0x105)),
        ],
    );
    let machine = with(&[
        ("/srv/www/index.html", file("a")),
        ("/srv/www/.hidden", file("b")),
        ("/opt", file("was a file")),
        ("/bin", file("was a file")),
        ("/dev/zero", file("")),
    ]);
    let plan = normal(&machine, &image);
    assert_eq!(
        paths(&plan.clear),
        [
            "/etc/ssh/sshd.conf",
            "/srv/www/.hidden",
            "/srv/www/index.html",
            "/dev/null",
            "/dev/zero",
            "/etc/ssh",
            "/srv/www",
            "/bin",
            "/opt",
            "/srv",
        ]
    );
    assert_eq!(install_paths(&plan), ["/dev/null", "/etc/ssh"]);
    let dirs: Vec<_> = plan.mkdirs.iter().map(|d| d.path.as_str()).collect();
    assert_eq!(dirs, ["/opt"]);
    let symlinks: Vec<_> = plan.symlinks.iter().map(|s| s.path.as_str()).collect();
    assert_eq!(symlinks, ["/bin", "/srv"]);
    assert_eq!(plan.devices.len(), 1);
    assert!(
        plan.deletes.is_empty(),
        "cleared paths are not deleted again"
    );
    for p in &plan.clear {
        assert!(plan.changed.contains(p), "{p}");
    }
    // The object for the empty /dev/null is on the machine already.
    assert!(plan.fetch.iter().all(|(o, _)| *o != ObjectId::of(b"")));
}

#[test]
fn a_type_change_never_removes_filtered_content() {
    let image = with(&[("/var/log", symlink("/data/log")), ("/srv", file("x"))]);
    let machine = with(&[
        ("/var/log/syslog", file("boot")),
        ("/var/log/old", file("old")),
        ("/srv/a", file("a")),
    ]);
    let plan = normal(&machine, &image);
    assert!(plan.symlinks.is_empty());
    assert_eq!(plan.conflicts.len(), 1);
    assert_eq!(plan.conflicts[0].path, "/var/log");
    assert!(plan.conflicts[0].reason.contains("/var/log/old"));
    assert_eq!(paths(&plan.clear), ["/srv/a", "/srv"]);
    assert_eq!(install_paths(&plan), ["/srv"]);
    assert_eq!(plan.deviations(), 3);
    assert!(!plan.is_empty());
}

#[test]
fn a_sparse_image_never_empties_a_directory_to_change_its_type() {
    let image = tree(&[
        ("/srv", file("x")),
        ("/opt", symlink("/data/opt")),
        ("/opt2", file("y")),
    ]);
    let machine = with(&[
        ("/srv/a", file("a")),
        ("/opt", dir()),
        ("/opt2", symlink("elsewhere")),
    ]);
    let plan = sparse(&machine, &image);
    let conflicts: Vec<_> = plan.conflicts.iter().map(|c| c.path.as_str()).collect();
    assert_eq!(conflicts, ["/srv"]);
    assert!(plan.conflicts[0].reason.contains("sparse"));
    assert_eq!(paths(&plan.clear), ["/opt", "/opt2"]);
    assert_eq!(install_paths(&plan), ["/opt2"]);
    assert_eq!(plan.symlinks.len(), 1);
}

#[test]
fn children_of_a_directory_that_cannot_be_made_are_conflicts() {
    // The filter covers /opt/keep but not what is below it, so the image
    // cannot place its child where the machine has no directory.
    let image = with(&[("/opt/keep/file", file("x")), ("/srv/x", file("x"))]);
    let machine = with(&[("/srv", file("not a dir"))]);
    let filter = Filter::parse("/opt/keep$").unwrap();
    let blocked = plan(&machine, &Desired::normal(&image, &filter));
    let conflicts: Vec<_> = blocked.conflicts.iter().map(|c| c.path.as_str()).collect();
    assert_eq!(conflicts, ["/opt/keep/file"]);
    assert!(blocked.conflicts[0].reason.contains("/opt/keep"));
    let dirs: Vec<_> = blocked.mkdirs.iter().map(|d| d.path.as_str()).collect();
    assert_eq!(dirs, ["/opt", "/srv"]);
    // /srv is the image's: cleared and made a directory.
    assert_eq!(paths(&blocked.clear), ["/srv"]);
    assert_eq!(install_paths(&blocked), ["/srv/x"]);
    // With the directory present, the child is placed and the filtered
    // directory is left as it is.
    let machine = with(&[("/opt/keep", dir_with(0o700, 9))]);
    let placed = plan(&machine, &Desired::normal(&image, &filter));
    assert!(placed.conflicts.is_empty());
    assert_eq!(install_paths(&placed), ["/opt/keep/file", "/srv/x"]);
    assert!(placed.metadata.is_empty());
}

#[test]
fn a_symlink_with_the_wrong_target_is_remade() {
    let image = with(&[]);
    let machine = with(&[("/lib", symlink_with("usr/lib64", 3))]);
    let plan = normal(&machine, &image);
    assert_eq!(
        plan.symlinks,
        [MakeSymlink {
            path: "/lib".into(),
            target: "usr/lib".into(),
            uid: 0,
            gid: 0
        }]
    );
    assert!(plan.clear.is_empty() && plan.metadata.is_empty());
}
