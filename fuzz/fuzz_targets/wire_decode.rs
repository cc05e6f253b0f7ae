//! Decodes arbitrary text as a FrameX wire payload `E(x)`, and as a whole call
//! body: any input gets a value or an error, never a crash, and never more than
//! the limit inflated.
#![no_main]

use framex_transport::Value;
use framex_transport::wire::{self, CallBody};
use libfuzzer_sys::fuzz_target;

const LIMIT: usize = 1024 * 1024;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(json) = wire::decode_json(text, LIMIT) {
        assert!(json.len() <= LIMIT);
    }
    let _ = wire::decode_with_limit::<serde_json::Value>(text, LIMIT);
    if let Ok(body) = framex_transport::json::from_str::<CallBody>(text) {
        let _ = wire::decode_with_limit::<String>(&body.func_name, LIMIT);
        let _ = wire::decode_with_limit::<Value>(&body.data, LIMIT);
    }
    // Whatever decodes encodes back to something that decodes to the same
    // value.
    if let Ok(value) = wire::decode_with_limit::<Value>(text, LIMIT) {
        let again = wire::encode(&value).expect("a decoded value encodes");
        assert_eq!(wire::decode::<Value>(&again).ok(), Some(value));
    }
});
