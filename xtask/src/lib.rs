//! `cargo xtask`: development tasks for FrameX for Rust, run as
//! `cargo xtask <task>` (the alias lives in `.cargo/config.toml`).
//!
//! It drives the workspace's real binaries from outside; no library crate depends
//! on it. The library holds the tasks; `src/main.rs` is `cargo xtask`, and
//! `src/bin/containers.rs` the container scenarios that `cargo xtask
//! containers` runs with the `containers` feature (testcontainers), which
//! nothing else compiles.

use std::process::ExitCode;

mod bench;
mod containers;
mod e2e;
mod image;
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
  containers [--scenario NAME]... [--calls N] [--concurrency C]
          FrameX across containers on private Docker networks, from the
          images of `image --python`: the e2e checks across two containers;
          the example service's image;
          three replicas behind one network alias with one killed, one
          disconnected, all restarted in turn under load; Python FrameX and
          Rust calling each other; deploy/compose.yaml up, called and scaled
          to five (scenarios: two-instances, reports, kill-one, cut-one,
          rolling-restart, python, compose); fails without Docker
  e2e     build the demo, start a remote and a local FrameX instance on free
          loopback ports, and check local and remote execution from outside
  image [--python]
          container images built here, nothing pulled: framex:latest and
          framex-reports:latest (FROM scratch, release binaries, health
          checks); with --python, framex-python:0.4.2 on a Debian base made
          by debootstrap (root)
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

/// Runs the task the command line names.
pub fn main() -> ExitCode {
    let task = std::env::args().nth(1);
    let options = || std::env::args().skip(2);
    let result = match task.as_deref() {
        Some("containers") => {
            containers::Options::parse(options()).and_then(|o| containers::run(&o))
        }
        Some("e2e") => e2e::run(),
        Some("bench") => bench::Options::parse(options()).and_then(|o| bench::run(&o)),
        Some("image") => image::run(options()),
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

/// The container scenarios' binary, `xtask-containers`: runs the scenarios its
/// command line names, as `cargo xtask containers` passes them.
#[cfg(feature = "containers")]
pub fn containers_main() -> ExitCode {
    match containers::Options::parse(std::env::args().skip(1))
        .and_then(|o| containers::scenarios::run(&o))
    {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("container scenarios failed: {error:#}");
            ExitCode::FAILURE
        }
    }
}
