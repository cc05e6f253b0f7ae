//! Helpers the test modules share.

use framex::config::{Config, Loader};

/// Loads `toml` as `test.toml`, with no environment overrides, or panics with
/// the rendered errors.
pub(crate) fn config(toml: &str) -> Config {
    Loader::default()
        .text("test.toml", toml)
        .env(Vec::<(String, String)>::new())
        .load()
        .unwrap_or_else(|e| panic!("{e}"))
}
