//! State report and event decoding, as the dominator and `domtool watch`
//! read `dom.state.<host>` and `dom.event.<host>.<kind>`. Whatever decodes
//! encodes and decodes back to itself, except that a fractional number in
//! an event's free-form `details` may come back a last digit apart (JSON
//! numbers are parsed fast, not correctly rounded); whole numbers, strings
//! and the shape of `details` come back exactly.
#![no_main]

use dom_model::{Event, StateReport};
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

fuzz_target!(|data: &[u8]| {
    if let Ok(report) = StateReport::decode(data) {
        let again = StateReport::decode(&report.encode()).expect("an encoded report decodes");
        assert_eq!(again, report);
    }
    if let Ok(event) = Event::decode(data) {
        let again = Event::decode(&event.encode()).expect("an encoded event decodes");
        assert!(same_shape(&again.details, &event.details), "{event:?}");
        let without_details = |e: &Event| Event {
            details: Value::Null,
            ..e.clone()
        };
        assert_eq!(without_details(&again), without_details(&event));
    }
});

/// Equal, except that two fractional numbers always match.
fn same_shape(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) if x.is_f64() && y.is_f64() => true,
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(x, y)| same_shape(x, y))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k, v)| y.get(k).is_some_and(|w| same_shape(v, w)))
        }
        _ => a == b,
    }
}
