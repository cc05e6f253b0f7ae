//! The wire codec: `E(kwargs)` encode and decode for keyword arguments of about
//! 100 B, 1 KiB and 64 KiB of JSON, as a call encodes them
//! ([`wire::encode_kwargs`]) and the serving side decodes them.
//!
//! `cargo bench -p framex-transport --bench codec`

use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use framex_transport::wire;
use serde_json::{Map, Value, json};

/// A kwargs object of about `size` bytes of JSON: a few typed fields and text.
fn kwargs(size: usize) -> Map<String, Value> {
    let mut kwargs = json!({
        "job_id": "j-1",
        "count": 42,
        "ratio": 0.5,
        "flags": [true, false],
    })
    .as_object()
    .unwrap()
    .clone();
    let base = serde_json::to_vec(&kwargs).unwrap().len();
    let filler: String = "lorem ipsum dolor sit amet, 0123456789 "
        .chars()
        .cycle()
        .take(size.saturating_sub(base + 12))
        .collect();
    kwargs.insert("text".to_owned(), Value::String(filler));
    kwargs
}

/// `E(kwargs)` with the JSON compressed at zlib's default level, as Python's
/// `zlib.compress` writes it.
fn deflated(kwargs: &Map<String, Value>) -> String {
    use std::io::Write as _;
    let mut encoder = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
    encoder
        .write_all(&serde_json::to_vec(kwargs).unwrap())
        .unwrap();
    let mut bytes = encoder.finish().unwrap();
    let key = b"01234567890abcdefghijklmnopqrstuvwxyz";
    for (i, byte) in bytes.iter_mut().enumerate() {
        *byte ^= key[i % key.len()];
    }
    base64_simd::STANDARD.encode_to_string(bytes)
}

fn codec(c: &mut Criterion) {
    let mut group = c.benchmark_group("codec");
    for (label, size) in [("100B", 100), ("1KiB", 1024), ("64KiB", 64 * 1024)] {
        let kwargs = kwargs(size);
        let encoded = wire::encode_kwargs(&kwargs).unwrap();
        group.throughput(Throughput::Bytes(size as u64));
        group.bench_with_input(BenchmarkId::new("encode", label), &kwargs, |b, kwargs| {
            b.iter(|| wire::encode_kwargs(black_box(kwargs)).unwrap());
        });
        group.bench_with_input(BenchmarkId::new("decode", label), &encoded, |b, encoded| {
            b.iter(|| wire::decode::<framex_transport::json::Map>(black_box(encoded)).unwrap());
        });
        // What a Python FrameX client sends: the JSON deflated at zlib's
        // default level.
        let deflated = deflated(&kwargs);
        group.bench_with_input(
            BenchmarkId::new("decode deflated", label),
            &deflated,
            |b, deflated| {
                b.iter(|| {
                    wire::decode::<framex_transport::json::Map>(black_box(deflated)).unwrap()
                });
            },
        );
        group.bench_with_input(
            BenchmarkId::new("encode+decode", label),
            &kwargs,
            |b, kwargs| {
                b.iter(|| {
                    let encoded = wire::encode_kwargs(black_box(kwargs)).unwrap();
                    wire::decode::<framex_transport::json::Map>(&encoded).unwrap()
                });
            },
        );
    }
    group.finish();
}

criterion_group!(benches, codec);
criterion_main!(benches);
