//! The demo functions and routes that `framex serve` runs (and `cargo xtask e2e`
//! starts twice). Five `#[framex::on_proxy]` functions, four registered:
//!
//! - `your_module.build_report(job_id)`: a report stamped with the instance that
//!   made it (its name, host name and process id), after `FRAMEX_DEMO_REPORT_DELAY_MS`
//!   milliseconds if that is set (how `cargo xtask load --fault slow-one`
//!   makes one replica slower than the others);
//! - `demo.whoami()`: which instance ran the call;
//! - `demo.slow(millis)`: answers after a while, a call in flight at shutdown;
//! - `demo.echo(value)`: answers its argument, for `cargo xtask bench`;
//! - `demo.not_on_remote()`: registered nowhere, to show the error a caller gets.
//!
//! The routes are axum handlers with typed extractors, documented with their
//! parameters and schemas in `GET /api/v1/openapi.json` (so another FrameX
//! instance, Rust or Python, forwards them): `GET /api/v1/report?job_id=…`,
//! `GET /api/v1/reports/{job_id}` and `POST /api/v1/reports` (a JSON body)
//! build a report, `GET /api/v1/whoami`, `GET /api/v1/slow?ms=…` and `GET
//! /api/v1/missing` call the other functions; each calls its function as a
//! plain function, and configuration decides whether it runs here or on a
//! remote instance. `GET /api/v1/NAME/hello` answers with the instance; an
//! instance that lists this one under `proxy_urls` forwards it.

use std::sync::OnceLock;

use framex::App;
use framex::aide::axum::ApiRouter;
use framex::aide::axum::routing::{get, post};
use framex::axum::Json;
use framex::axum::extract::{Path, Query};
use framex::axum::response::{IntoResponse, Response};
use framex::schemars::JsonSchema;
use http::StatusCode;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use your_module::Report;

/// This instance's name, set once at start-up.
static INSTANCE: OnceLock<String> = OnceLock::new();

/// `FRAMEX_DEMO_REPORT_DELAY_MS`, read once; zero when unset or not a number
/// of milliseconds up to 10 s.
fn report_delay() -> std::time::Duration {
    static DELAY: OnceLock<std::time::Duration> = OnceLock::new();
    *DELAY.get_or_init(|| {
        let millis = std::env::var("FRAMEX_DEMO_REPORT_DELAY_MS")
            .ok()
            .and_then(|text| text.parse::<u64>().ok())
            .unwrap_or(0);
        std::time::Duration::from_millis(millis.min(10_000))
    })
}

/// The machine's name: in a container, the container's, which tells
/// replicas that share an instance name apart.
fn host() -> &'static str {
    static HOST: OnceLock<String> = OnceLock::new();
    HOST.get_or_init(|| {
        rustix::system::uname()
            .nodename()
            .to_string_lossy()
            .into_owned()
    })
}

/// This process's id, asked of the kernel once: `std::process::id` is a
/// system call each time, and `build_report` stamps every report with it.
fn pid() -> u32 {
    static PID: OnceLock<u32> = OnceLock::new();
    *PID.get_or_init(std::process::id)
}

fn instance() -> Value {
    json!({
        "instance": INSTANCE.get().map_or("demo", String::as_str),
        "host": host(),
        "pid": pid(),
    })
}

mod your_module {
    use framex::schemars::JsonSchema;
    use serde::{Deserialize, Serialize};
    use serde_json::Value;

    /// The seed's report.
    #[derive(Debug, Serialize, Deserialize, JsonSchema)]
    #[schemars(crate = "framex::schemars")]
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
        let delay = super::report_delay();
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
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
    app.routes(
        ApiRouter::new()
            .api_route("/api/v1/report", get(report))
            .api_route("/api/v1/reports/{job_id}", get(report_of))
            .api_route("/api/v1/reports", post(report_for))
            .api_route("/api/v1/whoami", get(who))
            .api_route("/api/v1/slow", get(slowly))
            // A route only this instance has: another instance that lists
            // this one in `proxy_urls` serves it by forwarding.
            .api_route(&format!("/api/v1/{name}/hello"), get(hello))
            .api_route("/api/v1/missing", get(missing)),
    )?;
    Ok(())
}

/// The query of `GET /api/v1/report`.
#[derive(Debug, Deserialize, JsonSchema)]
#[schemars(crate = "framex::schemars")]
struct ReportQuery {
    /// The job whose report to build; `j-1` when absent.
    job_id: Option<String>,
}

/// The body of `POST /api/v1/reports`.
#[derive(Debug, Deserialize, JsonSchema)]
#[schemars(crate = "framex::schemars")]
struct ReportRequest {
    /// The job whose report to build.
    job_id: String,
    /// Said back in the answer, to show the body arrived whole.
    #[serde(default)]
    note: Option<String>,
}

/// `GET /api/v1/report?job_id=…`: the report of a job.
async fn report(Query(query): Query<ReportQuery>) -> Result<Json<Answer<Report>>, Failed> {
    let job_id = query.job_id.unwrap_or_else(|| "j-1".to_owned());
    answer(your_module::build_report(job_id).await)
}

/// `GET /api/v1/reports/{job_id}`: the report of a job named in the path.
async fn report_of(Path(job_id): Path<String>) -> Result<Json<Answer<Report>>, Failed> {
    answer(your_module::build_report(job_id).await)
}

/// The answer of `POST /api/v1/reports`: the report, and the note it was
/// sent with.
#[derive(Debug, Serialize, JsonSchema)]
#[schemars(crate = "framex::schemars")]
struct NotedReport {
    report: Report,
    note: Option<String>,
}

/// `POST /api/v1/reports` with a JSON body: the report of the job it names.
async fn report_for(
    Json(request): Json<ReportRequest>,
) -> Result<Json<Answer<NotedReport>>, Failed> {
    let report = your_module::build_report(request.job_id).await;
    answer(report.map(|report| NotedReport {
        report,
        note: request.note,
    }))
}

/// `GET /api/v1/whoami`: which instance ran `demo.whoami`.
async fn who() -> Result<Json<Answer<Value>>, Failed> {
    answer(whoami().await)
}

/// The query of `GET /api/v1/slow`.
#[derive(Debug, Deserialize, JsonSchema)]
#[schemars(crate = "framex::schemars")]
struct SlowQuery {
    /// How long the call takes, in milliseconds; 1000 when absent.
    ms: Option<u64>,
}

/// `GET /api/v1/slow?ms=…`: a call that takes a while.
async fn slowly(Query(query): Query<SlowQuery>) -> Result<Json<Answer<Value>>, Failed> {
    answer(slow(query.ms.unwrap_or(1_000)).await)
}

/// `GET /api/v1/NAME/hello`: this instance.
async fn hello() -> Json<Answer<Value>> {
    Json(Answer { result: instance() })
}

/// `GET /api/v1/missing`: a function the remote does not have.
async fn missing() -> Result<Json<Answer<Value>>, Failed> {
    answer(not_on_remote().await)
}

/// A route's answer: `{"result": …}`.
#[derive(Debug, Serialize, JsonSchema)]
#[schemars(crate = "framex::schemars")]
struct Answer<T> {
    result: T,
}

/// A route's failure: 502 with `{"error": "…"}`, the call's error.
#[derive(Debug)]
struct Failed(String);

impl IntoResponse for Failed {
    fn into_response(self) -> Response {
        let body = Json(serde_json::json!({ "error": self.0 }));
        (StatusCode::BAD_GATEWAY, body).into_response()
    }
}

impl framex::aide::OperationOutput for Failed {
    type Inner = Self;
}

fn answer<T>(result: Result<T, framex::Error>) -> Result<Json<Answer<T>>, Failed> {
    match result {
        Ok(result) => Ok(Json(Answer { result })),
        Err(error) => Err(Failed(error.to_string())),
    }
}
