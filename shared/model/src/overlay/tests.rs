//! Laying layers over images: what replaces, what merges, what stays one
//! inode, and what is refused.

use super::*;
use crate::ObjectId;

fn file(content: &[u8]) -> Inode {
    Inode::File {
        mode: 0o644,
        uid: 0,
        gid: 0,
        mtime: 1_700_000_000,
        mtime_ns: 0,
        size: content.len() as u64,
        object: ObjectId::of(content),
    }
}

fn dir(mode: u32, uid: u32) -> Inode {
    Inode::Dir { mode, uid, gid: 0 }
}

fn link(target: &str) -> Inode {
    Inode::Link {
        target: target.into(),
    }
}

fn symlink(target: &str) -> Inode {
    Inode::Symlink {
        uid: 0,
        gid: 0,
        target: target.into(),
    }
}

/// `/etc` (0750, uid 7) holding `motd`, `passwd` and its hard link
/// `passwd.hard`; `/var/lib/app` holding `data`; `/bin` a symlink.
fn image() -> Manifest {
    let mut b = ManifestBuilder::new();
    b.add("/etc".into(), dir(0o750, 7), None).unwrap();
    b.add("/etc/motd".into(), file(b"hello\n"), None).unwrap();
    b.add("/etc/passwd".into(), file(b"root\n"), Some(1))
        .unwrap();
    b.add("/etc/passwd.hard".into(), file(b"root\n"), Some(1))
        .unwrap();
    b.add("/var/lib/app/data".into(), file(b"1"), None).unwrap();
    b.add("/bin".into(), symlink("usr/bin"), None).unwrap();
    b.finish().unwrap()
}

fn layer(entries: &[(&str, Inode)]) -> Vec<LayerEntry> {
    entries
        .iter()
        .map(|(p, inode)| (p.to_string(), inode.clone()))
        .collect()
}

fn paths(m: &Manifest) -> Vec<&str> {
    m.entries.iter().map(|e| e.path.as_str()).collect()
}

fn none() -> Filter {
    Filter::empty()
}

#[test]
fn a_layer_file_replaces_the_image_file_and_new_paths_are_added() {
    let top = layer(&[
        ("/etc/motd", file(b"bye\n")),
        ("/opt/tool/run", file(b"#!/bin/sh\n")),
    ]);
    let m = overlay(&image(), &top, &none()).unwrap();
    assert_eq!(m.get("/etc/motd").unwrap().inode, file(b"bye\n"));
    assert_eq!(m.get("/opt/tool/run").unwrap().inode, file(b"#!/bin/sh\n"));
    // Parents the layer does not name are made as add makes them...
    assert_eq!(m.get("/opt").unwrap().inode, dir(0o755, 0));
    // ...and the image's own directories keep their owner and mode.
    assert_eq!(m.get("/etc").unwrap().inode, dir(0o750, 7));
    assert_eq!(m.entries.len(), image().entries.len() + 3);
}

#[test]
fn a_layer_directory_changes_the_directory_and_merges_its_contents() {
    let top = layer(&[("/etc", dir(0o700, 0)), ("/etc/new", file(b"n"))]);
    let m = overlay(&image(), &top, &none()).unwrap();
    assert_eq!(m.get("/etc").unwrap().inode, dir(0o700, 0));
    assert!(m.get("/etc/motd").is_some());
    assert!(m.get("/etc/new").is_some());
}

#[test]
fn a_layer_file_in_place_of_a_directory_takes_its_whole_subtree() {
    let top = layer(&[("/var/lib", file(b"flat"))]);
    let m = overlay(&image(), &top, &none()).unwrap();
    assert_eq!(m.get("/var/lib").unwrap().inode, file(b"flat"));
    assert!(paths(&m).iter().all(|p| !p.starts_with("/var/lib/")));
}

#[test]
fn a_layer_directory_in_place_of_a_symlink_replaces_it() {
    let top = layer(&[("/bin", dir(0o755, 0)), ("/bin/sh", file(b"sh"))]);
    let m = overlay(&image(), &top, &none()).unwrap();
    assert_eq!(m.get("/bin").unwrap().inode, dir(0o755, 0));
    assert!(m.get("/bin/sh").is_some());
}

#[test]
fn replacing_the_first_name_of_a_hard_link_leaves_the_other_name_the_old_inode() {
    let top = layer(&[("/etc/passwd", file(b"new\n"))]);
    let m = overlay(&image(), &top, &none()).unwrap();
    assert_eq!(m.get("/etc/passwd").unwrap().inode, file(b"new\n"));
    assert_eq!(m.get("/etc/passwd.hard").unwrap().inode, file(b"root\n"));
}

#[test]
fn untouched_hard_links_stay_links() {
    let top = layer(&[("/etc/motd", file(b"x"))]);
    let m = overlay(&image(), &top, &none()).unwrap();
    assert_eq!(
        m.get("/etc/passwd.hard").unwrap().inode,
        link("/etc/passwd")
    );
}

#[test]
fn a_layer_hard_link_may_name_an_image_file() {
    let top = layer(&[("/etc/motd.hard", link("/etc/motd"))]);
    let m = overlay(&image(), &top, &none()).unwrap();
    assert_eq!(m.get("/etc/motd.hard").unwrap().inode, link("/etc/motd"));
}

#[test]
fn the_later_of_two_entries_for_a_path_wins() {
    let top = layer(&[("/etc/motd", file(b"1")), ("/etc/motd", file(b"2"))]);
    let m = overlay(&image(), &top, &none()).unwrap();
    assert_eq!(m.get("/etc/motd").unwrap().inode, file(b"2"));
}

#[test]
fn the_filter_leaves_out_image_and_layer_paths_and_what_is_below_them() {
    let filter = Filter::parse("/var/lib\n/etc/motd\n").unwrap();
    let top = layer(&[("/etc/motd", file(b"x")), ("/var/lib/other", file(b"o"))]);
    let m = overlay(&image(), &top, &filter).unwrap();
    assert_eq!(
        paths(&m),
        [
            "/",
            "/bin",
            "/etc",
            "/etc/passwd",
            "/etc/passwd.hard",
            "/var"
        ]
    );
}

#[test]
fn filtering_the_first_name_of_a_hard_link_keeps_the_other_names_one_inode() {
    let mut b = ManifestBuilder::new();
    b.add("/a".into(), file(b"x"), Some(1)).unwrap();
    b.add("/b".into(), file(b"x"), Some(1)).unwrap();
    b.add("/c".into(), file(b"x"), Some(1)).unwrap();
    let m = overlay(&b.finish().unwrap(), &[], &Filter::parse("/a").unwrap()).unwrap();
    assert_eq!(m.get("/b").unwrap().inode, file(b"x"));
    assert_eq!(m.get("/c").unwrap().inode, link("/b"));
}

#[test]
fn a_layer_hard_link_to_a_filtered_path_is_refused() {
    let top = layer(&[("/x", link("/etc/motd"))]);
    let err = overlay(&image(), &top, &Filter::parse("/etc/motd").unwrap()).unwrap_err();
    assert!(matches!(err, OverlayError::BadLink { .. }), "{err}");
}

#[test]
fn a_layer_path_below_an_image_file_is_refused() {
    let top = layer(&[("/etc/motd/x", file(b"x"))]);
    let err = overlay(&image(), &top, &none()).unwrap_err();
    assert!(err.to_string().contains("not a directory"), "{err}");
}

#[test]
fn an_empty_layer_and_no_filter_give_the_same_manifest() {
    assert_eq!(overlay(&image(), &[], &none()).unwrap(), image());
}

#[test]
fn replace_puts_new_content_in_every_name_of_an_inode() {
    let top = layer(&[("/etc/passwd.hard", file(b"new\n"))]);
    let m = replace(&image(), &top, &none()).unwrap();
    assert_eq!(m.get("/etc/passwd").unwrap().inode, file(b"new\n"));
    assert_eq!(
        m.get("/etc/passwd.hard").unwrap().inode,
        link("/etc/passwd")
    );
    assert_eq!(paths(&m), paths(&image()));
}

#[test]
fn replace_ignores_directories_and_filtered_paths() {
    let top = layer(&[
        ("/etc", dir(0o777, 0)),
        ("/etc/motd", file(b"m")),
        ("/tmp/x", file(b"t")),
    ]);
    let m = replace(&image(), &top, &Filter::parse("/tmp").unwrap()).unwrap();
    assert_eq!(m.get("/etc").unwrap().inode, dir(0o750, 7));
    assert_eq!(m.get("/etc/motd").unwrap().inode, file(b"m"));
}

#[test]
fn replace_refuses_a_path_the_image_lacks() {
    let top = layer(&[("/etc/shadow", file(b"s"))]);
    let err = replace(&image(), &top, &none()).unwrap_err();
    assert_eq!(
        err.to_string(),
        "/etc/shadow is not in the source image; addrep only replaces paths the image has"
    );
}

#[test]
fn replace_refuses_a_change_of_kind() {
    let top = layer(&[("/bin", file(b"b"))]);
    let err = replace(&image(), &top, &none()).unwrap_err();
    assert!(
        matches!(
            err,
            OverlayError::KindChanged {
                was: "symlink",
                now: "file",
                ..
            }
        ),
        "{err}"
    );
    let top = layer(&[("/var/lib", file(b"b"))]);
    assert!(replace(&image(), &top, &none()).is_err());
}

#[test]
fn replace_refuses_two_contents_for_one_inode() {
    let top = layer(&[
        ("/etc/passwd", file(b"1")),
        ("/etc/passwd.hard", file(b"2")),
    ]);
    let err = replace(&image(), &top, &none()).unwrap_err();
    assert!(matches!(err, OverlayError::SplitLink { .. }), "{err}");
}

#[test]
fn replace_follows_a_layer_hard_link_to_its_content() {
    let top = layer(&[
        ("/etc/motd", file(b"same")),
        ("/var/lib/app/data", link("/etc/motd")),
    ]);
    let m = replace(&image(), &top, &none()).unwrap();
    assert_eq!(m.get("/var/lib/app/data").unwrap().inode, file(b"same"));
}
