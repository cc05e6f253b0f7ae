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
//! The routes are an axum [`Router`]: FrameX's endpoints, the application's
//! [`Routes`] (axum handlers, described in the OpenAPI document when given as
//! an aide `ApiRouter`) and the routes forwarded from upstreams. Requests pass
//! FrameX's stack of layers (see [`Instance`]): the path made unambiguous, the
//! request's span and log line, the `Authorization` header marked sensitive,
//! a panic answered 500, `framex_auth::RequireProxyKeyLayer` refusing requests
//! the `[auth] rules` do not allow, and the in-flight limit. [`Server`] serves
//! them on hyper 1.x HTTP/1 with graceful shutdown; [`Instance::router`] hands
//! them to an application's own axum service.
//!
//! The server never reads TOML or the environment: it receives [`Settings`].
//!
//! ```
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! use framex_registry::{Kwargs, Registry, Routing, handler};
//! use framex_server::{Routes, Server, Settings};
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
//! let server = Server::bind(Settings::default().with_address("127.0.0.1", 0), registry, Routes::new()).await?;
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
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use connection::{Protocol, Stream};
use framex_auth::Denial;
use framex_transport::repoll::Repoll;
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tower::{BoxError, ServiceExt as _};

mod connection;
mod drain;
mod envelope_status;
pub mod forward;
mod normalize_path;
mod openapi;
pub mod path;
mod proxy;
mod router;
mod routes;

pub use axum::Router;
use forward::Forwarding;
pub use forward::Upstream;
pub use normalize_path::{NormalizePath, NormalizePathLayer};
pub use routes::{RouteConflict, Routes};

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
    /// The application's routes clash with FrameX's or with each other.
    #[error(transparent)]
    Routes(#[from] RouteConflict),
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
    compression: framex_transport::wire::Compression,
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
            compression: framex_transport::wire::Compression::STORED,
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

    /// How answers of more than 8 KiB of JSON are compressed; default stored
    /// ([`Compression::STORED`](framex_transport::wire::Compression::STORED)):
    /// the least CPU on both sides, and an answer of up to 32 MiB of JSON
    /// still fits a FrameX for Rust caller's 64 MiB answer limit.
    pub fn with_compression(
        mut self,
        compression: framex_transport::wire::Compression,
    ) -> Settings {
        self.compression = compression;
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
    pub(crate) forwarding: Arc<Forwarding>,
    /// One permit per call allowed in flight.
    pub(crate) in_flight: Arc<tokio::sync::Semaphore>,
    /// One permit per KiB that reading arguments may take, for all calls.
    pub(crate) argument_memory: Arc<tokio::sync::Semaphore>,
    /// `GET /api/v1/openapi.json` as last written, and the generation of the
    /// forwarding table it was written for: written again only when the
    /// forwarded routes change, not on every request.
    pub(crate) openapi: std::sync::Mutex<Option<(u64, Bytes)>>,
    /// Whether the instance is shutting down.
    pub(crate) drain: drain::Drain,
}

/// A FrameX instance's HTTP side: FrameX's endpoints (`POST
/// /api/v1/proxy/remote`, `GET /health`, `GET /metrics`, `GET
/// /api/v1/openapi.json`), the application's [`Routes`] and the routes
/// forwarded from upstreams, as one axum [`Router`], each route behind the
/// instance's stack. Serve it with [`Server`], or inside an application's
/// own axum service:
///
/// ```
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// use axum::routing::get;
/// use framex_registry::{Registry, Routing};
/// use framex_server::{Instance, Routes, Settings};
///
/// let registry = Registry::new(Routing::default(), framex_transport::Client::default());
/// let framex = Instance::new(Settings::default(), registry, Routes::new())?;
/// let _forwarding = framex.start();
/// let app = axum::Router::new()
///     .route("/mine", get(|| async { "the application's own route" }))
///     .merge(framex.router());
/// # let _ = app;
/// // axum::serve(listener, app).with_graceful_shutdown(signal).await
/// # Ok::<(), framex_server::RouteConflict>(())
/// # }).unwrap();
/// ```
///
/// Every FrameX route (and the fallback, which serves the forwarded routes
/// and answers FrameX's 404) is wrapped in: the path made unambiguous (see
/// [`normalize_path_layer`]), a failed proxy call answered with HTTP 200 to
/// callers that read failures from the envelope, the request's trace span
/// and log line, `Authorization` kept out of logs, a panic answered 500, the
/// `[auth] rules`, and (for all but `/health`, `/metrics` and the OpenAPI
/// document) the in-flight limit. Routes the application adds to the merged
/// router itself are not: their stack is the application's.
///
/// Because the router has a fallback, an application router that merges it
/// must not set one of its own (axum refuses two).
#[derive(Clone)]
pub struct Instance {
    state: Arc<State>,
    /// The application's routes.
    routes: Router,
    /// The instance's routes without the `[auth] rules` and the in-flight
    /// limit, for [`Api::call`].
    in_process: Router,
}

impl std::fmt::Debug for Instance {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Instance")
            .field("instance", &self.state.settings.instance_name)
            .finish_non_exhaustive()
    }
}

impl Instance {
    /// An instance serving `registry`'s functions and `routes`, with
    /// `settings`. The application's documented routes are listed in the
    /// OpenAPI document first, and an upstream's route on one of their
    /// paths and methods is not forwarded. Routes on FrameX's endpoints, or
    /// with a fallback of their own, are refused ([`Routes::try_merge`]).
    pub fn new(
        settings: Settings,
        registry: framex_registry::Registry,
        routes: Routes,
    ) -> Result<Instance, RouteConflict> {
        let routes = Routes::new().try_merge(routes)?;
        let mut local: Vec<(Method, String)> = routes
            .documented()
            .into_iter()
            .map(|(method, path)| (method, path.to_owned()))
            .collect();
        local.extend(
            BUILTIN_ROUTES
                .iter()
                .map(|(method, path)| (method.clone(), (*path).to_owned())),
        );
        let missing = openapi::missing_schemas(
            routes
                .operations
                .iter()
                .map(|(_, _, operation)| &**operation),
            &routes.schemas,
        );
        if !missing.is_empty() {
            tracing::error!(
                ?missing,
                "the OpenAPI document refers to schemas it does not have: turn each aide router \
                 into `Routes` on the thread that built it (aide keeps them per thread)"
            );
        }
        let forwarding = Arc::new(Forwarding::new(
            settings.upstreams.clone(),
            registry.client().clone(),
            settings.forward_timeout,
            settings.max_body_bytes,
            local,
            forward::ForwardedOpenApi {
                operations: routes.operations.clone(),
                schemas: routes.schemas.clone(),
            },
        ));
        let state = Arc::new(State {
            in_flight: Arc::new(tokio::sync::Semaphore::new(settings.max_in_flight)),
            openapi: std::sync::Mutex::new(None),
            argument_memory: Arc::new(tokio::sync::Semaphore::new(
                (settings.max_argument_memory / 1024).min(tokio::sync::Semaphore::MAX_PERMITS),
            )),
            settings,
            registry,
            forwarding,
            drain: drain::Drain::default(),
        });
        Ok(Instance {
            in_process: router::build(
                &state,
                routes.router.clone(),
                router::Layering::PerRoute(router::Auth::InProcess),
            ),
            routes: routes.router,
            state,
        })
    }

    /// The instance's routes, to serve or to merge into an application's
    /// router (made on each call; clones of it share the routes).
    pub fn router(&self) -> Router {
        router::build(
            &self.state,
            self.routes.clone(),
            router::Layering::PerRoute(router::Auth::Checked),
        )
    }

    /// A handle for calling this instance's routes from inside the process.
    pub fn api(&self) -> Api {
        Api {
            state: self.state.clone(),
            router: self.in_process.clone(),
        }
    }

    /// Starts loading the upstreams' OpenAPI documents (in the background,
    /// retrying until each loads), which is what serves their routes; the
    /// returned guard stops it when dropped. [`Server::serve`] does this
    /// itself. Call it within a Tokio runtime.
    pub fn start(&self) -> Started {
        let mut loaders = tokio::task::JoinSet::new();
        for index in 0..self.state.forwarding.upstream_count() {
            loaders.spawn(self.state.forwarding.clone().load(index));
        }
        Started { _loaders: loaders }
    }
}

/// An [`Instance`]'s background work, stopped when this is dropped.
#[derive(Debug)]
#[must_use = "dropping it stops loading the upstreams' documents"]
pub struct Started {
    _loaders: tokio::task::JoinSet<()>,
}

/// The layer that makes a request's path unambiguous before it is routed
/// (percent-decoded, dot segments resolved, ambiguous encodings refused with
/// 400), so that the `[auth] rules`, the routes and an upstream decide on
/// the same path. [`Server`] puts it in front of the router; an application
/// that merges [`Instance::router`] into its own puts it in front of its
/// whole router (`ServiceBuilder::new().layer(normalize_path_layer()).service(app)`,
/// as for tower-http's `NormalizePath`), so that an encoded path
/// (`/api/v1/%72eport`) is routed as its decoded form and the path
/// parameters Python FrameX sends in the query are put back in the path.
/// Without it, FrameX's routes still decide the rules on the decoded path.
pub fn normalize_path_layer() -> normalize_path::NormalizePathLayer<RefusedPath> {
    normalize_path::NormalizePathLayer::new(refused_path as RefusedPath)
}

/// How a request whose path is refused is answered.
pub type RefusedPath = fn(&str, path::PathError) -> Response<axum::body::Body>;

/// A bound, not yet serving, server.
pub struct Server {
    listener: TcpListener,
    instance: Instance,
}

impl Server {
    /// Binds the configured address.
    pub async fn bind(
        settings: Settings,
        registry: framex_registry::Registry,
        routes: Routes,
    ) -> Result<Server, Error> {
        let address = format!("{}:{}", settings.host, settings.port);
        let listener = TcpListener::bind(&address)
            .await
            .map_err(|source| Error::Bind { address, source })?;
        Server::on_listener(listener, settings, registry, routes)
    }

    /// Serves on `listener`, bound by the caller (the settings' address is
    /// not used): a port bound once and kept, a socket handed over by a
    /// supervisor, an address the caller chose its own way.
    pub fn on_listener(
        listener: TcpListener,
        settings: Settings,
        registry: framex_registry::Registry,
        routes: Routes,
    ) -> Result<Server, Error> {
        Ok(Server {
            listener,
            instance: Instance::new(settings, registry, routes)?,
        })
    }

    /// The address actually bound (the real port when 0 was asked for).
    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .expect("a bound listener has an address")
    }

    /// A handle for calling this instance's routes from inside the process.
    pub fn api(&self) -> Api {
        self.instance.api()
    }

    /// Serves until `shutdown` completes, then stops accepting and waits for the
    /// calls in flight to finish, for at most the shutdown grace period.
    pub async fn serve(self, shutdown: impl Future<Output = ()>) {
        let state = self.instance.state.clone();
        // The instance's stack in front of its router: the path made
        // unambiguous before it is routed.
        let service = router::outside(
            &state,
            router::build(
                &state,
                self.instance.routes.clone(),
                router::Layering::Outside,
            ),
        );
        // Turned true when the instance stops: each connection then closes
        // gracefully (see `connection::serve`).
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let mut connections = tokio::task::JoinSet::new();
        let started = self.instance.start();
        let header_read_timeout = state.settings.header_read_timeout;
        let mut http1 = hyper::server::conn::http1::Builder::new();
        http1
            .timer(TokioTimer::new())
            .header_read_timeout(header_read_timeout);
        // hyper's limits stand: 200 streams at once per connection, 16 KiB
        // of headers, 20 streams reset before they are answered (the "rapid
        // reset" attack), 1 MiB windows.
        let mut http2 = hyper::server::conn::http2::Builder::new(TokioExecutor::new());
        http2.timer(TokioTimer::new());
        let tls = state
            .settings
            .tls
            .clone()
            .map(tokio_rustls::TlsAcceptor::from);
        tracing::info!(
            instance = state.settings.instance_name,
            address = %self.local_addr(),
            tls = tls.is_some(),
            "serving"
        );
        let mut shutdown = std::pin::pin!(shutdown);
        let mut accept_errors = AcceptErrors::default();
        loop {
            let (mut stream, _) = tokio::select! {
                accepted = self.listener.accept() => match accepted {
                    Ok(accepted) => accepted,
                    // Out of file descriptors and the like: back off, keep serving.
                    Err(error) => {
                        accept_errors.failed(&error, &state.settings.instance_name);
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
                () = &mut shutdown => break,
            };
            let _ = stream.set_nodelay(true);
            let (http1, http2, service) = (http1.clone(), http2.clone(), service.clone());
            let (tls, mut stopped) = (tls.clone(), stopped.clone());
            // The connection's task polls hyper's connection and the handler
            // in it; their hand-offs (a request body asked for, an answer
            // ready) go on in the same poll instead of through the scheduler.
            connections.spawn(Repoll::new(async move {
                // A client that does not finish the TLS handshake, or send its
                // first bytes, in the time it has for its headers is dropped;
                // so is one still at it when the instance stops.
                let opening = async {
                    match tls {
                        None => match connection::sniff(&mut stream).await {
                            Ok(Some((head, protocol))) => {
                                Some((Stream::Plain(stream, head), protocol))
                            }
                            _ => None,
                        },
                        Some(acceptor) => acceptor
                            .accept(stream)
                            .await
                            .ok()
                            .map(|stream| (Stream::Tls(Box::new(stream)), Protocol::Http1)),
                    }
                };
                let opened = tokio::select! {
                    opened = tokio::time::timeout(header_read_timeout, opening) => opened,
                    _ = stopped.wait_for(|stop| *stop) => return,
                };
                let Ok(Some((stream, protocol))) = opened else {
                    return;
                };
                let io = TokioIo::new(stream);
                match protocol {
                    Protocol::Http1 => {
                        let connection =
                            http1.serve_connection(io, TowerToHyperService::new(service));
                        connection::serve(connection, stopped, None).await;
                    }
                    Protocol::Http2 => {
                        let activity = Arc::new(connection::Activity::new());
                        let counted = activity.clone();
                        let service =
                            tower::ServiceExt::<Request<hyper::body::Incoming>>::map_future(
                                service,
                                move |answer| {
                                    let active = counted.enter();
                                    async move {
                                        let answer = answer.await;
                                        drop(active);
                                        answer
                                    }
                                },
                            );
                        let connection =
                            http2.serve_connection(io, TowerToHyperService::new(service));
                        let idle = Some((activity, header_read_timeout));
                        connection::serve(connection, stopped, idle).await;
                    }
                }
            }));
            // Reap finished connections so the set holds only live ones.
            while connections.try_join_next().is_some() {}
        }
        tracing::info!(
            instance = state.settings.instance_name,
            grace = ?state.settings.shutdown_grace,
            "shutting down: no new connections; callers told to move on; letting calls in flight finish"
        );
        drop(self.listener);
        drop(started);
        // Past the grace period the remaining connections are closed.
        let grace = state.settings.shutdown_grace;
        let stop_at = tokio::time::Instant::now() + grace;
        state.drain.start();
        // Callers are told to move on (see `drain`) until they have.
        loop {
            while connections.try_join_next().is_some() {}
            if connections.is_empty()
                || state.drain.quiet_for() >= drain::QUIET
                || tokio::time::Instant::now() >= stop_at
            {
                break;
            }
            tokio::select! {
                _ = connections.join_next() => {}
                () = tokio::time::sleep(Duration::from_millis(50)) => {}
            }
        }
        stop.send_replace(true);
        let closed = async { while connections.join_next().await.is_some() {} };
        if tokio::time::timeout_at(stop_at, closed).await.is_err() {
            tracing::warn!(
                connections = connections.len(),
                ?grace,
                "shutdown grace period over: closing the connections still open"
            );
        }
        // Every connection's socket closed before this returns: a caller that
        // calls again once the instance is gone finds it gone (refused), not a
        // kept-alive connection that closes under its call. What is left is
        // still busy past the grace period.
        connections.abort_all();
        while connections.join_next().await.is_some() {}
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

/// Calls an instance's routes from inside its process, the counterpart of
/// FrameX's `call_plugin_api("/api/v1/...")`: the application's own route runs
/// in place; a route forwarded from an upstream goes to that upstream. Cloning
/// is cheap.
///
/// The calling code is the instance's own, so the `[auth] rules` and the
/// in-flight limit that guard the HTTP side do not apply.
#[derive(Clone)]
pub struct Api {
    state: Arc<State>,
    router: Router,
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
    /// FrameX envelope, as over HTTP; an answer larger than the body limit
    /// (`max_body_bytes`) is a 502.
    pub async fn call(&self, request: Request<Bytes>) -> Response<Bytes> {
        let mut request = request.map(axum::body::Body::from);
        if let Err(error) = normalize_path::normalize_request(&mut request) {
            return envelope_bytes(
                StatusCode::BAD_REQUEST,
                &format!("path `{}` is refused: {error}", request.uri().path()),
            );
        }
        let path = decoded_path(&request);
        let Ok(response) = self.router.clone().oneshot(request).await;
        let (parts, body) = response.into_parts();
        let limit = self.state.settings.max_body_bytes;
        match Limited::new(body, limit).collect().await {
            Ok(body) => Response::from_parts(parts, body.to_bytes()),
            Err(_) => envelope_bytes(
                StatusCode::BAD_GATEWAY,
                &format!("the answer to {path} broke off or is larger than {limit} bytes"),
            ),
        }
    }
}

/// The answer to a request whose path cannot be made unambiguous: 400, naming
/// what in it was refused.
fn refused_path(path: &str, error: path::PathError) -> Response<axum::body::Body> {
    let shown: String = path.chars().take(200).collect();
    tracing::warn!(path = shown, %error, "request refused: ambiguous path");
    envelope(
        StatusCode::BAD_REQUEST,
        &format!("path `{shown}` is refused: {error}"),
    )
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
fn denied(denial: Denial<'_>) -> Response<axum::body::Body> {
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
    envelope(status, &message)
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
/// (and `GET /health` says so). `router.rs` routes each of them.
pub(crate) const BUILTIN_ROUTES: [(Method, &str); 4] = [
    (Method::POST, framex_transport::wire::PROXY_FUNCTION_PATH),
    (Method::GET, HEALTH_PATH),
    (Method::GET, METRICS_PATH),
    (Method::GET, OPENAPI_PATH),
];

/// Whether `path` is one of the instance's own `GET` routes (`/health`,
/// `/metrics`, the OpenAPI document), which answer even at the in-flight
/// limit.
pub(crate) fn is_builtin_read(path: &str) -> bool {
    BUILTIN_ROUTES
        .iter()
        .any(|(method, builtin)| *method == Method::GET && *builtin == path)
}

/// The request's decoded path, which the normalizing layer put in its
/// extensions; the path itself when it was plain already (and only then: both
/// ways in, HTTP and [`Api::call`], normalize first).
pub(crate) fn decoded_path_str<B>(request: &Request<B>) -> &str {
    match request.extensions().get::<normalize_path::DecodedPath>() {
        Some(decoded) => &decoded.0,
        None => request.uri().path(),
    }
}

/// [`decoded_path_str`], owned.
fn decoded_path<B>(request: &Request<B>) -> String {
    decoded_path_str(request).to_owned()
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

/// Whether `body` declares (by its `Content-Length`) more than `limit`
/// bytes: such a body is refused before a byte of it is read or waited for.
pub(crate) fn declares_more_than(body: &impl http_body::Body, limit: usize) -> bool {
    usize::try_from(body.size_hint().lower()).map_or(true, |declared| declared > limit)
}

/// The answer to a request body larger than `limit` bytes: 413.
pub(crate) fn body_too_large(limit: usize) -> Response<Full<Bytes>> {
    envelope_response(
        StatusCode::PAYLOAD_TOO_LARGE,
        &format!("request body is larger than {limit} bytes"),
    )
}

/// Reads a whole body, answering 413 past the size limit and 408 past the body
/// read timeout.
pub(crate) async fn read_body<B>(
    body: B,
    settings: &Settings,
) -> Result<Bytes, Response<Full<Bytes>>>
where
    B: http_body::Body<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    let limit = settings.max_body_bytes;
    let timeout = settings.body_read_timeout;
    let too_large = || body_too_large(limit);
    if declares_more_than(&body, limit) {
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

/// The body of every answer, whole or streamed from an upstream: axum's,
/// so that the router passes it on without boxing it again.
pub(crate) type ServerBody = axum::body::Body;

/// A whole answer as a [`ServerBody`] answer.
pub(crate) fn boxed(response: Response<Full<Bytes>>) -> Response<ServerBody> {
    response.map(ServerBody::new)
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
    // Not through `Response::builder()`: its `header` copies a value given as
    // text into an allocation of its own, on every answer.
    let mut response = Response::new(Bytes::from(body));
    *response.status_mut() = status;
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    response
}

/// An answer with a FrameX envelope and a real HTTP status, as axum answers.
pub(crate) fn envelope(status: StatusCode, message: &str) -> axum::response::Response {
    envelope_bytes(status, message).map(axum::body::Body::from)
}
