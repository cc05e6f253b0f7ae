//! `cargo xtask containers [--scenario NAME]... [--calls N] [--concurrency C]`:
//! FrameX across containers, each with its own address on a private Docker
//! network, from the images `cargo xtask image --python` builds here.
//!
//! Scenarios (every one by default; `--scenario` picks):
//!
//! - `two-instances`: a load through a local instance to a remote in another
//!   container, then the `cargo xtask e2e` checks across the two;
//! - `reports`: the example axum service's image, healthy by its own health
//!   check, serving its routes and its functions;
//! - `kill-one`, `cut-one`, `rolling-restart`: three remote replicas behind
//!   one network alias, `remote-framex` (Docker's DNS answers with every
//!   replica's address), and a local instance with the seed's configuration
//!   balancing over them under a bounded load; one replica is killed (`docker
//!   kill`), disconnected from the network (`docker network disconnect`: its
//!   connections hang rather than being refused), or all three are stopped
//!   (SIGTERM, graceful) and started one by one;
//! - `python`: a Python FrameX (framex-kit 0.4.2) container and a Rust one
//!   calling each other's functions;
//! - `compose`: `deploy/compose.yaml` brought up, called through its local
//!   instance, scaled to five remote replicas, and taken down.
//!
//! Each load prints calls sent, succeeded, failed with a clear error, hung and
//! lost, and fails unless hung and lost are 0 and what its fault promises
//! held. Without a Docker engine the task says so and fails.
//!
//! The scenarios other than `compose` are a binary of their own
//! (`xtask-containers`, the `containers` feature), built and started by this
//! task; see `containers/scenarios.rs`. This process builds the images first,
//! and bridges the Docker API for them when the engine is older than
//! testcontainers expects (see `containers/shim.rs`).

#[cfg(feature = "containers")]
pub(crate) mod scenarios;
mod shim;

mod compose;

use std::path::PathBuf;
use std::process::Command;

use anyhow::{Context, Result, bail, ensure};

/// The scenarios, in the order they run.
pub(crate) const SCENARIOS: [&str; 7] = [
    "two-instances",
    "reports",
    "kill-one",
    "cut-one",
    "rolling-restart",
    "python",
    "compose",
];

/// What the command line asks for.
pub(crate) struct Options {
    pub(crate) scenarios: Vec<String>,
    pub(crate) calls: usize,
    pub(crate) concurrency: usize,
}

impl Options {
    pub(crate) fn parse(args: impl Iterator<Item = String>) -> Result<Options> {
        let mut options = Options {
            scenarios: Vec::new(),
            calls: 2000,
            concurrency: 32,
        };
        let mut args = args;
        while let Some(arg) = args.next() {
            let mut number = |name: &str| crate::load::positive(name, args.next());
            match arg.as_str() {
                "--calls" => options.calls = number("--calls")?.min(100_000),
                "--concurrency" => options.concurrency = number("--concurrency")?.min(256),
                "--scenario" => {
                    let name = args.next().context("--scenario needs a name")?;
                    ensure!(
                        SCENARIOS.contains(&name.as_str()),
                        "unknown scenario `{name}`: one of {}",
                        SCENARIOS.join(", ")
                    );
                    options.scenarios.push(name);
                }
                other => bail!(
                    "unknown option `{other}`: use --scenario NAME, --calls N and --concurrency C"
                ),
            }
        }
        if options.scenarios.is_empty() {
            options.scenarios = SCENARIOS.iter().map(|s| (*s).to_owned()).collect();
        }
        Ok(options)
    }

    /// The command line again, for the scenarios' binary.
    fn args(&self) -> Vec<String> {
        let mut args = vec![
            "--calls".to_owned(),
            self.calls.to_string(),
            "--concurrency".to_owned(),
            self.concurrency.to_string(),
        ];
        for scenario in &self.scenarios {
            args.extend(["--scenario".to_owned(), scenario.clone()]);
        }
        args
    }
}

pub(crate) fn run(options: &Options) -> Result<()> {
    let engine = crate::image::docker_engine()?;
    let python = options.scenarios.iter().any(|s| s == "python");
    crate::image::build(python).context("the images the scenarios start")?;
    let mut failed = Vec::new();
    let in_containers: Vec<String> = options
        .scenarios
        .iter()
        .filter(|s| *s != "compose")
        .cloned()
        .collect();
    if !in_containers.is_empty() {
        let scenarios = Options {
            scenarios: in_containers,
            calls: options.calls,
            concurrency: options.concurrency,
        };
        if let Err(error) = run_scenarios(&engine, &scenarios) {
            eprintln!("{error:#}");
            failed.push("the testcontainers scenarios");
        }
    }
    if options.scenarios.iter().any(|s| s == "compose") {
        println!("\n== scenario `compose`");
        if let Err(error) = compose::run() {
            eprintln!("scenario `compose` failed: {error:#}");
            failed.push("compose");
        }
    }
    ensure!(failed.is_empty(), "failed: {}", failed.join(", "));
    Ok(())
}

/// Builds and runs `xtask-containers`, through the API bridge when the
/// engine needs one.
fn run_scenarios(engine: &str, options: &Options) -> Result<()> {
    let root = crate::instances::workspace()?;
    let api = engine
        .split_whitespace()
        .nth(1)
        .and_then(shim::parse_api)
        .context("the engine's API version")?;
    let _shim;
    let mut command = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    command.current_dir(&root).args([
        "run",
        "--quiet",
        "-p",
        "xtask",
        "--features",
        "containers",
        "--bin",
        "xtask-containers",
        "--",
    ]);
    command.args(options.args());
    match engine_socket() {
        Some(socket) => {
            let bridge =
                std::env::temp_dir().join(format!("framex-docker-{}.sock", std::process::id()));
            let started = shim::start(&socket, api, &bridge)?;
            command.env(
                "DOCKER_HOST",
                format!("unix://{}", started.socket.display()),
            );
            _shim = started;
        }
        None => println!("DOCKER_HOST is not a Unix socket: the scenarios use it as it is"),
    }
    println!("building and starting the container scenarios (testcontainers)…");
    let status = command.status().context("cannot run cargo run")?;
    ensure!(status.success(), "the container scenarios failed");
    Ok(())
}

/// The engine's Unix socket: `DOCKER_HOST` when it names one, else Docker's
/// default; `None` when `DOCKER_HOST` is another kind of address.
fn engine_socket() -> Option<PathBuf> {
    match std::env::var("DOCKER_HOST") {
        Ok(host) if !host.is_empty() => host.strip_prefix("unix://").map(PathBuf::from),
        _ => Some(PathBuf::from("/var/run/docker.sock")),
    }
}
