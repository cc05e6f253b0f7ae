//! The client against a wiremock FrameX on loopback: the exact request that goes
//! out, and every kind of answer a FrameX instance (Rust or Python) gives.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use framex_transport::wire::{self, CallBody, Envelope};
use framex_transport::{CallRequest, Client, ClientSettings, ErrorKind, UpstreamSettings};
use serde_json::{Map, Value, json};
use wiremock::matchers::{header, method, path};
use wiremock::{Mock, MockServer, Request, ResponseTemplate};

fn kwargs(value: Value) -> Map<String, Value> {
    value.as_object().unwrap().clone()
}

fn client() -> Client {
    Client::new(ClientSettings::default().with_timeout(Duration::from_secs(5)))
}

async fn server_answering(response: ResponseTemplate) -> MockServer {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/api/v1/proxy/remote"))
        .respond_with(response)
        .mount(&server)
        .await;
    server
}

fn success(result: &Value) -> ResponseTemplate {
    ResponseTemplate::new(200).set_body_json(Envelope::success(wire::encode(result).unwrap()))
}

#[tokio::test]
async fn the_request_is_what_python_framex_expects() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/api/v1/proxy/remote"))
        .and(header("content-type", "application/json"))
        .and(header("authorization", "proxy-key"))
        .respond_with(success(&json!({"status": "done"})))
        .expect(1)
        .mount(&server)
        .await;

    let result = client()
        .call(
            &server.uri(),
            Some("proxy-key"),
            "your_module.build_report",
            &kwargs(json!({"job_id": "j-1"})),
        )
        .await
        .unwrap();
    assert_eq!(result, json!({"status": "done"}));

    let requests = server.received_requests().await.unwrap();
    let request: &Request = &requests[0];
    let body: CallBody = serde_json::from_slice(&request.body).unwrap();
    assert_eq!(
        wire::decode::<String>(&body.func_name).unwrap(),
        "your_module.build_report"
    );
    assert_eq!(
        wire::decode::<Value>(&body.data).unwrap(),
        json!({"job_id": "j-1"})
    );
    let fields: Map<String, Value> = serde_json::from_slice(&request.body).unwrap();
    assert_eq!(fields.len(), 2, "body has exactly func_name and data");
    assert!(request.headers.get("x-framex-hops").is_none());
    let traceparent = request
        .headers
        .get("traceparent")
        .unwrap()
        .to_str()
        .unwrap();
    assert!(
        framex_transport::trace::TraceContext::parse(traceparent).is_some(),
        "a call outside any trace starts one: {traceparent}"
    );
    let host = server.uri().trim_start_matches("http://").to_owned();
    assert_eq!(request.headers.get("host").unwrap(), host.as_str());
}

#[tokio::test]
async fn no_key_means_no_authorization_header() {
    let server = server_answering(success(&json!(1))).await;
    client()
        .call(&server.uri(), None, "m.f", &Map::new())
        .await
        .unwrap();
    let requests = server.received_requests().await.unwrap();
    assert!(requests[0].headers.get("authorization").is_none());
}

#[tokio::test]
async fn relayed_calls_carry_the_hop_count_and_the_body_unchanged() {
    let server = server_answering(success(&json!("ok"))).await;
    let body = CallBody::encode("m.f", &kwargs(json!({"a": 1}))).unwrap();
    let url = server.uri();
    let call = CallRequest::encoded(&url, "m.f", body.clone()).hops(2);
    let encoded = client().send_encoded(call).await.unwrap();
    assert_eq!(
        wire::decode::<Value>(encoded.as_str().unwrap()).unwrap(),
        json!("ok")
    );
    let requests = server.received_requests().await.unwrap();
    assert_eq!(requests[0].headers.get("x-framex-hops").unwrap(), "2");
    assert_eq!(
        serde_json::from_slice::<CallBody>(&requests[0].body).unwrap(),
        body
    );
}

/// Checks the error that the answer `response` gives: its kind and its message.
async fn check_error(response: ResponseTemplate, expect_kind: ErrorKind, expect_message: &str) {
    let server = server_answering(response).await;
    let error = client()
        .call(&server.uri(), Some("k"), "m.f", &Map::new())
        .await
        .unwrap_err();
    assert_eq!(error.kind(), &expect_kind);
    assert_eq!(
        error.to_string(),
        expect_message.replace("URL", &server.uri())
    );
    assert_eq!(error.url(), server.uri());
    assert_eq!(error.func_name(), "m.f");
}

#[tokio::test]
async fn a_wrong_key_answered_inside_a_200_is_an_auth_error() {
    let message = "Invalid API Key for API(/api/v1/proxy/remote)";
    check_error(
        ResponseTemplate::new(200).set_body_json(
            json!({"status": 401, "message": message, "timestamp": "2026-11-25 02:37:26"}),
        ),
        ErrorKind::Unauthorized {
            message: message.into(),
        },
        &format!("URL refused the key for `m.f`: {message}"),
    )
    .await;
}

#[tokio::test]
async fn an_http_401_is_an_auth_error() {
    check_error(
        ResponseTemplate::new(401)
            .set_body_json(Envelope::failure(401, "missing Authorization header")),
        ErrorKind::Unauthorized {
            message: "missing Authorization header".into(),
        },
        "URL refused the key for `m.f`: missing Authorization header",
    )
    .await;
}

#[tokio::test]
async fn an_unregistered_function_is_named() {
    check_error(
        ResponseTemplate::new(500)
            .set_body_json(json!({"status": 500, "message": "Proxy function(m.f) not registered"})),
        ErrorKind::NotRegistered,
        "function `m.f` is not registered on URL",
    )
    .await;
}

#[tokio::test]
async fn a_failing_function_carries_the_remote_message() {
    check_error(
        ResponseTemplate::new(500)
            .set_body_json(json!({"status": 500, "message": "division by zero"})),
        ErrorKind::Remote {
            status: 500,
            message: "division by zero".into(),
        },
        "`m.f` failed on URL (status 500): division by zero",
    )
    .await;
}

#[tokio::test]
async fn a_non_200_status_inside_a_200_is_an_error() {
    check_error(
        ResponseTemplate::new(200).set_body_json(json!({"status": 500, "message": "boom"})),
        ErrorKind::Remote {
            status: 500,
            message: "boom".into(),
        },
        "`m.f` failed on URL (status 500): boom",
    )
    .await;
}

#[tokio::test]
async fn an_error_without_an_envelope_shows_the_body() {
    check_error(
        ResponseTemplate::new(502).set_body_string("upstream went away"),
        ErrorKind::Remote {
            status: 502,
            message: "upstream went away".into(),
        },
        "`m.f` failed on URL (status 502): upstream went away",
    )
    .await;
    check_error(
        ResponseTemplate::new(404),
        ErrorKind::Remote {
            status: 404,
            message: "Not Found".into(),
        },
        "`m.f` failed on URL (status 404): Not Found",
    )
    .await;
}

#[tokio::test]
async fn undecodable_answers() {
    let detail = |d: &str| ErrorKind::Decode { detail: d.into() };
    check_error(
        ResponseTemplate::new(200).set_body_string("<html>"),
        detail("the answer is not a FrameX envelope"),
        "undecodable answer from URL for `m.f`: the answer is not a FrameX envelope",
    )
    .await;
    check_error(
        ResponseTemplate::new(200).set_body_json(json!({"status": 200, "message": "success"})),
        detail("the envelope has no data"),
        "undecodable answer from URL for `m.f`: the envelope has no data",
    )
    .await;
    check_error(
        ResponseTemplate::new(200)
            .set_body_json(json!({"status": 200, "message": "success", "data": "!!!"})),
        detail("the result does not decode"),
        "undecodable answer from URL for `m.f`: the result does not decode",
    )
    .await;
}

#[tokio::test]
async fn a_slow_remote_times_out_with_the_timeout_in_the_message() {
    let server = server_answering(success(&json!(1)).set_delay(Duration::from_secs(3))).await;
    let client = Client::new(ClientSettings::default().with_timeout(Duration::from_millis(200)));
    let error = client
        .call(&server.uri(), None, "m.f", &Map::new())
        .await
        .unwrap_err();
    assert!(error.is_timeout(), "{error:?}");
    assert_eq!(
        error.to_string(),
        format!("call to `m.f` on {} timed out after 200 ms", server.uri())
    );
}

#[tokio::test]
async fn a_closed_port_is_a_connect_error() {
    // A port held by a socket that does not listen: connecting is refused,
    // and no other test can take the port meanwhile.
    let held = tokio::net::TcpSocket::new_v4().unwrap();
    held.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let url = format!("http://{}", held.local_addr().unwrap());
    let error = client()
        .call(&url, None, "m.f", &Map::new())
        .await
        .unwrap_err();
    assert!(error.is_connect(), "{error:?}");
    // The message names the endpoint tried and why it failed.
    let address = held.local_addr().unwrap();
    assert_eq!(
        error.to_string(),
        format!(
            "cannot connect to {url} to call `m.f`; tried {address} \
             (tcp connect error: Connection refused (os error 111))"
        )
    );
    assert_eq!(error.endpoints_tried().len(), 1);
}

#[tokio::test]
async fn unusable_urls_are_refused_before_sending() {
    for url in ["not a url", "ftp://127.0.0.1", "http://"] {
        let error = client()
            .call(url, None, "m.f", &Map::new())
            .await
            .unwrap_err();
        assert_eq!(error.kind(), &ErrorKind::InvalidUrl, "{url}");
    }
}

#[tokio::test]
async fn http2_for_an_https_upstream_is_refused_naming_the_url() {
    let settings = ClientSettings::default().with_upstream(
        "https://remote-framex:8443",
        UpstreamSettings::default().with_http2(true),
    );
    let error = Client::new(settings)
        .call("https://remote-framex:8443", None, "m.f", &Map::new())
        .await
        .unwrap_err();
    assert_eq!(error.kind(), &ErrorKind::InvalidUrl);
    assert!(
        error.to_string().contains("https://remote-framex:8443"),
        "{error}"
    );
    let why = std::error::Error::source(&error).map(ToString::to_string);
    assert!(
        why.as_deref()
            .is_some_and(|why| why.contains("HTTP/2 is spoken with prior knowledge")),
        "{why:?}"
    );
}

#[tokio::test]
async fn errors_never_show_the_key() {
    let server = server_answering(ResponseTemplate::new(200).set_body_json(
        json!({"status": 401, "message": "Invalid API Key for API(/api/v1/proxy/remote)"}),
    ))
    .await;
    let error = client()
        .call(&server.uri(), Some("super-secret-key"), "m.f", &Map::new())
        .await
        .unwrap_err();
    let shown = format!("{error} {error:?}");
    assert!(!shown.contains("super-secret-key"), "{shown}");
}

#[tokio::test]
async fn one_client_serves_many_concurrent_calls() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(|request: &Request| {
            let body: CallBody = serde_json::from_slice(&request.body).unwrap();
            let kwargs: Value = wire::decode(&body.data).unwrap();
            ResponseTemplate::new(200)
                .set_body_json(Envelope::success(wire::encode(&kwargs["n"]).unwrap()))
        })
        .mount(&server)
        .await;
    let client = client();
    let calls = (0..200).map(|n| {
        let client = client.clone();
        let url = server.uri();
        tokio::spawn(async move {
            client
                .call(&url, None, "m.echo", &kwargs(json!({"n": n})))
                .await
        })
    });
    for (n, call) in calls.enumerate() {
        assert_eq!(call.await.unwrap().unwrap(), json!(n));
    }
}

/// A server that behaves as uvicorn does after an error: it answers the first
/// call on a connection with a 500 and no `Connection: close`, then closes that
/// connection as soon as the next request arrives on it, unanswered. With
/// `then_stop`, it stops listening as it closes that connection, as an instance
/// that shuts down does; otherwise the next connection gets a success. Returns
/// the base URL and the number of connections the server accepted, when it is
/// done.
async fn closes_after_an_error(then_stop: bool) -> (String, tokio::task::JoinHandle<usize>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let error = serde_json::to_string(&Envelope::failure(500, "disk full")).unwrap();
    let success =
        serde_json::to_string(&Envelope::success(wire::encode(&json!("ok")).unwrap())).unwrap();
    let server = tokio::spawn(async move {
        let answer = |body: &str, status: &str| {
            format!(
                "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
                body.len()
            )
        };
        let mut buffer = vec![0; 64 * 1024];
        // First connection: a 500, then the next request is read and dropped.
        let (mut first, _) = listener.accept().await.unwrap();
        let _ = first.read(&mut buffer).await.unwrap();
        first
            .write_all(answer(&error, "500 Internal Server Error").as_bytes())
            .await
            .unwrap();
        let _ = first.read(&mut buffer).await.unwrap();
        if then_stop {
            drop(listener);
            drop(first);
            return 1;
        }
        drop(first);
        // Second connection: the retried call.
        let (mut second, _) = listener.accept().await.unwrap();
        let _ = second.read(&mut buffer).await.unwrap();
        second
            .write_all(answer(&success, "200 OK").as_bytes())
            .await
            .unwrap();
        2
    });
    (url, server)
}

#[tokio::test]
async fn a_call_on_a_connection_the_server_closed_is_sent_again() {
    let (url, server) = closes_after_an_error(false).await;
    let client = client();
    let first = client
        .call(&url, None, "m.f", &Map::new())
        .await
        .unwrap_err();
    assert_eq!(
        first.kind(),
        &ErrorKind::Remote {
            status: 500,
            message: "disk full".into()
        }
    );
    // Goes out on the pooled connection, which the server closes unanswered.
    let second = client.call(&url, None, "m.f", &Map::new()).await.unwrap();
    assert_eq!(second, json!("ok"));
    assert_eq!(server.await.unwrap(), 2, "the retry used a new connection");
}

#[tokio::test]
async fn a_call_whose_connection_closed_and_whose_instance_is_gone_is_interrupted() {
    let (url, server) = closes_after_an_error(true).await;
    // The pooled connection closes unanswered and no new one opens. The
    // instance may have died running the call, so it is not taken as unsent
    // (another replica would run it twice); the error says what the resend
    // found.
    let error = the_second_call_fails(&client(), &url).await;
    assert_eq!(error.kind(), &ErrorKind::Interrupted, "{error}");
    let address = url.trim_start_matches("http://");
    let text = error.to_string();
    assert!(
        text.starts_with(&format!(
            "connection to {url} failed during the call to `m.f`; tried {address} (connection closed before message completed; sent again, cannot connect: "
        )),
        "{text}"
    );
    assert_eq!(server.await.unwrap(), 1);
}

/// A draining instance as a loaded caller sees it: two calls arrive on two
/// connections; the one on the second is answered first, with 503 and
/// `x-framex-draining`, the one on the first 200 ms later with a kept-alive
/// success (answered before the drain began, delivered late). Later
/// connections get successes. Returns the URL and how many requests arrived
/// on the first connection after its answer.
async fn drains_under_a_late_answer() -> (String, Arc<AtomicUsize>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let success =
        serde_json::to_string(&Envelope::success(wire::encode(&json!("ok")).unwrap())).unwrap();
    let ok = format!(
        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{success}",
        success.len()
    );
    let draining = format!(
        "HTTP/1.1 503 Service Unavailable\r\n{}: 1\r\nconnection: close\r\ncontent-length: 0\r\n\r\n",
        framex_transport::DRAINING_HEADER
    );
    let later = Arc::new(AtomicUsize::new(0));
    let counted = later.clone();
    tokio::spawn(async move {
        let mut buffer = vec![0; 64 * 1024];
        let (mut first, _) = listener.accept().await.unwrap();
        let (mut second, _) = listener.accept().await.unwrap();
        let _ = first.read(&mut buffer).await.unwrap();
        let _ = second.read(&mut buffer).await.unwrap();
        second.write_all(draining.as_bytes()).await.unwrap();
        drop(second);
        tokio::time::sleep(Duration::from_millis(200)).await;
        first.write_all(ok.as_bytes()).await.unwrap();
        tokio::spawn(answer_each(first, ok.clone(), counted));
        loop {
            let (next, _) = listener.accept().await.unwrap();
            tokio::spawn(answer_each(next, ok.clone(), Arc::default()));
        }
    });
    (url, later)
}

/// Answers each request on `stream` with `answer` until the client closes
/// it, counting them in `count`.
async fn answer_each(mut stream: tokio::net::TcpStream, answer: String, count: Arc<AtomicUsize>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let mut buffer = vec![0; 64 * 1024];
    while let Ok(read) = stream.read(&mut buffer).await {
        if read == 0 {
            return;
        }
        count.fetch_add(1, Ordering::SeqCst);
        let _ = stream.write_all(answer.as_bytes()).await;
    }
}

#[tokio::test]
async fn no_connection_opened_before_a_draining_answer_is_used_again() {
    let (url, later) = drains_under_a_late_answer().await;
    let client = client();
    // The drained call goes out again on a new connection; the late answer's
    // connection is not pooled.
    let none = Map::new();
    let (first, second) = tokio::join!(
        client.call(&url, None, "m.f", &none),
        client.call(&url, None, "m.f", &none)
    );
    assert_eq!(first.unwrap(), json!("ok"));
    assert_eq!(second.unwrap(), json!("ok"));
    // Two at a time, so that every pooled connection is taken.
    for _ in 0..3 {
        let (first, second) = tokio::join!(
            client.call(&url, None, "m.f", &none),
            client.call(&url, None, "m.f", &none)
        );
        assert_eq!(first.unwrap(), json!("ok"));
        assert_eq!(second.unwrap(), json!("ok"));
    }
    assert_eq!(
        later.load(Ordering::SeqCst),
        0,
        "a connection of the draining instance carried a later call"
    );
}

#[tokio::test]
async fn without_the_retry_such_a_call_is_interrupted() {
    let (url, _server) = closes_after_an_error(false).await;
    let client = Client::new(
        ClientSettings::default()
            .with_timeout(Duration::from_secs(5))
            .with_retry_closed_connection(false),
    );
    let error = the_second_call_fails(&client, &url).await;
    assert_eq!(error.kind(), &ErrorKind::Interrupted, "{error}");
}

/// Calls `m.f` on a server made by [`closes_after_an_error`] twice: the second
/// call goes out on the connection the server closes unanswered; its error.
async fn the_second_call_fails(client: &Client, url: &str) -> framex_transport::Error {
    let _ = client.call(url, None, "m.f", &Map::new()).await;
    client
        .call(url, None, "m.f", &Map::new())
        .await
        .unwrap_err()
}

#[tokio::test]
async fn a_call_inside_a_trace_sends_its_trace_id_with_a_new_parent() {
    use framex_transport::trace::TraceContext;
    let server = server_answering(success(&json!("ok"))).await;
    let incoming =
        TraceContext::parse("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01").unwrap();
    let client = client();
    incoming
        .scope(async {
            for _ in 0..2 {
                client
                    .call(&server.uri(), None, "m.f", &kwargs(json!({})))
                    .await
                    .unwrap();
            }
        })
        .await;
    let requests = server.received_requests().await.unwrap();
    let sent: Vec<TraceContext> = requests
        .iter()
        .map(|request| {
            TraceContext::parse(
                request
                    .headers
                    .get("traceparent")
                    .unwrap()
                    .to_str()
                    .unwrap(),
            )
            .unwrap()
        })
        .collect();
    for context in &sent {
        assert_eq!(context.trace_id(), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_ne!(context.parent_id(), "00f067aa0ba902b7");
    }
    assert_ne!(
        sent[0].parent_id(),
        sent[1].parent_id(),
        "each call is a span of its own"
    );
}
