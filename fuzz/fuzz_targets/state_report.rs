//! State report and event decoding, as the dominator and `domtool watch`
//! read `dom.state.<host>` and `dom.event.<host>.<kind>`. Whatever decodes
//! encodes and decodes back to itself.
#![no_main]

use dom_model::{Event, StateReport};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(report) = StateReport::decode(data) {
        let again = StateReport::decode(&report.encode()).expect("an encoded report decodes");
        assert_eq!(again, report);
    }
    if let Ok(event) = Event::decode(data) {
        let again = Event::decode(&event.encode()).expect("an encoded event decodes");
        assert_eq!(again, event);
    }
});
