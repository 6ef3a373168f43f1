//! Tar ingestion, as `imagetool add` reads a `.tar` or `.tar.gz` source:
//! the bytes as an archive (gzip-compressed when they start with the gzip
//! magic), and the same bytes compressed first. Reading never panics and
//! never writes; whatever is accepted is a valid manifest whose every path
//! and link stays inside the image root.
#![no_main]

use std::io::{Cursor, Write};
use std::path::Path;
use std::sync::LazyLock;

use dom_model::{path, Filter, Inode, Manifest};
use dom_scan::Counters;
use flate2::{write::GzEncoder, Compression};
use imagetool::source::{scan_archive, SourceOptions};
use libfuzzer_sys::fuzz_target;

/// A filter, so filtered entries and hard links to them are exercised too.
static FILTER: LazyLock<Filter> =
    LazyLock::new(|| Filter::parse("/tmp/.*\n/skip\n").expect("the filter compiles"));

fuzz_target!(|data: &[u8]| {
    check(data);
    let mut gz = GzEncoder::new(Vec::new(), Compression::fast());
    gz.write_all(data).expect("writing to memory");
    check(&gz.finish().expect("writing to memory"));
});

fn check(bytes: &[u8]) {
    let options = SourceOptions {
        filter: FILTER.clone(),
        cache: None,
        sink: None,
    };
    let counters = Counters::default();
    let Ok(manifest) = scan_archive(
        Cursor::new(bytes),
        Path::new("fuzz.tar"),
        &options,
        &counters,
    ) else {
        return;
    };
    manifest.validate().expect("an ingested manifest is valid");
    for entry in &manifest.entries {
        assert_eq!(path::normalise(&entry.path), Ok(entry.path.as_str()));
        assert!(
            entry.path == "/" || !FILTER.matches(&entry.path),
            "{}",
            entry.path
        );
        match &entry.inode {
            Inode::Symlink { target, .. } => {
                assert!(path::symlink_stays_inside(&entry.path, target), "{target}")
            }
            Inode::Link { target } => {
                assert_eq!(path::normalise(target), Ok(target.as_str()));
                assert!(!FILTER.matches(target), "{target}");
            }
            _ => {}
        }
    }
    let again = Manifest::decode(&manifest.encode()).expect("an ingested manifest round-trips");
    assert_eq!(again, manifest);
}
