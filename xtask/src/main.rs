//! `cargo xtask`: development tasks for FrameX for Rust, run as
//! `cargo xtask <task>` (the alias lives in `.cargo/config.toml`).
//!
//! It drives the workspace's real binaries from outside; no library crate depends
//! on it.

use std::process::ExitCode;

mod bench;
mod e2e;
mod instances;
mod load;
mod memory;
mod payload;
mod replicas;
mod routes;

const USAGE: &str = "usage: cargo xtask <task>

tasks:
  bench [--duration SECS] [--rounds N] [--soak SECS]
          load runs over loopback with wrk (installed if missing): a proxy
          call, a two-hop call and a bare hyper echo server at concurrency
          1, 16 and 64, with ratios, start-up time and memory
  bench --against FRAMEX [--duration SECS] [--rounds N]
          the proxy call and the two-hop call at concurrency 64 on this build
          and on another build's framex command, in turn each round, with CPU
          per request
  e2e     build the demo, start a remote and a local FrameX instance on free
          loopback ports, and check local and remote execution from outside
  load [--calls N] [--concurrency C] [--fault F]...
          bounded load runs on loopback, each with a fault (restart, kill-one,
          cut-one, slow-one, dns-change, all-down, rolling-restart, or all; see
          xtask/src/replicas.rs); the default, restart: the remote is killed
          and restarted mid-run; prints calls sent, succeeded, failed with a
          clear error, hung and lost (the last two must be 0)
  memory  one call with 30 MiB of arguments of each costly shape (zeros,
          empty objects, deep nesting…) to a fresh instance: peak memory
          and what it keeps; fails past the documented bound
  payload [--rounds N]
          the serving instance's CPU per echo call of about 64 KiB and
          1 MiB of JSON (sent as Python FrameX sends it), beside the floor
          of the same payload work done plainly in one process
  routes [CONFIG]
          fetch each upstream's OpenAPI document and print every route it
          publishes: enabled or disabled, and the rule that decided it
  help    print this message";

fn main() -> ExitCode {
    let task = std::env::args().nth(1);
    let options = || std::env::args().skip(2);
    let result = match task.as_deref() {
        Some("e2e") => e2e::run(),
        Some("bench") => bench::Options::parse(options()).and_then(|o| bench::run(&o)),
        Some("load") => load::Options::parse(options()).and_then(|o| load::run(&o)),
        Some("memory") => memory::run(),
        Some("payload") => payload::Options::parse(options()).and_then(|o| payload::run(&o)),
        Some("routes") => routes::run(std::env::args().nth(2).map(Into::into)),
        None | Some("help" | "-h" | "--help") => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Some(other) => {
            eprintln!("unknown task `{other}`\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("{} failed: {error:#}", task.unwrap_or_default());
            ExitCode::FAILURE
        }
    }
}
