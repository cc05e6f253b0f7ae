//! Registry dispatch: finding a name's handler and running it, for a handler
//! that answers at once, against calling the same closure directly.
//!
//! `cargo bench -p framex-registry --bench dispatch`

use std::future::Future;
use std::hint::black_box;
use std::pin::pin;
use std::task::{Context, Poll, Waker};

use criterion::{Criterion, criterion_group, criterion_main};
use framex_registry::{Kwargs, Registry, Remote, Routing, handler};
use serde_json::json;

/// Polls a future that completes without waiting.
fn ready<F: Future>(future: F) -> F::Output {
    let mut future = pin!(future);
    match future
        .as_mut()
        .poll(&mut Context::from_waker(Waker::noop()))
    {
        Poll::Ready(output) => output,
        Poll::Pending => panic!("the handler never waits"),
    }
}

fn dispatch(c: &mut Criterion) {
    let mut routing = Routing::default();
    for n in 0..64 {
        routing = routing.route(
            format!("bench.remote_{n}"),
            Remote::new("http://127.0.0.1:9", None),
        );
    }
    let mut registry = Registry::new(routing, framex_transport::Client::default());
    for n in 0..64 {
        registry
            .register(
                format!("bench.local_{n}"),
                handler(|kwargs: Kwargs| async move {
                    #[derive(serde::Deserialize)]
                    struct A {
                        a: i64,
                    }
                    Ok(kwargs.parse::<A>()?.a)
                }),
            )
            .unwrap();
    }
    let kwargs = Kwargs::new(&json!({"a": 1})).unwrap();

    let mut group = c.benchmark_group("dispatch");
    group.bench_function("registry.call (local handler)", |b| {
        b.iter(|| ready(registry.call(black_box("bench.local_31"), kwargs.clone())).unwrap());
    });
    group.bench_function("handler called directly", |b| {
        let handler = handler(|kwargs: Kwargs| async move {
            #[derive(serde::Deserialize)]
            struct A {
                a: i64,
            }
            Ok(kwargs.parse::<A>()?.a)
        });
        b.iter(|| ready(handler(black_box(kwargs.clone()))).unwrap());
    });
    group.bench_function("location of a name", |b| {
        b.iter(|| registry.location(black_box("bench.remote_17")));
    });
    group.finish();
}

criterion_group!(benches, dispatch);
criterion_main!(benches);
