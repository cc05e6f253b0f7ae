//! FrameX's spans as OpenTelemetry spans, and the trace context that calls
//! carry from them.
//!
//! With [`layer`] in the application's `tracing` subscriber, every span, the
//! application's and FrameX's (`request` for each request an instance
//! serves, `proxy_call` for each call), is an OpenTelemetry span of the
//! given provider's tracer: a request's span is a child of the caller's span
//! named by its `traceparent`, and a call or a forwarded route sends the
//! `traceparent` of the span it runs in, with the `tracestate` that came with
//! the trace. A future moved to a task of its own keeps the current span, and
//! so the trace, with [`tracing::Instrument::in_current_span`]:
//!
//! ```no_run
//! use framex::otel::opentelemetry_sdk::trace::SdkTracerProvider;
//! use tracing::Instrument as _;
//! use tracing_subscriber::layer::SubscriberExt as _;
//!
//! // Give the provider an exporter (OTLP, say) to send the spans somewhere.
//! let provider = SdkTracerProvider::builder().build();
//! let subscriber = tracing_subscriber::registry().with(framex::otel::layer(&provider));
//! tracing::subscriber::set_global_default(subscriber).unwrap();
//! # async fn work() {}
//! # let _ = async {
//! tokio::spawn(work().in_current_span());
//! # };
//! ```
//!
//! Without such a layer spans have no ids: an instance then still continues
//! the incoming trace id in the calls a request makes (see
//! [`framex_transport::trace`]).

pub use opentelemetry;
pub use opentelemetry_sdk;
pub use tracing_opentelemetry;

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::trace::{SdkTracer, SdkTracerProvider};
use tracing_opentelemetry::OpenTelemetryLayer;

/// A `tracing` layer that records spans with `provider`'s tracer
/// (instrumentation scope `framex`).
pub fn layer<S>(provider: &SdkTracerProvider) -> OpenTelemetryLayer<S, SdkTracer>
where
    S: tracing::Subscriber + for<'span> tracing_subscriber::registry::LookupSpan<'span>,
{
    tracing_opentelemetry::layer().with_tracer(provider.tracer("framex"))
}
