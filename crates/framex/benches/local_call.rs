//! A local `#[on_proxy]` call against calling the same function body directly,
//! with no runtime installed and with one that routes other names elsewhere.
//!
//! `cargo bench -p framex --bench local_call`

use std::future::Future;
use std::hint::black_box;
use std::pin::pin;
use std::task::{Context, Poll, Waker};

use criterion::{Criterion, criterion_group, criterion_main};

#[framex::on_proxy(name = "bench.add")]
async fn add(a: u64, b: u64) -> Result<u64, framex::Error> {
    Ok(a.wrapping_add(b))
}

/// The same body, without the attribute.
async fn add_direct(a: u64, b: u64) -> Result<u64, framex::Error> {
    Ok(a.wrapping_add(b))
}

/// Polls a future that completes without waiting.
fn ready<F: Future>(future: F) -> F::Output {
    let mut future = pin!(future);
    match future
        .as_mut()
        .poll(&mut Context::from_waker(Waker::noop()))
    {
        Poll::Ready(output) => output,
        Poll::Pending => panic!("the body never waits"),
    }
}

fn local_call(c: &mut Criterion) {
    let mut group = c.benchmark_group("local_call");
    group.bench_function("direct", |b| {
        b.iter(|| ready(add_direct(black_box(1), black_box(2))).unwrap());
    });
    group.bench_function("on_proxy, no runtime", |b| {
        b.iter(|| ready(add(black_box(1), black_box(2))).unwrap());
    });

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let app = runtime.block_on(async {
        let config = framex::config::Config::from_toml_str(
            "load_builtin_plugins = [\"proxy\"]\n[server]\nenable_proxy = true\n\
             [plugins.proxy]\nproxy_urls = [\"http://127.0.0.1:9\"]\n\
             proxy_functions = { \"http://127.0.0.1:9\" = [\"bench.other\"] }\n",
        )
        .unwrap();
        framex::App::from_config(config).unwrap()
    });
    let installed = app.install().unwrap();
    group.bench_function("on_proxy, runtime installed", |b| {
        b.iter(|| ready(add(black_box(1), black_box(2))).unwrap());
    });
    drop(installed);
    group.finish();
}

criterion_group!(benches, local_call);
criterion_main!(benches);
