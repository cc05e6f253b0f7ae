//! The example service as it runs: FrameX's routes and the service's own on
//! one port, served with `axum::serve`.

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

/// `method path` with a JSON `body` on `address`: the status, the head and
/// the body.
async fn send(address: &str, method: &str, path: &str, body: &str) -> (u16, String, String) {
    let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    let (head, body) = response.split_once("\r\n\r\n").unwrap();
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    (status, head.to_ascii_lowercase(), body.to_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_service_serves_its_routes_and_framex_on_one_port() {
    let config = framex::config::Loader::default()
        .text("config.toml", "[server]\nport = 0\n")
        .env(Vec::<(String, String)>::new())
        .load()
        .unwrap();
    let embedded = framex_example_reports::app(config)
        .unwrap()
        .embed("reports")
        .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap().to_string();
    let router = framex_example_reports::router(&embedded);
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });

    // A typed route given to FrameX: path and query parameters.
    let (status, _, body) = send(&address, "GET", "/api/v1/reports/j-7?pages=3", "").await;
    assert_eq!(status, 200, "{body}");
    let report: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(report["job_id"], "j-7");
    assert_eq!(report["pages"], 3);
    // A bad query is refused by the extractor, naming the parameter.
    let (status, _, body) = send(&address, "GET", "/api/v1/reports/j-7?pages=many", "").await;
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("pages"), "{body}");
    // A function's failure is the route's 502.
    let (status, _, body) = send(&address, "GET", "/api/v1/reports/j-7?pages=5000", "").await;
    assert_eq!(status, 502, "{body}");
    assert!(body.contains("at most 1000 pages"), "{body}");
    // A JSON body; the function calls the other one.
    let (status, _, body) = send(
        &address,
        "POST",
        "/api/v1/summaries",
        &json!({"job_ids": ["a", "b", "c"]}).to_string(),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap(),
        json!({"job_ids": ["a", "b", "c"], "total_pages": 3})
    );
    // The service's own route, state and layer.
    let (status, head, body) = send(&address, "GET", "/internal/stats", "").await;
    assert_eq!(status, 200, "{body}");
    assert!(head.contains("x-served-by: reports-service"), "{head}");
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap(),
        json!({"served": 1})
    );
    // FrameX's proxy endpoint runs the functions for other instances.
    let url = format!("http://{address}");
    let client = framex::transport::Client::default();
    let report: framex_example_reports::Report = client
        .call_as(
            &url,
            None,
            "reports.build_report",
            &json!({"job_id": "x", "pages": 2}),
        )
        .await
        .unwrap();
    assert_eq!((report.job_id.as_str(), report.pages), ("x", 2));
    // And its document describes the routes it was given.
    let (status, _, body) = send(&address, "GET", "/api/v1/openapi.json", "").await;
    assert_eq!(status, 200, "{body}");
    let document: Value = serde_json::from_str(&body).unwrap();
    let parameters = &document["paths"]["/api/v1/reports/{job_id}"]["get"]["parameters"];
    let names: Vec<&str> = parameters
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["pages", "job_id"], "{parameters}");
    assert!(document["paths"].get("/internal/stats").is_none());
}

/// Embedded, FrameX still follows the process's signals: SIGHUP loads the
/// configuration file again (here moving `reports.build_report` to a remote
/// instance), and SIGTERM ends `axum::serve` gracefully.
#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reloads_and_sigterm_stops_the_embedded_service() {
    use rustix::process::{Signal, getpid, kill_process};

    let dir = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("reports-service");
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join(format!("{}.toml", std::process::id()));
    std::fs::write(&file, "[server]\nport = 0\n").unwrap();
    let config = framex::config::Config::load(Some(&file)).unwrap();
    // Isolated: the other test of this process installs its own runtime.
    let app = framex_example_reports::app(config).unwrap();
    let registry = app.registry().clone();
    let embedded = app.isolated().embed("reports").unwrap();
    let shutdown = embedded.signals();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let router = framex_example_reports::router(&embedded);
    let serving = tokio::spawn(async move {
        axum::serve(listener, router)
            .with_graceful_shutdown(shutdown)
            .await
    });
    let built = framex::call_on(
        &registry,
        "reports.build_report",
        json!({"job_id": "a", "pages": 1}),
    );
    assert!(built.await.is_ok(), "runs here before the reload");

    // A port nothing listens on: once moved there, a call fails to connect.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let remote = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    std::fs::write(
        &file,
        format!(
            "load_builtin_plugins = [\"proxy\"]\n[server]\nport = 0\nenable_proxy = true\n\
             [plugins.proxy]\nproxy_urls = [\"{remote}\"]\n\
             proxy_functions = {{ \"{remote}\" = [\"reports.build_report\"] }}\n"
        ),
    )
    .unwrap();
    kill_process(getpid(), Signal::HUP).unwrap();
    let mut moved = false;
    for _ in 0..200 {
        let call = framex::call_on(
            &registry,
            "reports.build_report",
            json!({"job_id": "a", "pages": 1}),
        );
        if let Err(error) = call.await {
            assert!(error.to_string().contains(&remote), "{error}");
            moved = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    assert!(moved, "SIGHUP moved reports.build_report to {remote}");

    kill_process(getpid(), Signal::TERM).unwrap();
    let served = tokio::time::timeout(std::time::Duration::from_secs(10), serving)
        .await
        .expect("SIGTERM ends axum::serve")
        .unwrap();
    assert!(served.is_ok(), "{served:?}");
    let _ = std::fs::remove_file(&file);
}
