//! The update never writes through a symlink: a machine where a directory
//! of the image is a symlink to somewhere else gets a real directory, and
//! nothing is written, changed or removed where the symlink points.

use std::fs;
use std::os::unix::fs::{symlink, MetadataExt};

use crate::update_support::*;
use dom_model::Filter;

/// Every file below `dir`, with its content.
fn contents(dir: &std::path::Path) -> Vec<(String, String)> {
    let mut found = Vec::new();
    for entry in fs::read_dir(dir).unwrap() {
        let entry = entry.unwrap();
        let path = entry.path();
        if entry.file_type().unwrap().is_dir() {
            found.extend(contents(&path));
        } else {
            let content = fs::read_to_string(&path).unwrap_or_default();
            found.push((path.display().to_string(), content));
        }
    }
    found.sort();
    found
}

fn image_with_etc() -> (Source, dom_model::Manifest) {
    let src = Source::new();
    src.file("/etc/passwd", "root:x:0:0\n")
        .file("/etc/ssh/sshd_config", "PermitRootLogin no\n");
    let image = src.image();
    (src, image)
}

#[test]
fn a_symlinked_directory_is_replaced_not_followed() {
    for filter in [None, Some(Filter::empty())] {
        let m = Machine::new();
        let outside = m.outside("x");
        fs::create_dir(&outside).unwrap();
        write(&outside, "/passwd", "outside\n");
        symlink(&outside, m.path("/etc")).unwrap();
        let (src, image) = image_with_etc();

        m.converge(&image, src.root(), filter.as_ref());
        assert!(fs::symlink_metadata(m.path("/etc")).unwrap().is_dir());
        assert_eq!(read(&m.root, "/etc/passwd"), "root:x:0:0\n");
        assert_eq!(
            contents(&outside),
            [(
                outside.join("passwd").display().to_string(),
                "outside\n".into()
            )]
        );
    }
}

#[test]
fn a_symlink_put_in_place_after_the_scan_stops_the_writes_below_it() {
    let m = Machine::new();
    write(&m.root, "/etc/passwd", "old\n");
    chmod(&m.root, "/etc/passwd", 0o600);
    write(&m.root, "/usr/lib/libc.so", "old\n");
    let src = Source::new();
    src.file("/etc/passwd", "old\n")
        .file("/etc/ssh/sshd_config", "PermitRootLogin no\n")
        .file("/usr/lib/libc.so", "new\n")
        .file("/usr/lib/extra/x", "new\n");
    chmod(src.root(), "/etc/passwd", 0o644);
    let image = src.image();
    let plan = m.plan(&image, None);
    assert!(!plan.metadata.is_empty() && !plan.installs.is_empty());
    m.fill_cache(&plan, src.root());

    // Between the scan and the update, /etc and /usr/lib become symlinks
    // to directories outside the root.
    let outside = m.outside("x");
    fs::create_dir(&outside).unwrap();
    write(&outside, "/passwd", "outside\n");
    chmod(&outside, "/passwd", 0o600);
    fs::remove_dir_all(m.path("/etc")).unwrap();
    symlink(&outside, m.path("/etc")).unwrap();
    let lib = m.outside("lib");
    fs::create_dir(&lib).unwrap();
    fs::remove_dir_all(m.path("/usr/lib")).unwrap();
    symlink(&lib, m.path("/usr/lib")).unwrap();

    let out = m.apply(&plan);
    assert!(!out.ok);
    let error = out.error.unwrap();
    assert!(
        error.contains("is a symlink, which is never followed"),
        "{error}"
    );
    assert!(error.contains("more errors"), "{error}");
    assert_eq!(
        contents(&outside),
        [(
            outside.join("passwd").display().to_string(),
            "outside\n".into()
        )]
    );
    assert_eq!(
        fs::metadata(outside.join("passwd")).unwrap().mode() & 0o777,
        0o600
    );
    assert!(contents(&lib).is_empty());
    assert_eq!(fs::read_dir(&lib).unwrap().count(), 0);
    // The objects not installed went back to the cache.
    for install in &plan.installs {
        assert!(m.cache.contains(&install.object), "{}", install.path);
    }
    // The next scan plans the way out: the symlinks go, directories come.
    m.converge(&image, src.root(), None);
    assert_eq!(read(&m.root, "/usr/lib/extra/x"), "new\n");
    assert_eq!(read(&outside, "/passwd"), "outside\n");
}

#[test]
fn a_symlink_in_place_of_a_file_is_replaced_not_written_through() {
    let m = Machine::new();
    let target = m.outside("target");
    fs::write(&target, "outside\n").unwrap();
    fs::create_dir(m.path("/etc")).unwrap();
    symlink(&target, m.path("/etc/motd")).unwrap();
    let src = Source::new();
    src.file("/etc/motd", "hello\n");
    chmod(src.root(), "/etc/motd", 0o666);
    let image = src.image();

    m.converge(&image, src.root(), None);
    assert_eq!(read(&m.root, "/etc/motd"), "hello\n");
    assert_eq!(fs::read_to_string(&target).unwrap(), "outside\n");
    assert_ne!(fs::metadata(&target).unwrap().mode() & 0o777, 0o666);
}
