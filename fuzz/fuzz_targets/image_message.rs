//! Image stream messages, as every reader of `dom.image.<name>` decodes
//! them: an image record or a tombstone. Whatever decodes encodes and
//! decodes back to itself.
#![no_main]

use dom_model::ImageMessage;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(message) = ImageMessage::decode(data) else {
        return;
    };
    let again = ImageMessage::decode(&message.encode()).expect("an encoded message decodes");
    assert_eq!(again, message);
});
