//! The original's `mdb.json` file: the bytes as the file `mdbd` watches.
//! Machines read from it are distinct, and written back as a JSON array
//! they read the same.
#![no_main]

use std::collections::BTreeSet;

use dom_model::mdb::{diff_mdb, parse_mdb_file};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(records) = parse_mdb_file(data) else {
        return;
    };
    let hosts: BTreeSet<&str> = records.iter().map(|r| r.hostname.as_str()).collect();
    assert_eq!(hosts.len(), records.len());
    let json = serde_json::to_vec(&records).expect("records serialise");
    let again = parse_mdb_file(&json).expect("written records parse");
    assert_eq!(again, records);
    assert!(diff_mdb(&records, &again).is_empty());
    assert_eq!(diff_mdb(&[], &records).len(), records.len());
});
