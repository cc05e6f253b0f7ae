//! The FrameX for Rust demo instance, started twice by `cargo xtask e2e`.
//!
//! `demo [CONFIG] [--name NAME]` registers two proxy functions and two routes:
//!
//! - `your_module.build_report(job_id)`: a report stamped with the instance that
//!   made it (its name and process id);
//! - `demo.whoami()`: which instance ran the call;
//! - `GET /api/v1/report?job_id=…` and `GET /api/v1/whoami` call them through the
//!   registry, so configuration decides whether they run here or on a remote.
//!
//! It prints `listening on http://ADDRESS` once it accepts connections.

use std::path::PathBuf;
use std::process::ExitCode;

use bytes::Bytes;
use framex::App;
use http::{Method, Response, StatusCode};
use serde::Deserialize;
use serde_json::{Value, json};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct BuildReport {
    job_id: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NoArguments {}

fn instance(name: &str) -> Value {
    json!({"instance": name, "pid": std::process::id()})
}

#[tokio::main]
async fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let mut config = None;
    let mut name = "demo".to_owned();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--name" => match args.next() {
                Some(value) => name = value,
                None => return usage("--name needs a value"),
            },
            other if other.starts_with('-') => return usage(&format!("unknown option {other}")),
            path => config = Some(PathBuf::from(path)),
        }
    }
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
    if let Err(error) = register(&mut app, &name) {
        eprintln!("{error}");
        return ExitCode::FAILURE;
    }
    let bound = match app.bind(&name).await {
        Ok(bound) => bound,
        Err(error) => {
            eprintln!(
                "error: {error}: {}",
                std::error::Error::source(&error)
                    .map(ToString::to_string)
                    .unwrap_or_default()
            );
            return ExitCode::FAILURE;
        }
    };
    println!("listening on http://{}", bound.local_addr());
    bound.serve().await;
    ExitCode::SUCCESS
}

fn register(app: &mut App, name: &str) -> Result<(), framex::Error> {
    let who = instance(name);
    app.register_fn("your_module.build_report", move |args: BuildReport| {
        let mut report = json!({"job_id": args.job_id, "status": "done"});
        report["made_by"] = who.clone();
        async move { Ok::<_, String>(report) }
    })?;
    let who = instance(name);
    app.register_fn("demo.whoami", move |_: NoArguments| {
        let who = who.clone();
        async move { Ok::<_, String>(who) }
    })?;
    app.route(
        Method::GET,
        "/api/v1/report",
        |request, registry| async move {
            let job_id = request
                .uri()
                .query()
                .and_then(|q| q.split('&').find_map(|pair| pair.strip_prefix("job_id=")))
                .unwrap_or("j-1")
                .to_owned();
            answer(
                framex::call(
                    &registry,
                    "your_module.build_report",
                    json!({"job_id": job_id}),
                )
                .await,
            )
        },
    );
    app.route(Method::GET, "/api/v1/whoami", |_, registry| async move {
        answer(framex::call(&registry, "demo.whoami", json!({})).await)
    });
    app.route(Method::GET, "/api/v1/missing", |_, registry| async move {
        answer(framex::call(&registry, "demo.not_on_remote", json!({})).await)
    });
    Ok(())
}

fn answer(result: Result<Value, framex::Error>) -> Response<Bytes> {
    let (status, body) = match result {
        Ok(value) => (StatusCode::OK, json!({"result": value})),
        Err(error) => (StatusCode::BAD_GATEWAY, json!({"error": error.to_string()})),
    };
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(Bytes::from(body.to_string()))
        .expect("valid response")
}

fn usage(problem: &str) -> ExitCode {
    eprintln!("{problem}\nusage: demo [CONFIG] [--name NAME]");
    ExitCode::from(2)
}
