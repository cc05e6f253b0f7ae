//! FrameX inside an application's own axum service: a plain axum app merges
//! FrameX's router and serves it with `axum::serve` on one port, its own
//! routes beside FrameX's endpoints, and calls through it behave as they do
//! when FrameX serves itself.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::routing::get;
use framex::App;
use framex::transport::{Client, ErrorKind};
use serde_json::{Value, json};
use tokio::sync::Notify;

use crate::support::{config, get as http_get, start};

/// The remote: `e.there` answers where it ran.
async fn remote() -> String {
    let mut app = App::from_config(config("[server]\nport = 0\n")).unwrap();
    app.register_handler(
        "e.there",
        framex::registry::typed(|_: Value| async { Ok::<_, String>("remote") }),
    )
    .unwrap();
    start(app, "remote").await
}

/// The embedded app: `e.here` runs in it, `e.there` is listed for `remote`,
/// and `e.slow` waits for `release` (telling `started` it began).
fn embedded_app(remote: &str, extra: &str, started: Arc<Notify>, release: Arc<Notify>) -> App {
    let mut app = App::from_config(config(&format!(
        "load_builtin_plugins = [\"proxy\"]\n[server]\nenable_proxy = true\n{extra}\n\
         [plugins.proxy]\nproxy_urls = [\"{remote}\"]\nproxy_functions = {{ \"{remote}\" = [\"e.there\"] }}\n"
    )))
    .unwrap();
    app.register_handler(
        "e.here",
        framex::registry::typed(|_: Value| async { Ok::<_, String>("embedded") }),
    )
    .unwrap();
    app.register_handler(
        "e.slow",
        framex::registry::typed(move |_: Value| {
            let (started, release) = (started.clone(), release.clone());
            async move {
                started.notify_one();
                release.notified().await;
                Ok::<_, String>("finished")
            }
        }),
    )
    .unwrap();
    app
}

/// The application's own route: it calls both functions through the
/// registry, and configuration says where each runs.
async fn both(State(registry): State<framex::registry::Registry>) -> axum::Json<Value> {
    let here = framex::call_on(&registry, "e.here", json!({}))
        .await
        .unwrap();
    let there = framex::call_on(&registry, "e.there", json!({}))
        .await
        .unwrap();
    axum::Json(json!({"here": here, "there": there}))
}

/// Serves `app` embedded in a plain axum app on a free loopback port until
/// `stop` is notified; the URL and the serving task.
async fn serve_embedded(
    app: App,
    stop: Arc<Notify>,
) -> (String, framex::Embedded, tokio::task::JoinHandle<()>) {
    let registry = app.registry().clone();
    let framex = app.isolated().embed("embedded").unwrap();
    let own = axum::Router::new()
        .route("/own", get(|| async { "the application's own route" }))
        .route("/both", get(both))
        .with_state(registry);
    let service = own.merge(framex.router());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let serving = tokio::spawn(async move {
        axum::serve(listener, service)
            .with_graceful_shutdown(async move { stop.notified().await })
            .await
            .unwrap();
    });
    (url, framex, serving)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_axum_app_serves_its_routes_and_framex_on_one_port() {
    let remote = remote().await;
    let (started, release, stop) = (Arc::default(), Arc::default(), Arc::new(Notify::new()));
    let app = embedded_app(&remote, "", started, release);
    let (url, _framex, _serving) = serve_embedded(app, stop).await;

    assert_eq!(
        http_get(&url, "/own").await,
        (200, "the application's own route".to_owned())
    );
    // The application's route calls a local and a remote function.
    let (status, body) = http_get(&url, "/both").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap(),
        json!({"here": "embedded", "there": "remote"})
    );
    // Callers of its proxy endpoint: a local function runs here, a listed one
    // is relayed to the remote, a missing one is named.
    let client = Client::default();
    let here: String = client
        .call_as(&url, None, "e.here", &json!({}))
        .await
        .unwrap();
    assert_eq!(here, "embedded");
    let there: String = client
        .call_as(&url, None, "e.there", &json!({}))
        .await
        .unwrap();
    assert_eq!(there, "remote");
    let missing = client
        .call(&url, None, "e.missing", &json!({}))
        .await
        .unwrap_err();
    assert_eq!(missing.kind(), &ErrorKind::NotRegistered, "{missing}");
    // FrameX's other endpoints are served too, and its 404 for the rest.
    assert_eq!(http_get(&url, "/health").await.0, 200);
    assert_eq!(http_get(&url, "/metrics").await.0, 200);
    let (status, body) = http_get(&url, "/nowhere").await;
    assert_eq!(status, 404, "{body}");
    assert!(body.contains("no route /nowhere"), "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_framex_keeps_its_limit_auth_reload_and_graceful_shutdown() {
    let remote = remote().await;
    let (started, release, stop) = (
        Arc::new(Notify::new()),
        Arc::new(Notify::new()),
        Arc::new(Notify::new()),
    );
    let app = embedded_app(
        &remote,
        "max_in_flight = 1\n[auth]\nrules = { \"/api/v1/proxy/remote\" = [\"k\"] }",
        started.clone(),
        release.clone(),
    );
    let (url, framex, serving) = serve_embedded(app, stop.clone()).await;
    let client = Client::default();

    // The `[auth] rules` guard the proxy endpoint.
    let refused = client
        .call(&url, None, "e.here", &json!({}))
        .await
        .unwrap_err();
    assert!(refused.is_unauthorized(), "{refused}");

    // One call in flight: the next is shed with 503; FrameX's reads and the
    // application's own routes still answer.
    let slow = {
        let (client, url) = (client.clone(), url.clone());
        tokio::spawn(async move {
            client
                .call_as::<_, String>(&url, Some("k"), "e.slow", &json!({}))
                .await
        })
    };
    started.notified().await;
    let shed = client
        .call(&url, Some("k"), "e.here", &json!({}))
        .await
        .unwrap_err();
    assert!(
        matches!(shed.kind(), ErrorKind::Remote { status: 503, .. }),
        "{shed}"
    );
    assert_eq!(http_get(&url, "/health").await.0, 200);
    assert_eq!(http_get(&url, "/own").await.0, 200);

    // Reloading moves `e.there` here, where it is not registered.
    let moved = framex
        .reloader()
        .reload(&config("load_builtin_plugins = [\"proxy\"]\n"))
        .unwrap();
    assert_eq!(moved.len(), 1, "{moved:?}");
    assert_eq!(moved[0].name, "e.there");

    // Shutting down lets the call in flight finish, then the server ends.
    stop.notify_one();
    tokio::time::sleep(Duration::from_millis(50)).await;
    release.notify_one();
    assert_eq!(slow.await.unwrap().unwrap(), "finished");
    tokio::time::timeout(Duration::from_secs(10), serving)
        .await
        .expect("the server ends once the call finished")
        .unwrap();
}
