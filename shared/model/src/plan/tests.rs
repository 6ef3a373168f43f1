//! Plans for small trees, one rule at a time. Type changes are in `types`,
//! hard links and object reuse in `links`.

use super::*;
use crate::manifest::{Entry, Inode, ManifestBuilder};

mod links;
mod types;

const T: i64 = 1_700_000_000;

fn dir() -> Inode {
    dir_with(0o755, 0)
}

fn dir_with(mode: u32, uid: u32) -> Inode {
    Inode::Dir { mode, uid, gid: 0 }
}

fn file(content: &str) -> Inode {
    file_with(content, 0o644, 0, T)
}

fn file_with(content: &str, mode: u32, uid: u32, mtime: i64) -> Inode {
    Inode::File {
        mode,
        uid,
        gid: 0,
        mtime,
        mtime_ns: 0,
        size: content.len() as u64,
        object: ObjectId::of(content.as_bytes()),
    }
}

fn symlink(target: &str) -> Inode {
    symlink_with(target, 0)
}

fn symlink_with(target: &str, uid: u32) -> Inode {
    Inode::Symlink {
        uid,
        gid: 0,
        target: target.into(),
    }
}

fn link(target: &str) -> Inode {
    Inode::Link {
        target: target.into(),
    }
}

fn chr(rdev: u64) -> Inode {
    Inode::Char {
        mode: 0o666,
        uid: 0,
        gid: 0,
        mtime: T,
        mtime_ns: 0,
        rdev,
    }
}

fn fifo() -> Inode {
    Inode::Fifo {
        mode: 0o600,
        uid: 0,
        gid: 0,
        mtime: T,
        mtime_ns: 0,
    }
}

/// A tree from entries; missing parents become 0755 root-owned directories.
fn tree(entries: &[(&str, Inode)]) -> Manifest {
    let mut b = ManifestBuilder::new();
    for (path, inode) in entries {
        b.add(path.to_string(), inode.clone(), None).unwrap();
    }
    b.finish().unwrap()
}

fn base() -> Vec<(&'static str, Inode)> {
    vec![
        ("/etc/passwd", file("root:x:0:0\n")),
        ("/etc/ssh/sshd.conf", file("Port 22\n")),
        ("/usr/bin/ls", file_with("ELF ls", 0o755, 0, T)),
        ("/lib", symlink("usr/lib")),
        ("/usr/lib/libc.so", file("ELF libc")),
        ("/dev/null", chr(0x103)),
    ]
}

/// The base tree with some paths replaced or added.
fn with(extra: &[(&'static str, Inode)]) -> Manifest {
    edit(&[], extra)
}

/// The base tree without `remove`, with `extra` replacing or adding paths.
fn edit(remove: &[&str], extra: &[(&'static str, Inode)]) -> Manifest {
    let mut entries = base();
    entries.retain(|(p, _)| !remove.contains(p));
    for (path, inode) in extra {
        entries.retain(|(p, _)| p != path);
        entries.push((path, inode.clone()));
    }
    tree(&entries)
}

fn filter() -> Filter {
    Filter::parse("/etc/fstab\n/etc/hostname\n/var/log/.*\n/tmp/.*\n").unwrap()
}

fn normal(machine: &Manifest, image: &Manifest) -> Plan {
    let filter = filter();
    let protected = ["/.subd".to_string()];
    plan(
        machine,
        &Desired::normal(image, &filter).protecting(&protected),
    )
}

fn sparse(machine: &Manifest, image: &Manifest) -> Plan {
    let protected = ["/.subd".to_string()];
    plan(machine, &Desired::sparse(image).protecting(&protected))
}

fn paths(list: &[String]) -> Vec<&str> {
    list.iter().map(String::as_str).collect()
}

fn install_paths(plan: &Plan) -> Vec<&str> {
    plan.installs.iter().map(|i| i.path.as_str()).collect()
}

#[test]
fn identical_trees_give_an_empty_plan() {
    let image = with(&[("/etc/ssh/sshd.conf.hard", link("/etc/ssh/sshd.conf"))]);
    for plan in [normal(&image, &image), sparse(&image, &image)] {
        assert!(plan.is_empty(), "{plan:?}");
        assert_eq!(plan, Plan::default());
        assert_eq!(plan.deviations(), 0);
        assert_eq!(plan.summary(), "in sync");
    }
}

#[test]
fn empty_machine_gets_everything_in_order() {
    let image = with(&[
        ("/etc/ssh/sshd.conf.hard", link("/etc/ssh/sshd.conf")),
        ("/run/initctl", fifo()),
    ]);
    let machine = tree(&[]);
    let plan = normal(&machine, &image);
    let dirs: Vec<_> = plan.mkdirs.iter().map(|d| d.path.as_str()).collect();
    assert_eq!(
        dirs,
        ["/dev", "/etc", "/etc/ssh", "/run", "/usr", "/usr/bin", "/usr/lib"]
    );
    assert_eq!(
        install_paths(&plan),
        [
            "/etc/passwd",
            "/etc/ssh/sshd.conf",
            "/usr/bin/ls",
            "/usr/lib/libc.so"
        ]
    );
    assert_eq!(plan.installs[2].mode, 0o755);
    assert_eq!(plan.installs[2].mtime, T);
    assert_eq!(
        plan.links,
        [HardLink {
            path: "/etc/ssh/sshd.conf.hard".into(),
            target: "/etc/ssh/sshd.conf".into()
        }]
    );
    assert_eq!(plan.symlinks.len(), 1);
    let kinds: Vec<_> = plan.devices.iter().map(|d| (d.kind, d.rdev)).collect();
    assert_eq!(kinds, [(DeviceKind::Char, 0x103), (DeviceKind::Fifo, 0)]);
    assert_eq!(plan.fetch.len(), 4);
    assert!(plan.reuse.is_empty());
    assert!(plan.metadata.is_empty(), "new inodes carry their metadata");
    assert_eq!(plan.changed.len(), image.entries.len() - 1);
    assert_eq!(plan.deviations(), plan.changed.len() as u64);
}

#[test]
fn normal_image_deletes_extras_deepest_first() {
    let image = with(&[]);
    let machine = with(&[
        ("/srv/www/a/index.html", file("a")),
        ("/srv/www/b.html", file("b")),
        ("/etc/motd", file("hi")),
    ]);
    let plan = normal(&machine, &image);
    assert_eq!(
        paths(&plan.deletes),
        [
            "/srv/www/a/index.html",
            "/srv/www/a",
            "/srv/www/b.html",
            "/etc/motd",
            "/srv/www",
            "/srv"
        ]
    );
    assert_eq!(
        paths(&plan.changed),
        [
            "/etc/motd",
            "/srv",
            "/srv/www",
            "/srv/www/a",
            "/srv/www/a/index.html",
            "/srv/www/b.html"
        ]
    );
    assert_eq!(plan.deviations(), 6);
    assert_eq!(plan.summary(), "6 deviations: 6 deletes");
}

#[test]
fn sparse_image_never_deletes() {
    let image = tree(&[("/etc/ssh/sshd.conf", file("Port 22\n"))]);
    let machine = with(&[("/srv/www/index.html", file("a"))]);
    let plan = sparse(&machine, &image);
    assert!(plan.deletes.is_empty());
    assert!(plan.is_empty(), "{plan:?}");
    let image = tree(&[("/etc/ssh/sshd.conf", file("Port 2222\n"))]);
    let plan = sparse(&machine, &image);
    assert!(plan.deletes.is_empty());
    assert_eq!(install_paths(&plan), ["/etc/ssh/sshd.conf"]);
    assert_eq!(paths(&plan.changed), ["/etc/ssh/sshd.conf"]);
}

#[test]
fn filtered_paths_are_never_deleted_even_under_a_directory_not_in_the_image() {
    let image = with(&[]);
    let machine = with(&[
        ("/etc/fstab", file("/dev/sda1 / ext4")),
        ("/etc/fstab.bak", file("old")),
        ("/var/log/syslog", file("boot")),
        ("/var/log/nginx/access.log", file("GET /")),
        ("/var/tmp/junk", file("x")),
        ("/tmp/x", file("y")),
    ]);
    let plan = normal(&machine, &image);
    // /var and /var/log stay, holding only their filtered content; /tmp
    // itself is not filtered but holds filtered content.
    assert_eq!(paths(&plan.deletes), ["/var/tmp/junk", "/var/tmp"]);
    assert!(plan.clear.is_empty());
    assert_eq!(plan.deviations(), 2);
}

#[test]
fn filtered_paths_are_never_created_or_changed() {
    // An image made without the filter holds paths the machine keeps.
    let image = with(&[
        ("/etc/fstab", file("image fstab")),
        ("/etc/hostname", file("image")),
        ("/var/log/syslog", dir()),
    ]);
    let machine = with(&[
        ("/etc/fstab", file_with("machine fstab", 0o600, 5, 1)),
        ("/var/log/syslog", file("boot")),
    ]);
    let plan = normal(&machine, &image);
    assert!(plan.is_empty(), "{plan:?}");
}

#[test]
fn protected_state_is_never_touched() {
    let image = with(&[("/.subd", file("image wants a file here"))]);
    let machine = with(&[
        ("/.subd/objects/abc", file("ELF libc")),
        ("/.subd/desired.json", file("{}")),
    ]);
    for plan in [normal(&machine, &image), sparse(&machine, &image)] {
        assert!(plan.is_empty(), "{plan:?}");
    }
    // Content under the protected prefix is not offered for reuse.
    let image = with(&[("/usr/lib/libc.so.6", file("ELF libc 6"))]);
    let machine = with(&[("/.subd/objects/x", file("ELF libc 6"))]);
    let plan = normal(&machine, &image);
    assert!(plan.reuse.is_empty());
    assert_eq!(plan.fetch.len(), 1);
    assert!(plan.deletes.is_empty());
}

#[test]
fn a_directory_holding_protected_state_is_kept() {
    let image = with(&[]);
    let machine = with(&[("/var/lib/agent/.subd/x", file("x"))]);
    let filter = Filter::empty();
    let protected = ["/var/lib/agent/.subd/".to_string()];
    let plan = plan(
        &machine,
        &Desired::normal(&image, &filter).protecting(&protected),
    );
    assert!(plan.is_empty(), "{plan:?}");
}

#[test]
fn metadata_only_changes() {
    let image = with(&[
        ("/etc/ssh", dir_with(0o700, 0)),
        ("/lib", symlink_with("usr/lib", 7)),
        ("/usr/bin/ls", file_with("ELF ls", 0o4755, 0, T)),
        ("/etc/passwd", file_with("root:x:0:0\n", 0o644, 0, T + 60)),
        ("/dev/null", chr(0x103)),
    ]);
    let machine = with(&[(
        "/dev/null",
        Inode::Char {
            mode: 0o600,
            uid: 0,
            gid: 5,
            mtime: T,
            mtime_ns: 0,
            rdev: 0x103,
        },
    )]);
    let plan = normal(&machine, &image);
    assert!(plan.installs.is_empty() && plan.devices.is_empty() && plan.symlinks.is_empty());
    assert_eq!(
        plan.metadata,
        [
            MetadataChange {
                path: "/dev/null".into(),
                mode: Some(0o666),
                owner: Some((0, 0)),
                mtime: None
            },
            MetadataChange {
                path: "/etc/passwd".into(),
                mode: None,
                owner: None,
                mtime: Some((T + 60, 0))
            },
            MetadataChange {
                path: "/etc/ssh".into(),
                mode: Some(0o700),
                owner: None,
                mtime: None
            },
            MetadataChange {
                path: "/lib".into(),
                mode: None,
                owner: Some((7, 0)),
                mtime: None
            },
            MetadataChange {
                path: "/usr/bin/ls".into(),
                mode: Some(0o4755),
                owner: None,
                mtime: None
            },
        ]
    );
    // An mtime-only difference fires no trigger but is still a deviation.
    assert_eq!(
        paths(&plan.changed),
        ["/dev/null", "/etc/ssh", "/lib", "/usr/bin/ls"]
    );
    assert_eq!(plan.deviations(), 5);
    assert!(plan.metadata[1].is_mtime_only());
    assert_eq!(plan.summary(), "5 deviations: 5 metadata changes");
}

#[test]
fn nanoseconds_count_as_mtime() {
    let mut image = with(&[]);
    for entry in &mut image.entries {
        if let Inode::File { mtime_ns, .. } = &mut entry.inode {
            *mtime_ns = 7;
        }
    }
    let plan = normal(&with(&[]), &image);
    assert_eq!(plan.metadata.len(), 4);
    assert!(plan.metadata.iter().all(|m| m.mtime == Some((T, 7))));
    assert!(plan.changed.is_empty());
}

#[test]
fn new_content_is_installed_with_its_metadata() {
    let image = with(&[("/etc/passwd", file_with("new", 0o600, 3, T + 1))]);
    let plan = normal(&with(&[]), &image);
    assert_eq!(
        plan.installs,
        [Install {
            path: "/etc/passwd".into(),
            object: ObjectId::of(b"new"),
            size: 3,
            mode: 0o600,
            uid: 3,
            gid: 0,
            mtime: T + 1,
            mtime_ns: 0
        }]
    );
    assert!(plan.metadata.is_empty());
    assert_eq!(plan.fetch, [(ObjectId::of(b"new"), 3)]);
    assert_eq!(paths(&plan.changed), ["/etc/passwd"]);
    assert_eq!(
        plan.summary(),
        "1 deviation: 1 file (1 object to fetch, 3 B)"
    );
}

#[test]
fn root_metadata_is_fixed_but_the_root_is_never_removed() {
    let image = tree(&[]);
    let mut machine = with(&[]);
    machine.entries[0].inode = dir_with(0o700, 0);
    let plan = normal(&machine, &image);
    assert_eq!(plan.metadata[0].path, "/");
    assert_eq!(plan.metadata[0].mode, Some(0o755));
    assert!(!plan.deletes.contains(&"/".to_string()));
    assert!(!plan.deletes.is_empty());
}

#[test]
fn plan_serialises() {
    let image = with(&[("/etc/passwd", file("new"))]);
    let plan = normal(&with(&[("/x", file("x"))]), &image);
    let json = serde_json::to_string(&plan).unwrap();
    let back: Plan = serde_json::from_str(&json).unwrap();
    assert_eq!(back, plan);
}

#[test]
fn an_inverted_filter_owns_only_what_it_names() {
    let filter = Filter::parse("!\n/etc/.*").unwrap();
    let mut image = with(&[("/etc/passwd", file("new"))]);
    image.entries[0].inode = dir_with(0o700, 0);
    let machine = with(&[("/srv/x", file("x")), ("/etc/extra", file("x"))]);
    let plan = plan(&machine, &Desired::normal(&image, &filter));
    assert_eq!(install_paths(&plan), ["/etc/passwd"]);
    assert_eq!(paths(&plan.deletes), ["/etc/extra"]);
    assert!(plan.metadata.is_empty(), "the root is not the image's");
    assert_eq!(plan.deviations(), 2);
}
