//! The floor of a large call's payload work, for `cargo xtask payload`: what
//! serving an echo of `BYTES` of JSON costs done plainly in one process with
//! ordinary crates, no FrameX code on the way.
//!
//! It writes the call body of `demo.echo` with those arguments, encoded as
//! Python FrameX sends them (zlib at its default level, XOR, base64), to
//! `BODY_OUT`, for the task to post to an instance. Then it does, `CALLS`
//! times, what any server of that call must: base64 and XOR, inflate, parse
//! into a `serde_json::Value`, write it back, frame it as a stored zlib
//! stream, XOR and base64; and prints the CPU time (user plus system) per
//! call in microseconds.
//!
//! `cargo run --release -p framex-transport --example payload_floor -- BYTES CALLS BODY_OUT`

#[path = "common/records.rs"]
mod common;

use std::hint::black_box;
use std::io::{Read as _, Write as _};

const KEY: &[u8] = b"01234567890abcdefghijklmnopqrstuvwxyz";

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [bytes, calls, body_out] = args.as_slice() else {
        eprintln!("usage: payload_floor BYTES CALLS BODY_OUT");
        std::process::exit(2);
    };
    let (bytes, calls): (usize, u32) = match (bytes.parse(), calls.parse()) {
        (Ok(bytes), Ok(calls)) => (bytes, calls),
        _ => {
            eprintln!("BYTES and CALLS must be whole numbers, not `{bytes}` and `{calls}`");
            std::process::exit(2);
        }
    };
    let json = kwargs(bytes);
    let data = python_encode(&json);
    let body = serde_json::json!({
        "func_name": python_encode(br#""demo.echo""#),
        "data": data,
    });
    if let Err(error) = std::fs::write(body_out, serde_json::to_vec(&body).unwrap()) {
        eprintln!("cannot write {body_out}: {error}");
        std::process::exit(1);
    }
    for _ in 0..calls.div_ceil(10) {
        black_box(floor(black_box(&data)));
    }
    let start = cpu_seconds();
    for _ in 0..calls {
        black_box(floor(black_box(&data)));
    }
    let per_call = (cpu_seconds() - start) / f64::from(calls);
    println!("{:.1}", per_call * 1e6);
}

/// The keyword arguments of `demo.echo`: `value`, an array of records, about
/// `bytes` of JSON.
fn kwargs(bytes: usize) -> Vec<u8> {
    let mut json = br#"{"value":"#.to_vec();
    json.extend_from_slice(&common::records(bytes.saturating_sub(10)));
    json.push(b'}');
    json
}

/// `E(json)` as Python FrameX writes it.
fn python_encode(json: &[u8]) -> String {
    let mut encoder = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
    encoder.write_all(json).unwrap();
    let mut bytes = encoder.finish().unwrap();
    xor(&mut bytes);
    base64_simd::STANDARD.encode_to_string(bytes)
}

fn xor(bytes: &mut [u8]) {
    for (byte, key) in bytes.iter_mut().zip(KEY.iter().cycle()) {
        *byte ^= key;
    }
}

/// The payload work of one echo call.
fn floor(data: &str) -> String {
    let mut bytes = base64_simd::STANDARD
        .decode_to_vec(data.as_bytes())
        .unwrap();
    xor(&mut bytes);
    let mut json = Vec::with_capacity(bytes.len() * 4);
    flate2::read::ZlibDecoder::new(bytes.as_slice())
        .read_to_end(&mut json)
        .unwrap();
    let value: serde_json::Value = serde_json::from_slice(&json).unwrap();
    let written = serde_json::to_vec(&value["value"]).unwrap();
    let mut encoder = flate2::write::ZlibEncoder::new(
        Vec::with_capacity(written.len() + 64),
        flate2::Compression::none(),
    );
    encoder.write_all(&written).unwrap();
    let mut stored = encoder.finish().unwrap();
    xor(&mut stored);
    base64_simd::STANDARD.encode_to_string(stored)
}

/// This process's user plus system CPU time so far, in seconds.
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    let ticks = |index: usize| -> f64 {
        fields
            .get(index)
            .and_then(|field| field.parse().ok())
            .unwrap_or_default()
    };
    // The kernel counts in clock ticks, 100 a second on Linux.
    (ticks(11) + ticks(12)) / 100.0
}
