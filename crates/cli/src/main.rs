//! `framex`: check a FrameX configuration, call a proxy function on any FrameX
//! instance (Rust or Python), or serve the demo functions to try FrameX out.
//!
//! ```text
//! framex check [CONFIG]
//! framex call URL FUNCTION [--kwargs JSON] [--key KEY] [--timeout SECS]
//! framex serve [CONFIG] [--name NAME]
//! ```
//!
//! Exit codes: 0 on success, 1 when the configuration is invalid or the call
//! failed, 2 for a command line that does not parse.

mod allocator;
mod demo;
mod memory;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use framex::App;
use framex::Value;
use framex::config::Config;
use framex::transport::{Client, ClientSettings};

#[derive(Debug, Parser)]
#[command(
    name = "framex",
    version,
    about = "FrameX for Rust: check a configuration, call a proxy function, serve the demo functions",
    long_about = None,
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Validate a configuration and print where each listed function runs and
    /// each upstream's rules; exit 1 listing every error when it is invalid.
    Check {
        /// The configuration file; without it, `config.toml` in the working
        /// directory if there is one. `FRAMEX__…` variables apply on top.
        config: Option<PathBuf>,
    },
    /// Call a proxy function on a FrameX instance, Rust or Python, and print
    /// its result as JSON; exit 1 with the error when the call fails.
    ///
    /// Values go through as Python FrameX writes them: integers of any size,
    /// NaN, Infinity and -Infinity, keys in order. A pydantic model or
    /// dataclass that a Python function returns is printed as its fields.
    Call {
        /// The instance's base URL, such as `http://remote-framex:8080`.
        url: String,
        /// The function's FrameX name, such as `your_module.build_report`.
        function: String,
        /// The keyword arguments, a JSON object (NaN, Infinity and integers of
        /// any size included).
        #[arg(long, default_value = "{}", value_name = "JSON")]
        kwargs: String,
        /// The key the instance's `/api/v1/proxy/remote` rule expects. Prefer
        /// the environment variable: other users can read command lines.
        #[arg(long, env = "FRAMEX_PROXY_KEY", hide_env_values = true)]
        key: Option<String>,
        /// How long the call may take, in seconds.
        #[arg(long, default_value_t = 60, value_name = "SECS")]
        timeout: u64,
        /// Print the result exactly as it arrived, on one line: a Python
        /// `dynamic_obj` (a pydantic model or dataclass) with its wrapper.
        #[arg(long)]
        raw: bool,
    },
    /// Ask a running instance's `/health` on this machine, for a container's
    /// health check: exit 0 when it answers 200 within the timeout, 1 naming
    /// the URL and what went wrong otherwise (503 while it drains).
    ///
    /// The address is the configuration's `server.host` and `server.port`,
    /// an unspecified host (`0.0.0.0`) probed on loopback.
    Health {
        /// The configuration file, as for `check`.
        config: Option<PathBuf>,
        /// Probe this `HOST:PORT` instead of the configuration's.
        #[arg(long, value_name = "HOST:PORT")]
        address: Option<String>,
        /// How long connecting, and then answering, may each take.
        #[arg(long, default_value_t = 3, value_name = "SECS")]
        timeout: u64,
    },
    /// Serve the demo functions with a configuration, for trying FrameX out:
    /// prints `listening on http://ADDRESS` once it accepts connections, loads
    /// the configuration again on SIGHUP (moving functions between local and
    /// remote without a restart), and stops on Ctrl-C or SIGTERM, letting
    /// calls in flight finish.
    Serve {
        /// The configuration file, as for `check`.
        config: Option<PathBuf>,
        /// The instance's name, reported in `/health` and by the demo functions.
        #[arg(long, default_value = "framex")]
        name: String,
    },
}

#[tokio::main]
async fn main() -> ExitCode {
    match Cli::parse().command {
        Command::Check { config } => check(config),
        Command::Call {
            url,
            function,
            kwargs,
            key,
            timeout,
            raw,
        } => call(&url, &function, &kwargs, key.as_deref(), timeout, raw).await,
        Command::Health {
            config,
            address,
            timeout,
        } => health(config, address, timeout),
        Command::Serve { config, name } => serve(config, &name).await,
    }
}

fn health(config: Option<PathBuf>, address: Option<String>, timeout: u64) -> ExitCode {
    let address = match address {
        Some(address) => address,
        None => match Config::load(config.as_deref()) {
            Ok(config) => {
                framex::health::local_address(config.server().host(), config.server().port())
            }
            Err(error) => {
                eprintln!("error: {error}");
                return ExitCode::FAILURE;
            }
        },
    };
    match framex::health::probe(&address, Duration::from_secs(timeout.max(1))) {
        Ok(body) => {
            println!("{}", body.trim());
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::FAILURE
        }
    }
}

fn check(path: Option<PathBuf>) -> ExitCode {
    use std::io::Write as _;
    // Buffered: a file with thousands of problems prints in one go.
    let mut stderr = std::io::BufWriter::new(std::io::stderr().lock());
    let code = match Config::load(path.as_deref()) {
        Ok(config) => {
            for warning in config.warnings() {
                let _ = writeln!(stderr, "{warning}");
            }
            print!("{}", config.summary());
            ExitCode::SUCCESS
        }
        Err(error) => {
            for diagnostic in error.diagnostics() {
                let _ = writeln!(stderr, "{diagnostic}");
            }
            ExitCode::FAILURE
        }
    };
    let _ = stderr.flush();
    code
}

async fn call(
    url: &str,
    function: &str,
    kwargs: &str,
    key: Option<&str>,
    timeout: u64,
    raw: bool,
) -> ExitCode {
    let kwargs = match framex::json::from_str::<Value>(kwargs) {
        Ok(Value::Object(kwargs)) => kwargs,
        Ok(other) => {
            eprintln!(
                "error: --kwargs must be a JSON object of keyword arguments, not {}",
                other.kind()
            );
            return ExitCode::FAILURE;
        }
        Err(error) => {
            eprintln!("error: --kwargs is not JSON: {error}");
            return ExitCode::FAILURE;
        }
    };
    let client =
        Client::new(ClientSettings::default().with_timeout(Duration::from_secs(timeout.max(1))));
    match client.call(url, key, function, &kwargs).await {
        Ok(result) => {
            let printed = if raw {
                framex::json::to_string(&result)
            } else {
                framex::json::to_string_pretty(&result.unwrap_dynamic_objs())
            };
            match printed {
                Ok(printed) => {
                    println!("{printed}");
                    ExitCode::SUCCESS
                }
                Err(error) => {
                    eprintln!("error: the result cannot be printed: {error}");
                    ExitCode::FAILURE
                }
            }
        }
        Err(error) => {
            eprintln!("error: {}", with_causes(&error));
            ExitCode::FAILURE
        }
    }
}

async fn serve(config: Option<PathBuf>, name: &str) -> ExitCode {
    // Logs go to standard error; RUST_LOG chooses what (default: info),
    // FRAMEX_LOG_FORMAT how (human or json).
    if let Err(error) = framex::logging::init() {
        eprintln!("error: {error}");
        return ExitCode::FAILURE;
    }
    let code = serve_logging(config, name).await;
    // The lines still queued are written on every way out.
    framex::logging::shutdown();
    code
}

async fn serve_logging(config: Option<PathBuf>, name: &str) -> ExitCode {
    raise_open_file_limit();
    let mut app = match App::load(config.as_deref()) {
        Ok(app) => app,
        Err(error) => {
            eprintln!("{error}");
            return ExitCode::FAILURE;
        }
    };
    for warning in app.config().warnings() {
        eprintln!("{warning}");
    }
    if let Err(error) = demo::register(&mut app, name) {
        eprintln!("error: {error}");
        return ExitCode::FAILURE;
    }
    let mut bound = match app.bind(name).await {
        Ok(bound) => bound,
        Err(error) => {
            eprintln!("error: {}", with_causes(&error));
            return ExitCode::FAILURE;
        }
    };
    memory::release_freed_memory_in_the_background();
    // Whoever reads `listening on` may signal at once (a reload, a stop).
    bound.install_signal_handlers();
    println!("listening on http://{}", bound.local_addr());
    bound.serve().await;
    ExitCode::SUCCESS
}

/// Raises the soft limit on open files to the hard one, as servers commonly
/// do: each connection holds a descriptor, and the usual soft limit (1,024)
/// is reached long before the machine's. What it could not do is logged.
fn raise_open_file_limit() {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let limit = getrlimit(Resource::Nofile);
    if limit.current == limit.maximum {
        return;
    }
    let raised = rustix::process::Rlimit {
        current: limit.maximum,
        maximum: limit.maximum,
    };
    match setrlimit(Resource::Nofile, raised) {
        Ok(()) => tracing::debug!(
            from = limit.current,
            to = limit.maximum,
            "raised the open file limit"
        ),
        Err(error) => tracing::warn!(
            %error,
            limit = limit.current,
            "cannot raise the open file limit"
        ),
    }
}

/// An error and each of its causes, joined by `: `.
fn with_causes(error: &dyn std::error::Error) -> String {
    let mut message = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        message.push_str(": ");
        message.push_str(&cause.to_string());
        source = cause.source();
    }
    message
}
