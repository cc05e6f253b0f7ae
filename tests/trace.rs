//! W3C trace context across instances: a request that arrives with a
//! `traceparent` has its trace id sent on with every call it causes, whether a
//! route calls a function listed for a remote or the proxy endpoint relays a
//! call; with an OpenTelemetry layer, each span is the child of the span that
//! caused it, across a task the application spawned, a remote call and a
//! forwarded route.

use crate::support::{config, send, start};
use axum::Extension;
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
    let twice = |Extension(registry): Extension<framex::registry::Registry>| async move {
        for _ in 0..2 {
            framex::call_on(&registry, "m.remote", json!({}))
                .await
                .unwrap();
        }
        "done"
    };
    let routes = axum::Router::new().route("/api/v1/twice", axum::routing::get(twice));
    app.routes(routes).unwrap();
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

/// The spans recorded, by name and the path or function they are about.
struct Spans(Vec<opentelemetry_sdk::trace::SpanData>);

impl Spans {
    /// The one span named `name` whose attribute `key` is `value`.
    fn find(&self, name: &str, key: &str, value: &str) -> &opentelemetry_sdk::trace::SpanData {
        let found: Vec<_> = self
            .0
            .iter()
            .filter(|span| {
                span.name == name
                    && span
                        .attributes
                        .iter()
                        .any(|kv| kv.key.as_str() == key && kv.value.as_str() == value)
            })
            .collect();
        assert_eq!(found.len(), 1, "one `{name}` span with {key}={value}");
        found[0]
    }
}

/// The value of `span`'s attribute `key`.
fn attribute<'s>(
    span: &'s opentelemetry_sdk::trace::SpanData,
    key: &str,
) -> &'s opentelemetry::Value {
    let found = span.attributes.iter().find(|kv| kv.key.as_str() == key);
    &found
        .unwrap_or_else(|| panic!("`{}` has no {key}: {:?}", span.name, span.attributes))
        .value
}

// One thread: both instances' tasks run where the subscriber is set.
#[tokio::test(flavor = "current_thread")]
async fn spans_continue_across_a_spawned_task_a_remote_call_and_a_forwarded_route() {
    use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider};
    use tracing::Instrument as _;
    use tracing_subscriber::layer::SubscriberExt as _;

    let exporter = InMemorySpanExporter::default();
    let provider = SdkTracerProvider::builder()
        .with_simple_exporter(exporter.clone())
        .build();
    let subscriber = tracing_subscriber::registry().with(framex::otel::layer(&provider));
    let _guard = crate::support::capture_with(subscriber);

    // The remote runs `t.f` and serves `GET /api/v1/there`.
    let mut remote = App::from_config(config("[server]\nport = 0\n")).unwrap();
    remote
        .register_handler(
            "t.f",
            framex::registry::typed(|_: serde_json::Value| async { Ok::<_, String>(1) }),
        )
        .unwrap();
    remote
        .routes(framex::aide::axum::ApiRouter::new().api_route(
            "/api/v1/there",
            framex::aide::axum::routing::get(|| async { "there" }),
        ))
        .unwrap();
    let remote = start(remote, "remote").await;
    // The local instance lists `t.f` for it and forwards its routes; its own
    // route calls `t.f` from a task of its own.
    let mut local = App::from_config(config(&format!(
        "load_builtin_plugins = [\"proxy\"]\n[server]\nenable_proxy = true\nport = 0\n\
         [plugins.proxy.proxy_urls.\"{remote}\"]\nenable = [\"/api/v1/there\"]\n\
         [plugins.proxy]\nproxy_functions = {{ \"{remote}\" = [\"t.f\"] }}\n"
    )))
    .unwrap();
    let spawned = |Extension(registry): Extension<framex::registry::Registry>| async move {
        let call = async move { framex::call_on(&registry, "t.f", json!({})).await };
        let result = tokio::spawn(call.in_current_span()).await.unwrap();
        assert_eq!(result.unwrap(), json!(1));
        "done"
    };
    let routes = axum::Router::new().route("/api/v1/spawned", axum::routing::get(spawned));
    local.routes(routes).unwrap();
    let local = start(local, "local").await;
    for _ in 0..200 {
        if crate::support::get(&local, "/api/v1/there").await.0 == 200 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    // Only the spans of the requests below.
    provider.force_flush().unwrap();
    exporter.reset();

    let incoming = [("traceparent", INCOMING), ("tracestate", "vendor=kept")];
    let (status, _) = send(&local, "GET", "/api/v1/spawned", &incoming, b"").await;
    assert_eq!(status, 200);
    let (status, body) = send(&local, "GET", "/api/v1/there", &incoming, b"").await;
    assert_eq!((status, body.as_slice()), (200, &b"there"[..]));
    provider.force_flush().unwrap();
    let spans = Spans(exporter.get_finished_spans().unwrap());

    let trace_id = "0af7651916cd43dd8448eb211c80319c";
    let id = |span: &opentelemetry_sdk::trace::SpanData| span.span_context.span_id().to_string();
    let parent = |span: &opentelemetry_sdk::trace::SpanData| span.parent_span_id.to_string();
    // The local request continues the caller's trace, under the caller's span.
    let request = spans.find("request", "path", "/api/v1/spawned");
    assert_eq!(request.span_context.trace_id().to_string(), trace_id);
    assert_eq!(parent(request), "b7ad6b7169203331");
    assert_eq!(request.span_context.trace_state().header(), "vendor=kept");
    // The call made on the spawned task is a child of the request…
    let call = spans.find("proxy_call", "location", &remote);
    assert_eq!(parent(call), id(request));
    // …and the remote's request is a child of the call, in the same trace.
    let served = spans.find("request", "path", "/api/v1/proxy/remote");
    assert_eq!(served.span_context.trace_id().to_string(), trace_id);
    assert_eq!(parent(served), id(call));
    assert_eq!(served.span_context.trace_state().header(), "vendor=kept");
    let ran = spans.find("proxy_call", "location", "local");
    assert_eq!(parent(ran), id(served));
    // Each call's span is exported with how it ended and how long it took.
    for call in [call, ran] {
        assert_eq!(attribute(call, "outcome").as_str(), "ok");
        match attribute(call, "duration_ms") {
            opentelemetry::Value::F64(ms) => assert!(*ms >= 0.0, "{ms}"),
            other => panic!("duration_ms is {other:?}"),
        }
    }
    // A forwarded route: the upstream's request is a child of this instance's
    // request, not of the caller's span.
    let forwarded: Vec<_> = spans
        .0
        .iter()
        .filter(|span| {
            span.name == "request"
                && span
                    .attributes
                    .iter()
                    .any(|kv| kv.key.as_str() == "path" && kv.value.as_str() == "/api/v1/there")
        })
        .collect();
    assert_eq!(forwarded.len(), 2, "one request span on each instance");
    let (here, there) = if parent(forwarded[0]) == "b7ad6b7169203331" {
        (forwarded[0], forwarded[1])
    } else {
        (forwarded[1], forwarded[0])
    };
    assert_eq!(parent(here), "b7ad6b7169203331");
    assert_eq!(parent(there), id(here));
    assert_eq!(there.span_context.trace_id().to_string(), trace_id);
}
