//! Filter parsing: the bytes as a filter file. A filter that compiles
//! matches any path without panicking, and its stored lines (what an image
//! record and a desired state carry) compile again to the same filter.
#![no_main]

use dom_model::Filter;
use libfuzzer_sys::fuzz_target;

const PATHS: &[&str] = &["/", "/etc/passwd", "/tmp/x", "/var/log/messages", "/é"];

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let Ok(filter) = Filter::parse(&text) else {
        return;
    };
    let again = Filter::new(filter.lines()).expect("stored filter lines compile");
    assert_eq!(again.lines(), filter.lines());
    for path in PATHS
        .iter()
        .copied()
        .chain(filter.lines().iter().map(String::as_str))
    {
        assert_eq!(again.matches(path), filter.matches(path));
    }
});
