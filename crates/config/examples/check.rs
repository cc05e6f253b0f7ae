//! Loads a FrameX configuration and prints what it resolved to: where each proxy
//! function runs, each upstream's rules, and any warnings.
//!
//! `cargo run -p framex-config --example check -- [CONFIG]`; without CONFIG it
//! reads `config.toml` in the working directory if there is one. Exits 1 when the
//! configuration is invalid, listing every error.

use std::path::PathBuf;
use std::process::ExitCode;

use framex_config::Config;

fn main() -> ExitCode {
    let path = std::env::args_os().nth(1).map(PathBuf::from);
    match Config::load(path.as_deref()) {
        Ok(config) => {
            for warning in config.warnings() {
                eprintln!("{warning}");
            }
            print!("{}", config.summary());
            ExitCode::SUCCESS
        }
        Err(error) => {
            for diagnostic in error.diagnostics() {
                eprintln!("{diagnostic}");
            }
            ExitCode::FAILURE
        }
    }
}
