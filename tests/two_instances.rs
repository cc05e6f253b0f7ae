//! Two FrameX instances in this process on ephemeral loopback ports: a remote that
//! protects its proxy endpoint with a key, and a local one whose configuration
//! lists one function for the remote. Each app is isolated: it serves without
//! becoming the process's FrameX runtime, so the tests can run side by side.

use crate::support::{config, serve_stoppable, start};
use axum::Extension;
use framex::App;
use framex::transport::{Client, ErrorKind};
use serde_json::{Value, json};

fn register_demo(app: &mut App, name: &'static str) {
    app.register_handler(
        "m.where",
        framex::registry::typed(move |args: Value| async move {
            Ok::<_, String>(json!({"ran_on": name, "n": args["n"]}))
        }),
    )
    .unwrap();
    app.register_handler(
        "m.fail",
        framex::registry::typed(|_: Value| async { Err::<Value, _>("disk full") }),
    )
    .unwrap();
    app.register_handler(
        "m.echo",
        framex::registry::typed(|mut args: framex::Value| async move {
            let value = args.as_object_mut().and_then(|args| args.remove("value"));
            Ok::<_, String>(value.unwrap_or_default())
        }),
    )
    .unwrap();
    app.register_handler(
        "m.panic",
        framex::registry::typed(|_: Value| async {
            if true {
                panic!("the function panicked on purpose");
            }
            Ok::<Value, String>(Value::Null)
        }),
    )
    .unwrap();
}

async fn remote() -> String {
    let mut app = App::from_config(config(
        "[server]\nport = 0\n[auth]\nrules = { \"/api/v1/proxy/remote\" = [\"proxy-key\"] }\n",
    ))
    .unwrap();
    register_demo(&mut app, "remote");
    start(app, "remote").await
}

fn local_app(remote: &str, key: &str) -> App {
    let mut app = App::from_config(config(&format!(
        "load_builtin_plugins = [\"proxy\"]\n[server]\nenable_proxy = true\nport = 0\n\
         [plugins.proxy]\nproxy_urls = [\"{remote}\"]\n\
         proxy_functions = {{ \"{remote}\" = [\"m.where\", \"m.missing\", \"m.echo\"] }}\n\
         [plugins.proxy.auth]\nrules = {{ \"/api/v1/proxy/remote\" = [\"{key}\"] }}\n"
    )))
    .unwrap();
    register_demo(&mut app, "local");
    app
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listed_function_runs_on_the_remote_and_others_locally() {
    let remote = remote().await;
    let app = local_app(&remote, "proxy-key");
    let remote_result = app.call("m.where", json!({"n": 1})).await.unwrap();
    assert_eq!(remote_result, json!({"ran_on": "remote", "n": 1}));
    let local_error = app.call("m.fail", json!({})).await.unwrap_err();
    assert_eq!(local_error.to_string(), "`m.fail` failed: disk full");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn values_cross_rust_instances_and_a_relay_unchanged() {
    let remote = remote().await;
    let local = start(local_app(&remote, "proxy-key"), "local").await;
    // 1000 levels with the object of keyword arguments around it.
    let deepest = format!("{}0{}", "[".repeat(999), "]".repeat(999));
    let model =
        r#"{"__type__":"dynamic_obj","__module__":"m","__class__":"User","data":{"name":"ada"}}"#;
    let huge = "7".repeat(300);
    let client = Client::default();
    for text in [
        deepest.as_str(),
        "18446744073709551616",
        "-9223372036854775809",
        huge.as_str(),
        "[NaN,Infinity,-Infinity,1e+16,1e-05,-0.0]",
        r#"{"zeta":1,"alpha":{"b":2,"a":3},"":null}"#,
        model,
    ] {
        let kwargs: framex::Value =
            framex::json::from_str(&format!(r#"{{"value":{text}}}"#)).unwrap();
        // Called on the remote, and through the local instance, which relays.
        for url in [&remote, &local] {
            let got = client
                .call(url, Some("proxy-key"), "m.echo", &kwargs)
                .await
                .unwrap_or_else(|e| panic!("{url}: {e}"));
            assert_eq!(got.to_string(), text, "{url}");
        }
    }
    // One level more than the limit: the caller refuses to send it, and a
    // serving instance refuses it naming the depth.
    let too_deep = format!(r#"{{"value":[{deepest}]}}"#);
    let kwargs = framex::json::from_str::<framex::Value>(&too_deep);
    assert!(
        kwargs
            .unwrap_err()
            .to_string()
            .starts_with("arrays and objects nest deeper than 1000 levels")
    );
    let body =
        framex::transport::wire::CallBody::encode_json("m.echo", too_deep.as_bytes()).unwrap();
    let call =
        framex::transport::CallRequest::encoded(&remote, "m.echo", body).key(Some("proxy-key"));
    let error = client.send(call).await.unwrap_err();
    assert_eq!(
        error.kind(),
        &ErrorKind::Remote {
            status: 422,
            message: "invalid arguments for `m.echo`: arrays and objects nest deeper than 1000 levels at byte 1008".into()
        }
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hundreds_of_concurrent_remote_calls_all_get_their_own_result() {
    let remote = remote().await;
    let app = std::sync::Arc::new(local_app(&remote, "proxy-key"));
    let calls: Vec<_> = (0..400)
        .map(|n| {
            let app = app.clone();
            tokio::spawn(async move { app.call("m.where", json!({"n": n})).await })
        })
        .collect();
    for (n, call) in calls.into_iter().enumerate() {
        let result = call.await.unwrap().unwrap();
        assert_eq!(result, json!({"ran_on": "remote", "n": n}));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_key_is_an_auth_error_at_the_caller() {
    let remote = remote().await;
    let app = local_app(&remote, "wrong-key");
    let error = app.call("m.where", json!({"n": 1})).await.unwrap_err();
    assert!(
        error.to_string().contains("refused the key for `m.where`"),
        "{error}"
    );
    assert!(!error.to_string().contains("wrong-key"), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_function_the_remote_lacks_is_named() {
    let remote = remote().await;
    let app = local_app(&remote, "proxy-key");
    let error = app.call("m.missing", json!({})).await.unwrap_err();
    assert_eq!(
        error.to_string(),
        format!("function `m.missing` is not registered on {remote}")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn typed_calls_check_both_ends() {
    #[derive(serde::Serialize)]
    struct Args {
        n: u64,
    }
    #[derive(serde::Deserialize, Debug, PartialEq)]
    struct Where {
        ran_on: String,
        n: u64,
    }
    let remote = remote().await;
    let app = local_app(&remote, "proxy-key");
    let result: Where = app.call_as("m.where", &Args { n: u64::MAX }).await.unwrap();
    assert_eq!(
        result,
        Where {
            ran_on: "remote".into(),
            n: u64::MAX
        }
    );
    let error = app
        .call_as::<u64>("m.where", &Args { n: 1 })
        .await
        .unwrap_err();
    assert!(
        error
            .to_string()
            .starts_with("the result of `m.where` does not have the expected type"),
        "{error}"
    );
    let error = app.call_as::<Value>("m.where", [1, 2]).await.unwrap_err();
    assert_eq!(
        error.to_string(),
        "keyword arguments of `m.where` must be a JSON object, not an array"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_route_reaches_functions_registered_after_it() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let mut app = App::from_config(config("[server]\nport = 0\n")).unwrap();
    let late = |Extension(registry): Extension<framex::registry::Registry>| async move {
        match framex::call_on(&registry, "m.late", json!({})).await {
            Ok(value) => value.to_string(),
            Err(error) => error.to_string(),
        }
    };
    let routes = axum::Router::new().route("/api/v1/late", axum::routing::get(late));
    app.routes(routes).unwrap();
    app.register_handler(
        "m.late",
        framex::registry::typed(|_: Value| async { Ok::<_, String>("registered late") }),
    )
    .unwrap();
    let url = start(app, "late").await;

    let mut stream = tokio::net::TcpStream::connect(url.trim_start_matches("http://"))
        .await
        .unwrap();
    stream
        .write_all(b"GET /api/v1/late HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    assert!(response.ends_with("\"registered late\""), "{response}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kwargs_must_be_an_object() {
    let remote = remote().await;
    let app = local_app(&remote, "proxy-key");
    let error = app.call("m.where", json!([1, 2])).await.unwrap_err();
    assert_eq!(
        error.to_string(),
        "keyword arguments of `m.where` must be a JSON object, not an array"
    );
}

/// Calls the remote's endpoint directly and returns the error kind.
async fn direct(remote: &str, key: Option<&str>, name: &str) -> Result<framex::Value, ErrorKind> {
    Client::default()
        .call(remote, key, name, &json!({}))
        .await
        .map_err(|e| e.kind().clone())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_answers_each_failure_with_its_status() {
    let remote = remote().await;
    let missing = "missing Authorization header";
    assert_eq!(
        direct(&remote, None, "m.where").await,
        Err(ErrorKind::Unauthorized {
            message: format!("Invalid API Key for API(/api/v1/proxy/remote): {missing}")
        })
    );
    assert_eq!(
        direct(&remote, Some("proxy-key"), "m.nope").await,
        Err(ErrorKind::NotRegistered)
    );
    assert_eq!(
        direct(&remote, Some("proxy-key"), "m.fail").await,
        Err(ErrorKind::Remote {
            status: 500,
            message: "disk full".into()
        })
    );
    assert_eq!(
        direct(&remote, Some("proxy-key"), "m.panic").await,
        Err(ErrorKind::Remote {
            status: 500,
            message: "proxy function `m.panic` panicked".into()
        })
    );
    // The panic harmed nothing: the next call succeeds.
    assert_eq!(
        direct(&remote, Some("proxy-key"), "m.where").await,
        Ok(framex::Value::from(json!({"ran_on": "remote", "n": null})))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_loop_is_stopped() {
    // Two instances that each list the function for the other.
    let first = App::from_config(config("[server]\nport = 0\n"))
        .unwrap()
        .isolated()
        .bind("first")
        .await
        .unwrap();
    let first_url = format!("http://{}", first.local_addr());
    let second_app = App::from_config(config(&format!(
        "load_builtin_plugins = [\"proxy\"]\n[server]\nenable_proxy = true\nport = 0\n\
         [plugins.proxy]\nproxy_urls = [\"{first_url}\"]\nproxy_functions = {{ \"{first_url}\" = [\"m.loop\"] }}\n"
    )))
    .unwrap();
    let second = second_app.isolated().bind("second").await.unwrap();
    let second_url = format!("http://{}", second.local_addr());
    drop(first);
    let first_app = App::from_config(config(&format!(
        "load_builtin_plugins = [\"proxy\"]\n[server]\nenable_proxy = true\nport = {}\n\
         [plugins.proxy]\nproxy_urls = [\"{second_url}\"]\nproxy_functions = {{ \"{second_url}\" = [\"m.loop\"] }}\n",
        first_url.rsplit(':').next().unwrap()
    )))
    .unwrap();
    let first = first_app.isolated().bind("first").await.unwrap();
    tokio::spawn(first.serve_until(std::future::pending()));
    tokio::spawn(second.serve_until(std::future::pending()));

    let error = Client::default()
        .call(&first_url, None, "m.loop", &serde_json::Map::new())
        .await
        .unwrap_err();
    match error.kind() {
        ErrorKind::Remote {
            status: 508,
            message,
        } => assert!(
            message.contains("check `proxy_functions` for a loop"),
            "{message}"
        ),
        other => panic!("expected 508, got {other:?}: {error}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_route_answers_500_and_the_server_keeps_serving() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let mut app = App::from_config(config("[server]\nport = 0\n")).unwrap();
    let boom = || async {
        if true {
            panic!("the route panicked on purpose");
        }
        ""
    };
    app.routes(axum::Router::new().route("/api/v1/boom", axum::routing::get(boom)))
        .unwrap();
    let url = start(app, "boom").await;
    let address = url.trim_start_matches("http://").to_owned();

    let mut stream = tokio::net::TcpStream::connect(&address).await.unwrap();
    stream
        .write_all(
            b"GET /api/v1/boom HTTP/1.1\r\nHost: x\r\n\r\nGET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        )
        .await
        .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    assert!(
        response.starts_with("HTTP/1.1 500 Internal Server Error"),
        "{response}"
    );
    assert!(
        response.contains("\"message\":\"the request handler panicked\""),
        "{response}"
    );
    // The same connection then answered the next request.
    assert!(response.contains("HTTP/1.1 200 OK"), "{response}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_finishes_calls_in_flight_and_refuses_new_ones() {
    let started = std::sync::Arc::new(tokio::sync::Notify::new());
    let release = std::sync::Arc::new(tokio::sync::Notify::new());
    let mut app = App::from_config(config("[server]\nport = 0\n")).unwrap();
    let (running, released) = (started.clone(), release.clone());
    app.register_handler(
        "m.slow",
        framex::registry::typed(move |_: Value| {
            let (running, released) = (running.clone(), released.clone());
            async move {
                running.notify_one();
                released.notified().await;
                Ok::<_, String>("finished")
            }
        }),
    )
    .unwrap();
    let (url, stop, server) = serve_stoppable(app.isolated().bind("slow").await.unwrap());

    let in_flight = {
        let url = url.clone();
        tokio::spawn(async move {
            Client::default()
                .call(&url, None, "m.slow", &serde_json::Map::new())
                .await
        })
    };
    // Stop only once the function is running, and let it finish only once
    // the server has stopped taking connections.
    started.notified().await;
    stop.send(()).unwrap();
    let address = url.trim_start_matches("http://").to_owned();
    while tokio::net::TcpStream::connect(&address).await.is_ok() {
        tokio::task::yield_now().await;
    }
    release.notify_one();

    assert_eq!(in_flight.await.unwrap().unwrap(), json!("finished"));
    server.await.unwrap();
    let error = Client::default()
        .call(&url, None, "m.slow", &serde_json::Map::new())
        .await
        .unwrap_err();
    assert_eq!(error.kind(), &ErrorKind::Connect, "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_gives_up_on_a_call_after_the_grace_period() {
    use framex::registry::{Registry, Routing, handler};
    use framex::server::{Routes, Server, Settings};

    let started = std::sync::Arc::new(tokio::sync::Notify::new());
    let running = started.clone();
    let mut registry = Registry::new(Routing::default(), Client::default());
    registry
        .register(
            "m.stuck",
            handler(move |_| {
                let running = running.clone();
                async move {
                    running.notify_one();
                    std::future::pending::<()>().await;
                    Ok(Value::Null)
                }
            }),
        )
        .unwrap();
    let settings = Settings::default()
        .with_address("127.0.0.1", 0)
        .with_shutdown_grace(std::time::Duration::from_millis(200));
    let server = Server::bind(settings, registry, Routes::new())
        .await
        .unwrap();
    let url = format!("http://{}", server.local_addr());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let serving = tokio::spawn(server.serve(async {
        let _ = stopped.await;
    }));
    let in_flight = tokio::spawn(async move {
        Client::default()
            .call(&url, None, "m.stuck", &serde_json::Map::new())
            .await
    });
    started.notified().await;
    stop.send(()).unwrap();

    // Shutdown ends although the call never would; the bound only keeps a broken
    // server from hanging the suite.
    tokio::time::timeout(std::time::Duration::from_secs(10), serving)
        .await
        .expect("shutdown ends after its grace period")
        .unwrap();
    let error = in_flight.await.unwrap().unwrap_err();
    assert_eq!(error.kind(), &ErrorKind::Interrupted, "{error}");
}

/// An app handed a listener serves there and never binds its configured
/// address: here one that no interface has, which `bind` would fail on.
#[tokio::test]
async fn an_app_serves_on_the_listener_it_is_handed() {
    let listener = tokio::net::TcpListener::bind("127.0.0.9:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let unusable = "[server]\nhost = \"192.0.2.1\"\nport = 8080\n";
    let error = App::from_config(config(unusable))
        .unwrap()
        .isolated()
        .bind("unusable")
        .await
        .err()
        .expect("192.0.2.1 is on no interface");
    assert!(error.to_string().contains("192.0.2.1:8080"), "{error}");

    let mut app = App::from_config(config(unusable)).unwrap();
    register_demo(&mut app, "handed");
    let bound = app
        .isolated()
        .bind_listener(listener, "handed")
        .await
        .unwrap();
    assert_eq!(bound.local_addr(), address);
    tokio::spawn(bound.serve_until(std::future::pending()));
    let url = format!("http://{address}");
    let result = Client::default()
        .call(&url, None, "m.where", json!({"n": 1}).as_object().unwrap())
        .await
        .unwrap();
    assert_eq!(result, json!({"ran_on": "handed", "n": 1}));
}

/// A route that calls another route in process while it holds the only
/// in-flight permit: the inner call is the instance's own work, not a new
/// request, and is not shed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_route_calls_another_in_process_at_the_in_flight_limit() {
    static API: std::sync::OnceLock<framex::server::Api> = std::sync::OnceLock::new();
    let mut app = App::from_config(config("[server]\nport = 0\nmax_in_flight = 1\n")).unwrap();
    let outer = || async {
        let api = API.get().expect("set once bound");
        let request = http::Request::get("/api/v1/inner")
            .body(bytes::Bytes::new())
            .unwrap();
        let response = api.call(request).await;
        format!(
            "{} {}",
            response.status().as_u16(),
            String::from_utf8_lossy(response.body())
        )
    };
    let routes = axum::Router::new()
        .route("/api/v1/inner", axum::routing::get(|| async { "inner" }))
        .route("/api/v1/outer", axum::routing::get(outer));
    app.routes(routes).unwrap();
    let bound = app.isolated().bind("nested").await.unwrap();
    let _ = API.set(bound.api());
    let url = format!("http://{}", bound.local_addr());
    tokio::spawn(bound.serve_until(std::future::pending()));
    assert_eq!(
        crate::support::get(&url, "/api/v1/outer").await,
        (200, "200 inner".to_owned())
    );
}

/// The zlib stream inside `E(x)`: base64 decoded and the key XORed away.
fn zlib_of(encoded: &str) -> Vec<u8> {
    let key = b"01234567890abcdefghijklmnopqrstuvwxyz";
    let mut bytes = base64_simd::STANDARD
        .decode_to_vec(encoded)
        .expect("standard base64");
    for (i, byte) in bytes.iter_mut().enumerate() {
        *byte ^= key[i % key.len()];
    }
    bytes
}

/// Whether the zlib stream holds only stored blocks, the JSON as it is.
fn only_stored_blocks(zlib: &[u8]) -> bool {
    let mut at = 2;
    loop {
        let header = zlib[at];
        if (header >> 1) & 0b11 != 0 {
            return false;
        }
        let len = usize::from(u16::from_le_bytes([zlib[at + 1], zlib[at + 2]]));
        at += 5 + len;
        if header & 1 == 1 {
            return at + 4 == zlib.len();
        }
    }
}

/// About 120 KB of keyword arguments for `m.echo`, past the size below which
/// every payload travels stored.
fn large_kwargs() -> (String, String) {
    let records: Vec<String> = (0..2000)
        .map(|i| format!(r#"{{"id":{i},"name":"record {i} of the nightly report"}}"#))
        .collect();
    let value = format!("[{}]", records.join(","));
    (format!(r#"{{"value":{value}}}"#), value)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_payloads_travel_at_the_configured_compression() {
    let (kwargs, value) = large_kwargs();
    let body = framex::transport::wire::CallBody::encode_json("m.echo", kwargs.as_bytes())
        .unwrap()
        .to_json();
    // An instance's answers: stored by default, compressed with
    // `server.compression = 1`.
    for (settings, stored) in [("", true), ("compression = 1\n", false)] {
        let mut app = App::from_config(config(&format!("[server]\nport = 0\n{settings}"))).unwrap();
        register_demo(&mut app, "remote");
        let remote = start(app, "remote").await;
        let (status, answer) = crate::support::send(
            &remote,
            "POST",
            "/api/v1/proxy/remote",
            &[("Content-Type", "application/json")],
            &body,
        )
        .await;
        assert_eq!(status, 200, "{}", String::from_utf8_lossy(&answer));
        let envelope: Value = serde_json::from_slice(&answer).unwrap();
        let data = envelope["data"].as_str().unwrap();
        assert_eq!(only_stored_blocks(&zlib_of(data)), stored, "{settings:?}");
        let echoed = framex::transport::wire::decode_json(data, usize::MAX).unwrap();
        assert_eq!(echoed, value.as_bytes(), "{settings:?}");
    }

    // A caller's arguments: as the upstream's table says, else at level 1,
    // whatever the instance's answers use.
    let mut upstreams = Vec::new();
    for _ in 0..2 {
        let upstream = wiremock::MockServer::start().await;
        let answer = framex::transport::wire::Envelope::success(
            framex::transport::wire::encode(&json!("ok")).unwrap(),
        );
        wiremock::Mock::given(wiremock::matchers::method("POST"))
            .respond_with(wiremock::ResponseTemplate::new(200).set_body_json(answer))
            .mount(&upstream)
            .await;
        upstreams.push(upstream);
    }
    let (own, instance) = (upstreams[0].uri(), upstreams[1].uri());
    let local_toml = |own_level: u32| {
        format!(
            "load_builtin_plugins = [\"proxy\"]\n[server]\nenable_proxy = true\nport = 0\ncompression = 0\n\
             [plugins.proxy.proxy_urls.\"{own}\"]\nenable = []\ncompression = {own_level}\n\
             [plugins.proxy.proxy_urls.\"{instance}\"]\nenable = []\n\
             [plugins.proxy]\nproxy_functions = {{ \"{own}\" = [\"m.own\"], \"{instance}\" = [\"m.instance\"] }}\n"
        )
    };
    let app = App::from_config(config(&local_toml(0))).unwrap();
    let registry = app.registry().clone();
    let bound = app.isolated().bind("local").await.unwrap();
    let reloader = bound.reloader();
    tokio::spawn(bound.serve_until(std::future::pending()));
    let kwargs: Value = serde_json::from_str(&kwargs).unwrap();
    // The upstream's level applies from a reload on, as its functions do.
    let calls = [
        ("m.own", 0, true),
        ("m.instance", 1, false),
        ("reload", 0, false),
        ("m.own", 0, false),
    ];
    for (name, upstream, stored) in calls {
        if name == "reload" {
            reloader.reload(&config(&local_toml(1))).unwrap();
            continue;
        }
        let answer = framex::call_on(&registry, name, &kwargs).await.unwrap();
        assert_eq!(answer, json!("ok"));
        let requests = upstreams[upstream].received_requests().await.unwrap();
        let sent: Value = serde_json::from_slice(&requests.last().unwrap().body).unwrap();
        let data = sent["data"].as_str().unwrap();
        assert_eq!(only_stored_blocks(&zlib_of(data)), stored, "{name}");
        let arrived = framex::transport::wire::decode_json(data, usize::MAX).unwrap();
        assert_eq!(
            serde_json::from_slice::<Value>(&arrived).unwrap(),
            kwargs,
            "{name}"
        );
    }
}
