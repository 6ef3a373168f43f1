//! Manifest decoding: the bytes as a stored manifest (gzip-compressed
//! JSON), and the same bytes compressed first, so the fuzzer reaches the
//! JSON and the validation behind the gzip layer. Whatever decodes must be
//! a valid manifest that encodes and decodes back to itself.
#![no_main]

use std::io::Write;

use dom_model::Manifest;
use flate2::{write::GzEncoder, Compression};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    check(data);
    let mut gz = GzEncoder::new(Vec::new(), Compression::fast());
    gz.write_all(data).expect("writing to memory");
    check(&gz.finish().expect("writing to memory"));
});

fn check(bytes: &[u8]) {
    let Ok(manifest) = Manifest::decode(bytes) else {
        return;
    };
    manifest.validate().expect("a decoded manifest is valid");
    let again = Manifest::decode(&manifest.encode()).expect("a re-encoded manifest decodes");
    assert_eq!(again, manifest);
    let _ = manifest.totals();
    let _ = manifest.objects();
    for entry in &manifest.entries {
        assert!(manifest.get(&entry.path).is_some());
        let _ = manifest.resolve(entry);
    }
}
