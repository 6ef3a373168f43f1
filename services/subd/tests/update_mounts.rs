//! A path on another file system than the object cache (a separate `/boot`)
//! cannot be reached by rename; its inodes are made beside it instead.
//! Needs the right to mount a tmpfs; skipped where that is not allowed.

use std::ffi::CString;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use crate::update_support::*;
use dom_model::Filter;

/// A tmpfs mounted for the length of a test.
struct Mount(PathBuf);

impl Mount {
    fn tmpfs(at: &Path) -> Option<Self> {
        fs::create_dir_all(at).unwrap();
        let target = CString::new(at.as_os_str().as_bytes()).unwrap();
        let ok = unsafe {
            libc::mount(
                c"tmpfs".as_ptr(),
                target.as_ptr(),
                c"tmpfs".as_ptr(),
                0,
                std::ptr::null(),
            )
        } == 0;
        ok.then(|| Self(at.to_path_buf()))
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        let target = CString::new(self.0.as_os_str().as_bytes()).unwrap();
        unsafe { libc::umount2(target.as_ptr(), libc::MNT_DETACH) };
    }
}

#[test]
fn inodes_on_another_file_system_are_made_beside_their_paths() {
    let m = Machine::new();
    let Some(_boot) = Mount::tmpfs(&m.path("/boot")) else {
        eprintln!("cannot mount a tmpfs here: skipped");
        return;
    };
    write(&m.root, "/boot/old-kernel", "old\n");
    let src = Source::new();
    src.file("/boot/vmlinuz", "kernel\n")
        .file("/boot/initrd", "kernel\n")
        .file("/etc/hostname", "kernel\n");
    chmod(src.root(), "/boot/vmlinuz", 0o600);
    fs::hard_link(
        src.root().join("boot/vmlinuz"),
        src.root().join("boot/vmlinuz.0"),
    )
    .unwrap();
    std::os::unix::fs::symlink("vmlinuz", src.root().join("boot/current")).unwrap();
    chmod(src.root(), "/boot", 0o755);
    let image = src.image();

    m.converge(&image, src.root(), Some(&Filter::empty()));
    assert_eq!(read(&m.root, "/boot/vmlinuz"), "kernel\n");
    assert_eq!(
        fs::read_link(m.path("/boot/current")).unwrap().to_str(),
        Some("vmlinuz")
    );
    let ino = |p: &str| fs::metadata(m.path(p)).unwrap().ino();
    assert_eq!(ino("/boot/vmlinuz"), ino("/boot/vmlinuz.0"));
    assert_ne!(ino("/boot/vmlinuz"), ino("/boot/initrd"));
    let mut names: Vec<_> = fs::read_dir(m.path("/boot"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, ["current", "initrd", "vmlinuz", "vmlinuz.0"]);
    // Nothing left staged in the cache.
    assert_eq!(
        dom_tests::files_under(&m.path("/.subd/objects")),
        [] as [PathBuf; 0]
    );
}
