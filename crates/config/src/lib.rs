//! Parses and validates the FrameX configuration file.
//!
//! One file serves Python FrameX and FrameX for Rust: keys keep FrameX's spelling
//! (`load_builtin_plugins`, `[server] enable_proxy`, `[plugins.proxy] proxy_urls`,
//! `proxy_functions`, `[plugins.proxy.auth] rules`, `[auth] rules`).
//!
//! Loading reads, in order, a file the caller names (else `config.toml` in the
//! working directory, else nothing), then `FRAMEX__…` environment variables
//! (`FRAMEX__SERVER__PORT=9000`: double underscores nest, names are
//! case-insensitive, the value is read as a TOML value or else as a string). Later
//! sources win.
//!
//! Validation is strict, since a typo in `proxy_functions` would quietly run a
//! function in the wrong place: an unknown key is an error with a did-you-mean hint,
//! and every problem is reported at once, each with its file, key path and
//! line:column. Keys that Python FrameX knows and FrameX for Rust does not use are
//! accepted with a warning (see [`Config::warnings`]).
//!
//! This crate does no network IO and knows nothing of the server or transport.
//!
//! ```
//! use framex_config::Config;
//!
//! let config = Config::from_toml_str(r#"
//! load_builtin_plugins = ["proxy"]
//!
//! [server]
//! enable_proxy = true
//!
//! [plugins.proxy.proxy_urls."http://remote-framex:8080"]
//! enable = ["/api/v1/*"]
//!
//! [plugins.proxy]
//! proxy_functions = { "http://remote-framex:8080" = ["your_module.build_report"] }
//! "#)?;
//! assert_eq!(config.function_url("your_module.build_report"), Some("http://remote-framex:8080"));
//! assert_eq!(config.function_url("your_module.other"), None); // runs locally
//! # Ok::<(), framex_config::Error>(())
//! ```

use std::ffi::OsString;
use std::path::{Path, PathBuf};

mod config;
mod diagnostic;
mod tree;
mod validate;
mod walk;

#[cfg(test)]
mod tests;

pub use config::{Config, Proxy, Routes, Server, Upstream};
pub use diagnostic::{Diagnostic, DiagnosticKind, Error, Location, Severity};

use diagnostic::DiagnosticKind as Kind;
use tree::{KeyPath, Node, Origin, Reporter};

/// The default `server.host`.
pub const DEFAULT_HOST: &str = "127.0.0.1";
/// The default `server.port`.
pub const DEFAULT_PORT: u16 = 8080;
/// The default `plugins.proxy.timeout`, in seconds.
pub const DEFAULT_TIMEOUT_SECS: u64 = 600;
/// The default `server.max_body_bytes`: 16 MiB.
pub const DEFAULT_MAX_BODY_BYTES: u64 = 16 * 1024 * 1024;
/// The default `server.max_inflated_bytes`: 32 MiB.
pub const DEFAULT_MAX_INFLATED_BYTES: u64 = 32 * 1024 * 1024;
/// The default `server.header_read_timeout`, in seconds.
pub const DEFAULT_HEADER_READ_TIMEOUT_SECS: u64 = 30;
/// The default `server.body_read_timeout`, in seconds.
pub const DEFAULT_BODY_READ_TIMEOUT_SECS: u64 = 60;
/// The default `server.max_argument_memory`: 1 GiB.
pub const DEFAULT_MAX_ARGUMENT_MEMORY: u64 = 1024 * 1024 * 1024;
/// The default `server.max_in_flight`.
pub const DEFAULT_MAX_IN_FLIGHT: u64 = 1024;
/// The default `server.shutdown_grace`, in seconds.
pub const DEFAULT_SHUTDOWN_GRACE_SECS: u64 = 30;
/// The default `docs_path` of an upstream.
pub const DEFAULT_DOCS_PATH: &str = "/api/v1/openapi.json";
/// The route that serves proxy-function calls on every FrameX instance.
pub const PROXY_FUNCTION_PATH: &str = "/api/v1/proxy/remote";
/// The longest function name, in bytes: the transport's
/// `wire::MAX_FUNCTION_NAME_BYTES`, which a test of the facade checks it equals.
pub const MAX_FUNCTION_NAME_BYTES: usize = 256;

/// The longest duration, in seconds, that a timeout or grace period may be:
/// 100 years. A deadline further off would overflow the runtime's clock.
pub const MAX_SECONDS: u64 = 100 * 365 * 24 * 60 * 60;

/// The largest configuration file read: 16 MiB. Larger is refused unread.
pub const MAX_FILE_BYTES: u64 = 16 * 1024 * 1024;

/// The file read from the working directory when no path is given.
pub const DEFAULT_FILE_NAME: &str = "config.toml";
/// The prefix of environment overrides, followed by the key path joined with `__`.
pub const ENV_PREFIX: &str = "FRAMEX__";

impl Config {
    /// Loads the configuration the usual way: `path` if given (it must exist), else
    /// `config.toml` in the working directory if it exists, then `FRAMEX__…`
    /// environment variables.
    pub fn load(path: Option<&Path>) -> Result<Config, Error> {
        let mut loader = Loader::default();
        if let Some(path) = path {
            loader = loader.file(path);
        }
        loader.load()
    }

    /// Parses a configuration from TOML text alone, with no file and no environment.
    pub fn from_toml_str(text: &str) -> Result<Config, Error> {
        Loader::default()
            .text("<string>", text)
            .env(Vec::<(String, String)>::new())
            .load()
    }
}

/// Where a configuration is read from; [`Config::load`] covers the usual case.
#[derive(Debug, Clone, Default)]
pub struct Loader {
    file: Option<PathBuf>,
    text: Option<(PathBuf, String)>,
    working_dir: Option<PathBuf>,
    env: Option<Vec<(OsString, OsString)>>,
}

impl Loader {
    /// Reads this file, which must exist, instead of `config.toml`.
    pub fn file(mut self, path: impl Into<PathBuf>) -> Loader {
        self.file = Some(path.into());
        self
    }

    /// Uses this TOML text as the file, naming it `name` in messages.
    pub fn text(mut self, name: impl Into<PathBuf>, text: impl Into<String>) -> Loader {
        self.text = Some((name.into(), text.into()));
        self
    }

    /// Looks for `config.toml` in this directory instead of the working directory.
    pub fn working_dir(mut self, dir: impl Into<PathBuf>) -> Loader {
        self.working_dir = Some(dir.into());
        self
    }

    /// Takes environment overrides from these variables instead of the process
    /// environment. Variables without the `FRAMEX__` prefix are skipped.
    pub fn env<I, K, V>(mut self, vars: I) -> Loader
    where
        I: IntoIterator<Item = (K, V)>,
        K: Into<OsString>,
        V: Into<OsString>,
    {
        self.env = Some(
            vars.into_iter()
                .map(|(k, v)| (k.into(), v.into()))
                .collect(),
        );
        self
    }

    /// Reads every source and validates the result.
    pub fn load(self) -> Result<Config, Error> {
        let (path, text) = match self.read_file() {
            Ok(file) => file.unzip(),
            Err(diagnostic) => return Err(Error::new(vec![*diagnostic])),
        };
        let file = path.as_deref().zip(text.as_deref());
        let mut reporter = Reporter::new(file);

        let mut root = match text.as_deref().map(Node::parse_document) {
            None => Node::empty_table(),
            Some(Ok(root)) => root,
            Some(Err((message, origin))) => {
                reporter.error(
                    Kind::Syntax,
                    &origin,
                    &KeyPath::default(),
                    format!("invalid TOML: {message}"),
                );
                return Err(Error::new(reporter.diagnostics));
            }
        };

        let env = self.env.unwrap_or_else(|| std::env::vars_os().collect());
        apply_env(&mut root, env, &mut reporter);

        let raw = walk::Walker {
            reporter: &mut reporter,
        }
        .walk(&root);
        let mut config = validate::lower(raw, &mut reporter);
        if reporter.has_errors() {
            return Err(Error::new(reporter.diagnostics));
        }
        config.warnings = reporter.diagnostics;
        config.source = path;
        Ok(config)
    }

    /// The file's path and text, or `None` when there is no file to read.
    fn read_file(&self) -> Result<Option<(PathBuf, String)>, Box<Diagnostic>> {
        if let Some(text) = &self.text {
            return Ok(Some(text.clone()));
        }
        let (path, required) = match &self.file {
            Some(path) => (path.clone(), true),
            None => {
                let dir = match &self.working_dir {
                    Some(dir) => dir.clone(),
                    None => PathBuf::from("."),
                };
                (dir.join(DEFAULT_FILE_NAME), false)
            }
        };
        let cannot_read = |message: String| {
            Box::new(Diagnostic::new(
                Severity::Error,
                Kind::Io,
                Location::Path { path: path.clone() },
                "",
                format!("cannot read the configuration file: {message}"),
            ))
        };
        match read_regular_file(&path) {
            Ok(text) => Ok(Some((path.clone(), text))),
            Err(ReadError::Io(error))
                if !required && error.kind() == std::io::ErrorKind::NotFound =>
            {
                Ok(None)
            }
            Err(ReadError::Io(error)) => Err(cannot_read(error.to_string())),
            Err(ReadError::NotRegular(kind)) => {
                Err(cannot_read(format!("it is {kind}, not a regular file")))
            }
            Err(ReadError::TooLarge(size)) => Err(cannot_read(format!(
                "it is {size} bytes, more than the {MAX_FILE_BYTES} bytes a configuration may be"
            ))),
        }
    }
}

/// Why a configuration file was not read.
enum ReadError {
    Io(std::io::Error),
    /// A FIFO, a device, a directory: what it is.
    NotRegular(&'static str),
    /// Its size in bytes.
    TooLarge(u64),
}

/// Reads `path` if it is a regular file of at most [`MAX_FILE_BYTES`]: a FIFO
/// would block the loader (and every reload) until something writes to it,
/// and `/dev/zero` never ends.
fn read_regular_file(path: &Path) -> Result<String, ReadError> {
    use std::io::Read as _;
    // Looked at before opening: opening a FIFO blocks.
    let kind = |metadata: &std::fs::Metadata| -> Option<&'static str> {
        let file_type = metadata.file_type();
        if file_type.is_file() {
            return None;
        }
        #[cfg(unix)]
        {
            use std::os::unix::fs::FileTypeExt as _;
            if file_type.is_fifo() {
                return Some("a FIFO");
            }
            if file_type.is_char_device() {
                return Some("a character device");
            }
            if file_type.is_block_device() {
                return Some("a block device");
            }
            if file_type.is_socket() {
                return Some("a socket");
            }
        }
        Some(if file_type.is_dir() {
            "a directory"
        } else {
            "not a file"
        })
    };
    let metadata = std::fs::metadata(path).map_err(ReadError::Io)?;
    if let Some(kind) = kind(&metadata) {
        return Err(ReadError::NotRegular(kind));
    }
    let file = std::fs::File::open(path).map_err(ReadError::Io)?;
    // Looked at again on the open file, which cannot change under it.
    let metadata = file.metadata().map_err(ReadError::Io)?;
    if let Some(kind) = kind(&metadata) {
        return Err(ReadError::NotRegular(kind));
    }
    if metadata.len() > MAX_FILE_BYTES {
        return Err(ReadError::TooLarge(metadata.len()));
    }
    let mut text = String::new();
    // Capped again while reading: the file may grow meanwhile.
    file.take(MAX_FILE_BYTES + 1)
        .read_to_string(&mut text)
        .map_err(ReadError::Io)?;
    if text.len() as u64 > MAX_FILE_BYTES {
        return Err(ReadError::TooLarge(text.len() as u64));
    }
    Ok(text)
}

/// Applies every `FRAMEX__…` variable, in name order so the result does not depend
/// on the environment's order.
fn apply_env(root: &mut Node, env: Vec<(OsString, OsString)>, reporter: &mut Reporter<'_>) {
    let mut overrides: Vec<(String, OsString)> = env
        .into_iter()
        .filter_map(|(name, value)| {
            let name = name.into_string().ok()?;
            let prefixed = name.len() >= ENV_PREFIX.len()
                && name.as_bytes()[..ENV_PREFIX.len()].eq_ignore_ascii_case(ENV_PREFIX.as_bytes());
            prefixed.then_some((name, value))
        })
        .collect();
    overrides.sort_by(|a, b| a.0.cmp(&b.0));
    for (name, value) in overrides {
        let origin = Origin::Env(name.clone());
        let segments: Vec<String> = name[ENV_PREFIX.len()..]
            .split("__")
            .map(str::to_ascii_lowercase)
            .collect();
        if segments.iter().any(String::is_empty) {
            reporter.error(
                Kind::InvalidOverride,
                &origin,
                &KeyPath::default(),
                "the variable's name has an empty key between `__` separators".into(),
            );
            continue;
        }
        let Ok(value) = value.into_string() else {
            reporter.error(
                Kind::InvalidOverride,
                &origin,
                &KeyPath::default(),
                "the variable's value is not valid UTF-8".into(),
            );
            continue;
        };
        let value = Node::parse_env_value(&name, &value);
        tree::apply_override(root, &name, &segments, value, reporter);
    }
}
