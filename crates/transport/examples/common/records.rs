//! The JSON records that `cargo xtask payload` sends and the compression
//! bench writes: shared by `examples/payload_floor.rs` and
//! `benches/compression.rs`, so that both measure the same bodies.

use std::io::Write as _;

/// An array of about `bytes` of JSON records: numbers, text that repeats with
/// a counter in it, an array of tags, a boolean.
pub fn records(bytes: usize) -> Vec<u8> {
    let mut json = b"[".to_vec();
    let mut i = 0u64;
    while json.len() < bytes {
        if i > 0 {
            json.push(b',');
        }
        write!(
            json,
            r#"{{"id":{i},"name":"record {i} of the nightly report","score":{},"tags":["alpha","beta","gamma"],"ok":{}}}"#,
            i as f64 * 1.25,
            i.is_multiple_of(3)
        )
        .unwrap();
        i += 1;
    }
    json.push(b']');
    json
}
