//! `peers MODE [--upstream URL]`: the two-hop shape of `cargo xtask bench`'s
//! (b), built the usual Rust ways, for FrameX to be measured against.
//!
//! A client asks `GET /api/v1/report?job_id=…` of a front service, an axum
//! route that asks a back service to build the report and answers
//! `{"result": report}`, the report being what FrameX's demo builds (the job,
//! `done`, and the instance that made it). The two ways:
//!
//! - `json-back` serves `POST /build_report` (a JSON body `{"job_id": …}`,
//!   the report as JSON) with axum; `json-front --upstream URL` calls it with
//!   a reqwest client (HTTP/1, pooled keep-alive connections);
//! - `grpc-back` serves the unary gRPC method `framex.bench.Reports/Build`
//!   with tonic; `grpc-front --upstream URL` calls it through one tonic
//!   `Channel` (HTTP/2, requests multiplexed on one connection).
//!
//! Each listens on `127.0.0.1` on a port of its own and prints `listening on
//! http://ADDRESS` once it accepts connections. It allocates as the `framex`
//! command does, with the command's own allocator (jemalloc for small blocks,
//! glibc's for large ones).

#[path = "../../../crates/cli/src/allocator.rs"]
mod allocator;

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::process::ExitCode;
use std::sync::OnceLock;
use std::task::{Context, Poll};

use anyhow::{Context as _, Result, bail};
use axum::Json;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::serve::ListenerExt as _;
use serde::{Deserialize, Serialize};

/// The gRPC method the back service serves.
const BUILD: &str = "/framex.bench.Reports/Build";

/// The request of `Reports/Build`: the job whose report to build.
///
/// The messages and the service are written out by hand as `tonic-build`
/// would generate them from `framex/bench/reports.proto`, so that building
/// this crate needs no `protoc`.
#[derive(Clone, PartialEq, prost::Message, Deserialize)]
struct ReportRequest {
    #[prost(string, tag = "1")]
    job_id: String,
}

/// Who made a report.
#[derive(Clone, PartialEq, prost::Message, Serialize, Deserialize)]
struct MadeBy {
    #[prost(string, tag = "1")]
    instance: String,
    #[prost(string, tag = "2")]
    host: String,
    #[prost(uint32, tag = "3")]
    pid: u32,
}

/// A job's report, as the demo's `your_module.build_report` makes it.
#[derive(Clone, PartialEq, prost::Message, Serialize, Deserialize)]
struct Report {
    #[prost(string, tag = "1")]
    job_id: String,
    #[prost(string, tag = "2")]
    status: String,
    #[prost(message, optional, tag = "3")]
    made_by: Option<MadeBy>,
}

/// The answer of the front's route.
#[derive(Serialize)]
struct Answer {
    result: Report,
}

/// The query of the front's route.
#[derive(Deserialize)]
struct ReportQuery {
    job_id: Option<String>,
}

/// The back service's report of `job_id`.
fn build_report(job_id: String) -> Report {
    static MADE_BY: OnceLock<MadeBy> = OnceLock::new();
    let made_by = MADE_BY.get_or_init(|| MadeBy {
        instance: "peer".to_owned(),
        host: rustix::system::uname()
            .nodename()
            .to_string_lossy()
            .into_owned(),
        pid: std::process::id(),
    });
    Report {
        job_id,
        status: "done".to_owned(),
        made_by: Some(made_by.clone()),
    }
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<()> {
    let mut args = std::env::args().skip(1);
    let mode = args
        .next()
        .context("usage: peers json-back | json-front --upstream URL | grpc-back | grpc-front --upstream URL")?;
    let mut upstream = None;
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--upstream" => upstream = Some(args.next().context("--upstream needs a URL")?),
            other => bail!("unknown argument `{other}`"),
        }
    }
    let upstream = |mode: &str| {
        upstream
            .clone()
            .with_context(|| format!("{mode} needs --upstream URL"))
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let address = listener.local_addr()?;
        match mode.as_str() {
            "json-back" => {
                let app = axum::Router::new().route(
                    "/build_report",
                    post(|Json(request): Json<ReportRequest>| async move {
                        Json(build_report(request.job_id))
                    }),
                );
                println!("listening on http://{address}");
                axum::serve(listener.tap_io(no_delay), app).await?;
            }
            "json-front" => {
                let client = reqwest::Client::new();
                let url = format!("{}/build_report", upstream("json-front")?);
                let app = axum::Router::new()
                    .route("/api/v1/report", get(json_front))
                    .with_state((client, url));
                println!("listening on http://{address}");
                axum::serve(listener.tap_io(no_delay), app).await?;
            }
            "grpc-back" => {
                // Without TCP_NODELAY, a gRPC answer waits on the client's delayed
                // acknowledgement (tens of milliseconds at p99).
                let incoming =
                    tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true));
                println!("listening on http://{address}");
                tonic::transport::Server::builder()
                    .add_service(Reports)
                    .serve_with_incoming(incoming)
                    .await?;
            }
            "grpc-front" => {
                let channel = tonic::transport::Channel::from_shared(upstream("grpc-front")?)?
                    .connect()
                    .await
                    .context("cannot connect to the gRPC back service")?;
                let app = axum::Router::new()
                    .route("/api/v1/report", get(grpc_front))
                    .with_state(tonic::client::Grpc::new(channel));
                println!("listening on http://{address}");
                axum::serve(listener.tap_io(no_delay), app).await?;
            }
            other => bail!("unknown mode `{other}`"),
        }
        Ok(())
    })
}

/// Answers leave at once, as FrameX's server sends them: without
/// TCP_NODELAY, a small write may wait on the peer's delayed acknowledgement.
fn no_delay(stream: &mut tokio::net::TcpStream) {
    let _ = stream.set_nodelay(true);
}

/// The front's route, calling the back service with reqwest.
async fn json_front(
    State((client, url)): State<(reqwest::Client, String)>,
    Query(query): Query<ReportQuery>,
) -> Result<Json<Answer>, (StatusCode, String)> {
    let request = ReportRequest {
        job_id: query.job_id.unwrap_or_else(|| "j-1".to_owned()),
    };
    let failed = |error: reqwest::Error| (StatusCode::BAD_GATEWAY, error.to_string());
    let report = client
        .post(&url)
        .json(&serde_json::json!({ "job_id": request.job_id }))
        .send()
        .await
        .and_then(reqwest::Response::error_for_status)
        .map_err(failed)?
        .json::<Report>()
        .await
        .map_err(failed)?;
    Ok(Json(Answer { result: report }))
}

/// The front's route, calling the back service with tonic.
async fn grpc_front(
    State(mut grpc): State<tonic::client::Grpc<tonic::transport::Channel>>,
    Query(query): Query<ReportQuery>,
) -> Result<Json<Answer>, (StatusCode, String)> {
    let request = ReportRequest {
        job_id: query.job_id.unwrap_or_else(|| "j-1".to_owned()),
    };
    let failed = |status: tonic::Status| (StatusCode::BAD_GATEWAY, status.to_string());
    grpc.ready()
        .await
        .map_err(|error| (StatusCode::BAD_GATEWAY, error.to_string()))?;
    let report: tonic::Response<Report> = grpc
        .unary(
            tonic::Request::new(request),
            axum::http::uri::PathAndQuery::from_static(BUILD),
            tonic_prost::ProstCodec::default(),
        )
        .await
        .map_err(failed)?;
    Ok(Json(Answer {
        result: report.into_inner(),
    }))
}

/// The `framex.bench.Reports` service, as tonic-build writes a server.
#[derive(Clone, Copy)]
struct Reports;

impl tonic::server::NamedService for Reports {
    const NAME: &'static str = "framex.bench.Reports";
}

impl tower_service::Service<http::Request<tonic::body::Body>> for Reports {
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<tonic::body::Body>) -> Self::Future {
        if request.uri().path() != BUILD {
            return Box::pin(async {
                Ok(tonic::Status::unimplemented("no such method").into_http())
            });
        }
        Box::pin(async move {
            let mut grpc = tonic::server::Grpc::new(tonic_prost::ProstCodec::default());
            Ok(grpc.unary(Build, request).await)
        })
    }
}

/// `Reports/Build`.
struct Build;

impl tonic::server::UnaryService<ReportRequest> for Build {
    type Response = Report;
    type Future = std::future::Ready<Result<tonic::Response<Report>, tonic::Status>>;

    fn call(&mut self, request: tonic::Request<ReportRequest>) -> Self::Future {
        std::future::ready(Ok(tonic::Response::new(build_report(
            request.into_inner().job_id,
        ))))
    }
}
