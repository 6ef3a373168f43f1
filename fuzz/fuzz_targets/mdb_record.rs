//! MDB record decoding, as from `dom.mdb.<host>`: the first line is the
//! host the subject names, the rest the payload. A record that decodes
//! encodes and decodes back to itself.
#![no_main]

use dom_model::MdbRecord;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let (host, payload) = match data.iter().position(|b| *b == b'\n') {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &[][..]),
    };
    let Ok(host) = std::str::from_utf8(host) else {
        return;
    };
    let Ok(Some(record)) = MdbRecord::decode(host, payload) else {
        return;
    };
    assert_eq!(record.hostname, host);
    let again = MdbRecord::decode(host, &record.encode()).expect("an encoded record decodes");
    assert_eq!(again, Some(record));
});
