//! estimate-usage: the numbers for a tree whose every inode is known.

use crate::common::*;

#[test]
fn estimate_counts_blocks_per_inode_and_hard_links_once() {
    let server = NatsServer::start().unwrap();
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("src");
    write(&src, "a", &[7u8; 5000]);
    std::fs::hard_link(src.join("a"), src.join("a.hard")).unwrap();
    write(&src, "b", b"0123456789");
    std::fs::create_dir(src.join("e")).unwrap();
    std::os::unix::fs::symlink("a", src.join("l")).unwrap();
    imagetool(&server, &["add", "est", src.to_str().unwrap(), "", ""]).ok();
    assert_eq!(
        imagetool(&server, &["estimate-usage", "est"]).ok(),
        "estimated usage of est: 20.1 KiB (20544 bytes)\n\
         files: 2 (hard links counted once), 4.9 KiB (5010 bytes) of content, \
         12.0 KiB (12288 bytes) in 4 KiB blocks\n\
         directories: 2, 8.0 KiB (8192 bytes)\n\
         symlinks: 1, 64 B (64 bytes)\n\
         devices and fifos: 0, no data\n\
         objects to fetch: 2 distinct, 4.9 KiB (5010 bytes)\n"
    );
    let err = imagetool(&server, &["estimate-usage", "nosuch"]).one_line_error();
    assert!(err.contains("image nosuch does not exist"), "{err}");
}
