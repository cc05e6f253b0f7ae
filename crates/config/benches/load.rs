//! Loading large configurations: 10,000 listed functions on 10,000 upstreams,
//! 5,000 functions on URLs that are not listed (each an error), and 50,000
//! unknown keys (each an error). Loading is linear: each of these takes a
//! fraction of a second.
//!
//! `cargo bench -p framex-config --bench load`

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};

const PROXY_ON: &str = "load_builtin_plugins = [\"proxy\"]\n[server]\nenable_proxy = true\n";

fn upstreams(count: usize, listed_port: u16, function_port: u16) -> String {
    let urls: Vec<String> = (0..count)
        .map(|i| format!("\"http://h{i}:{listed_port}\""))
        .collect();
    let functions: Vec<String> = (0..count)
        .map(|i| format!("\"http://h{i}:{function_port}\" = [\"m{i}.f\"]"))
        .collect();
    format!(
        "{PROXY_ON}[plugins.proxy]\nproxy_urls = [{}]\nproxy_functions = {{ {} }}\n",
        urls.join(", "),
        functions.join(", ")
    )
}

fn load(c: &mut Criterion) {
    let files = [
        ("10000 listed functions", upstreams(10_000, 8080, 8080)),
        ("5000 unlisted URLs", upstreams(5_000, 8080, 8081)),
        (
            "50000 unknown keys",
            format!(
                "[server]\n{}",
                (0..50_000)
                    .map(|i| format!("k{i} = 1\n"))
                    .collect::<String>()
            ),
        ),
    ];
    let mut group = c.benchmark_group("load");
    group.sample_size(10);
    for (name, text) in &files {
        group.bench_function(*name, |b| {
            b.iter(|| {
                let _ = black_box(framex_config::Config::from_toml_str(black_box(text)));
            });
        });
    }
    group.finish();
}

criterion_group!(benches, load);
criterion_main!(benches);
