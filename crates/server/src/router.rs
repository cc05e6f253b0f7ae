//! The instance's axum router: FrameX's endpoints, the application's routes
//! and the fallback that serves forwarded routes, each behind the
//! instance's stack of layers.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use axum::Router;
use axum::extract::Request;
use axum::response::{IntoResponse, Response};
use axum::routing::{get_service, post_service};
use framex_auth::RequireProxyKeyLayer;
use framex_transport::trace::TraceContext;
use http::StatusCode;
use http_body_util::Full;
use tower::{BoxError, Layer, Service, service_fn};
use tower_http::sensitive_headers::{SetSensitiveRequestHeaders, SetSensitiveRequestHeadersLayer};
use tracing::Instrument as _;

use crate::envelope_status::EnvelopeStatus;
use crate::{
    HEALTH_PATH, METRICS_PATH, NormalizePath, OPENAPI_PATH, State, decoded_path, denied, envelope,
    json_response, openapi, panicked, proxy, retry_later,
};

/// Whether a router checks the `[auth] rules` and the in-flight limit: over
/// HTTP it does; called from inside the process ([`crate::Api`]) it does
/// not.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Auth {
    Checked,
    InProcess,
}

/// Where the instance's stack of layers sits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Layering {
    /// Around each route and the fallback, so that the router can be merged
    /// into an application's router and keep them.
    PerRoute(Auth),
    /// Around the whole router, in front of routing ([`outside`]): the
    /// server's, which routes the path the stack made unambiguous, with one
    /// route (a boxed service cloned and called per request) less.
    Outside,
}

/// The instance's router over `routes`, the application's.
pub(crate) fn build(state: &Arc<State>, routes: Router, layering: Layering) -> Router {
    let proxy = {
        let state = state.clone();
        post_service(service_fn(move |request: Request| {
            let state = state.clone();
            async move { Ok::<_, Infallible>(proxy::handle(&state, request).await) }
        }))
    };
    let known_path = {
        let state = state.clone();
        move |request: Request| {
            let state = state.clone();
            async move { unrouted(&state, request, true).await }
        }
    };
    let fallback = {
        let state = state.clone();
        service_fn(move |request: Request| {
            let state = state.clone();
            async move { Ok::<_, Infallible>(unrouted(&state, request, false).await) }
        })
    };
    // The application's routes read their bodies through axum's extractors,
    // under the instance's limits, and find the instance's registry in the
    // request's extensions. One `Router::layer` for both: each wraps every
    // route in a route of its own, a boxed service cloned and a boxed future
    // made per request.
    let routes = routes.layer(
        tower::ServiceBuilder::new()
            .layer(axum::extract::DefaultBodyLimit::max(
                state.settings.max_body_bytes,
            ))
            .layer(BodyLimitLayer {
                max_bytes: state.settings.max_body_bytes,
                timeout: state.settings.body_read_timeout,
                registry: state.registry.clone(),
            }),
    );
    // The calls: behind the in-flight limit.
    let calls = Router::new()
        .route(framex_transport::wire::PROXY_FUNCTION_PATH, proxy)
        .merge(routes)
        .fallback_service(fallback)
        .method_not_allowed_fallback(known_path.clone());
    // The instance's own reads, which answer even at the limit, so that an
    // overloaded instance can still be watched.
    let reads = {
        let (health, metrics, document) = (state.clone(), state.clone(), state.clone());
        Router::new()
            .route(
                HEALTH_PATH,
                get_service(service_fn(move |_: Request| {
                    let body = health_of(&health);
                    // Draining: no longer ready for calls.
                    let status = if health.drain.draining() {
                        StatusCode::SERVICE_UNAVAILABLE
                    } else {
                        StatusCode::OK
                    };
                    async move { Ok::<_, Infallible>(json_response(status, &body)) }
                })),
            )
            .route(
                METRICS_PATH,
                get_service(service_fn(move |_: Request| {
                    let response = metrics_response(&metrics);
                    async move { Ok::<_, Infallible>(response) }
                })),
            )
            .route(
                OPENAPI_PATH,
                get_service(service_fn(move |_: Request| {
                    let response = openapi_response(&document);
                    async move { Ok::<_, Infallible>(response) }
                })),
            )
            .method_not_allowed_fallback(known_path)
    };
    let router = match layering {
        Layering::PerRoute(auth) => {
            // A call from inside the process is the instance's own work, part
            // of a request already counted: neither the rules nor the limit
            // apply to it (at the limit it would be shed).
            let limit = match auth {
                Auth::Checked => Limit::InFlight,
                Auth::InProcess => Limit::None,
            };
            reads
                .layer(StackLayer::new(state, auth, Limit::None))
                .merge(calls.layer(StackLayer::new(state, auth, limit)))
        }
        Layering::Outside => reads.merge(calls),
    };
    // `with_state` turns each handler into its route now: a handler left as
    // it is would be cloned and made into one on every request.
    router.with_state(())
}

/// The server's service: the instance's stack in front of `router` (built
/// with [`Layering::Outside`]).
pub(crate) fn outside(state: &Arc<State>, router: Router) -> Stack<Router> {
    StackLayer::new(state, Auth::Checked, Limit::InFlightButReads).layer(router)
}

/// Which requests wait for `server.max_in_flight`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Limit {
    /// Every one.
    InFlight,
    /// Every one but the instance's own reads (`GET /health`, `/metrics`
    /// and the OpenAPI document).
    InFlightButReads,
    /// None.
    None,
}

/// The instance's stack of layers, outermost first (see
/// [`crate::Instance`]): the path made unambiguous, the proxy endpoint's
/// envelope status, the request's span, log line and panic guard,
/// `Authorization` marked sensitive, the `[auth] rules`, the in-flight limit.
#[derive(Clone)]
pub(crate) struct StackLayer {
    rules: framex_auth::Rules,
    in_flight: Option<InFlightLayer>,
}

/// What [`StackLayer`] makes of a service.
pub(crate) type Stack<S> = NormalizePath<
    EnvelopeStatus<
        RequestSpan<
            SetSensitiveRequestHeaders<
                framex_auth::RequireProxyKey<tower::util::Either<InFlight<S>, S>, Denied>,
            >,
        >,
    >,
    crate::RefusedPath,
>;

/// How a request the `[auth] rules` refuse is answered.
type Denied = fn(framex_auth::Denial<'_>) -> Response;

impl StackLayer {
    fn new(state: &State, auth: Auth, limit: Limit) -> StackLayer {
        let rules = match auth {
            Auth::Checked => state.settings.auth.clone(),
            Auth::InProcess => framex_auth::Rules::default(),
        };
        let in_flight = (limit != Limit::None).then(|| InFlightLayer {
            semaphore: state.in_flight.clone(),
            max_in_flight: state.settings.max_in_flight,
            reads_pass: limit == Limit::InFlightButReads,
        });
        StackLayer { rules, in_flight }
    }
}

impl<S: Clone> Layer<S> for StackLayer {
    type Service = Stack<S>;

    fn layer(&self, inner: S) -> Stack<S> {
        let limited = match &self.in_flight {
            Some(in_flight) => tower::util::Either::Left(in_flight.layer(inner)),
            None => tower::util::Either::Right(inner),
        };
        let inner = RequireProxyKeyLayer::new(self.rules.clone(), denied as Denied).layer(limited);
        let inner =
            SetSensitiveRequestHeadersLayer::new([http::header::AUTHORIZATION]).layer(inner);
        // Every request, refused ones included, runs in its trace and its log
        // span and is logged once when answered, with its real status; a
        // panic below answers 500.
        let inner = RequestSpanLayer.layer(inner);
        // A failed call to the proxy endpoint answers a caller that reads
        // failures from the envelope with HTTP 200.
        let inner = crate::envelope_status::EnvelopeStatusLayer.layer(inner);
        // The path made unambiguous, for the routes (when in front of the
        // router), the rules and the forwarding; at no cost when it was
        // made so before.
        crate::normalize_path_layer().layer(inner)
    }
}

/// A request no route of the instance serves: a forwarded route's, else
/// 405 for a `known_path` (another method is served there) or one that a
/// forwarded route serves with another method, else 404.
async fn unrouted(state: &State, request: Request, known_path: bool) -> Response {
    let path = decoded_path(&request);
    let method = request.method().clone();
    if let Some(found) = state.forwarding.find(&method, &path) {
        let hops = match crate::hops(request.headers()) {
            Ok(hops) if hops >= state.settings.max_hops => {
                return envelope(
                    StatusCode::LOOP_DETECTED,
                    &format!(
                        "{method} {path} was forwarded through {hops} FrameX instances (limit {}); check `proxy_urls` for a loop",
                        state.settings.max_hops
                    ),
                );
            }
            Ok(hops) => hops,
            Err(message) => return envelope(StatusCode::BAD_REQUEST, &message),
        };
        // Boxed: its future holds a whole outgoing request, kilobytes that
        // every layer of the stack would otherwise move on every request.
        return Box::pin(state.forwarding.forward(found, request, hops))
            .await
            .into_response();
    }
    if known_path || state.forwarding.knows_path(&path) {
        envelope(
            StatusCode::METHOD_NOT_ALLOWED,
            &format!("method {method} is not allowed on {path}"),
        )
    } else {
        envelope(StatusCode::NOT_FOUND, &format!("no route {path}"))
    }
}

/// `server.max_in_flight`: tower's `GlobalConcurrencyLimit` on the
/// instance's semaphore under `LoadShed`, so that a request past the limit is
/// answered at once rather than queued; the shed request's error becomes the
/// answer here (tower's `MapResult` would need the error type of the
/// service's readiness to convert into the answer's, which `Infallible`
/// cannot).
#[derive(Debug, Clone)]
struct InFlightLayer {
    semaphore: Arc<tokio::sync::Semaphore>,
    max_in_flight: usize,
    /// Whether the instance's own reads go around the limit (when the
    /// layer is in front of the router rather than around each route).
    reads_pass: bool,
}

impl<S: Clone> Layer<S> for InFlightLayer {
    type Service = InFlight<S>;

    fn layer(&self, inner: S) -> InFlight<S> {
        let limited =
            tower::limit::GlobalConcurrencyLimitLayer::with_semaphore(self.semaphore.clone())
                .layer(inner.clone());
        InFlight {
            limited: tower::load_shed::LoadShed::new(limited),
            unlimited: self.reads_pass.then_some(inner),
            max_in_flight: self.max_in_flight,
        }
    }
}

#[derive(Debug, Clone)]
pub(crate) struct InFlight<S> {
    limited: tower::load_shed::LoadShed<tower::limit::ConcurrencyLimit<S>>,
    /// The service itself, for the requests that go around the limit.
    unlimited: Option<S>,
    max_in_flight: usize,
}

/// The answer of [`InFlight`] for a limited request.
type Limited<F> =
    tower::load_shed::future::ResponseFuture<tower::limit::concurrency::future::ResponseFuture<F>>;

impl<S, B> Service<http::Request<B>> for InFlight<S>
where
    S: Service<http::Request<B>, Response = Response, Error = Infallible>,
{
    type Response = Response;
    type Error = Infallible;
    type Future = InFlightFuture<Limited<S::Future>, S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        if let Some(unlimited) = &mut self.unlimited {
            let _ = std::task::ready!(unlimited.poll_ready(cx));
        }
        // `LoadShed` is always ready: past the limit, it sheds at `call`.
        let _ = std::task::ready!(self.limited.poll_ready(cx));
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        if let Some(unlimited) = &mut self.unlimited
            && request.method() == http::Method::GET
            && crate::is_builtin_read(crate::decoded_path_str(&request))
        {
            return InFlightFuture::Passed {
                inner: unlimited.call(request),
            };
        }
        InFlightFuture::Limited {
            inner: self.limited.call(request),
            max_in_flight: self.max_in_flight,
        }
    }
}

pin_project_lite::pin_project! {
    /// The answer of [`InFlight`]: of a request under the limit, or of one
    /// that went around it.
    #[project = InFlightProjection]
    pub(crate) enum InFlightFuture<L, P> {
        Limited { #[pin] inner: L, max_in_flight: usize },
        Passed { #[pin] inner: P },
    }
}

impl<L, P> Future for InFlightFuture<L, P>
where
    L: Future<Output = Result<Response, BoxError>>,
    P: Future<Output = Result<Response, Infallible>>,
{
    type Output = Result<Response, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project() {
            InFlightProjection::Limited {
                inner,
                max_in_flight,
            } => {
                let result = std::task::ready!(inner.poll(cx));
                Poll::Ready(Ok(result.unwrap_or_else(|_| overloaded(*max_in_flight))))
            }
            InFlightProjection::Passed { inner } => inner.poll(cx),
        }
    }
}

/// The answer to a request shed at the in-flight limit: 503, and a hint to
/// retry in a second.
fn overloaded(max_in_flight: usize) -> Response {
    tracing::warn!(
        limit = max_in_flight,
        "request refused: calls in flight at the limit"
    );
    retry_later(&format!(
        "this instance is running {max_in_flight} calls, its limit (server.max_in_flight); retry later"
    ))
    .into_response()
}

fn health_of(state: &State) -> serde_json::Value {
    let status = if state.drain.draining() {
        "draining"
    } else {
        "ok"
    };
    let mut health = serde_json::json!({
        "status": status,
        "instance": state.settings.instance_name,
        "pid": std::process::id(),
    });
    if state.forwarding.upstream_count() > 0 {
        health["upstreams"] = state.forwarding.health();
    }
    let endpoints = state.registry.client().upstreams();
    if !endpoints.is_empty() {
        health["endpoints"] = endpoints_health(&endpoints);
    }
    health
}

/// Each upstream's endpoints and their state, by upstream URL.
fn endpoints_health(upstreams: &[framex_transport::UpstreamStatus]) -> serde_json::Value {
    let millis = |duration: std::time::Duration| duration.as_secs_f64() * 1000.0;
    let mut by_url = serde_json::Map::new();
    for upstream in upstreams {
        let endpoints: Vec<serde_json::Value> = upstream
            .endpoints
            .iter()
            .map(|endpoint| {
                serde_json::json!({
                    "address": endpoint.address.to_string(),
                    "state": if endpoint.ejected_for.is_some() { "ejected" } else { "healthy" },
                    "ejected_for_ms": endpoint.ejected_for.map(|d| d.as_millis() as u64),
                    "in_flight": endpoint.in_flight,
                    "latency_ewma_ms": endpoint.latency_ewma.map(millis),
                    "requests": endpoint.requests,
                    "failures": endpoint.failures,
                    "ejections": endpoint.ejections,
                    "last_error": endpoint.last_error,
                })
            })
            .collect();
        by_url.insert(
            upstream.url.clone(),
            serde_json::json!({
                "endpoints": endpoints,
                "lookup_error": upstream.lookup_error,
            }),
        );
    }
    serde_json::Value::Object(by_url)
}

fn metrics_response(state: &State) -> Response<Full<bytes::Bytes>> {
    let mut response = Response::new(Full::new(bytes::Bytes::from(
        state.registry.metrics().render(),
    )));
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static(framex_registry::metrics::CONTENT_TYPE),
    );
    response
}

/// This instance's OpenAPI document, written once per forwarding table.
fn openapi_response(state: &State) -> Response<Full<bytes::Bytes>> {
    let (generation, forwarded) = state.forwarding.openapi();
    let cached = |cache: &Option<(u64, bytes::Bytes)>| {
        cache
            .as_ref()
            .filter(|(written_for, _)| *written_for == generation)
            .map(|(_, body)| body.clone())
    };
    let body = match state.openapi.lock().ok().and_then(|cache| cached(&cache)) {
        Some(body) => body,
        None => {
            let document = openapi::document(&state.settings.instance_name, &forwarded);
            let body =
                bytes::Bytes::from(serde_json::to_vec(&document).expect("JSON values serialize"));
            if let Ok(mut cache) = state.openapi.lock() {
                *cache = Some((generation, body.clone()));
            }
            body
        }
    };
    let mut response = Response::new(Full::new(body));
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    response
}

/// The instance's registry in each request's extensions (for
/// `Extension<Registry>`), and `server.max_body_bytes` and
/// `server.body_read_timeout` for the application's routes: a declared
/// `Content-Length` past the limit is answered 413 in the FrameX envelope
/// before a byte is read (as the proxy endpoint answers it), and the body is
/// cut at the limit and when a part of it is not received within the timeout
/// (tower-http's `TimeoutBody`), which axum's extractors answer with 413 and
/// 400. tower-http's `RequestBodyLimit` would answer the first in plain text.
#[derive(Debug, Clone)]
struct BodyLimitLayer {
    max_bytes: usize,
    timeout: std::time::Duration,
    registry: framex_registry::Registry,
}

impl<S> Layer<S> for BodyLimitLayer {
    type Service = BodyLimit<S>;

    fn layer(&self, inner: S) -> BodyLimit<S> {
        BodyLimit {
            inner,
            limits: self.clone(),
        }
    }
}

#[derive(Debug, Clone)]
struct BodyLimit<S> {
    inner: S,
    limits: BodyLimitLayer,
}

impl<S> Service<Request> for BodyLimit<S>
where
    S: Service<Request, Response = Response, Error = Infallible>,
{
    type Response = Response;
    type Error = Infallible;
    type Future = crate::normalize_path::NormalizeFuture<S::Future, axum::body::Body>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request) -> Self::Future {
        let (max_bytes, timeout) = (self.limits.max_bytes, self.limits.timeout);
        let body = request.body();
        if crate::declares_more_than(body, max_bytes) {
            return crate::normalize_path::NormalizeFuture::Refused {
                response: Some(crate::body_too_large(max_bytes).into_response()),
            };
        }
        // A request without a body (most `GET`s) has nothing to limit.
        let mut request = match http_body::Body::is_end_stream(body) {
            true => request,
            false => request.map(|body| {
                axum::body::Body::new(http_body_util::Limited::new(
                    tower_http::timeout::TimeoutBody::new(timeout, body),
                    max_bytes,
                ))
            }),
        };
        request
            .extensions_mut()
            .insert(self.limits.registry.clone());
        crate::normalize_path::NormalizeFuture::Inner {
            future: self.inner.call(request),
        }
    }
}

/// Runs each request in its `request` span, whose parent is the caller's
/// span named by `traceparent` (for an OpenTelemetry layer), in its
/// task-local trace scope, and logs its `answered` line; a panic in the
/// services below (a handler's) is answered 500 and harms nothing else.
///
/// It catches panics itself rather than with tower-http's `CatchPanic`, whose
/// answers have a body type of its own: axum would box every answer's body a
/// second time to route it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RequestSpanLayer;

impl<S> Layer<S> for RequestSpanLayer {
    type Service = RequestSpan<S>;

    fn layer(&self, inner: S) -> RequestSpan<S> {
        RequestSpan { inner }
    }
}

#[derive(Debug, Clone)]
pub(crate) struct RequestSpan<S> {
    inner: S,
}

impl<S, B> Service<http::Request<B>> for RequestSpan<S>
where
    S: Service<http::Request<B>, Response = Response>,
{
    type Response = Response;
    type Error = S::Error;
    type Future = tracing::instrument::Instrumented<
        tokio::task::futures::TaskLocalFuture<TraceContext, Logged<S::Future>>,
    >;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let incoming = TraceContext::from_headers(request.headers());
        let span = tracing::info_span!(
            "request",
            method = %request.method(),
            path = request.uri().path(),
            trace_id = tracing::field::Empty,
        );
        // The caller's span is the parent of this request's, for an
        // OpenTelemetry layer that records spans; without one, the request
        // runs in a child of the caller's context.
        if let Some(incoming) = &incoming {
            incoming.set_parent_of(&span);
        }
        let trace = TraceContext::of_span(&span).unwrap_or_else(|| {
            incoming.map_or_else(TraceContext::new_root, |incoming| incoming.child())
        });
        if !span.is_disabled() {
            span.record(
                "trace_id",
                tracing::field::display(trace.display_trace_id()),
            );
        }
        let inner = {
            let _entered = span.enter();
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.inner.call(request))).ok()
        };
        trace
            .scope(Logged {
                inner,
                started: Instant::now(),
            })
            .instrument(span)
    }
}

pin_project_lite::pin_project! {
    /// A request's answer, logged once it is ready, with the time it took;
    /// `inner` is `None` when calling the service panicked, and is dropped
    /// when polling it does.
    pub(crate) struct Logged<F> {
        #[pin]
        inner: Option<F>,
        started: Instant,
    }
}

impl<F, E> Future for Logged<F>
where
    F: Future<Output = Result<Response, E>>,
{
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        let polled = match this.inner.as_mut().as_pin_mut() {
            Some(inner) => {
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| inner.poll(cx)))
            }
            None => Err(Box::new("the service panicked when called") as Box<_>),
        };
        let result = match polled {
            Ok(polled) => std::task::ready!(polled),
            Err(panic) => {
                // What the panicking future held is dropped now.
                this.inner.set(None);
                Ok(panicked(panic).map(axum::body::Body::new))
            }
        };
        let latency_ms = framex_transport::trace::milliseconds(this.started.elapsed());
        match &result {
            Ok(response) => {
                tracing::info!(status = response.status().as_u16(), latency_ms, "answered");
            }
            Err(_) => tracing::warn!(latency_ms, "request failed without an answer"),
        }
        Poll::Ready(result)
    }
}
