//! Hard links, compared by the inode they name, and content the machine
//! already holds.

use super::*;

#[test]
fn content_on_the_machine_is_reused_not_fetched() {
    // /usr/bin/ls moved to /bin/ls, libc duplicated, one new object needed
    // by two paths.
    let mut entries = base();
    entries.retain(|(p, _)| *p != "/usr/bin/ls" && *p != "/lib");
    entries.push(("/bin/ls", file_with("ELF ls", 0o755, 0, T)));
    entries.push(("/opt/libc.so", file("ELF libc")));
    entries.push(("/opt/new1", file("fresh")));
    entries.push(("/opt/new2", file_with("fresh", 0o600, 0, T)));
    let image = tree(&entries);
    let machine = with(&[]);
    let plan = normal(&machine, &image);
    assert_eq!(
        install_paths(&plan),
        ["/bin/ls", "/opt/libc.so", "/opt/new1", "/opt/new2"]
    );
    assert_eq!(plan.fetch, [(ObjectId::of(b"fresh"), 5)]);
    assert_eq!(plan.reuse.len(), 2);
    assert_eq!(plan.reuse[&ObjectId::of(b"ELF ls")], "/usr/bin/ls");
    assert_eq!(plan.reuse[&ObjectId::of(b"ELF libc")], "/usr/lib/libc.so");
    assert_eq!(paths(&plan.deletes), ["/usr/bin/ls", "/usr/bin", "/lib"]);
    assert_eq!(plan.counts().fetch_bytes, 5);
}

#[test]
fn image_hard_link_where_the_machine_has_a_copy() {
    let image = with(&[("/etc/ssh/sshd.conf.hard", link("/etc/ssh/sshd.conf"))]);
    let machine = with(&[("/etc/ssh/sshd.conf.hard", file("Port 22\n"))]);
    let plan = normal(&machine, &image);
    assert!(plan.installs.is_empty());
    assert_eq!(
        plan.links,
        [HardLink {
            path: "/etc/ssh/sshd.conf.hard".into(),
            target: "/etc/ssh/sshd.conf".into()
        }]
    );
    assert_eq!(paths(&plan.changed), ["/etc/ssh/sshd.conf.hard"]);
    assert_eq!(plan.deviations(), 1);
}

#[test]
fn machine_hard_link_where_the_image_has_a_separate_file() {
    let image = with(&[("/etc/ssh/sshd.conf.copy", file("Port 22\n"))]);
    let machine = with(&[("/etc/ssh/sshd.conf.copy", link("/etc/ssh/sshd.conf"))]);
    let plan = normal(&machine, &image);
    // The copy gets its own inode; the original is left alone.
    assert_eq!(install_paths(&plan), ["/etc/ssh/sshd.conf.copy"]);
    assert!(plan.links.is_empty() && plan.metadata.is_empty());
    assert!(plan.fetch.is_empty());
    assert_eq!(
        plan.reuse[&ObjectId::of(b"Port 22\n")],
        "/etc/ssh/sshd.conf"
    );
    assert_eq!(paths(&plan.changed), ["/etc/ssh/sshd.conf.copy"]);
}

#[test]
fn hard_links_follow_their_target() {
    let linked = [("/etc/ssh/sshd.conf.hard", link("/etc/ssh/sshd.conf"))];
    // The target's content changes: install it, then link again.
    let image = with(&[
        ("/etc/ssh/sshd.conf", file("Port 2222\n")),
        linked[0].clone(),
    ]);
    let plan = normal(&with(&linked), &image);
    assert_eq!(install_paths(&plan), ["/etc/ssh/sshd.conf"]);
    assert_eq!(plan.links.len(), 1);
    // Only the target's metadata changes: applied once, through the target.
    let image = with(&[
        ("/etc/ssh/sshd.conf", file_with("Port 22\n", 0o600, 0, T)),
        linked[0].clone(),
    ]);
    let plan = normal(&with(&linked), &image);
    assert!(plan.links.is_empty() && plan.installs.is_empty());
    assert_eq!(plan.metadata.len(), 1);
    assert_eq!(paths(&plan.changed), ["/etc/ssh/sshd.conf"]);
}

#[test]
fn breaking_a_machine_hard_link_keeps_the_name_that_stays_right() {
    // Machine: a and b share an inode. Image: a has new content, b keeps
    // the old. Installing a (by rename) leaves b's inode as it is.
    let machine = tree(&[("/a", file("old")), ("/b", link("/a"))]);
    let image = tree(&[("/a", file("new")), ("/b", file("old"))]);
    let plan = normal(&machine, &image);
    assert_eq!(install_paths(&plan), ["/a"]);
    assert!(plan.links.is_empty() && plan.metadata.is_empty());
    // A hard-linked name that is cleared leaves the inode to the other.
    let image = tree(&[("/a", dir()), ("/b", file("old"))]);
    let plan = normal(&machine, &image);
    assert_eq!(paths(&plan.clear), ["/a"]);
    assert!(plan.installs.is_empty());
}

#[test]
fn hard_links_to_devices_are_made_after_the_device() {
    let image = tree(&[("/dev/a", chr(1)), ("/dev/b", link("/dev/a"))]);
    let machine = tree(&[("/dev/a", chr(2)), ("/dev/b", chr(1))]);
    let plan = normal(&machine, &image);
    assert_eq!(plan.devices.len(), 1);
    assert_eq!(plan.devices[0].rdev, 1);
    assert_eq!(plan.links[0].path, "/dev/b");
    let machine = tree(&[("/dev/a", chr(1)), ("/dev/b", link("/dev/a"))]);
    assert!(normal(&machine, &image).is_empty());
}

#[test]
fn a_dangling_machine_link_is_replaced() {
    let image = tree(&[("/a", file("a"))]);
    let machine = Manifest {
        v: 1,
        entries: vec![
            Entry {
                path: "/".into(),
                inode: dir(),
            },
            Entry {
                path: "/a".into(),
                inode: link("/gone"),
            },
        ],
    };
    let plan = normal(&machine, &image);
    assert_eq!(paths(&plan.clear), ["/a"]);
    assert_eq!(install_paths(&plan), ["/a"]);
}

#[test]
fn an_inode_a_filtered_path_also_names_keeps_its_metadata() {
    // /etc/hostname is filtered; /srv/name is the image's, and on this
    // machine the two are one inode.
    let machine = with(&[
        ("/etc/hostname", file("web1\n")),
        ("/srv/name", link("/etc/hostname")),
    ]);
    let image = with(&[("/srv/name", file("web1\n"))]);
    assert!(normal(&machine, &image).is_empty());
    // A chmod through /srv/name would change /etc/hostname: make a copy.
    let image = with(&[("/srv/name", file_with("web1\n", 0o600, 0, T))]);
    let plan = normal(&machine, &image);
    assert_eq!(install_paths(&plan), ["/srv/name"]);
    assert!(plan.metadata.is_empty());
    assert_eq!(plan.reuse[&ObjectId::of(b"web1\n")], "/etc/hostname");
}

#[test]
fn a_hard_link_to_an_unmanaged_path_is_a_conflict() {
    let image = with(&[
        ("/etc/hostname", file("web1\n")),
        ("/srv/name", link("/etc/hostname")),
    ]);
    let plan = normal(&with(&[]), &image);
    let conflicts: Vec<_> = plan.conflicts.iter().map(|c| c.path.as_str()).collect();
    assert_eq!(conflicts, ["/srv/name"]);
    assert!(plan.links.is_empty() && plan.installs.is_empty());
    assert_eq!(
        plan.deviations(),
        2,
        "/srv is made, /srv/name is in conflict"
    );
}

#[test]
fn a_machine_inode_serves_only_the_first_image_path() {
    // Machine: /a, /b and /c are one inode. Image: three separate files
    // with that content. /a keeps the inode; /b and /c get their own.
    let machine = tree(&[("/a", file("x")), ("/b", link("/a")), ("/c", link("/a"))]);
    let image = tree(&[("/a", file("x")), ("/b", file("x")), ("/c", file("x"))]);
    let plan = normal(&machine, &image);
    assert_eq!(install_paths(&plan), ["/b", "/c"]);
    assert!(plan.fetch.is_empty());
    assert_eq!(paths(&plan.changed), ["/b", "/c"]);
    // Image: /b and /c linked together, apart from /a.
    let image = tree(&[("/a", file("x")), ("/b", file("x")), ("/c", link("/b"))]);
    let plan = normal(&machine, &image);
    assert_eq!(install_paths(&plan), ["/b"]);
    assert_eq!(plan.links[0].path, "/c");
}

#[test]
fn a_hard_link_cycle_on_the_machine_is_replaced() {
    let machine = Manifest {
        v: 1,
        entries: vec![
            Entry {
                path: "/".into(),
                inode: dir(),
            },
            Entry {
                path: "/a".into(),
                inode: link("/b"),
            },
            Entry {
                path: "/b".into(),
                inode: link("/a"),
            },
        ],
    };
    let image = tree(&[("/a", file("a"))]);
    let plan = normal(&machine, &image);
    assert_eq!(paths(&plan.clear), ["/a"]);
    assert_eq!(install_paths(&plan), ["/a"]);
    assert_eq!(paths(&plan.deletes), ["/b"]);
}
