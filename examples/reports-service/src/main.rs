//! `reports-service [CONFIG] [--listen ADDRESS]`: the example service (see
//! the library), on `ADDRESS` (default `127.0.0.1:8080`) with the FrameX
//! configuration `CONFIG` (default `./config.toml`, then `FRAMEX__…`).
//! Stops on Ctrl-C or SIGTERM once requests in flight have finished, and
//! reloads the configuration on SIGHUP.
//!
//! `reports-service --health [--listen ADDRESS]` asks a running service's
//! `/health` on that address instead (an unspecified host on loopback) and
//! exits 0 when it answers 200: the health check of its container image.

use std::path::PathBuf;
use std::process::ExitCode;

#[tokio::main]
async fn main() -> ExitCode {
    if let Err(error) = framex::logging::init() {
        return fail(&error.to_string());
    }
    let code = run().await;
    // The log lines still queued are written on every way out.
    framex::logging::shutdown();
    code
}

async fn run() -> ExitCode {
    let mut config: Option<PathBuf> = None;
    let mut listen = "127.0.0.1:8080".to_owned();
    let mut health = false;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--listen" => match args.next() {
                Some(address) => listen = address,
                None => return fail("--listen takes an address, such as 127.0.0.1:8080"),
            },
            "--health" => health = true,
            "-h" | "--help" => {
                println!(
                    "usage: reports-service [CONFIG] [--listen ADDRESS]\n       reports-service --health [--listen ADDRESS]"
                );
                return ExitCode::SUCCESS;
            }
            _ if config.is_none() && !arg.starts_with('-') => config = Some(arg.into()),
            _ => return fail(&format!("unexpected argument `{arg}`; see --help")),
        }
    }
    if health {
        return probe(&listen);
    }
    let config = match framex::config::Config::load(config.as_deref()) {
        Ok(config) => config,
        Err(error) => return fail(&error.to_string()),
    };
    let embedded = match framex_example_reports::app(config).and_then(|app| app.embed("reports")) {
        Ok(embedded) => embedded,
        Err(error) => return fail(&error.to_string()),
    };
    // Listened for before readiness is announced, so that a signal sent
    // right after it stops the service gracefully.
    let shutdown = embedded.signals();
    let listener = match tokio::net::TcpListener::bind(&listen).await {
        Ok(listener) => listener,
        Err(error) => return fail(&format!("cannot listen on {listen}: {error}")),
    };
    match listener.local_addr() {
        Ok(address) => println!("listening on http://{address}"),
        Err(error) => return fail(&format!("cannot listen on {listen}: {error}")),
    }
    let router = framex_example_reports::router(&embedded);
    // Encoded paths are routed as FrameX routes them, and the path parameters
    // Python FrameX sends in the query are put back in the path.
    let service = tower_layer::Layer::layer(&framex::server::normalize_path_layer(), router);
    let make_service = axum::ServiceExt::<axum::extract::Request>::into_make_service(service);
    let served = axum::serve(listener, make_service)
        .with_graceful_shutdown(shutdown)
        .await;
    match served {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => fail(&format!("serving stopped: {error}")),
    }
}

/// `--health`: `/health` of the service listening on `listen`.
fn probe(listen: &str) -> ExitCode {
    let Some((host, port)) = listen
        .rsplit_once(':')
        .and_then(|(host, port)| Some((host, port.parse::<u16>().ok()?)))
    else {
        return fail(&format!("--listen `{listen}` is not HOST:PORT"));
    };
    let address = framex::health::local_address(host, port);
    match framex::health::probe(&address, std::time::Duration::from_secs(3)) {
        Ok(body) => {
            println!("{}", body.trim());
            ExitCode::SUCCESS
        }
        Err(error) => fail(&error),
    }
}

fn fail(message: &str) -> ExitCode {
    eprintln!("reports-service: {message}");
    ExitCode::FAILURE
}
