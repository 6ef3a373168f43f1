//! Triggers parsing: the bytes as a Dominator triggers file. Triggers that
//! compile can be matched against paths (which sorts the fired ones) without
//! panicking, and their JSON form, as an image record carries it, parses
//! back to the same list.
#![no_main]

use dom_model::Triggers;
use libfuzzer_sys::fuzz_target;

const PATHS: &[&str] = &[
    "/",
    "/etc/ssh/sshd_config",
    "/usr/sbin/sshd",
    "/etc/passwd",
    "/tmp/x",
];

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let Ok(triggers) = Triggers::parse(&text) else {
        return;
    };
    let json = serde_json::to_string(triggers.list()).expect("triggers serialise");
    let again = Triggers::parse(&json).expect("serialised triggers parse");
    assert_eq!(again.list(), triggers.list());
    let fired = triggers.matching(PATHS);
    assert!(fired.len() <= triggers.list().len());
    for pattern in triggers.list().iter().flat_map(|t| &t.match_lines) {
        triggers.matching([pattern]);
    }
});
