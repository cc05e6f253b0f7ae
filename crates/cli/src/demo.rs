//! The demo functions and routes that `framex serve` runs (and `cargo xtask e2e`
//! starts twice). Five `#[framex::on_proxy]` functions, four registered:
//!
//! - `your_module.build_report(job_id)`: a report stamped with the instance that
//!   made it (its name and process id);
//! - `demo.whoami()`: which instance ran the call;
//! - `demo.slow(millis)`: answers after a while, a call in flight at shutdown;
//! - `demo.echo(value)`: answers its argument, for `cargo xtask bench`;
//! - `demo.not_on_remote()`: registered nowhere, to show the error a caller gets.
//!
//! `GET /api/v1/report?job_id=…`, `GET /api/v1/whoami`, `GET /api/v1/slow?ms=…`
//! and `GET /api/v1/missing` call them as plain functions; configuration decides
//! whether each runs here or on a remote instance. `GET /api/v1/NAME/hello`
//! answers with the instance; an instance that lists this one under
//! `proxy_urls` forwards it.

use std::sync::OnceLock;

use bytes::Bytes;
use framex::App;
use http::{Method, Response, StatusCode};
use serde_json::{Value, json};

/// This instance's name, set once at start-up.
static INSTANCE: OnceLock<String> = OnceLock::new();

fn instance() -> Value {
    json!({
        "instance": INSTANCE.get().map_or("demo", String::as_str),
        "pid": std::process::id(),
    })
}

mod your_module {
    use serde::{Deserialize, Serialize};
    use serde_json::Value;

    /// The seed's report.
    #[derive(Debug, Serialize, Deserialize)]
    pub struct Report {
        pub job_id: String,
        pub status: String,
        /// The instance that made it.
        pub made_by: Value,
    }

    /// Builds the report of a job. The name matches the one in the seed
    /// configuration, which a Python FrameX service would register too.
    #[framex::on_proxy(name = "your_module.build_report")]
    pub async fn build_report(job_id: String) -> Result<Report, framex::Error> {
        if job_id.is_empty() {
            return Err(framex::Error::msg("job_id must not be empty"));
        }
        Ok(Report {
            job_id,
            status: "done".to_owned(),
            made_by: super::instance(),
        })
    }
}

/// Which instance ran the call.
#[framex::on_proxy(name = "demo.whoami")]
async fn whoami() -> Result<Value, framex::Error> {
    Ok(instance())
}

/// Answers after `millis` milliseconds (at most 10 s): a call in flight, for
/// showing that a stopping instance finishes it.
#[framex::on_proxy(name = "demo.slow")]
async fn slow(millis: u64) -> Result<Value, framex::Error> {
    tokio::time::sleep(std::time::Duration::from_millis(millis.min(10_000))).await;
    Ok(instance())
}

/// Answers its argument as it came (integers of any size, NaN, key order):
/// the function `cargo xtask bench` calls.
#[framex::on_proxy(name = "demo.echo")]
async fn echo(value: framex::Value) -> Result<framex::Value, framex::Error> {
    Ok(value)
}

/// A function no instance registers: listed for the remote, it is refused there.
#[framex::on_proxy(name = "demo.not_on_remote")]
async fn not_on_remote() -> Result<Value, framex::Error> {
    Ok(instance())
}

/// Registers the demo functions and routes on `app`, for an instance named
/// `name`.
pub(crate) fn register(app: &mut App, name: &str) -> Result<(), framex::BuildError> {
    let _ = INSTANCE.set(name.to_owned());
    app.register(your_module::build_report)?;
    app.register(whoami)?;
    app.register(slow)?;
    app.register(echo)?;
    // The routes call the functions as plain functions; configuration decides
    // where they run.
    app.route(Method::GET, "/api/v1/report", |request, _| async move {
        let job_id = query(&request, "job_id").unwrap_or("j-1").to_owned();
        answer(your_module::build_report(job_id).await)
    });
    app.route(Method::GET, "/api/v1/whoami", |_, _| async move {
        answer(whoami().await)
    });
    app.route(Method::GET, "/api/v1/slow", |request, _| async move {
        let millis = query(&request, "ms").and_then(|ms| ms.parse().ok());
        answer(slow(millis.unwrap_or(1_000)).await)
    });
    // A route only this instance has: another instance that lists this one in
    // `proxy_urls` serves it by forwarding.
    app.route(
        Method::GET,
        &format!("/api/v1/{name}/hello"),
        |_, _| async move { answer(Ok::<_, framex::Error>(instance())) },
    );
    app.route(Method::GET, "/api/v1/missing", |_, _| async move {
        answer(not_on_remote().await)
    });
    Ok(())
}

/// The value of `name` in the request's query string.
fn query<'a, B>(request: &'a http::Request<B>, name: &str) -> Option<&'a str> {
    request.uri().query()?.split('&').find_map(|pair| {
        let (key, value) = pair.split_once('=')?;
        (key == name).then_some(value)
    })
}

/// A route's answer: `{"result": …}`, or `{"error": "…"}` with 502.
#[derive(serde::Serialize)]
#[serde(rename_all = "lowercase")]
enum Answer<T> {
    Result(T),
    Error(String),
}

fn answer<T: serde::Serialize>(result: Result<T, framex::Error>) -> Response<Bytes> {
    let (status, answer) = match result {
        Ok(value) => (StatusCode::OK, Answer::Result(value)),
        Err(error) => (StatusCode::BAD_GATEWAY, Answer::Error(error.to_string())),
    };
    // Written straight from the value: no JSON tree in between.
    let (status, body) = match serde_json::to_vec(&answer) {
        Ok(body) => (status, body),
        Err(error) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            serde_json::to_vec(&Answer::<()>::Error(format!(
                "the result does not serialize as JSON: {error}"
            )))
            .expect("a string serializes"),
        ),
    };
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(Bytes::from(body))
        .expect("valid response")
}
