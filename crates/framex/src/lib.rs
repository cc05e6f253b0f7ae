//! FrameX for Rust: the facade that users depend on.
//!
//! It re-exports the workspace crates and composes them from a configuration:
//! [`App::from_config`] maps `Config` onto the auth rules, the registry's routing,
//! the transport client and the server settings.
//!
//! ```
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! use framex::App;
//! use serde_json::json;
//!
//! let mut app = App::from_config(framex::config::Config::default())?;
//! app.register_fn("demo.greet", |args: serde_json::Value| async move {
//!     Ok::<_, String>(format!("hello {}", args["name"].as_str().unwrap_or("?")))
//! })?;
//! // Not listed in `proxy_functions`, so it runs here.
//! assert_eq!(app.call("demo.greet", json!({"name": "ada"})).await?, json!("hello ada"));
//! # Ok::<(), framex::Error>(())
//! # }).unwrap();
//! ```

use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

pub use framex_auth as auth;
pub use framex_config as config;
pub use framex_filter as filter;
pub use framex_registry as registry;
pub use framex_server as server;
pub use framex_transport as transport;

/// What can go wrong in the facade.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The configuration is invalid.
    #[error(transparent)]
    Config(#[from] framex_config::Error),
    /// An auth rule could not be built.
    #[error("invalid auth rule")]
    Auth(#[from] framex_auth::Error),
    /// A function could not be registered.
    #[error(transparent)]
    Register(#[from] framex_registry::RegisterError),
    /// A call failed.
    #[error(transparent)]
    Call(#[from] framex_registry::CallError),
    /// Keyword arguments are not a JSON object, or a result has the wrong shape.
    #[error("{0}")]
    Arguments(String),
    /// The server could not start.
    #[error(transparent)]
    Server(#[from] framex_server::Error),
}

/// A FrameX application: its configuration, its functions and its routes.
pub struct App {
    config: framex_config::Config,
    registry: framex_registry::Registry,
    routes: Vec<(http::Method, String, AppRoute)>,
}

/// An application route before it is bound to the registry it calls through.
type AppRoute = Arc<
    dyn Fn(
            http::Request<Bytes>,
            framex_registry::Registry,
        ) -> framex_registry::BoxFuture<http::Response<Bytes>>
        + Send
        + Sync,
>;

impl App {
    /// Loads the configuration (`path`, else `./config.toml`, then `FRAMEX__…`).
    pub fn load(path: Option<&Path>) -> Result<App, Error> {
        App::from_config(framex_config::Config::load(path)?)
    }

    /// Composes an application from a validated configuration.
    pub fn from_config(config: framex_config::Config) -> Result<App, Error> {
        let client_auth = auth_rules(config.proxy().auth())?;
        let key = client_auth
            .key_for(framex_transport::wire::PROXY_FUNCTION_PATH)
            .map(|key| key.expose().to_owned());
        let mut routing = framex_registry::Routing::default();
        for (name, url) in config.proxy().functions() {
            routing = routing.route(name, framex_registry::Remote::new(url, key.clone()));
        }
        let client = framex_transport::Client::new(
            framex_transport::ClientSettings::default().with_timeout(config.proxy().timeout()),
        );
        Ok(App {
            registry: framex_registry::Registry::new(routing, client),
            config,
            routes: Vec::new(),
        })
    }

    /// The configuration.
    pub fn config(&self) -> &framex_config::Config {
        &self.config
    }

    /// The registry.
    pub fn registry(&self) -> &framex_registry::Registry {
        &self.registry
    }

    /// Registers a handler working on raw keyword arguments.
    pub fn register(&mut self, name: &str, handler: framex_registry::Handler) -> Result<(), Error> {
        Ok(self.registry.register(name, handler)?)
    }

    /// Registers a typed function: the keyword-argument object is deserialized into
    /// `A` (a 422 naming the problem when it does not fit), the result serialized.
    pub fn register_fn<A, R, E, F, Fut>(&mut self, name: &str, f: F) -> Result<(), Error>
    where
        A: DeserializeOwned + Send + 'static,
        R: Serialize + 'static,
        E: std::fmt::Display + 'static,
        F: Fn(A) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<R, E>> + Send + 'static,
    {
        let f = Arc::new(f);
        let handler = framex_registry::handler(move |kwargs| {
            let f = f.clone();
            async move {
                let args: A = serde_json::from_value(Value::Object(kwargs))
                    .map_err(|e| framex_registry::HandlerError::Arguments(e.to_string()))?;
                match f(args).await {
                    Ok(result) => serde_json::to_value(result).map_err(|e| {
                        framex_registry::HandlerError::Failed(format!("result is not JSON: {e}"))
                    }),
                    Err(error) => Err(framex_registry::HandlerError::Failed(error.to_string())),
                }
            }
        });
        self.register(name, handler)
    }

    /// Adds an HTTP route of the application (the counterpart of FrameX's
    /// `@on_request`).
    pub fn route<F, Fut>(&mut self, method: http::Method, path: &str, f: F)
    where
        F: Fn(http::Request<Bytes>, framex_registry::Registry) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = http::Response<Bytes>> + Send + 'static,
    {
        // The registry is handed over at `bind`, so functions registered after this
        // route are still reachable from it.
        let route: AppRoute = Arc::new(move |request, registry| Box::pin(f(request, registry)));
        self.routes.push((method, path.to_owned(), route));
    }

    /// Calls `name` where configuration says it runs; `kwargs` must be a JSON object.
    pub async fn call(&self, name: &str, kwargs: Value) -> Result<Value, Error> {
        call(&self.registry, name, kwargs).await
    }

    /// Calls `name` with typed arguments and result: `args` must serialize to a JSON
    /// object (a struct or a map), and the result must deserialize into `R`.
    pub async fn call_as<A, R>(&self, name: &str, args: &A) -> Result<R, Error>
    where
        A: Serialize + ?Sized,
        R: DeserializeOwned,
    {
        let kwargs = serde_json::to_value(args)
            .map_err(|e| Error::Arguments(format!("arguments of `{name}` are not JSON: {e}")))?;
        let result = self.call(name, kwargs).await?;
        serde_json::from_value(result).map_err(|e| {
            Error::Arguments(format!(
                "the result of `{name}` does not have the expected type: {e}"
            ))
        })
    }

    /// Binds the configured address; serve with [`Bound::serve`].
    pub async fn bind(self, instance_name: &str) -> Result<Bound, Error> {
        let server = self.config.server();
        let settings = framex_server::Settings::default()
            .with_address(server.host(), server.port())
            .with_auth(auth_rules(self.config.auth())?)
            .with_instance_name(instance_name);
        let routes = self
            .routes
            .into_iter()
            .map(|(method, path, route)| {
                let registry = self.registry.clone();
                let handler: framex_server::RouteHandler =
                    Arc::new(move |request| route(request, registry.clone()));
                (method, path, handler)
            })
            .collect();
        let server = framex_server::Server::bind(settings, self.registry, routes).await?;
        Ok(Bound { server })
    }
}

/// Calls `name` through `registry`; `kwargs` must be a JSON object.
pub async fn call(
    registry: &framex_registry::Registry,
    name: &str,
    kwargs: Value,
) -> Result<Value, Error> {
    let Value::Object(kwargs) = kwargs else {
        return Err(Error::Arguments(format!(
            "keyword arguments of `{name}` must be a JSON object, not {}",
            json_type(&kwargs)
        )));
    };
    Ok(registry.call(name, kwargs).await?)
}

fn json_type(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// An application bound to its address.
pub struct Bound {
    server: framex_server::Server,
}

impl Bound {
    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.server.local_addr()
    }

    /// Serves until Ctrl-C or SIGTERM, then lets calls in flight finish.
    pub async fn serve(self) {
        self.server.serve(shutdown_signal()).await;
    }

    /// Serves until `shutdown` completes.
    pub async fn serve_until(self, shutdown: impl Future<Output = ()>) {
        self.server.serve(shutdown).await;
    }
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = terminate => {}
    }
}

fn auth_rules(rules: &framex_config::AuthRules) -> Result<framex_auth::Rules, Error> {
    Ok(framex_auth::Rules::new(
        rules
            .rules()
            .iter()
            .map(|rule| (rule.path(), rule.keys().to_vec())),
    )?)
}
