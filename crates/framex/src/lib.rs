//! FrameX for Rust: the facade that users depend on.
//!
//! It re-exports the workspace crates and composes them from a configuration:
//! [`App::from_config`] maps `Config` onto the auth rules, the registry's routing,
//! the transport client and the server settings.
//!
//! A proxy function is an `async fn` marked [`on_proxy`]. Calling it runs its body
//! here, unless the configuration lists its name under `proxy_functions`: then the
//! call goes to that FrameX instance, and the caller's code does not change.
//!
//! ```
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! use framex::App;
//! use serde_json::json;
//!
//! #[framex::on_proxy(name = "demo.greet")]
//! async fn greet(name: String) -> Result<String, framex::Error> {
//!     Ok(format!("hello {name}"))
//! }
//!
//! let mut app = App::from_config(framex::config::Config::default())?;
//! app.register(greet)?;
//! let _installed = app.install()?;
//! // Not listed in `proxy_functions`, so both calls run here.
//! assert_eq!(greet("ada".into()).await?, "hello ada");
//! assert_eq!(framex::call("demo.greet", json!({"name": "bob"})).await?, json!("hello bob"));
//! // Typed both ways: any serde value that is a JSON object goes in.
//! #[derive(serde::Serialize)]
//! struct Greet<'a> { name: &'a str }
//! let greeting: String = framex::call_as("demo.greet", Greet { name: "eve" }).await?;
//! assert_eq!(greeting, "hello eve");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! # }).unwrap();
//! ```

use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use framex_registry::{Kwargs, Output};
use framex_transport::wire::Compression;
use serde::Serialize;
use serde::de::DeserializeOwned;

pub mod health;
pub mod logging;
pub mod otel;
mod runtime;

/// The crate that describes the application's routes in the OpenAPI
/// document (`aide::axum::ApiRouter`), at the version FrameX reads.
pub use aide;
/// axum, whose routers, handlers and extractors the application's routes
/// are written with.
pub use axum;
pub use framex_auth as auth;
pub use framex_config as config;
pub use framex_filter as filter;
pub use framex_json as json;
pub use framex_registry as registry;
pub use framex_server as server;
pub use framex_transport as transport;
/// The deadline of the call a handler is running: `framex::deadline::current()`.
pub use framex_transport::deadline;
/// The JSON Schema crate whose `JsonSchema` derive describes the types of
/// documented routes (aide's version of it).
pub use schemars;

/// A JSON value as FrameX carries it: numbers of any size and `NaN` kept,
/// keys in order, Python FrameX's `dynamic_obj`s as they came (see
/// [`framex_json`]).
pub use framex_json::Value;
/// The metrics crate of [`App::metrics`], for the application's own metrics.
pub use framex_registry::prometheus_client;

pub use runtime::{Installed, is_installed};

/// Makes an `async fn` a FrameX proxy function.
///
/// ```text
/// #[framex::on_proxy]                                   // name: module path + fn name
/// #[framex::on_proxy(name = "your_module.build_report")] // name given
/// ```
///
/// - The FrameX name defaults to the module path with `::` written as `.`, then `.`
///   and the function name (`my_crate::reports::build_report` is
///   `my_crate.reports.build_report`). `name = "..."` sets it, for example to
///   match a function a Python FrameX service registers.
/// - Only an `async fn` that is a free function (no `self`, no generics) is
///   accepted. Each parameter is one keyword argument on the wire, by its name,
///   and must be an owned serde type (`String`, not `&str`). The function returns
///   `Result<T, E>` where `T` is a serde type and `E: From<framex::Error> + Display`
///   (`framex::Error` itself, or for instance `anyhow::Error`).
/// - The function becomes a plain `fn` returning `impl Future<Output = ...>`
///   (`Send` when the body's future is): where the call runs is decided when it
///   is called, and awaiting it runs the body or the remote call.
/// - A call runs the body directly when configuration does not list the name for
///   a remote URL, or when no FrameX runtime is installed (see [`App::install`]):
///   no serialization, no allocation and no lock besides the body's own. When the
///   name is listed, the arguments go to that instance through the transport, and
///   its failures come back as `Err(E::from(framex::Error))`.
/// - Register the function on each instance that may run it with
///   [`App::register`]. Its handler there decodes the keyword arguments (unknown
///   or missing ones are a 422 naming them) and runs the body.
///
/// The generated code refers to the `framex` crate by that name.
pub use framex_macros::on_proxy;

#[doc(hidden)]
pub mod __private {
    //! Support for the code `#[on_proxy]` writes. Not a public API.
    pub use crate::runtime::{
        CallSite, HandlerFuture, Proxied, ProxyDefinition, ProxyReturn, RemoteCall, dotted_name,
        dotted_name_len, remote, type_id_of, utf8,
    };
    pub use framex_registry::{Kwargs, required};
    pub use inventory;
    pub use serde;
}

/// What can go wrong in the facade.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A call failed: here, on the remote instance, or on the way.
    #[error(transparent)]
    Call(#[from] framex_registry::CallError),
    /// Keyword arguments are not a JSON object, or a result has the wrong shape.
    #[error("{0}")]
    Arguments(String),
    /// [`call_api`] was used while no bound app is installed in this process.
    #[error(
        "no FrameX instance is serving in this process: bind an app (not isolated) before calling its routes"
    )]
    NotServing,
    /// A proxy function failed with this message (see [`Error::msg`]).
    #[error("{0}")]
    Failed(String),
}

/// Why an application could not be assembled, served or reconfigured: the
/// error of [`App::from_config`], registering, binding, installing and
/// reloading, apart from [`Error`], the error of a call.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BuildError {
    /// The configuration is invalid.
    #[error(transparent)]
    Config(#[from] framex_config::Error),
    /// A function could not be registered.
    #[error(transparent)]
    Register(#[from] framex_registry::RegisterError),
    /// The server could not start.
    #[error(transparent)]
    Server(#[from] framex_server::Error),
    /// A TLS certificate, key or CA file could not be used.
    #[error(transparent)]
    Tls(#[from] framex_transport::tls::TlsError),
    /// Another application is already installed as this process's FrameX runtime.
    #[error(
        "a FrameX runtime is already installed in this process; drop its guard first, or \
         bind this app with `App::isolated` so it serves without installing"
    )]
    AlreadyInstalled,
    /// Routes given to [`App::routes`] clash with FrameX's or with each other.
    #[error(transparent)]
    Routes(#[from] framex_server::RouteConflict),
    /// The function given to [`App::register`] is not marked `#[on_proxy]`.
    #[error("`{0}` is not a proxy function: mark it with #[framex::on_proxy] to register it")]
    NotProxyFunction(&'static str),
}

impl Error {
    /// A proxy function's own failure. A caller on another instance receives the
    /// message as the remote's error message.
    pub fn msg(message: impl std::fmt::Display) -> Error {
        Error::Failed(message.to_string())
    }
}

/// A FrameX application: its configuration, its functions and its routes.
pub struct App {
    config: framex_config::Config,
    registry: framex_registry::Registry,
    routes: framex_server::Routes,
    install_on_bind: bool,
}

impl App {
    /// Loads the configuration (`path`, else `./config.toml`, then `FRAMEX__…`).
    pub fn load(path: Option<&Path>) -> Result<App, BuildError> {
        App::from_config(framex_config::Config::load(path)?)
    }

    /// Composes an application from a validated configuration.
    pub fn from_config(config: framex_config::Config) -> Result<App, BuildError> {
        let routing = routing_of(&config);
        let client = client_of(&config)?;
        Ok(App {
            registry: framex_registry::Registry::new(routing, client),
            config,
            routes: framex_server::Routes::new(),
            install_on_bind: true,
        })
    }

    /// The configuration.
    pub fn config(&self) -> &framex_config::Config {
        &self.config
    }

    /// The registry: what an application route of an
    /// [`isolated`](App::isolated) app calls functions through
    /// ([`call_on`]), as axum state (`.with_state(app.registry().clone())`).
    pub fn registry(&self) -> &framex_registry::Registry {
        &self.registry
    }

    /// The instance's metrics registry, which `GET /metrics` serves: register
    /// the application's own metrics here to have them scraped beside FrameX's
    /// (`framex::prometheus_client` is the crate to make them with).
    ///
    /// ```
    /// use framex::prometheus_client::metrics::counter::Counter;
    ///
    /// let app = framex::App::from_config(framex::config::Config::default()).unwrap();
    /// let reports: Counter = Counter::default();
    /// app.metrics().register("reports_built", "Reports built", reports.clone());
    /// ```
    pub fn metrics(&self) -> std::sync::MutexGuard<'_, prometheus_client::registry::Registry> {
        self.registry.metrics().registry()
    }

    /// Registers an [`on_proxy`] function, so this instance runs it when called
    /// here or through its proxy endpoint. This is how an application
    /// registers its functions.
    ///
    /// `function` is the function item itself (`app.register(build_report)`); a
    /// function without `#[on_proxy]` is an [`BuildError::NotProxyFunction`].
    pub fn register<F: 'static>(&mut self, function: F) -> Result<(), BuildError> {
        let _ = function;
        let definition = runtime::definition_of::<F>()
            .ok_or(BuildError::NotProxyFunction(std::any::type_name::<F>()))?;
        self.register_handler(definition.name(), definition.handler())
    }

    /// Registers a handler under a name chosen at run time, for code that
    /// embeds FrameX rather than writing `#[on_proxy]` functions: a bridge
    /// that serves names it reads from elsewhere, a test. Make the handler
    /// with [`registry::typed`] (a typed async function) or
    /// [`registry::handler`] (the raw keyword arguments).
    pub fn register_handler(
        &mut self,
        name: &str,
        handler: framex_registry::Handler,
    ) -> Result<(), BuildError> {
        Ok(self.registry.register(name, handler)?)
    }

    /// Adds the application's HTTP routes (the counterpart of FrameX's
    /// `@on_request`): an aide `ApiRouter`, whose `api_route`s are described
    /// with their parameters and schemas in the instance's OpenAPI document
    /// (and so forwarded by other FrameX instances, Rust or Python), or a
    /// plain `axum::Router`. They are served beside FrameX's endpoints,
    /// behind the same `[auth] rules` and in-flight limit.
    ///
    /// A route whose path and method another route already serves (one of
    /// FrameX's, or one added before) is a [`BuildError::Routes`].
    ///
    /// ```
    /// use framex::aide::axum::{ApiRouter, routing::get};
    /// use axum::{Json, extract::Query};
    ///
    /// #[derive(serde::Deserialize, schemars::JsonSchema)]
    /// struct Job { job_id: String }
    ///
    /// async fn report(Query(job): Query<Job>) -> Json<String> {
    ///     Json(format!("report of {}", job.job_id))
    /// }
    ///
    /// let mut app = framex::App::from_config(framex::config::Config::default()).unwrap();
    /// app.routes(ApiRouter::new().api_route("/api/v1/report", get(report))).unwrap();
    /// assert!(app.routes(axum::Router::new().route("/health", axum::routing::get(|| async { "" }))).is_err());
    /// ```
    pub fn routes(&mut self, routes: impl Into<framex_server::Routes>) -> Result<(), BuildError> {
        self.routes = self.routes.clone().try_merge(routes)?;
        Ok(())
    }

    /// Calls `name` where configuration says it runs; `kwargs` is anything
    /// that serializes to a JSON object (a struct, a map, `json!({…})`).
    pub async fn call(&self, name: &str, kwargs: impl Serialize) -> Result<Value, Error> {
        call_on(&self.registry, name, kwargs).await
    }

    /// [`App::call`], with the result read into an `R`.
    pub async fn call_as<R: DeserializeOwned>(
        &self,
        name: &str,
        kwargs: impl Serialize,
    ) -> Result<R, Error> {
        call_on_as(&self.registry, name, kwargs).await
    }

    /// Makes this application the process's FrameX runtime, the one that
    /// [`on_proxy`] functions and [`call`] follow, until the guard is dropped.
    ///
    /// [`App::bind`] does this itself; a process that only calls out (it serves
    /// nothing) installs its app with this. Register functions first: the
    /// runtime holds the registry as it is now.
    pub fn install(&self) -> Result<Installed, BuildError> {
        runtime::install(self.registry.clone(), None)
    }

    /// Makes [`App::bind`] serve without installing the app as the process's
    /// FrameX runtime: for several instances in one process, as tests run them.
    /// Its routes and its proxy endpoint still use its own registry.
    pub fn isolated(mut self) -> App {
        self.install_on_bind = false;
        self
    }

    /// Binds the configured address; serve with [`Bound::serve`].
    pub async fn bind(self, instance_name: &str) -> Result<Bound, BuildError> {
        self.bind_on(None, instance_name).await
    }

    /// Serves on `listener`, which the caller bound, instead of the
    /// configured `server.host` and `server.port`: bind port 0 once and keep
    /// it, or take a socket handed over by a supervisor. Serve with
    /// [`Bound::serve`].
    pub async fn bind_listener(
        self,
        listener: tokio::net::TcpListener,
        instance_name: &str,
    ) -> Result<Bound, BuildError> {
        self.bind_on(Some(listener), instance_name).await
    }

    /// The reloader of the instance this app becomes: its registry, and the
    /// file its configuration came from.
    fn reloader(&self) -> Reloader {
        Reloader {
            registry: self.registry.clone(),
            source: self.config.source().map(Arc::from),
        }
    }

    async fn bind_on(
        self,
        listener: Option<tokio::net::TcpListener>,
        instance_name: &str,
    ) -> Result<Bound, BuildError> {
        let settings = server_settings(&self.config, instance_name)?;
        let (reloader, install_on_bind) = (self.reloader(), self.install_on_bind);
        let registry = self.registry.clone();
        let server = match listener {
            Some(listener) => {
                framex_server::Server::on_listener(listener, settings, self.registry, self.routes)?
            }
            None => framex_server::Server::bind(settings, self.registry, self.routes).await?,
        };
        let installed = install_if(install_on_bind, registry, server.api())?;
        Ok(Bound {
            server,
            reloader,
            signals: None,
            _installed: installed,
        })
    }

    /// FrameX as part of an application's own axum service, which serves it
    /// with `axum::serve` on its own listener: the returned [`Embedded`]
    /// holds the instance's routes ([`Embedded::router`], to merge into the
    /// application's router), loads the upstreams' documents for forwarded
    /// routes while it lives, and (unless the app is
    /// [`isolated`](App::isolated)) is the process's FrameX runtime. Call it
    /// within a Tokio runtime.
    ///
    /// The configuration's `server.host`, `server.port` and `server.tls` are
    /// the application's to use; everything else applies as when FrameX
    /// serves itself.
    ///
    /// ```
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// let app = framex::App::from_config(framex::config::Config::default())?;
    /// let framex = app.embed("reports")?;
    /// let router = axum::Router::new()
    ///     .route("/mine", axum::routing::get(|| async { "mine" }))
    ///     .merge(framex.router());
    /// # let _ = router;
    /// // axum::serve(listener, router).with_graceful_shutdown(framex.signals()).await?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// # }).unwrap();
    /// ```
    pub fn embed(self, instance_name: &str) -> Result<Embedded, BuildError> {
        let settings = server_settings(&self.config, instance_name)?;
        let reloader = Reloader {
            registry: self.registry.clone(),
            source: self.config.source().map(Arc::from),
        };
        let instance = framex_server::Instance::new(settings, self.registry.clone(), self.routes)?;
        let installed = match self.install_on_bind {
            true => Some(runtime::install(self.registry, Some(instance.api()))?),
            false => None,
        };
        Ok(Embedded {
            started: instance.start(),
            instance,
            reloader,
            _installed: installed,
        })
    }
}

/// FrameX inside an application's axum service (see [`App::embed`]): its
/// routes, its reloading and its signals. Dropping it stops loading the
/// upstreams' documents and uninstalls the runtime.
pub struct Embedded {
    instance: framex_server::Instance,
    reloader: Reloader,
    started: framex_server::Started,
    _installed: Option<Installed>,
}

impl std::fmt::Debug for Embedded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Embedded")
            .field("instance", &self.instance)
            .field("started", &self.started)
            .finish_non_exhaustive()
    }
}

impl Embedded {
    /// FrameX's routes (its endpoints, the app's routes and the forwarded
    /// ones, each behind the instance's stack: `[auth] rules`, in-flight
    /// limit, tracing), to merge into the application's router. It has a
    /// fallback (forwarded routes, then FrameX's 404), so the application's
    /// router must not set one. Put [`framex_server::normalize_path_layer`]
    /// in front of the whole application to route encoded paths, and the
    /// path parameters Python FrameX sends in the query, as FrameX does.
    pub fn router(&self) -> axum::Router {
        self.instance.router()
    }

    /// A handle for calling the instance's routes in process.
    pub fn api(&self) -> framex_server::Api {
        self.instance.api()
    }

    /// A handle that applies a new configuration's `proxy_functions` while
    /// the application serves.
    pub fn reloader(&self) -> Reloader {
        self.reloader.clone()
    }

    /// Completes at the first SIGTERM or Ctrl-C, and until then reloads the
    /// configuration on every SIGHUP (as [`Bound::serve`] does): the future
    /// to give `axum::serve(..).with_graceful_shutdown`, which then lets
    /// requests in flight finish (for as long as they take: bound it with a
    /// timeout of the application's own if it must). The handlers are
    /// installed when this is called, so call it before announcing that the
    /// service is ready; a signal that arrives before the future is polled
    /// waits for it.
    pub fn signals(&self) -> impl Future<Output = ()> + Send + 'static {
        Signals::install().until_stopped(self.reloader.clone())
    }
}

/// Installs `registry` and `api` as the process's FrameX runtime when
/// `install` says so (the app is not [`isolated`](App::isolated)).
fn install_if(
    install: bool,
    registry: framex_registry::Registry,
    api: framex_server::Api,
) -> Result<Option<Installed>, BuildError> {
    match install {
        true => Ok(Some(runtime::install(registry, Some(api))?)),
        false => Ok(None),
    }
}

/// Applies a new configuration's `proxy_functions` (and the key sent with
/// them) to a serving instance, without a restart. Cloning shares the instance.
///
/// Calls in flight finish where they started; calls that start afterwards,
/// `#[on_proxy]` functions included, follow the new configuration. Other
/// settings (address, limits, auth rules, upstream routes) take effect at the
/// next start.
#[derive(Clone)]
pub struct Reloader {
    registry: framex_registry::Registry,
    /// The file the instance's configuration was loaded from, if any.
    source: Option<Arc<std::path::Path>>,
}

impl std::fmt::Debug for Reloader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reloader").finish_non_exhaustive()
    }
}

/// A function that a reload moved: its name, where it ran, where it runs now
/// (`local` or a URL).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Moved {
    /// The function.
    pub name: String,
    /// Where it ran before.
    pub from: String,
    /// Where it runs now.
    pub to: String,
}

impl Reloader {
    /// Applies `config`, already validated, and returns the functions that
    /// moved, by name.
    pub fn reload(&self, config: &framex_config::Config) -> Result<Vec<Moved>, BuildError> {
        let routing = routing_of(config);
        let before = self.registry.set_routing(routing.clone());
        let mut names: std::collections::BTreeSet<&str> =
            before.iter().map(|(name, _)| name).collect();
        names.extend(routing.iter().map(|(name, _)| name));
        let place = |routing: &framex_registry::Routing, name: &str| {
            routing.remote(name).map_or_else(
                || framex_registry::Location::Local.to_string(),
                |remote| remote.url().to_owned(),
            )
        };
        let moved: Vec<Moved> = names
            .into_iter()
            .map(|name| Moved {
                name: name.to_owned(),
                from: place(&before, name),
                to: place(&routing, name),
            })
            .filter(|moved| moved.from != moved.to)
            .collect();
        // `#[on_proxy]` call sites look where their function runs again.
        runtime::routing_changed();
        Ok(moved)
    }

    /// Loads the configuration again from where the instance's came from when
    /// it started (its file, or `./config.toml`, then `FRAMEX__…` variables)
    /// and applies it. When it does not load, nothing changes.
    pub fn reload_from_source(&self) -> Result<Vec<Moved>, BuildError> {
        self.reload(&framex_config::Config::load(self.source.as_deref())?)
    }
}

/// Reloads the configuration on every SIGHUP, logging what moved or why
/// nothing did.
#[cfg(unix)]
async fn reload_on_sighup(mut hangups: tokio::signal::unix::Signal, reloader: Reloader) {
    while hangups.recv().await.is_some() {
        match reloader.reload_from_source() {
            Ok(moved) => {
                for moved in &moved {
                    tracing::info!(
                        function = moved.name,
                        from = moved.from,
                        to = moved.to,
                        "function moved"
                    );
                }
                tracing::info!(moved = moved.len(), "configuration reloaded");
            }
            Err(BuildError::Config(errors)) => {
                for diagnostic in errors.diagnostics() {
                    tracing::error!(%diagnostic, "configuration not reloaded");
                }
            }
            Err(error) => tracing::error!(%error, "configuration not reloaded"),
        }
    }
}

/// The server's settings from `config`, for an instance named `instance_name`.
fn server_settings(
    config: &framex_config::Config,
    instance_name: &str,
) -> Result<framex_server::Settings, BuildError> {
    let server = config.server();
    let mut settings = framex_server::Settings::default()
        .with_address(server.host(), server.port())
        .with_auth(config.auth().clone())
        .with_instance_name(instance_name)
        .with_upstreams(upstreams(config)?)
        .with_forward_timeout(config.proxy().timeout())
        .with_max_body_bytes(saturating_usize(server.max_body_bytes()))
        .with_max_inflated_bytes(saturating_usize(server.max_inflated_bytes()))
        .with_header_read_timeout(server.header_read_timeout())
        .with_body_read_timeout(server.body_read_timeout())
        .with_max_in_flight(saturating_usize(server.max_in_flight()))
        .with_max_argument_memory(saturating_usize(server.max_argument_memory()))
        .with_shutdown_grace(server.shutdown_grace());
    if let Some(level) = server.compression().and_then(Compression::level) {
        settings = settings.with_compression(level);
    }
    if let Some((cert, key)) = server.tls() {
        let certificates =
            framex_transport::tls::read_pem_certificates(&config.resolve_path(cert))?;
        let key = framex_transport::tls::read_pem_private_key(&config.resolve_path(key))?;
        settings = settings.with_tls(framex_transport::tls::server_config(certificates, key)?);
    }
    Ok(settings)
}

/// Where each listed function runs, and the key sent there, from `config`.
fn routing_of(config: &framex_config::Config) -> framex_registry::Routing {
    let client_auth = config.proxy().auth();
    let key = client_auth
        .key_for(framex_transport::wire::PROXY_FUNCTION_PATH)
        .map(|key| key.expose().to_owned());
    let mut routing = framex_registry::Routing::default();
    let proxy = config.proxy();
    for (name, url) in proxy.functions() {
        let mut remote = framex_registry::Remote::new(url, key.clone())
            .with_timeout(proxy.function_timeout(name))
            .with_idempotent(proxy.is_idempotent(name));
        let level = proxy
            .upstream(url)
            .and_then(|upstream| upstream.compression());
        if let Some(level) = level.and_then(Compression::level) {
            remote = remote.with_compression(level);
        }
        routing = routing.route(name, remote);
    }
    routing
}

/// Calls `name` where the process's FrameX runtime says it runs; `kwargs` is
/// anything that serializes to a JSON object (a struct, a map, `json!({…})`),
/// and the result comes back as it arrived ([`Value`]).
///
/// With no runtime installed, an [`on_proxy`] function of that name runs here, as
/// calling it directly would.
pub fn call<A: Serialize>(
    name: &str,
    kwargs: A,
) -> impl Future<Output = Result<Value, Error>> + Send + '_ {
    // Written before the future starts: the future holds bytes, not `A`.
    let kwargs = kwargs_of(name, &kwargs);
    async move { result_as(name, &call_installed(name, kwargs?).await?) }
}

/// Like [`call`], with the result read into an `R` (a Python FrameX
/// `dynamic_obj` as the object it wraps).
pub fn call_as<A: Serialize, R: DeserializeOwned>(
    name: &str,
    kwargs: A,
) -> impl Future<Output = Result<R, Error>> + Send + '_ {
    let kwargs = kwargs_of(name, &kwargs);
    async move { result_as(name, &call_installed(name, kwargs?).await?) }
}

/// Runs `name` where the installed runtime says, else as its `#[on_proxy]`
/// function here.
async fn call_installed(name: &str, kwargs: Kwargs) -> Result<Output, Error> {
    if let Some(registry) = runtime::installed_registry() {
        return Ok(registry.call(name, kwargs).await?);
    }
    let Some(definition) = runtime::definition_named(name) else {
        return Err(framex_registry::CallError::NotRegistered(name.to_owned()).into());
    };
    let result = (definition.handler())(kwargs).await;
    Ok(result.map_err(|error| error.for_function(name))?)
}

/// Calls a route of the instance this process serves, the counterpart of
/// FrameX's `call_plugin_api("/api/v1/...")`: the application's own route runs in
/// place, and a route forwarded from an upstream goes to that upstream.
///
/// A missing route answers 404 in the FrameX envelope, as over HTTP; it is an
/// [`Error::NotServing`] when no bound app is installed in this process.
pub async fn call_api(request: http::Request<Bytes>) -> Result<http::Response<Bytes>, Error> {
    let api = runtime::installed_api().ok_or(Error::NotServing)?;
    Ok(api.call(request).await)
}

/// Calls `name` through `registry`, where its routing says; `kwargs` is
/// anything that serializes to a JSON object. Application routes use this
/// with the registry they are given.
pub async fn call_on(
    registry: &framex_registry::Registry,
    name: &str,
    kwargs: impl Serialize,
) -> Result<Value, Error> {
    call_on_as(registry, name, kwargs).await
}

/// [`call_on`], with the result read into an `R`.
pub async fn call_on_as<R: DeserializeOwned>(
    registry: &framex_registry::Registry,
    name: &str,
    kwargs: impl Serialize,
) -> Result<R, Error> {
    let kwargs = kwargs_of(name, &kwargs)?;
    result_as(name, &registry.call(name, kwargs).await?)
}

/// The FrameX names of every [`on_proxy`] function compiled into this program,
/// sorted.
pub fn proxy_function_names() -> Vec<&'static str> {
    let mut names: Vec<&'static str> = runtime::definitions().map(|d| d.name()).collect();
    names.sort_unstable();
    names
}

/// The keyword arguments of a call of `name`, written from `kwargs`.
fn kwargs_of<A: Serialize + ?Sized>(name: &str, kwargs: &A) -> Result<Kwargs, Error> {
    Kwargs::new(kwargs).map_err(|error| match error {
        framex_registry::KwargsError::NotAnObject { found } => Error::Arguments(format!(
            "keyword arguments of `{name}` must be a JSON object, not {found}"
        )),
        other => Error::Arguments(format!("keyword arguments of `{name}`: {other}")),
    })
}

/// The result of `name` read into an `R`.
fn result_as<R: DeserializeOwned>(name: &str, output: &Output) -> Result<R, Error> {
    output.parse().map_err(|e| {
        Error::Arguments(format!(
            "the result of `{name}` does not have the expected type: {e}"
        ))
    })
}

/// An application bound to its address. Unless the app was
/// [`isolated`](App::isolated), it is the process's FrameX runtime until this is
/// dropped or has finished serving.
pub struct Bound {
    server: framex_server::Server,
    reloader: Reloader,
    signals: Option<Signals>,
    _installed: Option<Installed>,
}

/// The signals [`Bound::serve`] acts on, listened for from the moment they
/// are made: a signal that arrives before serving starts waits for it.
#[cfg(unix)]
struct Signals {
    /// `None` when the handler could not be installed (logged).
    hangup: Option<tokio::signal::unix::Signal>,
    terminate: Option<tokio::signal::unix::Signal>,
    interrupt: Option<tokio::signal::unix::Signal>,
}

#[cfg(unix)]
impl Signals {
    fn install() -> Signals {
        use tokio::signal::unix::{SignalKind, signal};
        let listen = |kind: SignalKind, name: &str, without: &str| match signal(kind) {
            Ok(signal) => Some(signal),
            Err(error) => {
                tracing::warn!(%error, "cannot listen for {name}: {without}");
                None
            }
        };
        Signals {
            hangup: listen(
                SignalKind::hangup(),
                "SIGHUP",
                "the configuration reloads only at restart",
            ),
            terminate: listen(
                SignalKind::terminate(),
                "SIGTERM",
                "it stops without letting calls finish",
            ),
            interrupt: listen(
                SignalKind::interrupt(),
                "SIGINT",
                "Ctrl-C stops without letting calls finish",
            ),
        }
    }

    /// Completes at the first SIGTERM or SIGINT, reloading the configuration
    /// with `reloader` on every SIGHUP until then.
    async fn until_stopped(self, reloader: Reloader) {
        let reloading = self
            .hangup
            .map(|hangups| tokio::spawn(reload_on_sighup(hangups, reloader)));
        Signals::shutdown(self.terminate, self.interrupt).await;
        if let Some(reloading) = reloading {
            reloading.abort();
        }
    }

    /// Completes at the first SIGTERM or SIGINT.
    async fn shutdown(
        terminate: Option<tokio::signal::unix::Signal>,
        interrupt: Option<tokio::signal::unix::Signal>,
    ) {
        async fn received(signal: Option<tokio::signal::unix::Signal>) {
            match signal {
                Some(mut signal) => {
                    signal.recv().await;
                }
                None => std::future::pending().await,
            }
        }
        tokio::select! {
            () = received(terminate) => {}
            () = received(interrupt) => {}
        }
    }
}

#[cfg(not(unix))]
struct Signals;

#[cfg(not(unix))]
impl Signals {
    fn install() -> Signals {
        Signals
    }

    /// Completes at Ctrl-C; there is no SIGHUP to reload on.
    async fn until_stopped(self, _reloader: Reloader) {
        let _ = tokio::signal::ctrl_c().await;
    }
}

impl Bound {
    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.server.local_addr()
    }

    /// A handle for calling this instance's routes in process, as [`call_api`]
    /// does; for an [`isolated`](App::isolated) app too.
    pub fn api(&self) -> framex_server::Api {
        self.server.api()
    }

    /// A handle that applies a new configuration's `proxy_functions` to this
    /// instance while it serves.
    pub fn reloader(&self) -> Reloader {
        self.reloader.clone()
    }

    /// Installs the handlers for the signals [`Bound::serve`] acts on (SIGHUP,
    /// SIGTERM, Ctrl-C) now rather than when serving starts, so that a
    /// readiness message printed after this never invites a signal that would
    /// still find the default action (ending the process) in place. A signal
    /// received in between is acted on once serving starts. `serve` calls it
    /// when it has not been; [`Bound::serve_until`] needs none of them.
    pub fn install_signal_handlers(&mut self) {
        if self.signals.is_none() {
            self.signals = Some(Signals::install());
        }
    }

    /// Serves until Ctrl-C or SIGTERM, then lets calls in flight finish. On
    /// SIGHUP it loads its configuration again (the same file and `FRAMEX__…`
    /// variables) and applies it with [`Reloader::reload`]; an invalid one is
    /// refused, its errors logged, and the running one kept.
    pub async fn serve(mut self) {
        let signals = self.signals.take().unwrap_or_else(Signals::install);
        self.server
            .serve(signals.until_stopped(self.reloader.clone()))
            .await;
    }

    /// Serves until `shutdown` completes.
    pub async fn serve_until(self, shutdown: impl Future<Output = ()>) {
        self.server.serve(shutdown).await;
    }
}

/// What each upstream's rules make of the routes it publishes, as `cargo xtask
/// routes` prints it: every table-form `proxy_urls` entry's document is fetched
/// (with the client-side key for its path) and each route decided.
pub async fn resolve_routes(
    config: &framex_config::Config,
) -> Result<Vec<framex_server::forward::Resolution>, BuildError> {
    let (client, timeout) = (client_of(config)?, config.proxy().timeout());
    let mut resolutions = Vec::new();
    for upstream in upstreams(config)? {
        resolutions.push(framex_server::forward::resolve(&client, &upstream, timeout).await);
    }
    Ok(resolutions)
}

/// The client for calls and forwarded routes: `plugins.proxy.timeout`, the
/// system's CAs plus `plugins.proxy.ca_file`'s, and how upstreams' endpoints
/// are found and connected to.
fn client_of(config: &framex_config::Config) -> Result<framex_transport::Client, BuildError> {
    let proxy = config.proxy();
    let (floor, ceiling) = proxy.dns_ttl_bounds();
    let mut settings = framex_transport::ClientSettings::default()
        .with_timeout(proxy.timeout())
        .with_root_certificates(ca_certificates(config)?)
        .with_nameservers(proxy.nameservers().iter().copied())
        .with_dns_refresh(floor, ceiling);
    if let Some(connect_timeout) = proxy.connect_timeout() {
        settings = settings.with_connect_timeout(connect_timeout);
    }
    for upstream in proxy.upstreams() {
        let mut own = framex_transport::UpstreamSettings::default()
            .with_endpoints(upstream.endpoints().iter().cloned())
            .with_http2(upstream.http2());
        if let Some(timeout) = upstream.timeout() {
            own = own.with_timeout(timeout);
        }
        settings = settings.with_upstream(upstream.url(), own);
    }
    Ok(framex_transport::Client::try_new(settings)?)
}

/// The certificates of `plugins.proxy.ca_file`, if set.
fn ca_certificates(
    config: &framex_config::Config,
) -> Result<Vec<framex_transport::CertificateDer<'static>>, BuildError> {
    match config.proxy().ca_file() {
        Some(file) => Ok(framex_transport::tls::read_pem_certificates(
            &config.resolve_path(file),
        )?),
        None => Ok(Vec::new()),
    }
}

fn saturating_usize(value: u64) -> usize {
    usize::try_from(value).unwrap_or(usize::MAX)
}

/// The upstreams whose routes this instance forwards: the table-form
/// `proxy_urls` entries, when the proxy plugin is on.
fn upstreams(config: &framex_config::Config) -> Result<Vec<framex_server::Upstream>, BuildError> {
    if !config.proxy_enabled() {
        return Ok(Vec::new());
    }
    let proxy = config.proxy();
    let keys = proxy.auth().clone();
    Ok(proxy
        .upstreams()
        .iter()
        .filter_map(|upstream| {
            let routes = upstream.routes()?;
            Some(
                framex_server::Upstream::new(upstream.url(), routes.rules().clone())
                    .with_docs_path(routes.docs_path())
                    .with_keys(keys.clone())
                    .with_stream_paths(proxy.force_stream_apis().iter().cloned()),
            )
        })
        .collect())
}

#[cfg(test)]
mod tests {
    /// The configuration crate states paths and limits of the server and
    /// the transport without depending on either (it has no runtime): its
    /// copies must not drift, or it would check names against another limit
    /// and rules would decide on a path nothing serves.
    #[test]
    fn the_configuration_states_the_paths_and_limits_of_the_runtime() {
        assert_eq!(
            framex_config::PROXY_FUNCTION_PATH,
            framex_transport::wire::PROXY_FUNCTION_PATH
        );
        assert_eq!(
            framex_config::DEFAULT_DOCS_PATH,
            framex_server::OPENAPI_PATH
        );
        assert_eq!(
            framex_config::MAX_FUNCTION_NAME_BYTES,
            framex_transport::wire::MAX_FUNCTION_NAME_BYTES
        );
        assert_eq!(
            usize::try_from(framex_config::DEFAULT_MAX_INFLATED_BYTES).unwrap(),
            framex_transport::wire::DEFAULT_MAX_INFLATED_BYTES
        );
    }

    /// A server built without configuration (`Settings::default()`) has the
    /// configuration's defaults, every one of them; and so has a client.
    #[test]
    fn the_server_and_client_defaults_are_the_configuration_defaults() {
        let config = framex_config::Config::default();
        let settings = super::server_settings(&config, "framex").unwrap();
        assert_eq!(
            format!("{settings:?}"),
            format!("{:?}", framex_server::Settings::default())
        );
        assert_eq!(
            framex_transport::ClientSettings::default().timeout(),
            config.proxy().timeout()
        );
    }
}
