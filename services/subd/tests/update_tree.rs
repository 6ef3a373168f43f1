//! Applying plans to real trees: after an update, a rescan of the machine
//! matches the image exactly (content, type, mode, owner, mtime), and
//! nothing outside the image's care was touched.

use std::fs;
use std::os::unix::fs::{FileTypeExt, MetadataExt};

use crate::update_support::*;
use dom_model::{Filter, Inode};

#[test]
fn sparse_image_installs_and_leaves_everything_else() {
    let m = Machine::new();
    write(&m.root, "/etc/hosts", "old hosts\n");
    write(&m.root, "/etc/mine", "the machine's own\n");
    write(&m.root, "/var/log/syslog", "log\n");

    let src = Source::new();
    src.file("/etc/hosts", "new hosts\n")
        .file("/etc/app.conf", "key = value\n")
        .file("/opt/app/bin/app", "#!/bin/sh\n")
        .file("/usr/bin/su", "setuid\n");
    if is_root() {
        // Given away: the owner is set before the mode, which keeps setuid.
        std::os::unix::fs::lchown(src.root().join("usr/bin/su"), Some(4321), Some(4321)).unwrap();
    }
    chmod(src.root(), "/opt/app/bin/app", 0o755);
    chmod(src.root(), "/usr/bin/su", 0o4755);
    chmod(src.root(), "/etc/app.conf", 0o640);
    set_mtime(src.root(), "/etc/hosts", 1_600_000_000, 123_456_789);
    let image = src.image();

    let out = m.converge(&image, src.root(), None);
    assert!(out.changed >= 4, "{out:?}");
    assert_eq!(read(&m.root, "/etc/hosts"), "new hosts\n");
    assert_eq!(read(&m.root, "/etc/mine"), "the machine's own\n");
    assert_eq!(read(&m.root, "/var/log/syslog"), "log\n");

    let scanned = m.scan();
    for p in [
        "/etc/hosts",
        "/etc/app.conf",
        "/opt/app/bin/app",
        "/usr/bin/su",
    ] {
        assert_eq!(inode(&scanned, p), inode(&image, p), "{p}");
    }
    let meta = fs::metadata(m.path("/usr/bin/su")).unwrap();
    assert_eq!(meta.mode() & 0o7777, 0o4755);
    let meta = fs::metadata(m.path("/etc/hosts")).unwrap();
    assert_eq!(
        (meta.mtime(), meta.mtime_nsec()),
        (1_600_000_000, 123_456_789)
    );
    // Every installed object left the cache for its path.
    assert_eq!(m.cache.total_bytes().unwrap(), 0);
}

#[test]
fn normal_image_deletes_extras_but_keeps_filtered_paths() {
    let m = Machine::new();
    write(&m.root, "/etc/hosts", "hosts\n");
    write(&m.root, "/etc/extra", "extra\n");
    write(&m.root, "/var/lib/old/deep/file", "old\n");
    write(&m.root, "/tmp/scratch/file", "scratch\n");
    write(&m.root, "/home/user/notes", "notes\n");

    let src = Source::new();
    src.file("/etc/hosts", "hosts\n")
        .file("/etc/motd", "hello\n");
    let image = src.image();
    let filter = Filter::new(&["/tmp/.*", "/home"]).unwrap();

    m.converge(&image, src.root(), Some(&filter));
    assert!(!m.path("/etc/extra").exists());
    assert!(!m.path("/var").exists());
    assert_eq!(read(&m.root, "/tmp/scratch/file"), "scratch\n");
    assert_eq!(read(&m.root, "/home/user/notes"), "notes\n");
    assert_eq!(read(&m.root, "/etc/motd"), "hello\n");
    assert!(m.path("/.subd/objects").is_dir(), "the agent's state stays");
}

#[test]
fn paths_change_type() {
    let m = Machine::new();
    write(&m.root, "/a", "a file that becomes a directory\n");
    write(&m.root, "/b/inner", "a directory that becomes a symlink\n");
    std::os::unix::fs::symlink("x", m.path("/c")).unwrap();
    fs::create_dir(m.path("/d")).unwrap();
    write(&m.root, "/e", "a file that becomes a symlink\n");

    let src = Source::new();
    src.file("/a/f", "inside\n")
        .file("/c", "a symlink that becomes a file\n");
    std::os::unix::fs::symlink("/etc", src.root().join("b")).unwrap();
    std::os::unix::fs::symlink("a/f", src.root().join("e")).unwrap();
    mkfifo(&src.root().join("d"), 0o640);
    let device = is_root() && mknod_char(&src.root().join("null"), 0o666, libc::makedev(1, 3));
    let image = src.image();

    m.converge(&image, src.root(), Some(&Filter::empty()));
    assert_eq!(read(&m.root, "/a/f"), "inside\n");
    assert_eq!(fs::read_link(m.path("/b")).unwrap().to_str(), Some("/etc"));
    assert_eq!(read(&m.root, "/c"), "a symlink that becomes a file\n");
    let d = fs::symlink_metadata(m.path("/d")).unwrap();
    assert!(d.file_type().is_fifo());
    assert_eq!(d.mode() & 0o7777, 0o640);
    assert_eq!(fs::read_link(m.path("/e")).unwrap().to_str(), Some("a/f"));
    if device {
        let null = fs::symlink_metadata(m.path("/null")).unwrap();
        assert!(null.file_type().is_char_device());
        assert_eq!(null.rdev(), libc::makedev(1, 3));
    }
}

#[test]
fn hard_links_name_one_inode() {
    let m = Machine::new();
    // The machine has the content, but as separate files.
    write(&m.root, "/x/one", "shared\n");
    write(&m.root, "/x/two", "shared\n");

    let src = Source::new();
    src.file("/x/one", "shared\n").file("/y/a", "linked too\n");
    fs::hard_link(src.root().join("x/one"), src.root().join("x/two")).unwrap();
    fs::hard_link(src.root().join("x/one"), src.root().join("x/three")).unwrap();
    fs::hard_link(src.root().join("y/a"), src.root().join("y/b")).unwrap();
    let image = src.image();
    assert!(matches!(inode(&image, "/x/two"), Inode::Link { .. }));

    m.converge(&image, src.root(), Some(&Filter::empty()));
    let ino = |p: &str| fs::metadata(m.path(p)).unwrap().ino();
    assert_eq!(ino("/x/one"), ino("/x/two"));
    assert_eq!(ino("/x/one"), ino("/x/three"));
    assert_eq!(ino("/y/a"), ino("/y/b"));
    assert_ne!(ino("/x/one"), ino("/y/a"));
}

#[test]
fn one_object_at_several_paths_makes_separate_files() {
    let m = Machine::new();
    let src = Source::new();
    src.file("/a", "same\n")
        .file("/b", "same\n")
        .file("/c/d", "same\n");
    chmod(src.root(), "/b", 0o600);
    let image = src.image();

    let plan = m.plan(&image, None);
    assert_eq!(plan.installs.len(), 3);
    m.converge(&image, src.root(), None);
    let ino = |p: &str| fs::metadata(m.path(p)).unwrap().ino();
    assert_ne!(ino("/a"), ino("/b"));
    assert_ne!(ino("/b"), ino("/c/d"));
    write(&m.root, "/a", "changed\n");
    assert_eq!(read(&m.root, "/b"), "same\n");
    assert_eq!(read(&m.root, "/c/d"), "same\n");
}

#[test]
fn many_installs_of_shared_objects_each_get_a_file_of_their_own() {
    // Enough installs for the staging to run on several threads: 30
    // objects at 10 paths each, with their own modes.
    let m = Machine::new();
    let src = Source::new();
    for i in 0..300 {
        src.file(
            &format!("/d{}/f{i}", i % 7),
            &format!("content {}\n", i % 30),
        );
        chmod(
            src.root(),
            &format!("/d{}/f{i}", i % 7),
            0o600 + (i % 2) * 0o44,
        );
    }
    let image = src.image();
    assert_eq!(m.plan(&image, None).installs.len(), 300);
    m.converge(&image, src.root(), None);
    let mut inodes = std::collections::HashSet::new();
    for i in 0..300 {
        let p = format!("/d{}/f{i}", i % 7);
        assert_eq!(read(&m.root, &p), format!("content {}\n", i % 30), "{p}");
        let meta = fs::metadata(m.path(&p)).unwrap();
        assert_eq!(meta.mode() & 0o777, 0o600 + (i as u32 % 2) * 0o44, "{p}");
        assert!(inodes.insert(meta.ino()), "{p} shares an inode");
    }
    assert!(m.plan(&image, None).is_empty());
}

#[test]
fn metadata_is_fixed_in_place() {
    let m = Machine::new();
    write(&m.root, "/etc/passwd", "root:x:0:0\n");
    write(&m.root, "/usr/bin/sudo", "sudo\n");
    chmod(&m.root, "/etc/passwd", 0o600);
    let src = Source::new();
    src.file("/etc/passwd", "root:x:0:0\n")
        .file("/usr/bin/sudo", "sudo\n");
    chmod(src.root(), "/usr/bin/sudo", 0o4711);
    set_mtime(src.root(), "/etc/passwd", 1_700_000_000, 42);
    chmod(src.root(), "/etc", 0o750);
    if is_root() {
        std::os::unix::fs::lchown(m.path("/usr/bin/sudo"), Some(1234), Some(1234)).unwrap();
    }
    let image = src.image();

    let plan = m.plan(&image, None);
    assert!(plan.installs.is_empty(), "content is right: {plan:#?}");
    let ino_before = fs::metadata(m.path("/etc/passwd")).unwrap().ino();
    m.converge(&image, src.root(), None);
    let passwd = fs::metadata(m.path("/etc/passwd")).unwrap();
    assert_eq!(passwd.ino(), ino_before, "fixed in place, not replaced");
    assert_eq!((passwd.mtime(), passwd.mtime_nsec()), (1_700_000_000, 42));
    let sudo = fs::metadata(m.path("/usr/bin/sudo")).unwrap();
    assert_eq!(sudo.mode() & 0o7777, 0o4711);
    let src_sudo = fs::metadata(src.root().join("usr/bin/sudo")).unwrap();
    assert_eq!((sudo.uid(), sudo.gid()), (src_sudo.uid(), src_sudo.gid()));
    assert_eq!(fs::metadata(m.path("/etc")).unwrap().mode() & 0o7777, 0o750);
}

#[test]
fn a_missing_object_refuses_the_whole_update() {
    let m = Machine::new();
    write(&m.root, "/etc/hosts", "old\n");
    let src = Source::new();
    src.file("/etc/hosts", "new\n").file("/etc/motd", "hello\n");
    let image = src.image();
    let plan = m.plan(&image, None);
    let before = m.scan();

    let out = m.apply(&plan);
    assert!(!out.ok);
    let error = out.error.unwrap();
    assert!(error.contains("is not in the cache"), "{error}");
    assert_eq!(m.scan(), before, "nothing changed");
    assert_eq!(out.changed, 0);
}

pub fn mkfifo(path: &std::path::Path, mode: u32) {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes()).unwrap();
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), mode) }, 0);
    chmod(path, "/", mode);
}

/// Makes a character device; `false` where the system does not allow it.
fn mknod_char(path: &std::path::Path, mode: u32, rdev: libc::dev_t) -> bool {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes()).unwrap();
    let made = unsafe { libc::mknod(c.as_ptr(), libc::S_IFCHR | mode, rdev) } == 0;
    if made {
        chmod(path, "/", mode);
    }
    made
}

fn is_root() -> bool {
    unsafe { libc::geteuid() == 0 }
}
