//! Bad input at `POST /api/v1/proxy/remote` and elsewhere: each case gets its
//! status and a message that says what was wrong, and the next good call on the
//! same instance still succeeds. Also the limits: body size, inflated size, slow
//! clients and calls in flight.
//!
//! On the proxy endpoint a caller that sends `x-framex-errors: http-status`
//! (every FrameX for Rust client) gets the failure's HTTP status; any other
//! caller (Python FrameX's client) gets HTTP 200 with the status in the
//! envelope, which is what makes Python FrameX raise.

use std::sync::Arc;
use std::time::Duration;

use framex::App;
use framex::config::Loader;
use framex::transport::wire::{self, CallBody};
use framex::transport::{Client, ClientSettings, ErrorKind};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[framex::on_proxy(name = "bad.add")]
async fn add(a: i64, b: i64) -> Result<i64, framex::Error> {
    Ok(a + b)
}

#[framex::on_proxy(name = "bad.echo")]
async fn echo(value: framex::Value) -> Result<framex::Value, framex::Error> {
    Ok(value)
}

#[framex::on_proxy(name = "bad.panics")]
async fn panics() -> Result<(), framex::Error> {
    if true {
        panic!("this function panics on purpose");
    }
    Ok(())
}

async fn start(extra_server_keys: &str, app: impl FnOnce(&mut App)) -> String {
    let config = Loader::default()
        .text(
            "test.toml",
            format!("[server]\nport = 0\n{extra_server_keys}"),
        )
        .env(Vec::<(String, String)>::new())
        .load()
        .unwrap_or_else(|e| panic!("{e}"));
    let mut instance = App::from_config(config).unwrap();
    instance.register(add).unwrap();
    instance.register(panics).unwrap();
    instance.register(echo).unwrap();
    app(&mut instance);
    let bound = instance.isolated().bind("bad-input").await.unwrap();
    let url = format!("http://{}", bound.local_addr());
    tokio::spawn(bound.serve_until(std::future::pending()));
    url
}

/// Who sends a request: how it learns of failures on the proxy endpoint.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Caller {
    /// By the HTTP status, as FrameX for Rust clients do.
    Rust,
    /// By the envelope's status, as Python FrameX's client does.
    Python,
}

/// A plain HTTP/1.1 request, as a Rust client sends it; returns the status and
/// the body as JSON (or as a string when it is not JSON).
async fn send(url: &str, method: &str, path: &str, body: &[u8]) -> (u16, Value) {
    send_as(Caller::Rust, url, method, path, body).await
}

/// [`send`] as `caller` sends it.
async fn send_as(caller: Caller, url: &str, method: &str, path: &str, body: &[u8]) -> (u16, Value) {
    let address = url.trim_start_matches("http://");
    let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
    let errors = match caller {
        Caller::Rust => "x-framex-errors: http-status\r\n",
        Caller::Python => "",
    };
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {address}\r\nContent-Type: application/json\r\n\
         {errors}Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    // The server may answer and close before taking a body it refuses.
    let _ = stream.write_all(body).await;
    let mut response = Vec::new();
    let _ = stream.read_to_end(&mut response).await;
    let response = String::from_utf8_lossy(&response).into_owned();
    let (head, body) = response.split_once("\r\n\r\n").unwrap_or((&response, ""));
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status in {response:?}"));
    let body = serde_json::from_str(body).unwrap_or_else(|_| Value::String(body.to_owned()));
    (status, body)
}

fn call_body(func_name: String, data: String) -> Vec<u8> {
    serde_json::to_vec(&CallBody { func_name, data }).unwrap()
}

fn encoded(name: &str, kwargs: &Value) -> Vec<u8> {
    call_body(wire::encode(name).unwrap(), wire::encode(kwargs).unwrap())
}

async fn good_call_succeeds(url: &str) {
    let result = Client::default()
        .call(url, None, "bad.add", &json!({"a": 2, "b": 3}))
        .await
        .unwrap();
    assert_eq!(result, json!(5));
}

/// A JSON writer may escape any character of a string (`/` as `\/`, any
/// letter as `\u00XX`): the fields mean the same, and the call runs the same.
#[tokio::test]
async fn fields_written_with_json_escapes_are_read_as_their_text() {
    let url = start("", |_| {}).await;
    let name = wire::encode("bad.echo").unwrap();
    let data = wire::encode(&json!({"value": {"path": "/a/b", "n": [1, 2, 3]}})).unwrap();
    let escape = |text: &str| {
        text.chars()
            .map(|c| match c {
                '/' => "\\/".to_owned(),
                'A' => "\\u0041".to_owned(),
                c => c.to_string(),
            })
            .collect::<String>()
    };
    assert!(
        data.contains('/') || data.contains('A'),
        "nothing to escape in {data}; the test proves nothing"
    );
    let body = format!(
        "{{\"func_name\":\"{}\",\"data\":\"{}\"}}",
        escape(&name),
        escape(&data)
    );
    let (status, answer) = send(&url, "POST", "/api/v1/proxy/remote", body.as_bytes()).await;
    assert_eq!(status, 200, "{answer}");
    let result: Value = wire::decode(answer["data"].as_str().unwrap()).unwrap();
    assert_eq!(result, json!({"path": "/a/b", "n": [1, 2, 3]}));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_bad_call_gets_its_status_and_message_and_the_server_keeps_serving() {
    let url = start(
        "max_body_bytes = 262144\nmax_inflated_bytes = 1048576\n",
        |_| {},
    )
    .await;
    let name = || wire::encode("bad.add").unwrap();
    let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    let too_deep = format!("{{\"value\": {}{}}}", "[".repeat(1001), "]".repeat(1001));
    // 16 MiB that compress into a body under the 256 KiB limit.
    let bomb = wire::encode_json(&vec![b' '; 16 * 1024 * 1024]);
    let proxy = "/api/v1/proxy/remote";
    // (what, method, path, body, status, the start of the message)
    type Case<'a> = (&'a str, &'a str, &'a str, Vec<u8>, u16, String);
    let cases: Vec<Case<'_>> = vec![
        (
            "body not JSON",
            "POST",
            proxy,
            b"hello".to_vec(),
            422,
            "body must be a JSON object with string fields `func_name` and `data`: expected a value, found 'h' at byte 0"
                .into(),
        ),
        (
            "no func_name",
            "POST",
            proxy,
            br#"{"data": "x"}"#.to_vec(),
            422,
            "body must be a JSON object with string fields `func_name` and `data`: missing field `func_name`".into(),
        ),
        (
            "no data",
            "POST",
            proxy,
            serde_json::to_vec(&json!({"func_name": name()})).unwrap(),
            422,
            "body must be a JSON object with string fields `func_name` and `data`: missing field `data`".into(),
        ),
        (
            "fields not strings",
            "POST",
            proxy,
            br#"{"func_name": 1, "data": []}"#.to_vec(),
            422,
            "body must be a JSON object with string fields `func_name` and `data`: invalid type: integer `1`, expected a string".into(),
        ),
        (
            "invalid base64",
            "POST",
            proxy,
            call_body("not base64!".into(), wire::encode(&json!({})).unwrap()),
            422,
            "field `func_name` does not decode: payload is not valid base64: invalid symbol ' ' at offset 3".into(),
        ),
        (
            "base64 that is not zlib",
            "POST",
            proxy,
            call_body("aGVsbG8gd29ybGQ=".into(), wire::encode(&json!({})).unwrap()),
            422,
            "field `func_name` does not decode: payload is not a FrameX zlib stream".into(),
        ),
        (
            "zlib that is not UTF-8",
            "POST",
            proxy,
            call_body(name(), wire::encode_json(&[0xff, 0xfe, 0xfd])),
            422,
            "invalid arguments for `bad.add`: keyword arguments: invalid UTF-8 at byte 0".into(),
        ),
        (
            "zlib that is not JSON",
            "POST",
            proxy,
            call_body(name(), wire::encode_json(b"{not json")),
            422,
            "invalid arguments for `bad.add`: keyword arguments: expected a string key, found 'n' at byte 1".into(),
        ),
        (
            "kwargs not an object",
            "POST",
            proxy,
            encoded("bad.add", &json!([1, 2])),
            422,
            "invalid arguments for `bad.add`: keyword arguments: expected a JSON object, found an array".into(),
        ),
        (
            "unknown function",
            "POST",
            proxy,
            encoded("bad.nope", &json!({})),
            404,
            "Proxy function(bad.nope) not registered".into(),
        ),
        (
            "missing argument",
            "POST",
            proxy,
            encoded("bad.add", &json!({"a": 1})),
            422,
            "invalid arguments for `bad.add`: missing keyword argument `b`".into(),
        ),
        (
            "extra argument",
            "POST",
            proxy,
            encoded("bad.add", &json!({"a": 1, "b": 2, "c": 3})),
            422,
            "invalid arguments for `bad.add`: unexpected keyword argument `c`".into(),
        ),
        (
            "wrongly typed argument",
            "POST",
            proxy,
            encoded("bad.add", &json!({"a": 1, "b": "two"})),
            422,
            "invalid arguments for `bad.add`: keyword argument `b`: invalid type: string \"two\", expected i64".into(),
        ),
        (
            "body over the size limit",
            "POST",
            proxy,
            vec![b' '; 300_000],
            413,
            "request body is larger than 262144 bytes".into(),
        ),
        (
            "decompression bomb",
            "POST",
            proxy,
            call_body(name(), bomb),
            413,
            "field `data` does not decode: payload inflates past the limit of 1048576 bytes".into(),
        ),
        (
            "kwargs nested past the limit",
            "POST",
            proxy,
            call_body(wire::encode("bad.echo").unwrap(), wire::encode_json(too_deep.as_bytes())),
            422,
            "invalid arguments for `bad.echo`: keyword argument `value`: arrays and objects nest deeper than 1000 levels at byte 1009"
                .into(),
        ),
        (
            "an integer past the parameter's type",
            "POST",
            proxy,
            call_body(name(), wire::encode_json(br#"{"a": 1, "b": 18446744073709551616}"#)),
            422,
            "invalid arguments for `bad.add`: keyword argument `b`: invalid value: integer 18446744073709551616, expected i64"
                .into(),
        ),
        (
            // Skipped without recursion: the call itself is good.
            "deeply nested unknown field in the body",
            "POST",
            proxy,
            format!(
                r#"{{"func_name": "{}", "data": "{}", "extra": {deep}}}"#,
                name(),
                wire::encode(&json!({"a": 1, "b": 1})).unwrap()
            )
            .into_bytes(),
            200,
            "success".into(),
        ),
        (
            "a function that panics",
            "POST",
            proxy,
            encoded("bad.panics", &json!({})),
            500,
            "proxy function `bad.panics` panicked".into(),
        ),
        (
            "wrong method",
            "GET",
            proxy,
            Vec::new(),
            405,
            "method GET is not allowed on /api/v1/proxy/remote".into(),
        ),
        (
            "unknown path",
            "GET",
            "/api/v1/nowhere",
            Vec::new(),
            404,
            "no route /api/v1/nowhere".into(),
        ),
    ];
    for (what, method, path, body, status, message) in cases {
        for caller in [Caller::Rust, Caller::Python] {
            let (got_status, got_body) = send_as(caller, &url, method, path, &body).await;
            let got_message = got_body["message"].as_str().unwrap_or_default();
            // Python FrameX's client raises on HTTP 200 with a failed envelope
            // only; on its endpoint this instance answers it so.
            let http_status = if caller == Caller::Python && path == proxy {
                200
            } else {
                status
            };
            assert_eq!(got_status, http_status, "{what} ({caller:?}): {got_body}");
            assert_eq!(
                got_body["status"], status,
                "{what} ({caller:?}): {got_body}"
            );
            assert!(
                got_message.starts_with(&message),
                "{what}: expected a message starting {message:?}, got {got_message:?}"
            );
        }
        good_call_succeeds(&url).await;
    }
}

/// An instance with `server` settings whose function `name` holds each call
/// until released: a permit of the first semaphore for each call that started,
/// and one of the second lets one call return "released". Permits, not a
/// notification: a release cannot be missed by a handler that has not started
/// waiting yet.
async fn start_holding(
    server: &str,
    name: &'static str,
) -> (
    String,
    Arc<tokio::sync::Semaphore>,
    Arc<tokio::sync::Semaphore>,
) {
    let started = Arc::new(tokio::sync::Semaphore::new(0));
    let release = Arc::new(tokio::sync::Semaphore::new(0));
    let (running, waiting) = (started.clone(), release.clone());
    let url = start(server, move |app| {
        app.register_handler(
            name,
            framex::registry::typed(move |_: Value| {
                let (running, waiting) = (running.clone(), waiting.clone());
                async move {
                    running.add_permits(1);
                    waiting.acquire().await.map(|permit| permit.forget()).ok();
                    Ok::<_, String>("released")
                }
            }),
        )
        .unwrap();
    })
    .await;
    (url, started, release)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_beyond_max_in_flight_are_refused_with_503() {
    let (url, started, release) = start_holding("max_in_flight = 2\n", "bad.hold").await;
    let held: Vec<_> = (0..2)
        .map(|_| {
            let url = url.clone();
            tokio::spawn(async move {
                // Bounded, so that a broken limit fails the test instead of
                // hanging it.
                Client::new(ClientSettings::default().with_timeout(Duration::from_secs(20)))
                    .call(&url, None, "bad.hold", &serde_json::Map::new())
                    .await
            })
        })
        .collect();
    // Both held calls are running.
    let _ = started.acquire_many(2).await.unwrap();

    let error = Client::default()
        .call(
            &url,
            None,
            "bad.add",
            json!({"a": 1, "b": 1}).as_object().unwrap(),
        )
        .await
        .unwrap_err();
    assert_eq!(
        error.kind(),
        &ErrorKind::Remote {
            status: 503,
            message:
                "this instance is running 2 calls, its limit (server.max_in_flight); retry later"
                    .into()
        }
    );
    // Health still answers at the limit.
    let (status, _) = send(&url, "GET", "/health", b"").await;
    assert_eq!(status, 200);

    release.add_permits(2);
    for call in held {
        assert_eq!(call.await.unwrap().unwrap(), json!("released"));
    }
    good_call_succeeds(&url).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_client_cannot_hold_a_connection() {
    let url = start("body_read_timeout = 1\nheader_read_timeout = 1\n", |_| {}).await;
    let address = url.trim_start_matches("http://").to_owned();

    // Headers sent, the body promised and never finished: 408.
    let mut stream = tokio::net::TcpStream::connect(&address).await.unwrap();
    stream
        .write_all(
            b"POST /api/v1/proxy/remote HTTP/1.1\r\nHost: x\r\nx-framex-errors: http-status\r\nContent-Length: 100\r\n\r\n{\"fu",
        )
        .await
        .unwrap();
    let mut response = String::new();
    tokio::time::timeout(
        Duration::from_secs(10),
        stream.read_to_string(&mut response),
    )
    .await
    .expect("the server gives up on the body")
    .unwrap();
    assert!(
        response.starts_with("HTTP/1.1 408 Request Timeout"),
        "{response}"
    );
    assert!(
        response.contains("request body was not received within 1s"),
        "{response}"
    );

    // Headers never finished: the connection is closed.
    let mut stream = tokio::net::TcpStream::connect(&address).await.unwrap();
    stream
        .write_all(b"POST /api/v1/proxy/remote HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    let mut rest = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut rest))
        .await
        .expect("the server closes a connection whose headers never end")
        .ok();
    good_call_succeeds(&url).await;
}

/// `{"value": [0,0,…]}` with `count` zeros, as a call body of `name`.
fn zeros_call(name: &str, count: usize) -> Vec<u8> {
    let mut kwargs = String::with_capacity(count * 2 + 16);
    kwargs.push_str("{\"value\":[");
    for i in 0..count {
        if i > 0 {
            kwargs.push(',');
        }
        kwargs.push('0');
    }
    kwargs.push_str("]}");
    let call = CallBody::encode_json(name, kwargs.as_bytes()).unwrap();
    call.to_json()
}

/// Arguments that would take far more memory to read than their JSON's size
/// (a value every two bytes) are refused with 413, naming the function,
/// before they take it; the same arguments spelled with room to spare are
/// read. Python FrameX's caller learns it from the envelope.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn arguments_that_would_take_many_times_their_size_are_refused_with_413() {
    let url = start("", |_| {}).await;
    // 2 MiB of JSON: a million values, well past 16 times 2 MiB once read.
    let dense = zeros_call("bad.echo", 1024 * 1024);
    for caller in [Caller::Rust, Caller::Python] {
        let (status, body) = send_as(caller, &url, "POST", "/api/v1/proxy/remote", &dense).await;
        let expected = match caller {
            Caller::Rust => 413,
            Caller::Python => 200,
        };
        assert_eq!(status, expected, "{caller:?}: {body}");
        assert_eq!(body["status"], 413, "{caller:?}: {body}");
        let message = body["message"].as_str().unwrap();
        assert!(
            message.starts_with("the arguments of `bad.echo` are too large to read"),
            "{message}"
        );
    }
    // A thousand values are nothing.
    let (status, body) = send(
        &url,
        "POST",
        "/api/v1/proxy/remote",
        &zeros_call("bad.echo", 1000),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    good_call_succeeds(&url).await;
}

/// `server.max_argument_memory` bounds what the arguments of all the calls in
/// flight may take together: past it a call is refused with 503 at once, and
/// once the calls holding it finish, calls are read again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_past_max_argument_memory_are_refused_with_503_until_memory_is_free() {
    // 2 MiB in all; a call of a 100 KB string may take 16 times that.
    let (url, started, release) =
        start_holding("max_argument_memory = 2097152\n", "bad.hold_value").await;
    let mut held = {
        let url = url.clone();
        tokio::spawn(async move {
            let kwargs = json!({ "value": "a".repeat(100_000) });
            send(
                &url,
                "POST",
                "/api/v1/proxy/remote",
                &encoded("bad.hold_value", &kwargs),
            )
            .await
        })
    };
    tokio::select! {
        _ = started.acquire() => {}
        answer = &mut held => panic!("the held call was answered before it ran: {answer:?}"),
    }
    // Any call may take 1 MiB: that is more than is left.
    let (status, body) = send(
        &url,
        "POST",
        "/api/v1/proxy/remote",
        &encoded("bad.add", &json!({"a": 1, "b": 1})),
    )
    .await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(
        body["message"],
        "the arguments of the calls in flight here may take up to 2097152 bytes together, \
         this instance's limit (server.max_argument_memory); retry later"
    );
    release.add_permits(1);
    let (status, body) = held.await.unwrap();
    assert_eq!(status, 200, "{body}");
    good_call_succeeds(&url).await;
}

/// A body declared larger than `server.max_body_bytes` is refused with 413
/// from its headers, neither read nor waited for (the body read timeout here
/// is a minute; the answer must come long before).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_declared_length_past_the_limit_is_refused_before_the_body() {
    let url = start("max_body_bytes = 262144\nbody_read_timeout = 60\n", |app| {
        let echo = |body: bytes::Bytes| async move { body };
        app.routes(axum::Router::new().route("/api/v1/echo", axum::routing::post(echo)))
            .unwrap();
    })
    .await;
    let address = url.trim_start_matches("http://").to_owned();
    for path in ["/api/v1/proxy/remote", "/api/v1/echo"] {
        let mut stream = tokio::net::TcpStream::connect(&address).await.unwrap();
        stream
            .write_all(
                format!(
                    "POST {path} HTTP/1.1\r\nHost: x\r\nx-framex-errors: http-status\r\n\
                     Content-Length: 1073741824\r\n\r\n{{\"fu"
                )
                .as_bytes(),
            )
            .await
            .unwrap();
        let mut response = vec![0; 4096];
        let read = tokio::time::timeout(Duration::from_secs(20), stream.read(&mut response))
            .await
            .expect("the refusal comes without waiting for the body")
            .unwrap();
        let response = String::from_utf8_lossy(&response[..read]).into_owned();
        assert!(
            response.starts_with("HTTP/1.1 413 Payload Too Large"),
            "{path}: {response}"
        );
        assert!(
            response.contains("request body is larger than 262144 bytes"),
            "{path}: {response}"
        );
    }
    good_call_succeeds(&url).await;
}
