//! Logs for a FrameX instance: `RUST_LOG`-style filtering and a choice of human
//! or JSON lines, on standard error.
//!
//! ```no_run
//! // In `main`, before anything logs: RUST_LOG chooses what (default `info`),
//! // FRAMEX_LOG_FORMAT how (`human`, the default, or `json`).
//! framex::logging::init()?;
//! # Ok::<(), framex::logging::LogError>(())
//! ```
//!
//! What an instance logs: one `answered` line per request at info level with
//! the status and `latency_ms`, inside a `request` span with the method, the
//! path and the `trace_id`; a `proxy_call` span around every call with the
//! `function`, its `location` (`local` or the remote's URL), its `outcome` and
//! `duration_ms`, ended by a `proxy call ended` line at debug level; refusals
//! and failures at warn level. Keys never appear.
//!
//! Built with the `otlp` feature, [`init`] also exports the spans to an
//! OpenTelemetry collector over OTLP/HTTP when `OTEL_EXPORTER_OTLP_ENDPOINT`
//! (or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) is set, as the service
//! `OTEL_SERVICE_NAME` (default `framex`); [`shutdown`] sends the last batch.

use std::str::FromStr;

mod human;
mod queue;

use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::MakeWriter;

/// The environment variable that chooses the log format.
pub const FORMAT_VARIABLE: &str = "FRAMEX_LOG_FORMAT";

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogFormat {
    /// Lines for people: time, level, spans, message and fields.
    #[default]
    Human,
    /// One JSON object per line, with the current span and the span list, for
    /// log collectors.
    Json,
}

impl FromStr for LogFormat {
    type Err = LogError;

    fn from_str(text: &str) -> Result<LogFormat, LogError> {
        match text.trim().to_ascii_lowercase().as_str() {
            "human" | "text" | "" => Ok(LogFormat::Human),
            "json" => Ok(LogFormat::Json),
            _ => Err(LogError::Format(text.to_owned())),
        }
    }
}

/// Why logging could not be set up.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LogError {
    /// `FRAMEX_LOG_FORMAT` is neither `human` nor `json`.
    #[error("{FORMAT_VARIABLE} must be `human` or `json`, not `{0}`")]
    Format(String),
    /// `RUST_LOG` is not a filter.
    #[error("RUST_LOG is not a valid filter: {0}")]
    Filter(#[source] tracing_subscriber::filter::ParseError),
    /// Another global subscriber is already set.
    #[error("a global tracing subscriber is already set")]
    AlreadySet,
    /// The thread that writes the lines cannot be started.
    #[error("cannot start the log thread: {0}")]
    Thread(#[source] std::io::Error),
    /// The OTLP exporter that the `OTEL_EXPORTER_OTLP_…` variables ask for
    /// cannot be built.
    #[cfg(feature = "otlp")]
    #[error("cannot export spans over OTLP: {0}")]
    Otlp(#[source] crate::otel::OtlpError),
}

/// Sets the global subscriber from the environment: `RUST_LOG` (default
/// `info`) and `FRAMEX_LOG_FORMAT` (default `human`), writing to standard error.
pub fn init() -> Result<(), LogError> {
    let format = match std::env::var(FORMAT_VARIABLE) {
        Ok(text) => text.parse()?,
        Err(_) => LogFormat::Human,
    };
    let filter = match std::env::var(EnvFilter::DEFAULT_ENV) {
        Ok(text) if !text.trim().is_empty() => text,
        _ => "info".to_owned(),
    };
    init_with(format, &filter)
}

/// Sets the global subscriber with this format and `RUST_LOG`-style filter,
/// writing to standard error from a thread of its own ([`shutdown`] writes
/// what is still queued).
pub fn init_with(format: LogFormat, filter: &str) -> Result<(), LogError> {
    // Lines are written by a thread of their own, so that a request's task
    // never waits on standard error (a pipe whose reader is slow blocks every
    // write) nor wakes a thread per line (`logging/queue.rs`). No line is
    // dropped: past a megabyte queued, a logging task waits for room.
    let (writer, writing) = queue::start(std::io::stderr()).map_err(LogError::Thread)?;
    let subscriber = subscriber_exporting(format, filter, writer, exporter()?)?;
    tracing::subscriber::set_global_default(subscriber).map_err(|_| LogError::AlreadySet)?;
    if let Ok(mut slot) = WRITING.lock() {
        *slot = Some(writing);
    }
    Ok(())
}

/// The log thread of [`init`]; dropping it writes the lines still queued.
static WRITING: std::sync::Mutex<Option<queue::Writing>> = std::sync::Mutex::new(None);

/// Writes the log lines still queued, and sends the spans not yet exported
/// and stops exporting, if [`init`] started to; call it before the process
/// exits, after the last line it logs: lines logged after it are not written.
pub fn shutdown() {
    #[cfg(feature = "otlp")]
    if let Some(provider) = EXPORTING.get()
        && let Err(error) = provider.shutdown()
    {
        tracing::warn!(%error, "the last spans were not exported");
    }
    let writing = WRITING.lock().ok().and_then(|mut writing| writing.take());
    drop(writing);
}

#[cfg(feature = "otlp")]
static EXPORTING: std::sync::OnceLock<opentelemetry_sdk::trace::SdkTracerProvider> =
    std::sync::OnceLock::new();

/// The OTLP exporter the environment asks for, if any.
#[cfg(feature = "otlp")]
fn exporter() -> Result<Option<&'static opentelemetry_sdk::trace::SdkTracerProvider>, LogError> {
    let wanted = [
        "OTEL_EXPORTER_OTLP_ENDPOINT",
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
    ]
    .iter()
    .any(|variable| std::env::var_os(variable).is_some_and(|value| !value.is_empty()));
    if !wanted {
        return Ok(None);
    }
    let service = std::env::var("OTEL_SERVICE_NAME").unwrap_or_else(|_| "framex".to_owned());
    let provider = crate::otel::otlp_provider(None, &service).map_err(LogError::Otlp)?;
    Ok(Some(EXPORTING.get_or_init(|| provider)))
}

#[cfg(not(feature = "otlp"))]
fn exporter() -> Result<Option<&'static opentelemetry_sdk::trace::SdkTracerProvider>, LogError> {
    Ok(None)
}

/// A subscriber with this format and filter writing to `writer`, for a
/// program that sets it itself (or a test that captures the lines).
pub fn subscriber<W>(
    format: LogFormat,
    filter: &str,
    writer: W,
) -> Result<Box<dyn tracing::Subscriber + Send + Sync>, LogError>
where
    W: for<'writer> MakeWriter<'writer> + Send + Sync + 'static,
{
    subscriber_exporting(format, filter, writer, None)
}

/// [`subscriber`], recording its spans with `provider`'s tracer too.
fn subscriber_exporting<W>(
    format: LogFormat,
    filter: &str,
    writer: W,
    provider: Option<&opentelemetry_sdk::trace::SdkTracerProvider>,
) -> Result<Box<dyn tracing::Subscriber + Send + Sync>, LogError>
where
    W: for<'writer> MakeWriter<'writer> + Send + Sync + 'static,
{
    use tracing_subscriber::layer::SubscriberExt as _;
    fn with_spans<S>(
        subscriber: S,
        provider: Option<&opentelemetry_sdk::trace::SdkTracerProvider>,
    ) -> Box<dyn tracing::Subscriber + Send + Sync>
    where
        S: tracing::Subscriber
            + for<'span> tracing_subscriber::registry::LookupSpan<'span>
            + Send
            + Sync,
    {
        match provider {
            Some(provider) => Box::new(subscriber.with(crate::otel::layer(provider))),
            None => Box::new(subscriber),
        }
    }
    let filter = EnvFilter::builder()
        .parse(filter)
        .map_err(LogError::Filter)?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer);
    Ok(match format {
        LogFormat::Human => with_spans(
            builder
                .with_ansi(false)
                .fmt_fields(human::HumanFields)
                .event_format(human::HumanLine)
                .finish(),
            provider,
        ),
        LogFormat::Json => with_spans(
            builder
                .json()
                .with_current_span(true)
                .with_span_list(true)
                .finish(),
            provider,
        ),
    })
}
