//! One remote call in process over loopback: a client calls a proxy function of
//! an instance bound on 127.0.0.1, with a small JSON object in and out.
//!
//! `cargo bench -p framex --bench remote_call`

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use serde_json::{Value, json};

fn remote_call(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let url = runtime.block_on(async {
        let config = framex::config::Config::from_toml_str("[server]\nport = 0\n").unwrap();
        let mut app = framex::App::from_config(config).unwrap();
        app.register_handler(
            "bench.echo",
            framex::registry::typed(
                |args: Value| async move { Ok::<_, String>(args["value"].clone()) },
            ),
        )
        .unwrap();
        let bound = app.isolated().bind("bench").await.unwrap();
        let url = format!("http://{}", bound.local_addr());
        tokio::spawn(bound.serve_until(std::future::pending()));
        url
    });
    let client = runtime.block_on(async { framex::transport::Client::default() });
    let kwargs = json!({"value": {"job_id": "j-1", "count": 3, "tags": ["a", "b"]}});

    c.bench_function("remote_call/echo over loopback", |b| {
        b.to_async(&runtime).iter(|| async {
            client
                .call(black_box(&url), None, "bench.echo", &kwargs)
                .await
                .unwrap()
        });
    });
}

criterion_group!(benches, remote_call);
criterion_main!(benches);
