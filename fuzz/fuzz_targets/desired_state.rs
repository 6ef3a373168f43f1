//! Desired-state decoding, as an agent reads `dom.desired.<host>`. A state
//! that decodes has a filter and triggers that compile, and encodes and
//! decodes back to itself.
#![no_main]

use dom_model::DesiredState;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(state) = DesiredState::decode(data) else {
        return;
    };
    state.compile_filter().expect("a decoded filter compiles");
    state.compile_triggers().expect("decoded triggers compile");
    let again = DesiredState::decode(&state.encode()).expect("an encoded state decodes");
    assert_eq!(again, state);
});
