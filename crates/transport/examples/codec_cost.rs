//! Times encoding plus decoding of keyword arguments of about 1 KiB of JSON, as
//! a call does (`wire::encode_kwargs`, then `wire::decode` into an object), and
//! prints the median over batches in nanoseconds per round trip.
//!
//! `cargo xtask bench` runs it in release mode right after its load runs, so
//! that the codec's cost and a call's CPU time come from one run of the
//! machine. The criterion bench `codec` measures the same thing more closely.

use std::hint::black_box;
use std::time::Instant;

use framex_transport::json::{Map, Value};
use framex_transport::wire;

fn main() {
    let mut kwargs: Map = framex_transport::json::from_str(
        r#"{"job_id": "j-1", "count": 42, "ratio": 0.5, "flags": [true, false]}"#,
    )
    .expect("an object");
    let filler: String = "lorem ipsum dolor sit amet, 0123456789 "
        .chars()
        .cycle()
        .take(1024 - 72)
        .collect();
    kwargs.insert("text", Value::String(filler));

    const BATCH: u32 = 2_000;
    let mut per_round_trip = Vec::new();
    for _ in 0..41 {
        let started = Instant::now();
        for _ in 0..BATCH {
            let encoded = wire::encode_kwargs(black_box(&kwargs)).expect("an object encodes");
            let decoded: Map = wire::decode(&encoded).expect("own encoding decodes");
            black_box(decoded);
        }
        per_round_trip.push(started.elapsed().as_nanos() / u128::from(BATCH));
    }
    per_round_trip.sort_unstable();
    let json_len = framex_transport::json::to_vec(&kwargs).expect("JSON").len();
    println!(
        "{{\"json_bytes\": {json_len}, \"median_ns\": {}}}",
        per_round_trip[per_round_trip.len() / 2]
    );
}
