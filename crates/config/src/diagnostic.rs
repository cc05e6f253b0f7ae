//! Problems found while loading a configuration: where each one is, which key it
//! concerns, and what is wrong. Errors stop the load; warnings travel with the
//! loaded [`Config`](crate::Config).

use std::fmt;
use std::path::{Path, PathBuf};

/// Where a configuration value came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    /// A position in a configuration file; line and column count from 1, the
    /// column in characters.
    File {
        /// The file.
        path: PathBuf,
        /// The line, from 1.
        line: usize,
        /// The column in characters, from 1.
        column: usize,
    },
    /// A whole file, for problems such as one that cannot be read.
    Path {
        /// The file.
        path: PathBuf,
    },
    /// An environment variable such as `FRAMEX__SERVER__PORT`.
    Env {
        /// The variable's name as it was set.
        variable: String,
    },
    /// The built-in defaults, or a whole-configuration check with no single place.
    Defaults,
}

impl Location {
    /// The file, if the value came from one.
    pub fn file(&self) -> Option<&Path> {
        match self {
            Location::File { path, .. } | Location::Path { path } => Some(path),
            _ => None,
        }
    }

    /// The line in the file, if the value came from one.
    pub fn line(&self) -> Option<usize> {
        match self {
            Location::File { line, .. } => Some(*line),
            _ => None,
        }
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Location::File { path, line, column } => {
                write!(f, "{}:{line}:{column}", path.display())
            }
            Location::Path { path } => write!(f, "{}", path.display()),
            Location::Env { variable } => write!(f, "environment variable {variable}"),
            Location::Defaults => f.write_str("configuration"),
        }
    }
}

/// How serious a [`Diagnostic`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    /// The value is accepted but has no effect in FrameX for Rust.
    Warning,
    /// The configuration cannot be used.
    Error,
}

/// What kind of problem a [`Diagnostic`] reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum DiagnosticKind {
    /// The file is not valid TOML.
    Syntax,
    /// The file or directory could not be read.
    Io,
    /// A key that neither FrameX for Rust nor Python FrameX knows.
    UnknownKey,
    /// A key that Python FrameX knows and FrameX for Rust does not use.
    IgnoredKey,
    /// A value of the wrong TOML type.
    WrongType,
    /// A value of the right type that is not allowed (empty, out of range, malformed).
    InvalidValue,
    /// An environment variable that cannot be applied.
    InvalidOverride,
    /// A URL that is not an absolute `http`/`https` base URL.
    InvalidUrl,
    /// A `proxy_functions` URL that `proxy_urls` does not list.
    UnknownUpstream,
    /// `proxy_functions` is set while the proxy plugin is not enabled.
    ProxyDisabled,
    /// A function listed more than once.
    DuplicateFunction,
    /// An enable or disable rule that is not a valid glob.
    InvalidRule,
    /// An upstream used by `proxy_functions` whose rules disable the proxy endpoint.
    ProxyEndpointDisabled,
    /// A setting with no effect in this configuration.
    NoEffect,
}

/// One problem in a configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    severity: Severity,
    kind: DiagnosticKind,
    location: Location,
    key: String,
    message: String,
}

impl Diagnostic {
    pub(crate) fn new(
        severity: Severity,
        kind: DiagnosticKind,
        location: Location,
        key: impl Into<String>,
        message: impl Into<String>,
    ) -> Diagnostic {
        Diagnostic {
            severity,
            kind,
            location,
            key: key.into(),
            message: message.into(),
        }
    }

    /// Whether this is an error or a warning.
    pub fn severity(&self) -> Severity {
        self.severity
    }

    /// What kind of problem it is.
    pub fn kind(&self) -> DiagnosticKind {
        self.kind
    }

    /// Where the offending value came from.
    pub fn location(&self) -> &Location {
        &self.location
    }

    /// The key path, in TOML notation, such as
    /// `plugins.proxy.proxy_functions."http://remote:8080"[0]`; empty for the
    /// whole document.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// What is wrong, without the location and key.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let severity = match self.severity {
            Severity::Warning => "warning",
            Severity::Error => "error",
        };
        write!(f, "{severity}: {}: ", self.location)?;
        if !self.key.is_empty() {
            write!(f, "`{}`: ", self.key)?;
        }
        f.write_str(&self.message)
    }
}

/// Why a configuration could not be loaded: every error found, in the order of the
/// sources, and the warnings found alongside them.
#[derive(Debug, Clone, thiserror::Error)]
pub struct Error {
    diagnostics: Vec<Diagnostic>,
}

impl Error {
    pub(crate) fn new(diagnostics: Vec<Diagnostic>) -> Error {
        debug_assert!(diagnostics.iter().any(|d| d.severity == Severity::Error));
        Error { diagnostics }
    }

    /// The errors, without the warnings.
    pub fn errors(&self) -> impl Iterator<Item = &Diagnostic> {
        self.diagnostics
            .iter()
            .filter(|d| d.severity == Severity::Error)
    }

    /// Every diagnostic, errors and warnings, in source order.
    pub fn diagnostics(&self) -> &[Diagnostic] {
        &self.diagnostics
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let count = self.errors().count();
        let noun = if count == 1 { "error" } else { "errors" };
        write!(f, "invalid FrameX configuration ({count} {noun})")?;
        for diagnostic in self.errors() {
            write!(f, "\n  {diagnostic}")?;
        }
        Ok(())
    }
}
