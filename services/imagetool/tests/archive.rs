//! tar: an image written as an archive reads back, through `add`, as the
//! same manifest; an existing OUT is kept unless --force, and a failure
//! leaves no file behind.

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use crate::common::*;

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn as_root() -> bool {
    unsafe { libc::geteuid() == 0 }
}

/// A tree with a setuid file, hard links, symlinks, an empty directory,
/// a fifo, and (as root) files of other owners and a device.
fn awkward_tree(root: &Path) {
    write(root, "bin/tool", b"#!/bin/sh\necho tool\n");
    std::fs::set_permissions(
        root.join("bin/tool"),
        std::fs::Permissions::from_mode(0o4755),
    )
    .unwrap();
    write(root, "etc/passwd", b"root:x:0:0\n");
    std::fs::hard_link(root.join("etc/passwd"), root.join("etc/passwd.hard")).unwrap();
    std::fs::hard_link(root.join("etc/passwd"), root.join("zz-last-name")).unwrap();
    std::os::unix::fs::symlink("../etc/passwd", root.join("bin/passwd-link")).unwrap();
    std::os::unix::fs::symlink("/usr/lib", root.join("lib")).unwrap();
    std::fs::create_dir_all(root.join("var/empty")).unwrap();
    std::fs::set_permissions(
        root.join("var/empty"),
        std::fs::Permissions::from_mode(0o1777),
    )
    .unwrap();
    let long = format!("deep/{}/file", "d".repeat(120));
    write(root, &long, b"a path longer than a ustar header holds\n");
    let fifo = CString::new(root.join("run-fifo").as_os_str().as_bytes()).unwrap();
    assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o640) }, 0);
    if as_root() {
        write(root, "home/user/notes", b"mine\n");
        std::os::unix::fs::chown(root.join("home/user"), Some(1234), Some(1234)).unwrap();
        std::os::unix::fs::chown(root.join("home/user/notes"), Some(1234), Some(5678)).unwrap();
        std::os::unix::fs::lchown(root.join("lib"), Some(99), Some(99)).unwrap();
        let dev = CString::new(root.join("null").as_os_str().as_bytes()).unwrap();
        let rdev = libc::makedev(1, 3);
        assert_eq!(
            unsafe { libc::mknod(dev.as_ptr(), libc::S_IFCHR | 0o666, rdev) },
            0
        );
        std::fs::set_permissions(root.join("null"), std::fs::Permissions::from_mode(0o666))
            .unwrap();
    }
}

#[test]
fn an_archive_of_an_image_adds_back_as_the_same_manifest() {
    let server = NatsServer::start().unwrap();
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("src");
    awkward_tree(&src);
    imagetool(&server, &["add", "img", s(&src), "", ""]).ok();
    let id = record(&server, "img").manifest;
    let shown = imagetool(&server, &["show", "img"]).ok();
    assert!(shown.contains("-rwsr-xr-x 0:0 "), "{shown}");
    assert!(shown.contains(" => /etc/passwd"), "{shown}");
    if as_root() {
        assert!(shown.contains("1234:5678"), "{shown}");
        assert!(shown.contains("crw-rw-rw- 0:0 1,3 "), "{shown}");
    }

    for (i, out) in ["img.tar", "img.tar.gz", "img.tgz"].iter().enumerate() {
        let out = work.path().join(out);
        let summary = imagetool(&server, &["tar", "img", s(&out)]).ok();
        assert!(
            summary.starts_with(&format!("wrote img to {}", out.display())),
            "{summary}"
        );
        let gzip = std::fs::read(&out).unwrap().starts_with(&[0x1f, 0x8b]);
        assert_eq!(gzip, i > 0, "{}", out.display());
        let back = format!("back{i}");
        imagetool(&server, &["add", &back, s(&out), "", ""]).ok();
        assert_eq!(record(&server, &back).manifest, id, "{}", out.display());
        assert_eq!(imagetool(&server, &["show", &back]).ok(), shown);
    }

    // To standard output, compressed with the original's -compress.
    let piped = work.path().join("piped.tar.gz");
    let output = imagetool_on(&server, &["-compress", "tar", "img", "-"])
        .output()
        .unwrap();
    assert!(output.status.success());
    assert!(output.stdout.starts_with(&[0x1f, 0x8b]));
    std::fs::write(&piped, &output.stdout).unwrap();
    imagetool(&server, &["add", "piped", s(&piped), "", ""]).ok();
    assert_eq!(record(&server, "piped").manifest, id);
}

/// An archive spanning many compression blocks (each thread compresses
/// 1 MiB at a time) is still one gzip stream, as `gzip` writes: a reader
/// that stops at the end of the first stream gets the whole archive,
/// byte for byte the uncompressed one.
#[test]
fn a_compressed_archive_is_one_gzip_stream_of_the_plain_archive() {
    use std::io::Read;
    let server = NatsServer::start().unwrap();
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("src");
    // Text that compresses, and bytes that do not, 9 MiB in all.
    let mut noise = Vec::with_capacity(3 << 20);
    let mut x: u64 = 20;
    while noise.len() < 3 << 20 {
        x = x
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        noise.extend_from_slice(&x.to_le_bytes());
    }
    let text: Vec<u8> = (0..3 << 20).map(|i| b"line of a log\n"[i % 14]).collect();
    write(&src, "var/noise", &noise);
    write(&src, "var/text", &text);
    write(
        &src,
        "var/both",
        &[&text[..1 << 20], &noise[..2 << 20]].concat(),
    );
    imagetool(&server, &["add", "img", s(&src), "", ""]).ok();
    let plain = work.path().join("img.tar");
    let packed = work.path().join("img.tar.gz");
    imagetool(&server, &["tar", "img", s(&plain)]).ok();
    imagetool(&server, &["tar", "img", s(&packed)]).ok();
    let compressed = std::fs::read(&packed).unwrap();
    let mut unpacked = Vec::new();
    flate2::read::GzDecoder::new(&compressed[..])
        .read_to_end(&mut unpacked)
        .unwrap();
    let plain = std::fs::read(&plain).unwrap();
    assert_eq!(unpacked.len(), plain.len());
    assert!(unpacked == plain, "the archives differ");
    assert!(
        compressed.len() < plain.len() * 3 / 4,
        "{}",
        compressed.len()
    );
}

/// The names in `dir`.
fn names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn an_existing_archive_is_kept_unless_forced_and_failures_leave_nothing() {
    let server = NatsServer::start().unwrap();
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("src");
    write(&src, "etc/motd", b"hello\n");
    imagetool(&server, &["add", "img", s(&src), "", ""]).ok();
    let outs = work.path().join("outs");
    std::fs::create_dir(&outs).unwrap();
    let out = outs.join("img.tar");
    std::fs::write(&out, b"precious").unwrap();

    let err = imagetool(&server, &["tar", "img", s(&out)]).one_line_error();
    assert_eq!(
        err,
        format!(
            "imagetool: {} exists; give another name, or --force to replace it",
            out.display()
        )
    );
    assert_eq!(std::fs::read(&out).unwrap(), b"precious");

    imagetool(&server, &["tar", "--force", "img", s(&out)]).ok();
    assert!(std::fs::read(&out).unwrap().len() > 1024);
    // A new file's mode, not a temporary file's 0600.
    let umask = unsafe {
        let mask = libc::umask(0o022);
        libc::umask(mask);
        mask
    };
    let mode = std::fs::metadata(&out).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o666 & !umask);

    let err = imagetool(&server, &["tar", "nosuch", s(&outs.join("new.tar"))]).one_line_error();
    assert!(err.contains("image nosuch does not exist"), "{err}");
    // No archive, and no temporary one, was left.
    assert_eq!(names(&outs), ["img.tar"]);
}
