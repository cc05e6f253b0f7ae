//! What the default logging costs one request, on the request's thread: the
//! `request` span and its `answered` line, and the `proxy_call` span of the
//! call it makes, with the spans' shapes as the server and the registry make
//! them, under `framex::logging`'s subscriber at `info` and at `error`.

use std::hint::black_box;
use std::io::Write;

use criterion::{Criterion, criterion_group, criterion_main};
use framex::logging::{LogFormat, subscriber};
use tracing::Instrument as _;

/// A writer that drops what it is given: the cost measured is the work on the
/// request's thread up to the write.
#[derive(Clone, Copy)]
struct Sink;

impl Write for Sink {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        Ok(black_box(bytes).len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Sink {
    type Writer = Sink;
    fn make_writer(&'a self) -> Sink {
        Sink
    }
}

/// A future that is pending `polls - 1` times, as a call waiting on its
/// socket is.
struct Polled(u32);

impl std::future::Future for Polled {
    type Output = ();
    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<()> {
        if self.0 <= 1 {
            return std::task::Poll::Ready(());
        }
        self.0 -= 1;
        cx.waker().wake_by_ref();
        std::task::Poll::Pending
    }
}

fn one_request() {
    let span = tracing::info_span!(
        "request",
        method = %http::Method::GET,
        path = "/api/v1/report",
        trace_id = tracing::field::Empty,
    );
    span.record(
        "trace_id",
        tracing::field::display("4582cb3f0073d9002134363c850138ab"),
    );
    let call = async {
        let call_span = tracing::info_span!(
            "proxy_call",
            function = "your_module.build_report",
            location = "http://127.0.0.1:8080",
        );
        Polled(3).instrument(call_span.clone()).await;
        tracing::debug!(parent: &call_span, outcome = "ok", duration_ms = 0.41, "proxy call ended");
        tracing::info!(status = 200u16, latency_ms = 0.473, "answered");
    };
    let mut future = std::pin::pin!(call.instrument(span));
    let mut context = std::task::Context::from_waker(std::task::Waker::noop());
    while future.as_mut().poll(&mut context).is_pending() {}
}

fn bench(c: &mut Criterion) {
    for filter in ["info", "error"] {
        let subscriber = subscriber(LogFormat::Human, filter, Sink).expect("a valid filter");
        tracing::subscriber::with_default(subscriber, || {
            c.bench_function(&format!("logging/one request at {filter}"), |b| {
                b.iter(one_request)
            });
        });
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
