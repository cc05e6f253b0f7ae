//! W3C trace context across instances: a request that arrives with a
//! `traceparent` has its trace id sent on with every call it causes, whether a
//! route calls a function listed for a remote or the proxy endpoint relays a
//! call.

use crate::support::{config, send, start};
use framex::App;
use framex::transport::trace::TraceContext;
use framex::transport::wire::{self, CallBody, Envelope};
use serde_json::json;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

const INCOMING: &str = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";

/// A remote that answers every call with `"ok"`.
async fn remote() -> MockServer {
    let remote = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/api/v1/proxy/remote"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(Envelope::success(wire::encode(&json!("ok")).unwrap())),
        )
        .mount(&remote)
        .await;
    remote
}

/// The trace context of each call the remote received.
async fn received(remote: &MockServer) -> Vec<TraceContext> {
    remote
        .received_requests()
        .await
        .unwrap()
        .iter()
        .map(|request| {
            let header = request
                .headers
                .get("traceparent")
                .expect("a traceparent header");
            TraceContext::parse(header.to_str().unwrap()).expect("a valid traceparent")
        })
        .collect()
}

async fn local(remote: &MockServer) -> String {
    let url = remote.uri();
    let mut app = App::from_config(config(&format!(
        "load_builtin_plugins = [\"proxy\"]\n[server]\nenable_proxy = true\nport = 0\n\
         [plugins.proxy]\nproxy_urls = [\"{url}\"]\nproxy_functions = {{ \"{url}\" = [\"m.remote\"] }}\n"
    )))
    .unwrap();
    app.route(
        http::Method::GET,
        "/api/v1/twice",
        |_, registry| async move {
            for _ in 0..2 {
                framex::call_on(&registry, "m.remote", json!({}))
                    .await
                    .unwrap();
            }
            http::Response::new(bytes::Bytes::from_static(b"done"))
        },
    );
    start(app, "local").await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_route_sends_the_incoming_trace_id_on_to_the_remote() {
    let remote = remote().await;
    let local = local(&remote).await;
    let (status, body) = send(
        &local,
        "GET",
        "/api/v1/twice",
        &[("traceparent", INCOMING)],
        b"",
    )
    .await;
    assert_eq!((status, body.as_slice()), (200, &b"done"[..]));
    let sent = received(&remote).await;
    assert_eq!(sent.len(), 2);
    for context in &sent {
        assert_eq!(context.trace_id(), "0af7651916cd43dd8448eb211c80319c");
        assert_ne!(
            context.parent_id(),
            "b7ad6b7169203331",
            "each call is a span of its own"
        );
    }
    assert_ne!(sent[0].parent_id(), sent[1].parent_id());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relayed_call_keeps_the_trace_and_a_request_without_one_starts_one() {
    let remote = remote().await;
    let local = local(&remote).await;
    let body = serde_json::to_vec(&CallBody::encode("m.remote", &serde_json::Map::new()).unwrap())
        .unwrap();
    let headers = [
        ("traceparent", INCOMING),
        ("content-type", "application/json"),
    ];
    let (status, _) = send(&local, "POST", "/api/v1/proxy/remote", &headers, &body).await;
    assert_eq!(status, 200);
    let (status, _) = send(&local, "GET", "/api/v1/twice", &[], b"").await;
    assert_eq!(status, 200);

    let sent = received(&remote).await;
    assert_eq!(sent.len(), 3);
    assert_eq!(sent[0].trace_id(), "0af7651916cd43dd8448eb211c80319c");
    // Without an incoming trace the request starts one, shared by its calls.
    assert_ne!(sent[1].trace_id(), "0af7651916cd43dd8448eb211c80319c");
    assert_eq!(sent[1].trace_id(), sent[2].trace_id());
}
