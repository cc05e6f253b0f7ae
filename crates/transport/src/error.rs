//! The transport's error: what happened, on which URL, for which function.

use std::error::Error as StdError;
use std::fmt;
use std::time::Duration;

type BoxError = Box<dyn StdError + Send + Sync>;

/// A failed call to a remote FrameX function.
///
/// It names the URL and the function, never the key. A failure on the remote is
/// always an `Error`, never a result value.
#[derive(Debug)]
pub struct Error {
    kind: ErrorKind,
    url: String,
    func_name: String,
    source: Option<BoxError>,
    /// The endpoints the call was sent to, and how each attempt ended.
    tried: Vec<String>,
}

/// What went wrong in a call.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The URL is not a usable `http` base URL.
    InvalidUrl,
    /// The arguments could not be encoded.
    Encode,
    /// No connection could be made.
    Connect,
    /// The call took longer than the timeout.
    Timeout {
        /// The timeout that ran out.
        after: Duration,
    },
    /// The connection failed after the request was sent; the remote may or may not
    /// have run the function.
    Interrupted,
    /// The remote refused the key (or the lack of one).
    Unauthorized {
        /// The remote's message.
        message: String,
    },
    /// The remote has no function of that name.
    NotRegistered,
    /// The remote answered with an error.
    Remote {
        /// The HTTP status, or the envelope's status when HTTP said 200.
        status: u16,
        /// The remote's message.
        message: String,
    },
    /// The answer is not a FrameX envelope that decodes.
    Decode {
        /// What is wrong with it.
        detail: String,
    },
}

impl Error {
    pub(crate) fn new(kind: ErrorKind, url: &str, func_name: &str) -> Error {
        Error {
            kind,
            url: url.to_owned(),
            func_name: func_name.to_owned(),
            source: None,
            tried: Vec::new(),
        }
    }

    /// Notes the attempts the call made that failed.
    pub(crate) fn with_tried(mut self, tried: Vec<crate::upstream::Tried>) -> Error {
        if !tried.is_empty() {
            self.tried = tried.iter().map(ToString::to_string).collect();
        }
        self
    }

    /// The endpoints the call was sent to and how each attempt ended, such
    /// as `127.0.0.2:8080 (connection refused)`; empty when it made no
    /// attempt that failed.
    pub fn endpoints_tried(&self) -> &[String] {
        &self.tried
    }

    pub(crate) fn with_source(mut self, source: impl Into<BoxError>) -> Error {
        self.source = Some(source.into());
        self
    }

    /// What went wrong.
    pub fn kind(&self) -> &ErrorKind {
        &self.kind
    }

    /// The upstream base URL that was called.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The function that was called.
    pub fn func_name(&self) -> &str {
        &self.func_name
    }

    /// Whether the call timed out.
    pub fn is_timeout(&self) -> bool {
        matches!(self.kind, ErrorKind::Timeout { .. })
    }

    /// Whether no connection could be made.
    pub fn is_connect(&self) -> bool {
        matches!(self.kind, ErrorKind::Connect)
    }

    /// Whether the remote refused the key.
    pub fn is_unauthorized(&self) -> bool {
        matches!(self.kind, ErrorKind::Unauthorized { .. })
    }

    /// Whether the remote does not have the function.
    pub fn is_not_registered(&self) -> bool {
        matches!(self.kind, ErrorKind::NotRegistered)
    }

    /// The remote's own message, when it sent one.
    pub fn remote_message(&self) -> Option<&str> {
        match &self.kind {
            ErrorKind::Unauthorized { message } | ErrorKind::Remote { message, .. } => {
                Some(message)
            }
            _ => None,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.write_kind(f)?;
        self.write_tried(f)
    }
}

impl Error {
    fn write_kind(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (url, func) = (&self.url, &self.func_name);
        match &self.kind {
            // Resolved before any function is called (`Client::endpoint`).
            ErrorKind::InvalidUrl if func.is_empty() => {
                write!(f, "`{url}` is not a usable http base URL")
            }
            ErrorKind::InvalidUrl => write!(
                f,
                "cannot call `{func}`: `{url}` is not a usable http base URL"
            ),
            ErrorKind::Encode => write!(f, "cannot encode the arguments of `{func}` for {url}"),
            // No function: a forwarded request.
            ErrorKind::Connect if func.is_empty() => write!(f, "cannot connect to {url}"),
            ErrorKind::Connect => write!(f, "cannot connect to {url} to call `{func}`"),
            ErrorKind::Interrupted if func.is_empty() => {
                write!(f, "the connection to {url} failed")
            }
            ErrorKind::Timeout { after } => {
                write!(
                    f,
                    "call to `{func}` on {url} timed out after {}",
                    DisplayDuration(*after)
                )
            }
            ErrorKind::Interrupted => {
                write!(f, "connection to {url} failed during the call to `{func}`")
            }
            ErrorKind::Unauthorized { message } => {
                write!(f, "{url} refused the key for `{func}`: {message}")
            }
            ErrorKind::NotRegistered => write!(f, "function `{func}` is not registered on {url}"),
            ErrorKind::Remote { status, message } => {
                write!(f, "`{func}` failed on {url} (status {status}): {message}")
            }
            ErrorKind::Decode { detail } => {
                write!(f, "undecodable answer from {url} for `{func}`: {detail}")
            }
        }
    }
}

impl Error {
    fn write_tried(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.tried.is_empty() {
            return Ok(());
        }
        write!(f, "; tried {}", self.tried.join(", "))
    }
}

/// `error` and its causes, `: `-separated, each message once.
pub(crate) fn chain(error: &(dyn StdError + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let message = cause.to_string();
        if !text.contains(&message) {
            text.push_str(": ");
            text.push_str(&message);
        }
        source = cause.source();
    }
    text
}

impl StdError for Error {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        self.source
            .as_deref()
            .map(|e| e as &(dyn StdError + 'static))
    }
}

struct DisplayDuration(Duration);

impl fmt::Display for DisplayDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let d = self.0;
        if d.subsec_nanos() == 0 {
            write!(f, "{} s", d.as_secs())
        } else if d < Duration::from_secs(1) {
            write!(f, "{} ms", d.as_millis())
        } else {
            write!(f, "{:.3} s", d.as_secs_f64())
        }
    }
}
