//! The crate's error: what was wrong, and at which byte of the input.

use std::fmt;

/// Why a value could not be read or written.
///
/// Reading errors carry the byte offset in the input where the problem was
/// found; messages quote at most a short piece of the input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    kind: ErrorKind,
    message: String,
    offset: Option<usize>,
}

/// What kind of problem an [`Error`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The input is not JSON (Python's dialect included).
    Syntax,
    /// Arrays and objects nest deeper than [`crate::MAX_DEPTH`].
    Depth,
    /// Reading the value would take more memory than it was allowed (see
    /// [`crate::from_slice_limited`]).
    TooLarge,
    /// The JSON is well formed but does not fit the type asked for (a
    /// missing field, a number too large for the type, a string for an
    /// integer), or a value cannot be written (a map key that is not text).
    Data,
}

impl Error {
    pub(crate) fn syntax(message: impl Into<String>, offset: usize) -> Error {
        Error {
            kind: ErrorKind::Syntax,
            message: message.into(),
            offset: Some(offset),
        }
    }

    pub(crate) fn depth(offset: Option<usize>) -> Error {
        Error {
            kind: ErrorKind::Depth,
            message: format!(
                "arrays and objects nest deeper than {} levels",
                crate::MAX_DEPTH
            ),
            offset,
        }
    }

    pub(crate) fn too_large(limit: usize, offset: usize) -> Error {
        Error {
            kind: ErrorKind::TooLarge,
            message: format!("the value would take more than {limit} bytes of memory once read"),
            offset: Some(offset),
        }
    }

    pub(crate) fn data(message: impl Into<String>) -> Error {
        Error {
            kind: ErrorKind::Data,
            message: message.into(),
            offset: None,
        }
    }

    /// The error with `offset` as its position, unless it has one.
    pub(crate) fn at(mut self, offset: usize) -> Error {
        self.offset.get_or_insert(offset);
        self
    }

    /// What kind of problem it is.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// The byte offset in the input where it was found, when reading.
    pub fn offset(&self) -> Option<usize> {
        self.offset
    }

    /// The message without the position.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)?;
        if let Some(offset) = self.offset {
            write!(f, " at byte {offset}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Error {}

impl serde::de::Error for Error {
    fn custom<T: fmt::Display>(message: T) -> Error {
        Error::data(message.to_string())
    }
}

impl serde::ser::Error for Error {
    fn custom<T: fmt::Display>(message: T) -> Error {
        Error::data(message.to_string())
    }
}

/// At most `max` characters of `text`, with `…` and the full length when cut:
/// for quoting input in messages without echoing megabytes.
pub(crate) fn excerpt(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        None => text.to_owned(),
        Some((cut, _)) => format!("{}… ({} bytes)", &text[..cut], text.len()),
    }
}
