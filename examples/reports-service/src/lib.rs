//! An axum service that embeds FrameX: the shape of a Rust team's service
//! that gains FrameX without a second server.
//!
//! - Two proxy functions, `reports.build_report(job_id, pages)` and
//!   `reports.summarize(job_ids)`: configuration decides whether each runs
//!   here or on another FrameX instance (Rust or Python), and the routes
//!   below call them as plain functions either way.
//! - Two typed routes given to FrameX, `GET /api/v1/reports/{job_id}?pages=…`
//!   and `POST /api/v1/summaries`: served behind FrameX's stack (its
//!   `[auth] rules`, in-flight limit, tracing) and described with their
//!   parameters and schemas in `GET /api/v1/openapi.json`, so that another
//!   FrameX instance forwards them.
//! - The service's own route, `GET /internal/stats`, with its own state and
//!   layer, beside FrameX's routes in one router on one port.
//!
//! [`router`] builds it; `src/main.rs` serves it with `axum::serve`.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::extract::{Path, Query, Request, State};
use axum::http::{HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::{Json, Router};
use framex::aide::axum::ApiRouter;
use framex::aide::axum::routing::{get, post};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A report, as `reports.build_report` makes it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Report {
    /// The job it reports on.
    pub job_id: String,
    /// How many pages it has.
    pub pages: u32,
    /// Where it was made: this service's process id.
    pub made_by: u32,
}

/// A summary of several reports, as `reports.summarize` makes it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Summary {
    /// The jobs summarized, in order.
    pub job_ids: Vec<String>,
    /// Their pages together.
    pub total_pages: u32,
}

/// Builds the report of `job_id`, of `pages` pages (at most 1000).
#[framex::on_proxy(name = "reports.build_report")]
pub async fn build_report(job_id: String, pages: u32) -> Result<Report, framex::Error> {
    if job_id.is_empty() {
        return Err(framex::Error::msg("job_id must not be empty"));
    }
    if pages > 1000 {
        return Err(framex::Error::msg(format!(
            "a report has at most 1000 pages, not {pages}"
        )));
    }
    Ok(Report {
        job_id,
        pages,
        made_by: std::process::id(),
    })
}

/// Summarizes the reports of `job_ids` (one page each), building each where
/// configuration says `reports.build_report` runs.
#[framex::on_proxy(name = "reports.summarize")]
pub async fn summarize(job_ids: Vec<String>) -> Result<Summary, framex::Error> {
    let mut total_pages = 0;
    for job_id in &job_ids {
        total_pages += build_report(job_id.clone(), 1).await?.pages;
    }
    Ok(Summary {
        job_ids,
        total_pages,
    })
}

/// The query of `GET /api/v1/reports/{job_id}`.
#[derive(Debug, Deserialize, JsonSchema)]
pub struct ReportQuery {
    /// How many pages; 1 when absent.
    pub pages: Option<u32>,
}

/// The body of `POST /api/v1/summaries`.
#[derive(Debug, Deserialize, JsonSchema)]
pub struct SummaryRequest {
    /// The jobs to summarize.
    pub job_ids: Vec<String>,
}

/// A call that failed: 502 with its message.
#[derive(Debug)]
pub struct Failed(framex::Error);

impl IntoResponse for Failed {
    fn into_response(self) -> Response {
        let body = serde_json::json!({ "error": self.0.to_string() });
        (StatusCode::BAD_GATEWAY, Json(body)).into_response()
    }
}

impl framex::aide::OperationOutput for Failed {
    type Inner = Self;
}

async fn report(
    Path(job_id): Path<String>,
    Query(query): Query<ReportQuery>,
) -> Result<Json<Report>, Failed> {
    let report = build_report(job_id, query.pages.unwrap_or(1)).await;
    report.map(Json).map_err(Failed)
}

async fn summary(Json(request): Json<SummaryRequest>) -> Result<Json<Summary>, Failed> {
    summarize(request.job_ids).await.map(Json).map_err(Failed)
}

/// The routes this service gives FrameX: documented, and behind FrameX's
/// stack.
pub fn framex_routes() -> ApiRouter {
    ApiRouter::new()
        .api_route("/api/v1/reports/{job_id}", get(report))
        .api_route("/api/v1/summaries", post(summary))
}

/// The service's own state: how many requests its own routes served.
#[derive(Debug, Clone, Default)]
pub struct Stats {
    served: Arc<AtomicU64>,
}

/// The service's own layer, on its own routes: counts them and says who
/// answered.
async fn counted(State(stats): State<Stats>, request: Request, next: Next) -> Response {
    stats.served.fetch_add(1, Ordering::Relaxed);
    let mut response = next.run(request).await;
    response
        .headers_mut()
        .insert("x-served-by", HeaderValue::from_static("reports-service"));
    response
}

async fn stats(State(stats): State<Stats>) -> Json<serde_json::Value> {
    Json(serde_json::json!({ "served": stats.served.load(Ordering::Relaxed) }))
}

/// The whole service: FrameX (its endpoints, [`framex_routes`] and the
/// forwarded routes) and the service's own routes, in one router;
/// `embedded` (the [`app`] embedded) keeps FrameX running while it serves.
pub fn router(embedded: &framex::Embedded) -> Router {
    let stats = Stats::default();
    let own = Router::new()
        .route("/internal/stats", axum::routing::get(self::stats))
        .layer(axum::middleware::from_fn_with_state(stats.clone(), counted))
        .with_state(stats);
    own.merge(embedded.router())
}

/// The FrameX app of this service, from `config`: both functions registered,
/// the routes added.
pub fn app(config: framex::config::Config) -> Result<framex::App, framex::BuildError> {
    let mut app = framex::App::from_config(config)?;
    app.register(build_report)?;
    app.register(summarize)?;
    app.routes(framex_routes())?;
    Ok(app)
}
