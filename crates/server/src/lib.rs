//! The FrameX HTTP server: `POST /api/v1/proxy/remote` for proxy functions,
//! `GET /health`, `GET /api/v1/openapi.json`, and the application's own routes,
//! all behind the `[auth] rules`.
//!
//! Errors answer with a FrameX envelope `{"status", "message", "timestamp"}`
//! whose status says what failed: 401 auth, 404 not registered, 413 too large,
//! 422 undecodable body or bad arguments, 500 the function failed, 502/504 when
//! this instance relayed the call and the next hop failed or timed out, 508
//! when a call has passed through too many instances. The HTTP status is the
//! same, except on `POST /api/v1/proxy/remote` for a caller that does not send
//! `x-framex-errors: http-status` (Python FrameX's client): HTTP 200, which is
//! what makes Python FrameX raise (see `envelope_status.rs`).
//!
//! Requests pass a tower stack before any route: the `Authorization` header is
//! marked sensitive, a panic answers 500 (tower-http `CatchPanic`), and
//! `framex_auth::RequireProxyKeyLayer` refuses requests the `[auth] rules` do not
//! allow. Connections are hyper 1.x HTTP/1 with graceful shutdown.
//!
//! The server never reads TOML or the environment: it receives [`Settings`].
//!
//! ```
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! use framex_registry::{Kwargs, Registry, Routing, handler};
//! use framex_server::{Server, Settings};
//! use serde_json::json;
//!
//! #[derive(serde::Deserialize)]
//! struct Add { a: i64, b: i64 }
//!
//! let mut registry = Registry::new(Routing::default(), framex_transport::Client::default());
//! registry.register("demo.add", handler(|kwargs: Kwargs| async move {
//!     let Add { a, b } = kwargs.parse()?;
//!     Ok(a + b)
//! }))?;
//! let server = Server::bind(Settings::default().with_address("127.0.0.1", 0), registry, Vec::new()).await?;
//! let url = format!("http://{}", server.local_addr());
//! let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
//! let serving = tokio::spawn(server.serve(async move {
//!     let _ = stopped.await;
//! }));
//!
//! // Any FrameX client, Rust or Python, calls it the same way.
//! let sum: i64 = framex_transport::Client::default()
//!     .call_as(&url, None, "demo.add", &json!({"a": 2, "b": 3}))
//!     .await?;
//! assert_eq!(sum, 5);
//!
//! let _ = stop.send(());
//! serving.await?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! # }).unwrap();
//! ```

use std::any::Any;
use std::borrow::Cow;
use std::collections::BTreeMap;
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use framex_auth::{Denial, RequireProxyKeyLayer};
use framex_transport::trace::TraceContext;
use http::{Method, Request, Response, StatusCode};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tower::{BoxError, Service, ServiceBuilder, ServiceExt as _, service_fn};
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::sensitive_headers::SetSensitiveRequestHeadersLayer;
use tracing::Instrument as _;

mod envelope_status;
pub mod forward;
mod normalize_path;
pub mod path;
mod proxy;

use forward::Forwarding;
pub use forward::Upstream;

/// A route handler of the application: the request with its whole body in, a
/// response out.
pub type RouteHandler =
    Arc<dyn Fn(Request<Bytes>) -> framex_registry::BoxFuture<Response<Bytes>> + Send + Sync>;

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The address could not be bound.
    #[error("cannot listen on {address}")]
    Bind {
        /// The address asked for.
        address: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

/// Settings of the server.
#[derive(Debug, Clone)]
pub struct Settings {
    host: String,
    port: u16,
    auth: framex_auth::Rules,
    max_body_bytes: usize,
    max_inflated_bytes: usize,
    max_hops: u32,
    header_read_timeout: Duration,
    body_read_timeout: Duration,
    max_in_flight: usize,
    max_argument_memory: usize,
    shutdown_grace: Duration,
    instance_name: String,
    upstreams: Vec<Upstream>,
    forward_timeout: Duration,
    tls: Option<Arc<rustls::ServerConfig>>,
}

impl Default for Settings {
    fn default() -> Settings {
        Settings {
            host: "127.0.0.1".to_owned(),
            port: 8080,
            auth: framex_auth::Rules::default(),
            max_body_bytes: 16 * 1024 * 1024,
            max_inflated_bytes: framex_transport::wire::DEFAULT_MAX_INFLATED_BYTES,
            max_hops: 8,
            header_read_timeout: Duration::from_secs(30),
            body_read_timeout: Duration::from_secs(60),
            max_in_flight: 1024,
            max_argument_memory: 1024 * 1024 * 1024,
            shutdown_grace: Duration::from_secs(30),
            instance_name: "framex".to_owned(),
            upstreams: Vec::new(),
            forward_timeout: Duration::from_secs(600),
            tls: None,
        }
    }
}

impl Settings {
    /// Listens on `host:port`; port 0 picks a free port.
    pub fn with_address(mut self, host: impl Into<String>, port: u16) -> Settings {
        self.host = host.into();
        self.port = port;
        self
    }

    /// Protects routes with these rules (`[auth] rules`).
    pub fn with_auth(mut self, auth: framex_auth::Rules) -> Settings {
        self.auth = auth;
        self
    }

    /// The largest request body accepted (413 beyond); default 16 MiB.
    pub fn with_max_body_bytes(mut self, bytes: usize) -> Settings {
        self.max_body_bytes = bytes;
        self
    }

    /// The largest inflated payload accepted (413 beyond); default 32 MiB.
    pub fn with_max_inflated_bytes(mut self, bytes: usize) -> Settings {
        self.max_inflated_bytes = bytes;
        self
    }

    /// How many instances a relayed call may pass through (508 beyond); default 8.
    pub fn with_max_hops(mut self, hops: u32) -> Settings {
        self.max_hops = hops;
        self
    }

    /// How long a client may take to send a request's headers before its
    /// connection is closed; default 30 s.
    pub fn with_header_read_timeout(mut self, timeout: Duration) -> Settings {
        self.header_read_timeout = timeout;
        self
    }

    /// How long a client may take to send a request's body (408 beyond); default
    /// 60 s.
    pub fn with_body_read_timeout(mut self, timeout: Duration) -> Settings {
        self.body_read_timeout = timeout;
        self
    }

    /// How many calls (proxy functions, application routes, forwarded routes)
    /// run at once; one more is answered 503 at once. Default 1024.
    pub fn with_max_in_flight(mut self, calls: usize) -> Settings {
        self.max_in_flight = calls.max(1);
        self
    }

    /// What reading the keyword arguments of all the calls in flight may take
    /// together, in bytes; a call that would pass it is answered 503 at once.
    /// Each call may take 16 times the size of its arguments' JSON (at least
    /// 1 MiB), no more. Default 1 GiB.
    pub fn with_max_argument_memory(mut self, bytes: usize) -> Settings {
        self.max_argument_memory = bytes.max(1024 * 1024);
        self
    }

    /// How long shutdown waits for calls in flight before it closes their
    /// connections anyway; default 30 s.
    pub fn with_shutdown_grace(mut self, grace: Duration) -> Settings {
        self.shutdown_grace = grace;
        self
    }

    /// Serves the routes these upstreams publish and their rules allow,
    /// forwarding each call (see [`forward`]).
    pub fn with_upstreams(mut self, upstreams: Vec<Upstream>) -> Settings {
        self.upstreams = upstreams;
        self
    }

    /// How long a forwarded call may take (for a streamed path: until the
    /// answer starts); default 600 s.
    pub fn with_forward_timeout(mut self, timeout: Duration) -> Settings {
        self.forward_timeout = timeout;
        self
    }

    /// Serves HTTPS with this configuration (see
    /// `framex_transport::tls::server_config`) instead of plain HTTP.
    pub fn with_tls(mut self, config: Arc<rustls::ServerConfig>) -> Settings {
        self.tls = Some(config);
        self
    }

    /// The name this instance reports in `GET /health`.
    pub fn with_instance_name(mut self, name: impl Into<String>) -> Settings {
        self.instance_name = name.into();
        self
    }
}

/// Everything a request needs, shared by all connections.
pub(crate) struct State {
    pub(crate) settings: Settings,
    pub(crate) registry: framex_registry::Registry,
    pub(crate) routes: Vec<(Method, String, RouteHandler)>,
    pub(crate) forwarding: Arc<Forwarding>,
    /// One permit per call allowed in flight.
    pub(crate) in_flight: Arc<tokio::sync::Semaphore>,
    /// One permit per KiB that reading arguments may take, for all calls.
    pub(crate) argument_memory: Arc<tokio::sync::Semaphore>,
    /// `GET /api/v1/openapi.json` as last written, and the generation of the
    /// forwarding table it was written for: written again only when the
    /// forwarded routes change, not on every request.
    pub(crate) openapi: std::sync::Mutex<Option<(u64, Bytes)>>,
}

/// A bound, not yet serving, server.
pub struct Server {
    listener: TcpListener,
    state: Arc<State>,
}

impl Server {
    /// Binds the configured address.
    pub async fn bind(
        settings: Settings,
        registry: framex_registry::Registry,
        routes: Vec<(Method, String, RouteHandler)>,
    ) -> Result<Server, Error> {
        let address = format!("{}:{}", settings.host, settings.port);
        let listener = TcpListener::bind(&address)
            .await
            .map_err(|source| Error::Bind { address, source })?;
        Ok(Server::on_listener(listener, settings, registry, routes))
    }

    /// Serves on `listener`, bound by the caller (the settings' address is
    /// not used): a port bound once and kept, a socket handed over by a
    /// supervisor, an address the caller chose its own way.
    pub fn on_listener(
        listener: TcpListener,
        settings: Settings,
        registry: framex_registry::Registry,
        routes: Vec<(Method, String, RouteHandler)>,
    ) -> Server {
        let mut local: Vec<(Method, String)> = routes
            .iter()
            .map(|(method, path, _)| (method.clone(), path.clone()))
            .collect();
        local.extend(
            BUILTIN_ROUTES
                .iter()
                .map(|(method, path)| (method.clone(), (*path).to_owned())),
        );
        let forwarding = Arc::new(Forwarding::new(
            settings.upstreams.clone(),
            registry.client().clone(),
            settings.forward_timeout,
            settings.max_body_bytes,
            local,
        ));
        Server {
            listener,
            state: Arc::new(State {
                in_flight: Arc::new(tokio::sync::Semaphore::new(settings.max_in_flight)),
                openapi: std::sync::Mutex::new(None),
                argument_memory: Arc::new(tokio::sync::Semaphore::new(
                    (settings.max_argument_memory / 1024).min(tokio::sync::Semaphore::MAX_PERMITS),
                )),
                settings,
                registry,
                routes,
                forwarding,
            }),
        }
    }

    /// The address actually bound (the real port when 0 was asked for).
    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .expect("a bound listener has an address")
    }

    /// A handle for calling this instance's routes from inside the process.
    pub fn api(&self) -> Api {
        Api {
            state: self.state.clone(),
        }
    }

    /// Serves until `shutdown` completes, then stops accepting and waits for the
    /// calls in flight to finish, for at most the shutdown grace period.
    pub async fn serve(self, shutdown: impl Future<Output = ()>) {
        let service = stack(self.state.clone());
        let graceful = hyper_util::server::graceful::GracefulShutdown::new();
        let mut connections = tokio::task::JoinSet::new();
        let mut loaders = tokio::task::JoinSet::new();
        for index in 0..self.state.forwarding.upstream_count() {
            loaders.spawn(self.state.forwarding.clone().load(index));
        }
        let header_read_timeout = self.state.settings.header_read_timeout;
        let mut builder = hyper::server::conn::http1::Builder::new();
        builder
            .timer(TokioTimer::new())
            .header_read_timeout(header_read_timeout);
        let tls = self
            .state
            .settings
            .tls
            .clone()
            .map(tokio_rustls::TlsAcceptor::from);
        tracing::info!(
            instance = self.state.settings.instance_name,
            address = %self.local_addr(),
            tls = tls.is_some(),
            "serving"
        );
        let mut shutdown = std::pin::pin!(shutdown);
        let mut accept_errors = AcceptErrors::default();
        loop {
            let (stream, _) = tokio::select! {
                accepted = self.listener.accept() => match accepted {
                    Ok(accepted) => accepted,
                    // Out of file descriptors and the like: back off, keep serving.
                    Err(error) => {
                        accept_errors.failed(&error, &self.state.settings.instance_name);
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
                () = &mut shutdown => break,
            };
            let _ = stream.set_nodelay(true);
            let (builder, service, watcher) =
                (builder.clone(), service.clone(), graceful.watcher());
            let tls = tls.clone();
            connections.spawn(async move {
                let stream = match tls {
                    None => Stream::Plain(stream),
                    // A client that does not finish the handshake in the time it
                    // has for its headers is dropped.
                    Some(acceptor) => {
                        match tokio::time::timeout(header_read_timeout, acceptor.accept(stream))
                            .await
                        {
                            Ok(Ok(stream)) => Stream::Tls(Box::new(stream)),
                            _ => return,
                        }
                    }
                };
                let connection = builder
                    .serve_connection(TokioIo::new(stream), TowerToHyperService::new(service));
                let _ = watcher.watch(connection).await;
            });
            // Reap finished connections so the set holds only live ones.
            while connections.try_join_next().is_some() {}
        }
        tracing::info!(
            instance = self.state.settings.instance_name,
            grace = ?self.state.settings.shutdown_grace,
            "shutting down: no new connections; letting calls in flight finish"
        );
        drop(self.listener);
        loaders.abort_all();
        // Past the grace period the remaining connections are closed.
        let grace = self.state.settings.shutdown_grace;
        if tokio::time::timeout(grace, graceful.shutdown())
            .await
            .is_err()
        {
            tracing::warn!(
                connections = connections.len(),
                ?grace,
                "shutdown grace period over: closing the connections still open"
            );
            connections.abort_all();
        }
    }
}

/// Logs failures to accept a connection at most once per [`Self::EVERY`], with
/// how many there were since, so that a listener out of file descriptors is
/// seen in the log without the log itself being flooded.
#[derive(Default)]
struct AcceptErrors {
    logged: Option<std::time::Instant>,
    since: u64,
}

impl AcceptErrors {
    const EVERY: Duration = Duration::from_secs(10);

    fn failed(&mut self, error: &std::io::Error, instance: &str) {
        self.since += 1;
        let now = std::time::Instant::now();
        if self
            .logged
            .is_some_and(|at| now.duration_since(at) < Self::EVERY)
        {
            return;
        }
        let hint = match rustix::io::Errno::from_io_error(error) {
            Some(rustix::io::Errno::MFILE | rustix::io::Errno::NFILE) => {
                ": out of file descriptors; raise the limit (ulimit -n) or lower server.max_in_flight"
            }
            _ => "",
        };
        tracing::error!(
            instance,
            %error,
            failures = self.since,
            "cannot accept connections{hint}"
        );
        self.logged = Some(now);
        self.since = 0;
    }
}

/// An accepted connection, plain or TLS.
enum Stream {
    Plain(tokio::net::TcpStream),
    Tls(Box<tokio_rustls::server::TlsStream<tokio::net::TcpStream>>),
}

impl tokio::io::AsyncRead for Stream {
    fn poll_read(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(stream) => std::pin::Pin::new(stream).poll_read(cx, buf),
            Stream::Tls(stream) => std::pin::Pin::new(stream.as_mut()).poll_read(cx, buf),
        }
    }
}

impl tokio::io::AsyncWrite for Stream {
    fn poll_write(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(stream) => std::pin::Pin::new(stream).poll_write(cx, buf),
            Stream::Tls(stream) => std::pin::Pin::new(stream.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> std::task::Poll<std::io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(stream) => std::pin::Pin::new(stream).poll_write_vectored(cx, bufs),
            Stream::Tls(stream) => {
                std::pin::Pin::new(stream.as_mut()).poll_write_vectored(cx, bufs)
            }
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Stream::Plain(stream) => stream.is_write_vectored(),
            Stream::Tls(stream) => stream.is_write_vectored(),
        }
    }

    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(stream) => std::pin::Pin::new(stream).poll_flush(cx),
            Stream::Tls(stream) => std::pin::Pin::new(stream.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(stream) => std::pin::Pin::new(stream).poll_shutdown(cx),
            Stream::Tls(stream) => std::pin::Pin::new(stream.as_mut()).poll_shutdown(cx),
        }
    }
}

/// Calls an instance's routes from inside its process, the counterpart of
/// FrameX's `call_plugin_api("/api/v1/...")`: the application's own route runs
/// in place; a route forwarded from an upstream goes to that upstream. Cloning
/// is cheap.
///
/// The calling code is the instance's own, so the `[auth] rules` that guard
/// the HTTP side do not apply.
#[derive(Clone)]
pub struct Api {
    state: Arc<State>,
}

impl std::fmt::Debug for Api {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Api")
            .field("instance", &self.state.settings.instance_name)
            .finish_non_exhaustive()
    }
}

impl Api {
    /// Calls the route that serves `request`'s method and path. The answer of a
    /// missing route is a 404 (405 for a known path with another method) in the
    /// FrameX envelope, as over HTTP.
    pub async fn call(&self, mut request: Request<Bytes>) -> Response<Bytes> {
        if let Err(error) = normalize_path::normalize_request(&mut request) {
            return envelope_bytes(
                StatusCode::BAD_REQUEST,
                &format!("path `{}` is refused: {error}", request.uri().path()),
            );
        }
        let method = request.method().clone();
        let path = decoded_path(&request);
        let mut path_known = false;
        for (route_method, route_path, handler) in &self.state.routes {
            if *route_path == path {
                path_known = true;
                if *route_method == method {
                    return handler(request).await;
                }
            }
        }
        if let Some(found) = self.state.forwarding.find(&method, &path) {
            let response = self
                .state
                .forwarding
                .forward(found, request.map(Full::new), 0)
                .await;
            let (parts, body) = response.into_parts();
            let limit = self.state.settings.max_body_bytes;
            return match Limited::new(body, limit).collect().await {
                Ok(body) => Response::from_parts(parts, body.to_bytes()),
                Err(_) => envelope_bytes(
                    StatusCode::BAD_GATEWAY,
                    &format!("the answer to {path} broke off or is larger than {limit} bytes"),
                ),
            };
        }
        if path_known || self.state.forwarding.knows_path(&path) {
            envelope_bytes(
                StatusCode::METHOD_NOT_ALLOWED,
                &format!("method {method} is not allowed on {path}"),
            )
        } else {
            envelope_bytes(StatusCode::NOT_FOUND, &format!("no route {path}"))
        }
    }
}

/// The middleware stack in front of [`handle`], outermost first: the
/// `Authorization` header is marked sensitive (kept out of any log), a panic
/// answers 500 instead of dropping the connection, and the `[auth] rules` refuse
/// requests without a valid key before any route runs.
fn stack(
    state: Arc<State>,
) -> impl Service<
    Request<Incoming>,
    Response = Response<impl hyper::body::Body<Data = Bytes, Error = impl Into<BoxError>> + use<>>,
    Error = impl Into<BoxError> + use<>,
    Future = impl Send + use<>,
> + Clone
+ Send
+ use<> {
    let auth = state.settings.auth.clone();
    let inner = ServiceBuilder::new()
        .layer(SetSensitiveRequestHeadersLayer::new([
            http::header::AUTHORIZATION,
        ]))
        .layer(CatchPanicLayer::custom(
            panicked as fn(Box<dyn Any + Send + 'static>) -> Response<Full<Bytes>>,
        ))
        .layer(RequireProxyKeyLayer::new(
            auth,
            denied as fn(Denial<'_>) -> _,
        ))
        .service(in_flight_limit(state));
    // Outermost: a failed call to the proxy endpoint answers a caller that
    // reads failures from the envelope with HTTP 200. Then every request,
    // refused ones included, runs in its trace and its log span and is logged
    // once when answered, with its real status.
    let logged = service_fn(move |request: Request<Incoming>| {
        let inner = inner.clone();
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
            span.record("trace_id", tracing::field::display(trace.trace_id()));
        }
        Logged {
            inner: trace.scope(inner.oneshot(request)),
            started: Instant::now(),
        }
        .instrument(span)
    });
    // Outermost of all: the path made unambiguous, so that the auth rules,
    // the routes and the upstream all decide on the same path.
    ServiceBuilder::new()
        .layer(normalize_path::NormalizePathLayer::new(
            refused_path as fn(&str, path::PathError) -> _,
        ))
        .layer(envelope_status::EnvelopeStatusLayer)
        .service(logged)
}

/// The answer to a request whose path cannot be made unambiguous: 400, naming
/// what in it was refused.
fn refused_path(
    path: &str,
    error: path::PathError,
) -> Response<tower_http::body::UnsyncBoxBody<Bytes, BoxError>> {
    let shown: String = path.chars().take(200).collect();
    tracing::warn!(path = shown, %error, "request refused: ambiguous path");
    envelope_response(
        StatusCode::BAD_REQUEST,
        &format!("path `{shown}` is refused: {error}"),
    )
    .map(|body| tower_http::body::UnsyncBoxBody::new(body.map_err(|never| match never {})))
}

pin_project_lite::pin_project! {
    /// A request's answer, logged once it is ready, with the time it took.
    struct Logged<F> {
        #[pin]
        inner: F,
        started: Instant,
    }
}

impl<F, B, E> Future for Logged<F>
where
    F: Future<Output = Result<Response<B>, E>>,
{
    type Output = F::Output;

    fn poll(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Self::Output> {
        let this = self.project();
        let result = std::task::ready!(this.inner.poll(cx));
        let latency_ms = this.started.elapsed().as_secs_f64() * 1000.0;
        match &result {
            Ok(response) => {
                tracing::info!(status = response.status().as_u16(), latency_ms, "answered");
            }
            Err(_) => tracing::warn!(latency_ms, "request failed without an answer"),
        }
        std::task::Poll::Ready(result)
    }
}

/// The answer to a request whose handler panicked.
fn panicked(_panic: Box<dyn Any + Send + 'static>) -> Response<Full<Bytes>> {
    envelope_response(
        StatusCode::INTERNAL_SERVER_ERROR,
        "the request handler panicked",
    )
}

/// The answer to a request the `[auth] rules` refuse, worded as Python FrameX
/// words it, plus the reason.
fn denied(denial: Denial<'_>) -> Response<ServerBody> {
    // The presented key is never logged, nor the rule's keys.
    tracing::warn!(
        path = denial.path,
        rule = denial.rule.path(),
        reason = %denial.reason,
        "request refused by an auth rule"
    );
    let message = format!(
        "Invalid API Key for API({}): {}",
        denial.path, denial.reason
    );
    let status = match denial.reason {
        framex_auth::DenyReason::DuplicateHeader => StatusCode::BAD_REQUEST,
        _ => StatusCode::UNAUTHORIZED,
    };
    boxed(envelope_response(status, &message))
}

/// Where an instance serves its metrics, in the OpenMetrics text format.
pub const METRICS_PATH: &str = "/metrics";

/// Where an instance reports that it is up, and its upstreams' state.
pub const HEALTH_PATH: &str = "/health";

/// Where an instance serves its OpenAPI document, and where it looks for an
/// upstream's unless told otherwise.
pub const OPENAPI_PATH: &str = "/api/v1/openapi.json";

/// The routes every instance serves itself, ahead of the application's and
/// the forwarded ones: an upstream's route on one of them is never forwarded
/// (and `GET /health` says so). [`handle`] routes each of them.
const BUILTIN_ROUTES: [(Method, &str); 4] = [
    (Method::POST, framex_transport::wire::PROXY_FUNCTION_PATH),
    (Method::GET, HEALTH_PATH),
    (Method::GET, METRICS_PATH),
    (Method::GET, OPENAPI_PATH),
];

fn metrics_response(state: &State) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(state.registry.metrics().render())));
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static(framex_registry::metrics::CONTENT_TYPE),
    );
    response
}

/// Whether `path` is one of the instance's own `GET` routes (`/health`,
/// `/metrics`, the OpenAPI document), which answer even at the in-flight
/// limit.
fn is_builtin_read(path: &str) -> bool {
    BUILTIN_ROUTES
        .iter()
        .any(|(method, builtin)| *method == Method::GET && *builtin == path)
}

async fn handle(state: &State, request: Request<Incoming>) -> Response<ServerBody> {
    // The decoded path (see `path.rs`): what routes are matched against.
    let path = decoded_path(&request);
    let method = request.method().clone();
    match (method.clone(), path.as_str()) {
        (Method::POST, framex_transport::wire::PROXY_FUNCTION_PATH) => {
            boxed(proxy::handle(state, request).await)
        }
        (Method::GET, HEALTH_PATH) => boxed(json_response(StatusCode::OK, &health(state))),
        (Method::GET, METRICS_PATH) => boxed(metrics_response(state)),
        (Method::GET, OPENAPI_PATH) => boxed(openapi_response(state).map(Full::new)),
        _ => {
            let known = state.routes.iter().filter(|(_, p, _)| *p == path);
            let mut allowed = false;
            for (route_method, _, handler) in known {
                allowed = true;
                if *route_method == method {
                    return boxed(user_route(state, handler, request).await);
                }
            }
            if let Some(found) = state.forwarding.find(&method, &path) {
                let hops = match hops(request.headers()) {
                    Ok(hops) if hops >= state.settings.max_hops => {
                        return boxed(envelope_response(
                            StatusCode::LOOP_DETECTED,
                            &format!(
                                "{method} {path} was forwarded through {hops} FrameX instances (limit {}); check `proxy_urls` for a loop",
                                state.settings.max_hops
                            ),
                        ));
                    }
                    Ok(hops) => hops,
                    Err(message) => {
                        return boxed(envelope_response(StatusCode::BAD_REQUEST, &message));
                    }
                };
                // Boxed: its future holds a whole outgoing request, kilobytes that
                // every layer of the stack would otherwise move on every request.
                return Box::pin(state.forwarding.forward(found, request, hops)).await;
            }
            let builtin =
                path == framex_transport::wire::PROXY_FUNCTION_PATH || is_builtin_read(&path);
            if allowed || builtin || state.forwarding.knows_path(&path) {
                boxed(envelope_response(
                    StatusCode::METHOD_NOT_ALLOWED,
                    &format!("method {method} is not allowed on {path}"),
                ))
            } else {
                boxed(envelope_response(
                    StatusCode::NOT_FOUND,
                    &format!("no route {path}"),
                ))
            }
        }
    }
}

/// The routes behind `server.max_in_flight`: tower's concurrency limit on the
/// instance's semaphore, shedding a request past it (503, retry later) rather
/// than queueing it. `/health`, `/metrics` and the OpenAPI document answer even
/// at the limit, so an overloaded instance can still be watched.
fn in_flight_limit(
    state: Arc<State>,
) -> impl Service<
    Request<Incoming>,
    Response = Response<ServerBody>,
    Error = Infallible,
    Future = impl Send + use<>,
> + Clone
+ Send
+ use<> {
    let routes = {
        let state = state.clone();
        service_fn(move |request| {
            let state = state.clone();
            async move { Ok::<_, Infallible>(handle(&state, request).await) }
        })
    };
    let limited = ServiceBuilder::new()
        .load_shed()
        .layer(tower::limit::GlobalConcurrencyLimitLayer::with_semaphore(
            state.in_flight.clone(),
        ))
        .service(routes.clone());
    service_fn(move |request: Request<Incoming>| {
        let (routes, limited, state) = (routes.clone(), limited.clone(), state.clone());
        async move {
            let builtin_read =
                request.method() == Method::GET && is_builtin_read(decoded_path_str(&request));
            if builtin_read {
                return routes.oneshot(request).await;
            }
            let (method, uri) = (request.method().clone(), request.uri().clone());
            match limited.oneshot(request).await {
                Ok(response) => Ok(response),
                Err(_overloaded) => {
                    tracing::warn!(
                        %method,
                        path = uri.path(),
                        limit = state.settings.max_in_flight,
                        "request refused: calls in flight at the limit"
                    );
                    Ok(overloaded(&state))
                }
            }
        }
    })
}

/// The request's decoded path, which the normalizing layer put in its
/// extensions; the path itself when it was plain already (and only then: both
/// ways in, HTTP and [`Api::call`], normalize first).
fn decoded_path_str<B>(request: &Request<B>) -> &str {
    match request.extensions().get::<normalize_path::DecodedPath>() {
        Some(decoded) => &decoded.0,
        None => request.uri().path(),
    }
}

/// [`decoded_path_str`], owned.
fn decoded_path<B>(request: &Request<B>) -> String {
    decoded_path_str(request).to_owned()
}

/// The answer when `max_in_flight` calls are already running: 503, and a hint to
/// retry in a second.
fn overloaded(state: &State) -> Response<ServerBody> {
    boxed(retry_later(&format!(
        "this instance is running {} calls, its limit (server.max_in_flight); retry later",
        state.settings.max_in_flight
    )))
}

/// 503 with `message`, and a hint to retry in a second.
pub(crate) fn retry_later(message: &str) -> Response<Full<Bytes>> {
    let mut response = envelope_response(StatusCode::SERVICE_UNAVAILABLE, message);
    response.headers_mut().insert(
        http::header::RETRY_AFTER,
        http::HeaderValue::from_static("1"),
    );
    response
}

/// How many FrameX instances a request has already passed through; a header
/// that is not a number is a 400 with this message.
pub(crate) fn hops(headers: &http::HeaderMap) -> Result<u32, String> {
    match headers
        .get(framex_transport::HOPS_HEADER)
        .map(|v| v.to_str().ok().and_then(|v| v.parse::<u32>().ok()))
    {
        None => Ok(0),
        Some(Some(hops)) => Ok(hops),
        Some(None) => Err(format!(
            "header {} must be a number",
            framex_transport::HOPS_HEADER
        )),
    }
}

fn health(state: &State) -> serde_json::Value {
    let mut health = serde_json::json!({
        "status": "ok",
        "instance": state.settings.instance_name,
        "pid": std::process::id(),
    });
    if state.forwarding.upstream_count() > 0 {
        health["upstreams"] = state.forwarding.health();
    }
    health
}

async fn user_route(
    state: &State,
    handler: &RouteHandler,
    request: Request<Incoming>,
) -> Response<Full<Bytes>> {
    let (parts, body) = request.into_parts();
    let body = match read_body(body, &state.settings).await {
        Ok(body) => body,
        Err(response) => return response,
    };
    let response = handler(Request::from_parts(parts, body)).await;
    response.map(Full::new)
}

/// Reads a whole body, answering 413 past the size limit and 408 past the body
/// read timeout.
pub(crate) async fn read_body(
    body: Incoming,
    settings: &Settings,
) -> Result<Bytes, Response<Full<Bytes>>> {
    let limit = settings.max_body_bytes;
    let timeout = settings.body_read_timeout;
    let too_large = || {
        envelope_response(
            StatusCode::PAYLOAD_TOO_LARGE,
            &format!("request body is larger than {limit} bytes"),
        )
    };
    // A declared `Content-Length` past the limit is refused before a byte of
    // the body is read or waited for.
    if usize::try_from(hyper::body::Body::size_hint(&body).lower()).map_or(true, |n| n > limit) {
        return Err(too_large());
    }
    match tokio::time::timeout(timeout, Limited::new(body, limit).collect()).await {
        Ok(Ok(collected)) => Ok(collected.to_bytes()),
        Ok(Err(error)) if error.is::<http_body_util::LengthLimitError>() => Err(too_large()),
        Ok(Err(_)) => Err(envelope_response(
            StatusCode::BAD_REQUEST,
            "request body could not be read",
        )),
        Err(_) => Err(envelope_response(
            StatusCode::REQUEST_TIMEOUT,
            &format!("request body was not received within {timeout:?}"),
        )),
    }
}

/// This instance's OpenAPI document, written once per forwarding table.
fn openapi_response(state: &State) -> Response<Bytes> {
    let (generation, forwarded) = state.forwarding.openapi();
    let cached = |cache: &Option<(u64, Bytes)>| {
        cache
            .as_ref()
            .filter(|(written_for, _)| *written_for == generation)
            .map(|(_, body)| body.clone())
    };
    let body = match state.openapi.lock().ok().and_then(|cache| cached(&cache)) {
        Some(body) => body,
        None => {
            let body = Bytes::from(
                serde_json::to_vec(&openapi(state, &forwarded)).expect("JSON values serialize"),
            );
            if let Ok(mut cache) = state.openapi.lock() {
                *cache = Some((generation, body.clone()));
            }
            body
        }
    };
    Response::builder()
        .header(http::header::CONTENT_TYPE, "application/json")
        .body(body)
        .expect("the header is valid")
}

/// This instance's OpenAPI document: `/health`, the application's routes and
/// the forwarded ones with their schemas. Written straight from what
/// `forwarded` shares with the upstreams' documents rather than through a
/// `Value` of its own, which would copy every operation and schema (several
/// times their JSON in memory, for a document of up to 32 MiB).
fn openapi<'a>(state: &'a State, forwarded: &'a forward::ForwardedOpenApi) -> OpenApiDocument<'a> {
    let mut paths: OpenApiPaths<'a> = BTreeMap::new();
    paths.entry(HEALTH_PATH).or_default().insert(
        "get".to_owned(),
        Cow::Owned(serde_json::json!({"operationId": "health", "responses": {"200": {"description": "the instance is up"}}})),
    );
    for (method, path, _) in &state.routes {
        let method = method.as_str().to_ascii_lowercase();
        let operation = serde_json::json!({
            "operationId": format!("{method}_{}", path.trim_matches('/').replace('/', "_")),
            "responses": {"200": {"description": "success"}}
        });
        paths
            .entry(path)
            .or_default()
            .insert(method, Cow::Owned(operation));
    }
    for (path, method, operation) in &forwarded.operations {
        paths
            .entry(path)
            .or_default()
            .insert(method.clone(), Cow::Borrowed(&**operation));
    }
    OpenApiDocument {
        openapi: "3.1.0",
        info: OpenApiInfo {
            title: &state.settings.instance_name,
            version: env!("CARGO_PKG_VERSION"),
        },
        paths,
        components: (!forwarded.schemas.is_empty()).then_some(OpenApiComponents {
            schemas: SharedSchemas(&forwarded.schemas),
        }),
    }
}

/// Paths, then lowercase methods, to operation objects, in order.
type OpenApiPaths<'a> = BTreeMap<&'a str, BTreeMap<String, Cow<'a, serde_json::Value>>>;

#[derive(serde::Serialize)]
struct OpenApiDocument<'a> {
    openapi: &'static str,
    info: OpenApiInfo<'a>,
    paths: OpenApiPaths<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    components: Option<OpenApiComponents<'a>>,
}

#[derive(serde::Serialize)]
struct OpenApiInfo<'a> {
    title: &'a str,
    version: &'static str,
}

#[derive(serde::Serialize)]
struct OpenApiComponents<'a> {
    schemas: SharedSchemas<'a>,
}

/// The merged schemas, written without copying them out of their `Arc`s.
struct SharedSchemas<'a>(&'a forward::Schemas);

impl serde::Serialize for SharedSchemas<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_map(self.0.iter().map(|(name, schema)| (name, &**schema)))
    }
}

/// The body of every answer: whole, or streamed from an upstream.
pub(crate) type ServerBody = UnsyncBoxBody<Bytes, BoxError>;

/// A whole answer as a [`ServerBody`] answer.
pub(crate) fn boxed(response: Response<Full<Bytes>>) -> Response<ServerBody> {
    response.map(|body| body.map_err(|never| match never {}).boxed_unsync())
}

/// An answer with a FrameX envelope and a real HTTP status.
pub(crate) fn envelope_response(status: StatusCode, message: &str) -> Response<Full<Bytes>> {
    envelope_bytes(status, message).map(Full::new)
}

/// [`envelope_response`] with its body as bytes.
fn envelope_bytes(status: StatusCode, message: &str) -> Response<Bytes> {
    let envelope = framex_transport::wire::Envelope::failure(status.as_u16(), message);
    json_bytes(status, envelope.to_json())
}

/// An answer carrying `envelope`, with a real HTTP status.
pub(crate) fn envelope_json(
    status: StatusCode,
    envelope: &framex_transport::wire::Envelope,
) -> Response<Full<Bytes>> {
    json_bytes(status, envelope.to_json()).map(Full::new)
}

pub(crate) fn json_response(
    status: StatusCode,
    body: &impl serde::Serialize,
) -> Response<Full<Bytes>> {
    let body = serde_json::to_vec(body).expect("JSON values serialize");
    json_bytes(status, body).map(Full::new)
}

fn json_bytes(status: StatusCode, body: Vec<u8>) -> Response<Bytes> {
    Response::builder()
        .status(status)
        .header(http::header::CONTENT_TYPE, "application/json")
        .body(Bytes::from(body))
        .expect("status and header are valid")
}
