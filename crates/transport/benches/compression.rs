//! What the compression of a large payload costs each side of a call, and what
//! it saves on the wire: `E(json)` written at level 0 (stored), 1 and 6
//! (Python FrameX's `zlib.compress`), and read back, for about 64 KiB, 1 MiB and
//! 16 MiB of JSON records of the kind `cargo xtask payload` sends. The encoded
//! size of each is printed once before its timings.
//!
//! `cargo bench -p framex-transport --bench compression`

#[path = "../examples/common/records.rs"]
mod common;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use framex_transport::wire::{self, Compression};
use std::hint::black_box;

fn compression(c: &mut Criterion) {
    let mut group = c.benchmark_group("compression");
    for (label, size) in [
        ("64KiB", 64 * 1024),
        ("1MiB", 1024 * 1024),
        ("16MiB", 16 * 1024 * 1024),
    ] {
        let json = common::records(size);
        group.throughput(Throughput::Bytes(json.len() as u64));
        group.sample_size(if size > 1024 * 1024 { 10 } else { 50 });
        for level in [0, 1, 6] {
            let compression = Compression::level(level).unwrap();
            let encoded = wire::encode_json_with(&json, compression);
            println!(
                "compression/{label} level {level}: {} bytes of JSON, {} bytes encoded ({:.1}%)",
                json.len(),
                encoded.len(),
                encoded.len() as f64 * 100.0 / json.len() as f64
            );
            group.bench_with_input(
                BenchmarkId::new(format!("encode level {level}"), label),
                &json,
                |b, json| b.iter(|| wire::encode_json_with(black_box(json), compression)),
            );
            group.bench_with_input(
                BenchmarkId::new(format!("decode level {level}"), label),
                &encoded,
                |b, encoded| b.iter(|| wire::decode_json(black_box(encoded), usize::MAX).unwrap()),
            );
        }
    }
    group.finish();
}

criterion_group!(benches, compression);
criterion_main!(benches);
