//! The event language: any JSON that parses as an `Event` serializes and
//! parses back equal (and to the same JSON), and the strict reader agrees
//! with serde_json on documents without repeated keys.
#![no_main]

use libfuzzer_sys::fuzz_target;
use storehook_shared::event::Event;

fuzz_target!(|data: &[u8]| {
    let Ok(e) = serde_json::from_slice::<Event>(data) else {
        return;
    };
    // The strict reader refuses only repeated keys.
    if storehook_shared::json::check_unique_keys(data).is_ok() {
        let strict: Event =
            storehook_shared::json::from_slice(data).expect("strict reader refused a valid event");
        assert_eq!(strict, e, "strict and plain readers differ");
    }
    let _ = e.group_key();
    let text = serde_json::to_vec(&e).expect("an event serializes");
    let back: Event = serde_json::from_slice(&text).expect("a serialized event parses");
    assert_eq!(back, e, "event round trip changed it");
    let again = serde_json::to_vec(&back).expect("serializes");
    assert_eq!(again, text, "serialization is not stable");
});
