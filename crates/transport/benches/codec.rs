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

fn codec(c: &mut Criterion) {
    let mut group = c.benchmark_group("codec");
    for (label, size) in [("100B", 100), ("1KiB", 1024), ("64KiB", 64 * 1024)] {
        let kwargs = kwargs(size);
        let encoded = wire::encode_kwargs(&kwargs);
        group.throughput(Throughput::Bytes(size as u64));
        group.bench_with_input(BenchmarkId::new("encode", label), &kwargs, |b, kwargs| {
            b.iter(|| wire::encode_kwargs(black_box(kwargs)));
        });
        group.bench_with_input(BenchmarkId::new("decode", label), &encoded, |b, encoded| {
            b.iter(|| wire::decode::<Map<String, Value>>(black_box(encoded)).unwrap());
        });
        group.bench_with_input(
            BenchmarkId::new("encode+decode", label),
            &kwargs,
            |b, kwargs| {
                b.iter(|| {
                    let encoded = wire::encode_kwargs(black_box(kwargs));
                    wire::decode::<Map<String, Value>>(&encoded).unwrap()
                });
            },
        );
    }
    group.finish();
}

criterion_group!(benches, codec);
criterion_main!(benches);
