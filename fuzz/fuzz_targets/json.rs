//! Reads arbitrary bytes as JSON in Python FrameX's dialect: any input is a
//! value or an error, never a crash; what reads writes back to text that reads
//! as the same value and writes as the same text; and whatever serde_json
//! accepts is accepted too.
#![no_main]

use framex_json::Value;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let read = framex_json::from_slice::<Value>(data);
    if serde_json::from_slice::<serde_json::Value>(data).is_ok() {
        assert!(
            read.is_ok(),
            "serde_json reads it, framex_json must: {read:?}"
        );
    }
    let Ok(value) = read else { return };
    let written = framex_json::to_vec(&value).expect("a value read writes");
    let again: Value = framex_json::from_slice(&written).expect("what was written reads");
    assert_eq!(again, value);
    assert_eq!(framex_json::to_vec(&again).unwrap(), written);
    // Typed reading of the same bytes never crashes either.
    let _ = framex_json::from_slice::<serde_json::Value>(data);
    let _ = framex_json::from_slice::<Vec<f64>>(data);
});
