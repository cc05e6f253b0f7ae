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

use std::str::FromStr;

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
/// writing to standard error.
pub fn init_with(format: LogFormat, filter: &str) -> Result<(), LogError> {
    let subscriber = subscriber(format, filter, std::io::stderr)?;
    tracing::subscriber::set_global_default(subscriber).map_err(|_| LogError::AlreadySet)
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
    let filter = EnvFilter::builder()
        .parse(filter)
        .map_err(LogError::Filter)?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer);
    Ok(match format {
        LogFormat::Human => Box::new(builder.with_ansi(false).finish()),
        LogFormat::Json => Box::new(
            builder
                .json()
                .with_current_span(true)
                .with_span_list(true)
                .finish(),
        ),
    })
}
