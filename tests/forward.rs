//! Route forwarding: an instance serves the routes that its upstreams publish in
//! their OpenAPI documents, as their enable/disable rules allow, and forwards
//! each call. Upstreams are wiremock servers (and one raw server for streaming)
//! on loopback.

use std::time::Duration;

use crate::support::{config, send};
use framex::App;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use wiremock::matchers::{body_json, body_string_contains, header, method, path, query_param};
use wiremock::{Mock, MockServer, ResponseTemplate};

/// An OpenAPI document listing `operations` as `(method, path)`.
fn document(operations: &[(&str, &str)]) -> Value {
    let mut paths = serde_json::Map::new();
    for (method, path) in operations {
        let item = paths.entry(path.to_string()).or_insert_with(|| json!({}));
        item[method.to_string()] = json!({
            "operationId": format!("{method}_{}", path.replace(['/', '{', '}'], "_")),
            "responses": {"200": {"description": "ok"}}
        });
    }
    json!({"openapi": "3.1.0", "paths": paths, "components": {"schemas": {"Item": {"type": "object"}}}})
}

/// Serves `document` at the default docs path, only to callers with `key` when
/// one is given.
async fn publish(upstream: &MockServer, document: Value, key: Option<&str>) {
    let mock = Mock::given(method("GET")).and(path("/api/v1/openapi.json"));
    let mock = match key {
        Some(key) => mock.and(header("authorization", key)),
        None => mock,
    };
    mock.respond_with(ResponseTemplate::new(200).set_body_json(document))
        .mount(upstream)
        .await;
}

/// Starts an isolated instance from `toml` (with `port = 0`) and returns its URL.
async fn start(toml: &str) -> String {
    let mut app = App::from_config(config(toml)).unwrap();
    app.register_handler(
        "m.local",
        framex::registry::typed(|_: Value| async { Ok::<_, String>("here") }),
    )
    .unwrap();
    let bound = app.isolated().bind("forwarding").await.unwrap();
    let url = format!("http://{}", bound.local_addr());
    tokio::spawn(bound.serve_until(std::future::pending()));
    url
}

fn proxy_config(upstreams: &[(&str, &str)], extra: &str) -> String {
    let mut toml = String::from(
        "load_builtin_plugins = [\"proxy\"]\n[server]\nenable_proxy = true\nport = 0\n",
    );
    for (url, rules) in upstreams {
        toml.push_str(&format!("[plugins.proxy.proxy_urls.\"{url}\"]\n{rules}\n"));
    }
    toml.push_str(extra);
    toml
}

/// Waits until `GET /health` reports upstream `index` in `state`, and returns
/// that upstream's report.
async fn upstream_state(url: &str, index: usize, state: &str) -> Value {
    for _ in 0..200 {
        let (_, body) = send(url, "GET", "/health", &[], b"").await;
        let health: Value = serde_json::from_slice(&body).unwrap();
        if health["upstreams"][index]["state"] == state {
            return health["upstreams"][index].clone();
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("upstream {index} of {url} never became {state}");
}

/// A local instance forwarding `/api/v1/*` of `first` and `second`, once both
/// documents are loaded, and `GET /health`'s report on `second`.
async fn start_forwarding_both(first: &MockServer, second: &MockServer) -> (String, Value) {
    let url = start(&proxy_config(
        &[
            (&first.uri(), "enable = [\"/api/v1/*\"]"),
            (&second.uri(), "enable = [\"/api/v1/*\"]"),
        ],
        "",
    ))
    .await;
    upstream_state(&url, 0, "ready").await;
    let report = upstream_state(&url, 1, "ready").await;
    (url, report)
}

fn text(body: &[u8]) -> String {
    String::from_utf8_lossy(body).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn allowed_routes_are_forwarded_with_everything_a_request_carries() {
    let upstream = MockServer::start().await;
    publish(
        &upstream,
        document(&[
            ("get", "/api/v1/items/{item_id}"),
            ("get", "/api/v1/search"),
            ("post", "/api/v1/items"),
            ("post", "/api/v1/upload"),
            ("get", "/api/v1/internal/stats"),
            ("get", "/health"),
            ("get", "/metrics"),
        ]),
        Some("docs-key"),
    )
    .await;
    Mock::given(method("GET"))
        .and(path("/api/v1/items/42"))
        .and(header("authorization", "items-key"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"id": 42})))
        .mount(&upstream)
        .await;
    Mock::given(method("GET"))
        .and(path("/api/v1/search"))
        .and(query_param("q", "crab café"))
        .and(query_param("page", "2"))
        .and(header("authorization", "api-key"))
        .respond_with(ResponseTemplate::new(418).set_body_string("a teapot upstream"))
        .mount(&upstream)
        .await;
    Mock::given(method("POST"))
        .and(path("/api/v1/items"))
        .and(body_json(json!({"name": "widget", "tags": ["a"]})))
        .respond_with(ResponseTemplate::new(201).set_body_json(json!({"created": true})))
        .mount(&upstream)
        .await;
    Mock::given(method("POST"))
        .and(path("/api/v1/upload"))
        .and(header(
            "content-type",
            "multipart/form-data; boundary=framex-boundary",
        ))
        .and(body_string_contains("filename=\"report.csv\""))
        .and(body_string_contains("job,status\nj-1,done\n"))
        .and(body_string_contains("name=\"comment\"\r\n\r\nquarterly"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"stored": "report.csv"})))
        .mount(&upstream)
        .await;

    let url = start(&proxy_config(
        &[(
            &upstream.uri(),
            "enable = [\"/api/v1/*\", \"/health\", \"/metrics\"]\ndisable = [\"/api/v1/internal/*\"]",
        )],
        "[plugins.proxy.auth]\nrules = { \"/api/v1/openapi.json\" = [\"docs-key\"], \"/api/v1/items/*\" = [\"items-key\"], \"/api/v1/*\" = [\"api-key\"] }\n",
    ))
    .await;
    let report = upstream_state(&url, 0, "ready").await;
    assert_eq!(report["routes"], 4, "{report}");
    let skipped: Vec<&str> = report["skipped"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap())
        .collect();
    assert_eq!(
        skipped,
        [
            "GET /api/v1/internal/stats: disabled by `/api/v1/internal/*`",
            "GET /health: this instance serves it itself",
            "GET /metrics: this instance serves it itself",
        ]
    );

    // A caller's own Authorization is not passed on; the path's key is sent.
    let (status, body) = send(
        &url,
        "GET",
        "/api/v1/items/42",
        &[("authorization", "caller-secret")],
        b"",
    )
    .await;
    assert_eq!((status, text(&body)), (200, "{\"id\":42}".to_owned()));

    let (status, body) = send(
        &url,
        "GET",
        "/api/v1/search?q=crab%20caf%C3%A9&page=2",
        &[],
        b"",
    )
    .await;
    assert_eq!((status, text(&body)), (418, "a teapot upstream".to_owned()));

    let (status, body) = send(
        &url,
        "POST",
        "/api/v1/items",
        &[("content-type", "application/json")],
        br#"{"name": "widget", "tags": ["a"]}"#,
    )
    .await;
    assert_eq!(
        (status, text(&body)),
        (201, "{\"created\":true}".to_owned())
    );

    let multipart = "--framex-boundary\r\n\
        Content-Disposition: form-data; name=\"comment\"\r\n\r\nquarterly\r\n\
        --framex-boundary\r\n\
        Content-Disposition: form-data; name=\"file\"; filename=\"report.csv\"\r\n\
        Content-Type: text/csv\r\n\r\njob,status\nj-1,done\n\r\n\
        --framex-boundary--\r\n";
    let (status, body) = send(
        &url,
        "POST",
        "/api/v1/upload",
        &[(
            "content-type",
            "multipart/form-data; boundary=framex-boundary",
        )],
        multipart.as_bytes(),
    )
    .await;
    assert_eq!(
        (status, text(&body)),
        (200, "{\"stored\":\"report.csv\"}".to_owned())
    );

    // A request that has already passed through too many instances is refused.
    let (status, body) = send(
        &url,
        "GET",
        "/api/v1/items/42",
        &[("x-framex-hops", "8")],
        b"",
    )
    .await;
    assert_eq!(status, 508, "{}", text(&body));

    // Disabled upstream paths are not served.
    let (status, _) = send(&url, "GET", "/api/v1/internal/stats", &[], b"").await;
    assert_eq!(status, 404);
    // A forwarded path with another method is refused here.
    let (status, _) = send(&url, "DELETE", "/api/v1/items/42", &[], b"").await;
    assert_eq!(status, 405);

    // This instance's OpenAPI document lists the forwarded routes.
    let (_, body) = send(&url, "GET", "/api/v1/openapi.json", &[], b"").await;
    let openapi: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(
        openapi["paths"]["/api/v1/items/{item_id}"]["get"]["operationId"],
        "get__api_v1_items__item_id_"
    );
    assert!(openapi["paths"]["/api/v1/internal/stats"].is_null());
    assert_eq!(
        openapi["components"]["schemas"]["Item"],
        json!({"type": "object"})
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malformed_document_is_reported_and_proxy_functions_still_work() {
    let upstream = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/api/v1/openapi.json"))
        .respond_with(ResponseTemplate::new(200).set_body_string("<html>not a document</html>"))
        .mount(&upstream)
        .await;
    let url = start(&proxy_config(
        &[(&upstream.uri(), "enable = [\"/api/v1/*\"]")],
        "",
    ))
    .await;
    let report = loop {
        let (_, body) = send(&url, "GET", "/health", &[], b"").await;
        let health: Value = serde_json::from_slice(&body).unwrap();
        if health["upstreams"][0]["error"].is_string() {
            break health["upstreams"][0].clone();
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(report["state"], "loading");
    assert_eq!(
        report["error"],
        format!(
            "{}/api/v1/openapi.json: the OpenAPI document is not JSON: expected value at line 1 column 1",
            upstream.uri()
        )
    );
    let result = framex::transport::Client::default()
        .call(&url, None, "m.local", &serde_json::Map::new())
        .await
        .unwrap();
    assert_eq!(result, json!("here"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_path_under_two_upstreams_is_served_by_the_first_and_reported() {
    let first = MockServer::start().await;
    let second = MockServer::start().await;
    for (upstream, name) in [(&first, "first"), (&second, "second")] {
        publish(upstream, document(&[("get", "/api/v1/shared")]), None).await;
        Mock::given(method("GET"))
            .and(path("/api/v1/shared"))
            .respond_with(ResponseTemplate::new(200).set_body_string(name))
            .mount(upstream)
            .await;
    }
    let (url, report) = start_forwarding_both(&first, &second).await;
    assert_eq!(
        report["skipped"],
        json!([format!(
            "GET /api/v1/shared: GET /api/v1/shared is published by two upstreams, {} and {}; {} (listed first) serves it",
            first.uri(),
            second.uri(),
            first.uri()
        )])
    );
    let (status, body) = send(&url, "GET", "/api/v1/shared", &[], b"").await;
    assert_eq!((status, text(&body)), (200, "first".to_owned()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upstream_that_comes_up_late_gets_its_routes() {
    // A free port with nothing behind it yet.
    let reserved = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = reserved.local_addr().unwrap();
    drop(reserved);
    let upstream_url = format!("http://{address}");
    let url = start(&proxy_config(
        &[(&upstream_url, "enable = [\"/api/v1/*\"]")],
        "",
    ))
    .await;
    let (status, _) = send(&url, "GET", "/api/v1/late", &[], b"").await;
    assert_eq!(status, 404, "no route before the upstream answers");
    let report = loop {
        let (_, body) = send(&url, "GET", "/health", &[], b"").await;
        let health: Value = serde_json::from_slice(&body).unwrap();
        if health["upstreams"][0]["attempts"].as_u64() >= Some(1) {
            break health["upstreams"][0].clone();
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(report["state"], "loading");
    assert_eq!(report["error"], format!("cannot connect to {upstream_url}"));

    let upstream = MockServer::builder()
        .listener(std::net::TcpListener::bind(address).unwrap())
        .start()
        .await;
    publish(&upstream, document(&[("get", "/api/v1/late")]), None).await;
    Mock::given(method("GET"))
        .and(path("/api/v1/late"))
        .respond_with(ResponseTemplate::new(200).set_body_string("finally"))
        .mount(&upstream)
        .await;
    upstream_state(&url, 0, "ready").await;
    let (status, body) = send(&url, "GET", "/api/v1/late", &[], b"").await;
    assert_eq!((status, text(&body)), (200, "finally".to_owned()));
}

/// An upstream that streams `GET /api/v1/events` in two chunks, the second only
/// once `release` fires.
async fn streaming_upstream(release: tokio::sync::oneshot::Receiver<()>) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let document = document(&[("get", "/api/v1/events")]).to_string();
    tokio::spawn(async move {
        let mut release = Some(release);
        loop {
            let (mut stream, _) = listener.accept().await.unwrap();
            let mut buffer = vec![0; 16 * 1024];
            let read = stream.read(&mut buffer).await.unwrap();
            let request = String::from_utf8_lossy(&buffer[..read]).into_owned();
            if request.starts_with("GET /api/v1/openapi.json") {
                let answer = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{document}",
                    document.len()
                );
                stream.write_all(answer.as_bytes()).await.unwrap();
                continue;
            }
            stream
                .write_all(
                    b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n",
                )
                .await
                .unwrap();
            let first = "data: first\n\n";
            stream
                .write_all(format!("{:x}\r\n{first}\r\n", first.len()).as_bytes())
                .await
                .unwrap();
            if let Some(release) = release.take() {
                let _ = release.await;
            }
            let second = "data: second\n\n";
            stream
                .write_all(format!("{:x}\r\n{second}\r\n0\r\n\r\n", second.len()).as_bytes())
                .await
                .unwrap();
        }
    });
    url
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_path_reaches_the_caller_chunk_by_chunk() {
    let (release, released) = tokio::sync::oneshot::channel();
    let upstream = streaming_upstream(released).await;
    let url = start(&proxy_config(
        &[(&upstream, "enable = [\"/api/v1/*\"]")],
        "[plugins.proxy]\nforce_stream_apis = [\"/api/v1/events\"]\n",
    ))
    .await;
    upstream_state(&url, 0, "ready").await;

    let address = url.trim_start_matches("http://");
    let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
    stream
        .write_all(
            format!("GET /api/v1/events HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n")
                .as_bytes(),
        )
        .await
        .unwrap();
    // The first event arrives while the upstream is still holding the second.
    let mut received = Vec::new();
    let mut buffer = [0; 1024];
    while !text(&received).contains("data: first") {
        let read = stream.read(&mut buffer).await.unwrap();
        assert!(read > 0, "the stream ended early: {}", text(&received));
        received.extend_from_slice(&buffer[..read]);
    }
    assert!(!text(&received).contains("data: second"));
    assert!(text(&received).contains("content-type: text/event-stream"));
    release.send(()).unwrap();
    stream.read_to_end(&mut received).await.unwrap();
    assert!(
        text(&received).contains("data: second"),
        "{}",
        text(&received)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_code_calls_local_and_forwarded_routes_alike() {
    let upstream = MockServer::start().await;
    publish(
        &upstream,
        document(&[("get", "/api/v1/upstream_thing")]),
        None,
    )
    .await;
    Mock::given(method("GET"))
        .and(path("/api/v1/upstream_thing"))
        .and(query_param("n", "1"))
        .respond_with(ResponseTemplate::new(200).set_body_string("from upstream"))
        .mount(&upstream)
        .await;
    let mut app = App::from_config(config(&proxy_config(
        &[(&upstream.uri(), "enable = [\"/api/v1/*\"]")],
        "",
    )))
    .unwrap();
    app.routes(axum::Router::new().route(
        "/api/v1/local_thing",
        axum::routing::get(|| async { "from here" }),
    ))
    .unwrap();
    let bound = app.isolated().bind("caller").await.unwrap();
    let api = bound.api();
    let url = format!("http://{}", bound.local_addr());
    tokio::spawn(bound.serve_until(std::future::pending()));
    upstream_state(&url, 0, "ready").await;

    let get = |uri: &str| http::Request::get(uri).body(bytes::Bytes::new()).unwrap();
    let local = api.call(get("/api/v1/local_thing")).await;
    assert_eq!(local.body().as_ref(), b"from here");
    let forwarded = api.call(get("/api/v1/upstream_thing?n=1")).await;
    assert_eq!(
        (forwarded.status().as_u16(), forwarded.body().as_ref()),
        (200, b"from upstream".as_slice())
    );
    let missing = api.call(get("/api/v1/nowhere")).await;
    assert_eq!(missing.status(), 404);
    assert_eq!(
        serde_json::from_slice::<Value>(missing.body()).unwrap()["message"],
        "no route /api/v1/nowhere"
    );

    // Without a bound, installed app there is nothing to call.
    let error = framex::call_api(get("/api/v1/local_thing"))
        .await
        .unwrap_err();
    assert!(matches!(error, framex::Error::NotServing), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_routing_report_names_the_deciding_rule_for_each_route() {
    let upstream = MockServer::start().await;
    let mut published = document(&[
        ("get", "/api/v1/items/{item_id}"),
        ("get", "/api/v1/internal/stats"),
        ("post", "/api/v1/internal/stats"),
        ("get", "/api/v1/items/debug"),
        ("get", "/api/v2/reports/export"),
        ("get", "/health"),
    ]);
    published["paths"]["/files/{name}.txt"] = json!({"get": {}});
    publish(&upstream, published, Some("docs-key")).await;
    let config = config(&proxy_config(
        &[
            (
                &upstream.uri(),
                "enable = [\"/api/v1/*\", \"/api/v{2,3}/*/export\"]\n\
                 disable = [\"/api/v1/internal/*\", \"/api/**/debug\"]",
            ),
            ("http://127.0.0.1:9", "enable = [\"/*\"]"),
        ],
        "[plugins.proxy.auth]\nrules = { \"/api/v1/openapi.json\" = [\"docs-key\"] }\n",
    ));
    let report: String = framex::resolve_routes(&config)
        .await
        .unwrap()
        .iter()
        .map(ToString::to_string)
        .collect();
    let uri = upstream.uri();
    assert_eq!(
        report,
        format!(
            "upstream {uri} ({uri}/api/v1/openapi.json)\n\
             \x20 disabled  GET     /api/v1/internal/stats                   disable rule `/api/v1/internal/*`\n\
             \x20 disabled  POST    /api/v1/internal/stats                   disable rule `/api/v1/internal/*`\n\
             \x20 disabled  GET     /api/v1/items/debug                      disable rule `/api/**/debug`\n\
             \x20 enabled   GET     /api/v1/items/{{item_id}}                  enable rule `/api/v1/*`\n\
             \x20 enabled   GET     /api/v2/reports/export                   enable rule `/api/v{{2,3}}/*/export`\n\
             \x20 disabled  GET     /health                                  no enable rule matches\n\
             \x20 skipped   /files/{{name}}.txt                                segment `{{name}}.txt`: a path parameter must be a whole segment\n\
             upstream http://127.0.0.1:9: cannot load http://127.0.0.1:9/api/v1/openapi.json: cannot connect to http://127.0.0.1:9\n"
        )
    );
}

/// An upstream publishing `/api/v1/public/{name}` (GET and POST) and
/// `/api/v1/admin/{name}`, answering each with what it was asked for.
async fn public_and_admin_upstream() -> MockServer {
    let upstream = MockServer::start().await;
    publish(
        &upstream,
        document(&[
            ("get", "/api/v1/public/{name}"),
            ("post", "/api/v1/public/{name}"),
            ("get", "/api/v1/admin/{name}"),
        ]),
        None,
    )
    .await;
    Mock::given(wiremock::matchers::path_regex("^/api/v1/.*"))
        .respond_with(|request: &wiremock::Request| {
            ResponseTemplate::new(200).set_body_string(format!(
                "{} {}",
                request.method,
                request.url.path()
            ))
        })
        .mount(&upstream)
        .await;
    upstream
}

/// The requests `upstream` received, as `METHOD path`, its document's aside.
async fn received(upstream: &MockServer) -> Vec<String> {
    upstream
        .received_requests()
        .await
        .unwrap_or_default()
        .iter()
        .filter(|r| r.url.path() != "/api/v1/openapi.json")
        .map(|r| format!("{} {}", r.method, r.url.path()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_encoding_of_a_protected_forwarded_path_escapes_its_auth_rule() {
    let upstream = public_and_admin_upstream().await;
    let url = start(&proxy_config(
        &[(&upstream.uri(), "enable = [\"/api/v1/*\"]")],
        "[auth]\nrules = { \"/api/v1/public/vip\" = [\"key\"], \"/api/v1/admin/*\" = [\"admin-key\"] }\n",
    ))
    .await;
    upstream_state(&url, 0, "ready").await;
    for path in [
        "/api/v1/public/vip",
        "/api/v1/public/%76ip",
        "/api/v1/public/%76%69%70",
        "/api/v1/%70ublic/vip",
        "/api/v1/public/./vip",
        "/api/v1/public/x/../vip",
        "/api/v1/admin/users",
        "/api/v1/%61dmin/users",
        "/api/v1/public/%2e%2e/admin/users",
    ] {
        let (status, body) = send(&url, "GET", path, &[], b"").await;
        assert_eq!(status, 401, "{path}: {}", text(&body));
    }
    assert_eq!(received(&upstream).await, Vec::<String>::new());
    // With the key, the upstream gets the path as the rules saw it.
    let (status, body) = send(
        &url,
        "GET",
        "/api/v1/public/%76ip",
        &[("authorization", "key")],
        b"",
    )
    .await;
    assert_eq!(
        (status, text(&body)),
        (200, "GET /api/v1/public/vip".to_owned())
    );
    // Two keys, one right: which one a server reads is anyone's guess, so
    // the request is refused, whatever their order.
    for keys in [
        [("authorization", "key"), ("authorization", "wrong")],
        [("authorization", "wrong"), ("authorization", "key")],
    ] {
        let (status, body) = send(&url, "GET", "/api/v1/public/vip", &keys, b"").await;
        assert_eq!(status, 400, "{}", text(&body));
        assert!(
            text(&body).contains("more than one Authorization header"),
            "{}",
            text(&body)
        );
    }
    assert_eq!(received(&upstream).await.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_disabled_upstream_route_is_out_of_reach_of_any_encoding() {
    let upstream = public_and_admin_upstream().await;
    let url = start(&proxy_config(
        &[(
            &upstream.uri(),
            "enable = [\"/api/v1/public/*\"]\ndisable = [\"/api/v1/admin/*\"]",
        )],
        "",
    ))
    .await;
    upstream_state(&url, 0, "ready").await;
    for (path, status, message) in [
        (
            "/api/v1/public/..%2Fadmin%2Fsecret",
            400,
            "it holds an encoded `/` (`%2F`) inside a segment",
        ),
        (
            "/api/v1/public/..%2fadmin",
            400,
            "it holds an encoded `/` (`%2F`) inside a segment",
        ),
        (
            "/api/v1/public/..%252Fadmin%252Fsecret",
            400,
            "an encoding of an encoding",
        ),
        (
            "/api/v1/public/..%5Cadmin%5Csecret",
            400,
            "is refused: it holds a `",
        ),
        (
            "/api/v1/public/..\\admin\\secret",
            400,
            "is refused: it holds a `",
        ),
        ("/api/v1/public/%00", 400, "a control character"),
        ("/api/v1/public//secret", 400, "an empty segment"),
        // Resolved, and then it is the disabled route: not forwarded.
        (
            "/api/v1/public/%2e%2e/admin/secret",
            404,
            "no route /api/v1/admin/secret",
        ),
        (
            "/api/v1/public/%2E%2E/admin/secret",
            404,
            "no route /api/v1/admin/secret",
        ),
        (
            "/api/v1/public/../admin/secret",
            404,
            "no route /api/v1/admin/secret",
        ),
    ] {
        let (got, body) = send(&url, "GET", path, &[], b"").await;
        let body = text(&body);
        assert_eq!(got, status, "{path}: {body}");
        assert!(body.contains(message), "{path}: {body}");
    }
    assert_eq!(received(&upstream).await, Vec::<String>::new());
    let (status, body) = send(&url, "GET", "/api/v1/public/a%20b", &[], b"").await;
    assert_eq!(
        (status, text(&body)),
        (200, "GET /api/v1/public/a%20b".to_owned())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_method_of_an_upstream_path_is_forwarded() {
    let upstream = public_and_admin_upstream().await;
    let url = start(&proxy_config(
        &[(&upstream.uri(), "enable = [\"/api/v1/public/*\"]")],
        "",
    ))
    .await;
    let report = upstream_state(&url, 0, "ready").await;
    assert_eq!(report["routes"], 2, "{report}");
    assert_eq!(
        report["skipped"],
        json!(["GET /api/v1/admin/{name}: no enable rule matches"])
    );
    for method in ["GET", "POST"] {
        let (status, body) = send(&url, method, "/api/v1/public/x", &[], b"").await;
        assert_eq!(
            (status, text(&body)),
            (200, format!("{method} /api/v1/public/x"))
        );
    }
    let (status, _) = send(&url, "DELETE", "/api/v1/public/x", &[], b"").await;
    assert_eq!(status, 405);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schemas_of_the_same_name_from_two_upstreams_stay_apart() {
    let with_item = |path: &str, item: Value| {
        json!({"openapi": "3.1.0",
        "paths": {path: {"get": {"responses": {"200": {"description": "ok",
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Item"}}}}}}}},
        "components": {"schemas": {
            "Item": item,
            "Shared": {"type": "string"},
            "List": {"type": "array", "items": {"$ref": "#/components/schemas/Item"}}
        }}})
    };
    let first = MockServer::start().await;
    let second = MockServer::start().await;
    publish(
        &first,
        with_item(
            "/api/v1/a",
            json!({"type": "object", "properties": {"a": {"type": "integer"}}}),
        ),
        None,
    )
    .await;
    publish(
        &second,
        with_item(
            "/api/v1/b",
            json!({"type": "object", "properties": {"b": {"type": "string"}}}),
        ),
        None,
    )
    .await;
    let (url, _) = start_forwarding_both(&first, &second).await;
    let (_, body) = send(&url, "GET", "/api/v1/openapi.json", &[], b"").await;
    let document: Value = serde_json::from_slice(&body).unwrap();
    let schemas = &document["components"]["schemas"];
    assert_eq!(
        schemas["Item"]["properties"],
        json!({"a": {"type": "integer"}})
    );
    assert_eq!(
        schemas["Item_2"]["properties"],
        json!({"b": {"type": "string"}})
    );
    assert_eq!(schemas["Shared"], json!({"type": "string"}));
    assert_eq!(schemas.get("Shared_2"), None, "equal schemas are shared");
    assert_eq!(
        schemas["List_2"]["items"]["$ref"],
        "#/components/schemas/Item_2"
    );
    let reference = |path: &str| {
        document["paths"][path]["get"]["responses"]["200"]["content"]["application/json"]["schema"]
            ["$ref"]
            .clone()
    };
    assert_eq!(reference("/api/v1/a"), "#/components/schemas/Item");
    assert_eq!(reference("/api/v1/b"), "#/components/schemas/Item_2");
}
