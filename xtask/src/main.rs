//! `cargo xtask`: development tasks for FrameX for Rust, run as
//! `cargo xtask <task>` (the alias lives in `.cargo/config.toml`).
//!
//! It drives the workspace's real binaries from outside; no library crate depends
//! on it.

use std::process::ExitCode;

const USAGE: &str = "usage: cargo xtask <task>

tasks:
  help    print this message";

fn main() -> ExitCode {
    let task = std::env::args().nth(1);
    match task.as_deref() {
        None | Some("help" | "-h" | "--help") => {
            println!("{USAGE}");
            ExitCode::SUCCESS
        }
        Some(other) => {
            eprintln!("unknown task `{other}`\n\n{USAGE}");
            ExitCode::from(2)
        }
    }
}
