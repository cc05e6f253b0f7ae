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

/// Why spans cannot be exported over OTLP.
#[cfg(feature = "otlp")]
pub type OtlpError = opentelemetry_otlp::ExporterBuildError;

/// A tracer provider that sends spans in batches, from a thread of its own, to
/// an OpenTelemetry collector over OTLP/HTTP (protobuf) at `endpoint` (such as
/// `http://collector:4318/v1/traces`), else at what the standard
/// `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` or `OTEL_EXPORTER_OTLP_ENDPOINT`
/// variables say; its spans name the service `service_name`. Shut it down
/// before the process exits, or the last batch is lost.
#[cfg(feature = "otlp")]
pub fn otlp_provider(
    endpoint: Option<&str>,
    service_name: &str,
) -> Result<SdkTracerProvider, OtlpError> {
    use opentelemetry_otlp::WithExportConfig as _;
    let mut exporter = opentelemetry_otlp::SpanExporter::builder().with_http();
    if let Some(endpoint) = endpoint {
        exporter = exporter.with_endpoint(endpoint);
    }
    let resource = opentelemetry_sdk::Resource::builder()
        .with_service_name(service_name.to_owned())
        .build();
    Ok(SdkTracerProvider::builder()
        .with_batch_exporter(exporter.build()?)
        .with_resource(resource)
        .build())
}
