//! Checks that an `#[on_proxy]` call that runs here costs no allocation beyond the
//! body's own, with no runtime installed and with one installed that routes other
//! names elsewhere: the local path must be as cheap as calling the body.
//!
//! This binary holds one test, so the global allocation count is this test's own.

use std::alloc::System;
use std::future::Future;
use std::pin::pin;
use std::task::{Context, Poll, Waker};

use framex::App;
use stats_alloc::{INSTRUMENTED_SYSTEM, Region, StatsAlloc};

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

#[framex::on_proxy(name = "bench.add")]
async fn add(a: u64, b: u64) -> Result<u64, framex::Error> {
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

fn calls_allocate(times: u64) -> usize {
    let region = Region::new(GLOBAL);
    let mut sum = 0;
    for n in 0..times {
        sum += ready(add(n, 1)).unwrap();
    }
    assert_eq!(sum, times * (times + 1) / 2);
    region.change().allocations
}

#[test]
fn a_local_call_allocates_nothing() {
    assert!(!framex::is_installed());
    // The first call on a thread sets up the runtime lookup's thread-local slot.
    ready(add(0, 0)).unwrap();
    assert_eq!(calls_allocate(1_000), 0, "no runtime installed");

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let app = runtime.block_on(async {
        let config = framex::config::Loader::default()
            .text(
                "test.toml",
                "load_builtin_plugins = [\"proxy\"]\n[server]\nenable_proxy = true\n\
                 [plugins.proxy]\nproxy_urls = [\"http://127.0.0.1:9\"]\n\
                 proxy_functions = { \"http://127.0.0.1:9\" = [\"bench.other\"] }\n",
            )
            .env(Vec::<(String, String)>::new())
            .load()
            .unwrap();
        App::from_config(config).unwrap()
    });
    let _installed = app.install().unwrap();
    assert_eq!(calls_allocate(1_000), 0, "a runtime routing other names");
}
