//! Reading and writing JSON documents of about 1 KiB, 64 KiB and 1 MiB (an
//! array of records, the shape of a typical result) with this crate and with
//! serde_json side by side: into a `Value`, into typed records, and back.
//!
//! `cargo bench -p framex-json --bench json`

use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use serde::{Deserialize, Serialize};

#[derive(Debug, Serialize, Deserialize)]
struct Record {
    id: u64,
    name: String,
    score: f64,
    tags: Vec<String>,
    active: bool,
    parent: Option<u64>,
}

/// About `size` bytes of JSON: records with text, integers, floats and lists.
fn document(size: usize) -> Vec<u8> {
    let mut records = Vec::new();
    let mut bytes = 2;
    let mut id = 0u64;
    while bytes < size {
        let record = Record {
            id,
            name: format!("record número {id} of the report"),
            score: id as f64 * 0.731 + 0.5,
            tags: vec!["alpha".into(), format!("t{}", id % 7)],
            active: id.is_multiple_of(3),
            parent: id.checked_sub(1),
        };
        bytes += serde_json::to_vec(&record).unwrap().len() + 1;
        records.push(record);
        id += 1;
    }
    serde_json::to_vec(&records).unwrap()
}

fn json(c: &mut Criterion) {
    for (label, size) in [("1KiB", 1024), ("64KiB", 64 * 1024), ("1MiB", 1024 * 1024)] {
        let text = document(size);
        let mut group = c.benchmark_group(format!("json/{label}"));
        group.throughput(Throughput::Bytes(text.len() as u64));
        group.bench_function(BenchmarkId::new("read Value", "framex_json"), |b| {
            b.iter(|| framex_json::from_slice::<framex_json::Value>(black_box(&text)).unwrap());
        });
        group.bench_function(BenchmarkId::new("read Value", "serde_json"), |b| {
            b.iter(|| serde_json::from_slice::<serde_json::Value>(black_box(&text)).unwrap());
        });
        group.bench_function(BenchmarkId::new("read records", "framex_json"), |b| {
            b.iter(|| framex_json::from_slice::<Vec<Record>>(black_box(&text)).unwrap());
        });
        group.bench_function(BenchmarkId::new("read records", "serde_json"), |b| {
            b.iter(|| serde_json::from_slice::<Vec<Record>>(black_box(&text)).unwrap());
        });
        let ours: framex_json::Value = framex_json::from_slice(&text).unwrap();
        let theirs: serde_json::Value = serde_json::from_slice(&text).unwrap();
        group.bench_function(BenchmarkId::new("write Value", "framex_json"), |b| {
            b.iter(|| framex_json::to_vec(black_box(&ours)).unwrap());
        });
        group.bench_function(BenchmarkId::new("write Value", "serde_json"), |b| {
            b.iter(|| serde_json::to_vec(black_box(&theirs)).unwrap());
        });
        let records: Vec<Record> = serde_json::from_slice(&text).unwrap();
        group.bench_function(BenchmarkId::new("write records", "framex_json"), |b| {
            b.iter(|| framex_json::to_vec(black_box(&records)).unwrap());
        });
        group.bench_function(BenchmarkId::new("write records", "serde_json"), |b| {
            b.iter(|| serde_json::to_vec(black_box(&records)).unwrap());
        });
        group.finish();
    }
}

criterion_group!(benches, json);
criterion_main!(benches);
