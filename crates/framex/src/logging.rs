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
//! `function` and its `location` (`local` or the remote's URL), ended by a
//! `proxy call ended` line at debug level with its `outcome` and
//! `duration_ms` (set on the exported span too); refusals and failures at warn
//! level. Keys never appear.
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
    let filter = level_filter(filter)?;
    let subscriber = tracing_subscriber::registry().with(filter);
    let layer = tracing_subscriber::fmt::layer().with_writer(writer);
    Ok(match format {
        LogFormat::Human => with_spans(
            subscriber.with(
                layer
                    .with_ansi(false)
                    .fmt_fields(human::HumanFields)
                    .event_format(human::HumanLine),
            ),
            provider,
        ),
        LogFormat::Json => with_spans(
            subscriber.with(layer.json().with_current_span(true).with_span_list(true)),
            provider,
        ),
    })
}

/// The filter of `RUST_LOG`-style `directives`: tracing-subscriber's
/// `Targets` when they name targets and levels alone, `EnvFilter` otherwise
/// (span and field directives).
///
/// Both decide a target and a level the same way, but `EnvFilter` keeps track
/// of the spans entered, in case a directive names one: a lock taken on every
/// poll of every instrumented future (each request's and each call's), which
/// was a sixth of what a request's logging cost (`cargo bench -p framex
/// --bench logging`) and more under load, both worker threads taking it.
fn level_filter(
    directives: &str,
) -> Result<Box<dyn tracing_subscriber::Layer<tracing_subscriber::Registry> + Send + Sync>, LogError>
{
    use tracing_subscriber::Layer as _;
    // Parsed as `EnvFilter` first: its errors are the ones users know.
    let filter = EnvFilter::builder()
        .parse(directives)
        .map_err(LogError::Filter)?;
    let plain = directives
        .bytes()
        .all(|byte| byte.is_ascii_alphanumeric() || b"_:=,.-".contains(&byte));
    if plain && let Ok(targets) = directives.parse::<tracing_subscriber::filter::Targets>() {
        return Ok(targets.boxed());
    }
    Ok(filter.boxed())
}

#[cfg(test)]
mod tests {
    use super::human::tests::Captured;
    use super::*;

    /// Logs events of every level from several targets, the last ones inside
    /// a span named `request`, under `filter`: the messages `out` got, in
    /// order.
    fn logged(filter: Box<dyn tracing::Subscriber + Send + Sync>, out: &Captured) -> Vec<String> {
        tracing::subscriber::with_default(filter, || {
            macro_rules! every_level {
                ($target:literal) => {
                    tracing::trace!(target: $target, "{} trace", $target);
                    tracing::debug!(target: $target, "{} debug", $target);
                    tracing::info!(target: $target, "{} info", $target);
                    tracing::warn!(target: $target, "{} warn", $target);
                    tracing::error!(target: $target, "{} error", $target);
                };
            }
            every_level!("framex");
            every_level!("framex_server::router");
            every_level!("framex_serverless");
            every_level!("hyper::proto");
            every_level!("app");
            let span = tracing::info_span!("request", path = "/x");
            let _entered = span.enter();
            every_level!("app");
        });
        String::from_utf8(out.0.lock().unwrap().clone())
            .unwrap()
            .lines()
            .map(|line| line.split(": ").last().unwrap_or(line).to_owned())
            .collect()
    }

    fn with_env_filter(
        directives: &str,
        out: &Captured,
    ) -> Box<dyn tracing::Subscriber + Send + Sync> {
        use tracing_subscriber::layer::SubscriberExt as _;
        Box::new(
            tracing_subscriber::registry()
                .with(EnvFilter::builder().parse(directives).unwrap())
                .with(
                    tracing_subscriber::fmt::layer()
                        .with_ansi(false)
                        .with_writer(out.clone()),
                ),
        )
    }

    #[test]
    fn plain_directives_log_what_env_filter_logs() {
        for directives in [
            "info",
            "error",
            "off",
            "trace",
            "WARN",
            "3",
            "framex=debug",
            "framex=debug,info",
            "warn,framex_server=trace",
            "framex_server::router=off,debug",
            "hyper=error,app=trace,framex=warn",
            "framex_server",
            "app=info,app=trace",
        ] {
            let (ours, theirs) = (Captured::default(), Captured::default());
            let ours = logged(
                subscriber(LogFormat::Human, directives, ours.clone()).unwrap(),
                &ours,
            );
            let theirs = logged(with_env_filter(directives, &theirs), &theirs);
            assert_eq!(ours, theirs, "under `{directives}`");
        }
    }

    #[test]
    fn span_directives_still_filter_by_span() {
        let out = Captured::default();
        let lines = logged(
            subscriber(LogFormat::Human, "error,[request]=debug", out.clone()).unwrap(),
            &out,
        );
        assert!(lines.contains(&"app debug".to_owned()), "{lines:?}");
        assert!(!lines.contains(&"app trace".to_owned()), "{lines:?}");
        assert_eq!(
            lines.iter().filter(|line| *line == "app info").count(),
            1,
            "{lines:?}"
        );
    }
}
