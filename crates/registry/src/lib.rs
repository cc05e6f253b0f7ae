//! The FrameX function registry: proxy-function names mapped to local handlers,
//! and the routing that says which names run on a remote instance instead.
//!
//! Configuration decides: a name listed for a remote URL runs there even when it
//! is also registered here; any other registered name runs here.
//!
//! A handler takes the call's keyword arguments ([`Kwargs`], their JSON text)
//! and gives its result ([`Output`], JSON text too): a typed function reads its
//! parameters straight from the bytes that arrived and writes its result into
//! the bytes that leave.
//!
//! ```
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! use framex_registry::{Kwargs, Registry, Routing, handler};
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
//! let sum = registry.call("demo.add", Kwargs::new(&json!({"a": 2, "b": 3}))?).await?;
//! assert_eq!(sum.parse::<i64>()?, 5);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! # }).unwrap();
//! ```

use std::borrow::Cow;
use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use arc_swap::ArcSwap;

use framex_transport::wire::CallBody;
use framex_transport::{CallRequest, Client, Upstream, Value};
use serde::Serialize;
use tracing::Instrument as _;

/// Maps by function name: foldhash rather than SipHash, since only names
/// registered or configured here become keys, so a caller's name makes a
/// lookup no slower, and every call looks its name up.
type ByName<V> = HashMap<String, V, foldhash::fast::RandomState>;

mod endpoint_metrics;
mod json;
pub mod metrics;
#[cfg(test)]
mod tests;

pub use json::{Kwargs, KwargsError, KwargsReader, Output, required};
pub use metrics::{Metrics, Outcome};
/// The metrics crate of [`Metrics::registry`], for the application's own metrics.
pub use prometheus_client;

/// A boxed, sendable future.
pub type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

/// A local handler: keyword arguments in, a JSON result or a failure out.
pub type Handler = Arc<dyn Fn(Kwargs) -> BoxFuture<Result<Output, HandlerError>> + Send + Sync>;

/// Wraps an async closure as a [`Handler`]: its result, any serde value, is
/// written as JSON.
pub fn handler<F, Fut, T>(f: F) -> Handler
where
    F: Fn(Kwargs) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<T, HandlerError>> + Send + 'static,
    T: Serialize,
{
    let f = Arc::new(f);
    Arc::new(move |kwargs| {
        let result = f(kwargs);
        Box::pin(async move { Output::new(&result.await?) })
    })
}

/// Wraps a typed async function as a [`Handler`]: the keyword-argument
/// object is read into `A` (a refusal names what does not fit, which a
/// caller gets as a 422), the result written as JSON, and a failure's
/// `Display` is the message the caller gets.
///
/// ```
/// #[derive(serde::Deserialize)]
/// struct Add { a: i64, b: i64 }
///
/// let handler = framex_registry::typed(|Add { a, b }: Add| async move {
///     Ok::<_, std::convert::Infallible>(a + b)
/// });
/// # let _ = handler;
/// ```
pub fn typed<A, R, E, F, Fut>(f: F) -> Handler
where
    A: serde::de::DeserializeOwned + Send + 'static,
    R: Serialize + 'static,
    E: std::fmt::Display + 'static,
    F: Fn(A) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<R, E>> + Send + 'static,
{
    let f = Arc::new(f);
    Arc::new(move |kwargs: Kwargs| {
        let f = f.clone();
        Box::pin(async move {
            let args: A = kwargs.parse()?;
            drop(kwargs);
            match f(args).await {
                Ok(result) => Output::new(&result),
                Err(error) => Err(HandlerError::Failed(error.to_string())),
            }
        })
    })
}

/// Why a local handler did not produce a result.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum HandlerError {
    /// The keyword arguments do not fit the function (missing, extra, wrong type).
    #[error("invalid arguments: {0}")]
    Arguments(String),
    /// The function ran and failed with this message.
    #[error("{0}")]
    Failed(String),
    /// Reading the keyword arguments would take more memory than the call
    /// may (see [`Kwargs::limit_memory`]).
    #[error("{0}")]
    TooLarge(String),
}

/// Where calls of a name go: the remote URL, the key to send there, and how
/// long a call may take. Its `Debug` output leaves the key out.
#[derive(Clone)]
pub struct Remote {
    url: String,
    key: Option<String>,
    timeout: Option<std::time::Duration>,
    idempotent: bool,
    compression: framex_transport::wire::Compression,
    /// The upstream of `url`, resolved when the routing is handed to a
    /// registry, so that a call looks nothing up by URL; `None` until then,
    /// and for a URL that is not one (its calls fail naming it).
    upstream: Option<Upstream>,
}

impl Remote {
    /// A remote instance at base URL `url`, called with `key` if given.
    pub fn new(url: impl Into<String>, key: Option<String>) -> Remote {
        Remote {
            url: url.into(),
            key,
            timeout: None,
            idempotent: false,
            compression: framex_transport::wire::Compression::DEFAULT,
            upstream: None,
        }
    }

    /// Arguments of more than 8 KiB of JSON are compressed as `compression`
    /// says; default
    /// [`Compression::DEFAULT`](framex_transport::wire::Compression::DEFAULT).
    pub fn with_compression(mut self, compression: framex_transport::wire::Compression) -> Remote {
        self.compression = compression;
        self
    }

    /// Calls of it may take `timeout`, instead of the upstream's or the
    /// client's.
    pub fn with_timeout(mut self, timeout: Option<std::time::Duration>) -> Remote {
        self.timeout = timeout;
        self
    }

    /// The function may run twice: a call whose connection failed after it
    /// was sent goes to another endpoint too.
    pub fn with_idempotent(mut self, idempotent: bool) -> Remote {
        self.idempotent = idempotent;
        self
    }

    /// The upstream's base URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The key sent there. Never log it.
    pub fn key(&self) -> Option<&str> {
        self.key.as_deref()
    }

    /// A call of `name` there with `body`.
    fn request<'a>(&'a self, name: &'a str, body: CallBody) -> CallRequest<'a> {
        match &self.upstream {
            Some(upstream) => CallRequest::to(upstream, name, body),
            // Looked up by URL, which fails naming it and the function.
            None => CallRequest::encoded(&self.url, name, body),
        }
        .key(self.key())
        .timeout(self.timeout)
        .idempotent(self.idempotent)
    }
}

impl PartialEq for Remote {
    fn eq(&self, other: &Remote) -> bool {
        self.url == other.url
            && self.key == other.key
            && self.timeout == other.timeout
            && self.idempotent == other.idempotent
    }
}

impl Eq for Remote {}

impl fmt::Debug for Remote {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Remote")
            .field("url", &self.url)
            .field("key", &self.key.as_ref().map(|_| "<redacted>"))
            .field("timeout", &self.timeout)
            .field("idempotent", &self.idempotent)
            .finish()
    }
}

/// Which function names run on which remote instance; every other name runs
/// locally.
#[derive(Debug, Clone, Default)]
pub struct Routing {
    remote: ByName<Arc<Remote>>,
}

impl Routing {
    /// Sends calls of `name` to `remote`.
    pub fn route(mut self, name: impl Into<String>, remote: Remote) -> Routing {
        self.remote.insert(name.into(), Arc::new(remote));
        self
    }

    /// Where `name` runs: `Some(remote)`, or `None` for here. Does not allocate.
    pub fn remote(&self, name: &str) -> Option<&Remote> {
        self.remote.get(name).map(|remote| &**remote)
    }

    /// Every remote route.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &Remote)> {
        self.remote
            .iter()
            .map(|(name, remote)| (name.as_str(), &**remote))
    }

    /// The routing with each remote's upstream resolved by `client`, every
    /// remote of one URL sharing one upstream, its endpoints and their
    /// connections.
    fn resolved(self, client: &Client) -> Routing {
        let remote = self
            .remote
            .into_iter()
            .map(|(name, mut remote)| {
                Arc::make_mut(&mut remote).upstream = client.upstream(&remote.url).ok();
                (name, remote)
            })
            .collect();
        Routing { remote }
    }
}

/// Why registering failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RegisterError {
    /// The name is already registered.
    #[error("proxy function `{0}` is already registered")]
    Duplicate(String),
    /// The name is empty.
    #[error("a proxy function name must not be empty")]
    EmptyName,
    /// The name is longer than `wire::MAX_FUNCTION_NAME_BYTES`.
    #[error(
        "a proxy function name of {0} bytes is longer than the {max} bytes FrameX accepts",
        max = framex_transport::wire::MAX_FUNCTION_NAME_BYTES
    )]
    NameTooLong(usize),
}

/// Why a call failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CallError {
    /// No local handler has the name and configuration lists no remote for it.
    #[error("proxy function `{0}` is not registered")]
    NotRegistered(String),
    /// The arguments do not fit the local function.
    #[error("invalid arguments for `{name}`: {detail}")]
    Arguments {
        /// The function.
        name: String,
        /// What does not fit.
        detail: String,
    },
    /// Reading the arguments would take more memory than the call may.
    #[error("the arguments of `{name}` are too large to read: {detail}")]
    TooLarge {
        /// The function.
        name: String,
        /// The bound and what passed it.
        detail: String,
    },
    /// The local function failed.
    #[error("`{name}` failed: {message}")]
    Failed {
        /// The function.
        name: String,
        /// Its message.
        message: String,
    },
    /// The call went to a remote instance and failed there or on the way.
    #[error(transparent)]
    Remote(#[from] framex_transport::Error),
    /// A call was handed on to relay, but configuration runs it here.
    #[error("proxy function `{0}` runs here and is not relayed")]
    NotRelayed(String),
}

/// Where a name runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    /// Here, by a registered handler.
    Local,
    /// On the remote instance at this URL.
    Remote(String),
    /// Nowhere: neither registered nor routed.
    Unknown,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Location::Local => f.write_str("local"),
            Location::Remote(url) => f.write_str(url),
            Location::Unknown => f.write_str("unknown"),
        }
    }
}

/// The registry: local handlers, remote routing and the client for remote calls.
///
/// Cloning is cheap (one reference count), so every request can hold its own
/// handle; registering after a clone leaves existing clones as they were. The
/// routing is shared by all clones: [`Registry::set_routing`] moves functions
/// for every one of them at once.
#[derive(Clone)]
pub struct Registry {
    inner: Arc<Inner>,
}

#[derive(Clone)]
struct Inner {
    handlers: ByName<Handler>,
    routing: Arc<ArcSwap<Routing>>,
    client: Client,
    metrics: Arc<Metrics>,
}

impl fmt::Debug for Registry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut names: Vec<&str> = self.inner.handlers.keys().map(String::as_str).collect();
        names.sort_unstable();
        f.debug_struct("Registry")
            .field("handlers", &names)
            .field(
                "routing",
                &self.inner.routing.load().remote.keys().collect::<Vec<_>>(),
            )
            .finish()
    }
}

impl Registry {
    /// An empty registry that routes by `routing` and calls remotes with `client`.
    pub fn new(routing: Routing, client: Client) -> Registry {
        let routing = routing.resolved(&client);
        let metrics = Arc::<Metrics>::default();
        metrics
            .registry()
            .register_collector(Box::new(endpoint_metrics::EndpointMetrics(client.clone())));
        Registry {
            inner: Arc::new(Inner {
                handlers: ByName::default(),
                routing: Arc::new(ArcSwap::from_pointee(routing)),
                client,
                metrics,
            }),
        }
    }

    /// Registers a local handler under `name`.
    pub fn register(
        &mut self,
        name: impl Into<String>,
        handler: Handler,
    ) -> Result<(), RegisterError> {
        let name = name.into();
        if name.is_empty() {
            return Err(RegisterError::EmptyName);
        }
        if name.len() > framex_transport::wire::MAX_FUNCTION_NAME_BYTES {
            return Err(RegisterError::NameTooLong(name.len()));
        }
        if self.inner.handlers.contains_key(&name) {
            return Err(RegisterError::Duplicate(name));
        }
        Arc::make_mut(&mut self.inner)
            .handlers
            .insert(name, handler);
        Ok(())
    }

    /// Replaces the routing for this registry and all its clones, and returns
    /// the one it replaces. A call that has already looked up where it runs
    /// finishes there; calls that start after this follow `routing`.
    pub fn set_routing(&self, routing: Routing) -> Arc<Routing> {
        let routing = routing.resolved(&self.inner.client);
        self.inner.routing.swap(Arc::new(routing))
    }

    /// The client used for remote calls.
    pub fn client(&self) -> &Client {
        &self.inner.client
    }

    /// The calls counted so far (shared by every clone of this registry).
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.inner.metrics
    }

    /// Where `name` runs now.
    pub fn location(&self, name: &str) -> Location {
        match self.inner.routing.load().remote(name) {
            Some(remote) => Location::Remote(remote.url.clone()),
            None if self.inner.handlers.contains_key(name) => Location::Local,
            None => Location::Unknown,
        }
    }

    /// Decides where a call of `name` runs: the one routing decision of a
    /// call on this instance. The [`Target`] runs it there, whatever a
    /// reconfiguration does meanwhile: a listed name goes to its remote even
    /// when it is also registered here; any other name runs its handler.
    pub fn target<'n>(&self, name: &'n str) -> Target<'n> {
        let place = match self.inner.routing.load().remote.get(name) {
            Some(remote) => Place::Remote(remote.clone()),
            None => match self.inner.handlers.get(name) {
                Some(handler) => Place::Local(handler.clone()),
                None => Place::Unknown,
            },
        };
        let target = Target {
            name: Cow::Borrowed(name),
            registry: self.clone(),
            place,
        };
        tracing::trace!(function = name, location = target.label(), "call routed");
        target
    }

    /// Calls `name` where configuration says it runs.
    pub async fn call(&self, name: &str, kwargs: Kwargs) -> Result<Output, CallError> {
        self.target(name).call(kwargs).await
    }

    /// Runs one call of `name` at `location` in its `proxy_call` span and
    /// counts it in the metrics, with the outcome `outcome_of` its result.
    async fn traced<T, E>(
        &self,
        name: &str,
        location: &str,
        outcome_of: impl FnOnce(&Result<T, E>) -> Outcome,
        call: impl Future<Output = Result<T, E>>,
    ) -> Result<T, E> {
        let span = call_span(name, location);
        let counting = self.inner.metrics.start(name, location);
        let result = call.instrument(span.clone()).await;
        let outcome = outcome_of(&result);
        let duration_ms = framex_transport::trace::milliseconds(counting.finish(outcome));
        // Exported with the span; in log lines they are the fields of the
        // `proxy call ended` line, not the span's: no line inside the span
        // comes after them, and recording a field on a span costs the
        // formatting layer a copy of all of its fields.
        framex_transport::trace::set_exported_attribute(&span, "outcome", outcome.as_str());
        framex_transport::trace::set_exported_attribute(&span, "duration_ms", duration_ms);
        tracing::debug!(parent: &span, outcome = outcome.as_str(), duration_ms, "proxy call ended");
        result
    }
}

/// Where one call runs, decided once by [`Registry::target`]: here by its
/// handler, on a remote instance, or nowhere.
pub struct Target<'n> {
    name: Cow<'n, str>,
    registry: Registry,
    place: Place,
}

enum Place {
    Local(Handler),
    Remote(Arc<Remote>),
    Unknown,
}

impl fmt::Debug for Target<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Target")
            .field("function", &self.name)
            .field("location", &self.label())
            .finish()
    }
}

impl<'n> Target<'n> {
    /// The function.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The same target, owning the function's name: for a call that runs on
    /// a task of its own.
    pub fn into_owned(self) -> Target<'static> {
        Target {
            name: Cow::Owned(self.name.into_owned()),
            registry: self.registry,
            place: self.place,
        }
    }

    /// The remote instance the call goes to, if it does not run here.
    pub fn remote(&self) -> Option<&Remote> {
        match &self.place {
            Place::Remote(remote) => Some(remote),
            _ => None,
        }
    }

    /// Whether a handler registered here runs the call.
    pub fn is_local(&self) -> bool {
        matches!(self.place, Place::Local(_))
    }

    /// Whether neither a handler nor a route has the name: calling it fails
    /// with [`CallError::NotRegistered`].
    pub fn is_unknown(&self) -> bool {
        matches!(self.place, Place::Unknown)
    }

    /// The `location` label of the call: `local`, the remote's URL, or
    /// `unknown`.
    fn label(&self) -> &str {
        match &self.place {
            Place::Local(_) => LOCAL,
            Place::Remote(remote) => &remote.url,
            Place::Unknown => "unknown",
        }
    }

    /// Runs the call with `kwargs` where it was decided to run.
    pub async fn call(&self, kwargs: Kwargs) -> Result<Output, CallError> {
        let (name, registry) = (self.name(), &self.registry);
        match &self.place {
            Place::Local(handler) => {
                let call = async {
                    handler(kwargs)
                        .await
                        .map_err(|error| error.for_function(name))
                };
                registry.traced(name, LOCAL, outcome, call).await
            }
            Place::Remote(remote) => {
                let call = async {
                    let body =
                        CallBody::encode_json_with(name, kwargs.as_json(), remote.compression)
                            .map_err(|e| CallError::Arguments {
                                name: name.to_owned(),
                                detail: e.to_string(),
                            })?;
                    let json = registry.client().send_json(remote.request(name, body));
                    Ok(Output::from_json(json.await?))
                };
                // Boxed: an HTTP exchange is kilobytes of state, which every
                // local call's future (spawned and moved per call) would
                // otherwise carry too.
                Box::pin(registry.traced(name, &remote.url, outcome, call)).await
            }
            Place::Unknown => {
                // Counted under one label: names that nothing registered come
                // from callers, and must not grow the metrics.
                let call = async { Err(CallError::NotRegistered(name.to_owned())) };
                registry.traced(UNREGISTERED, LOCAL, outcome, call).await
            }
        }
    }

    /// Passes on a call this instance received, its body still encoded, as the
    /// `hops`-th instance on its way, and returns the answer's data still
    /// encoded. Counted and traced like any call; a call that does not go to a
    /// remote is not relayed (it fails as [`CallError::NotRegistered`] when
    /// the name is unknown, [`CallError::NotRelayed`] when it runs here).
    pub async fn relay(&self, body: CallBody, hops: u32) -> Result<Value, CallError> {
        let (name, registry) = (self.name(), &self.registry);
        let Place::Remote(remote) = &self.place else {
            return Err(match self.place {
                Place::Unknown => CallError::NotRegistered(name.to_owned()),
                _ => CallError::NotRelayed(name.to_owned()),
            });
        };
        let call = async {
            let request = remote.request(name, body).hops(hops);
            Ok(registry.client().send_encoded(request).await?)
        };
        registry.traced(name, &remote.url, outcome, call).await
    }
}

/// The span of one proxy call: the function and where it runs; the outcome and
/// the duration are set on it for exporters when the call ends.
fn call_span(name: &str, location: &str) -> tracing::Span {
    tracing::info_span!("proxy_call", function = name, location)
}

/// The `location` label of calls that run here.
const LOCAL: &str = "local";

/// The `function` label of calls of names that no handler has and no route
/// lists.
pub const UNREGISTERED: &str = "(unregistered)";

/// How a call ended, for the metrics.
fn outcome<T>(result: &Result<T, CallError>) -> Outcome {
    match result {
        Ok(_) => Outcome::Ok,
        Err(CallError::NotRegistered(_)) => Outcome::NotRegistered,
        Err(CallError::Arguments { .. }) => Outcome::InvalidArguments,
        Err(CallError::TooLarge { .. }) => Outcome::TooLarge,
        Err(CallError::Failed { .. } | CallError::NotRelayed(_)) => Outcome::Failed,
        Err(CallError::Remote(error)) => Outcome::of_transport_error(error),
    }
}

impl HandlerError {
    /// The error of a call of the function `name` whose handler failed so.
    pub fn for_function(self, name: &str) -> CallError {
        match self {
            HandlerError::Arguments(detail) => CallError::Arguments {
                name: name.to_owned(),
                detail,
            },
            HandlerError::TooLarge(detail) => CallError::TooLarge {
                name: name.to_owned(),
                detail,
            },
            HandlerError::Failed(message) => CallError::Failed {
                name: name.to_owned(),
                message,
            },
        }
    }
}
