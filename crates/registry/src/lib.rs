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

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use arc_swap::ArcSwap;

use framex_transport::wire::CallBody;
use framex_transport::{CallRequest, Client, Value};
use serde::Serialize;
use tracing::Instrument as _;

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

/// Where calls of a name go: the remote URL and the key to send there. Its `Debug`
/// output leaves the key out.
#[derive(Clone, PartialEq, Eq)]
pub struct Remote {
    url: String,
    key: Option<String>,
}

impl Remote {
    /// A remote instance at base URL `url`, called with `key` if given.
    pub fn new(url: impl Into<String>, key: Option<String>) -> Remote {
        Remote {
            url: url.into(),
            key,
        }
    }

    /// The upstream's base URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The key sent there. Never log it.
    pub fn key(&self) -> Option<&str> {
        self.key.as_deref()
    }
}

impl fmt::Debug for Remote {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Remote")
            .field("url", &self.url)
            .field("key", &self.key.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

/// Which function names run on which remote instance; every other name runs
/// locally.
#[derive(Debug, Clone, Default)]
pub struct Routing {
    remote: HashMap<String, Remote>,
}

impl Routing {
    /// Sends calls of `name` to `remote`.
    pub fn route(mut self, name: impl Into<String>, remote: Remote) -> Routing {
        self.remote.insert(name.into(), remote);
        self
    }

    /// Where `name` runs: `Some(remote)`, or `None` for here. Does not allocate.
    pub fn remote(&self, name: &str) -> Option<&Remote> {
        self.remote.get(name)
    }

    /// Every remote route.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &Remote)> {
        self.remote
            .iter()
            .map(|(name, remote)| (name.as_str(), remote))
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
    handlers: HashMap<String, Handler>,
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
        Registry {
            inner: Arc::new(Inner {
                handlers: HashMap::new(),
                routing: Arc::new(ArcSwap::from_pointee(routing)),
                client,
                metrics: Arc::default(),
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

    /// The routing the registry follows now.
    pub fn routing(&self) -> Arc<Routing> {
        self.inner.routing.load_full()
    }

    /// Replaces the routing for this registry and all its clones. A call that
    /// has already looked up where it runs finishes there; calls that start
    /// after this follow `routing`.
    pub fn set_routing(&self, routing: Routing) {
        self.inner.routing.store(Arc::new(routing));
    }

    /// The client used for remote calls.
    pub fn client(&self) -> &Client {
        &self.inner.client
    }

    /// The calls counted so far (shared by every clone of this registry).
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.inner.metrics
    }

    /// Where `name` runs.
    pub fn location(&self, name: &str) -> Location {
        match self.inner.routing.load().remote(name) {
            Some(remote) => Location::Remote(remote.url.clone()),
            None if self.inner.handlers.contains_key(name) => Location::Local,
            None => Location::Unknown,
        }
    }

    /// The local handler of `name`, whatever the routing says.
    pub fn local_handler(&self, name: &str) -> Option<&Handler> {
        self.inner.handlers.get(name)
    }

    /// Calls `name` where configuration says it runs.
    pub async fn call(&self, name: &str, kwargs: Kwargs) -> Result<Output, CallError> {
        // Looked up once: the call finishes where it started, whatever a
        // reconfiguration does meanwhile.
        let routing = self.inner.routing.load_full();
        let Some(remote) = routing.remote(name) else {
            return self.call_local(name, kwargs).await;
        };
        let call = async {
            let body = CallBody::encode_json(name, kwargs.as_json()).map_err(|e| {
                CallError::Arguments {
                    name: name.to_owned(),
                    detail: e.to_string(),
                }
            })?;
            let request = CallRequest::encoded(&remote.url, name, body).key(remote.key());
            Ok(Output::from_json(
                self.inner.client.send_json(request).await?,
            ))
        };
        self.traced(name, &remote.url, outcome, call).await
    }

    /// Calls the local handler of `name`, ignoring the routing.
    pub async fn call_local(&self, name: &str, kwargs: Kwargs) -> Result<Output, CallError> {
        let Some(handler) = self.inner.handlers.get(name) else {
            // Counted under one label: names that nothing registered come
            // from callers, and must not grow the metrics.
            let call = async { Err(CallError::NotRegistered(name.to_owned())) };
            return self.traced(UNREGISTERED, LOCAL, outcome, call).await;
        };
        self.traced(name, LOCAL, outcome, call_handler(name, handler, kwargs))
            .await
    }

    /// Passes on a call this instance received for `name`, its body still
    /// encoded, to `remote` as the `hops`-th instance on its way, and returns
    /// the answer's data still encoded. Counted and traced like any call.
    pub async fn relay(
        &self,
        name: &str,
        remote: &Remote,
        body: framex_transport::wire::CallBody,
        hops: u32,
    ) -> Result<Value, framex_transport::Error> {
        let request = CallRequest::encoded(&remote.url, name, body)
            .key(remote.key())
            .hops(hops);
        let call = self.inner.client.send_encoded(request);
        let outcome = |result: &Result<Value, framex_transport::Error>| match result {
            Ok(_) => Outcome::Ok,
            Err(error) => Outcome::of_transport_error(error),
        };
        self.traced(name, &remote.url, outcome, call).await
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
        let duration_ms = counting.finish(outcome).as_secs_f64() * 1000.0;
        span.record("outcome", outcome.as_str());
        span.record("duration_ms", duration_ms);
        tracing::debug!(parent: &span, outcome = outcome.as_str(), duration_ms, "proxy call ended");
        result
    }
}

/// The span of one proxy call: the function and where it runs; the outcome and
/// the duration are recorded on it when the call ends.
fn call_span(name: &str, location: &str) -> tracing::Span {
    tracing::info_span!(
        "proxy_call",
        function = name,
        location,
        outcome = tracing::field::Empty,
        duration_ms = tracing::field::Empty,
    )
}

/// The `location` label of calls that run here.
pub const LOCAL: &str = "local";

/// The `function` label of calls of names that no handler has and no route
/// lists.
pub const UNREGISTERED: &str = "(unregistered)";

/// How a call ended, for the metrics.
pub fn outcome<T>(result: &Result<T, CallError>) -> Outcome {
    match result {
        Ok(_) => Outcome::Ok,
        Err(CallError::NotRegistered(_)) => Outcome::NotRegistered,
        Err(CallError::Arguments { .. }) => Outcome::InvalidArguments,
        Err(CallError::TooLarge { .. }) => Outcome::TooLarge,
        Err(CallError::Failed { .. }) => Outcome::Failed,
        Err(CallError::Remote(error)) => Outcome::of_transport_error(error),
    }
}

/// Runs `handler` as the function `name`, naming it in the errors.
pub async fn call_handler(
    name: &str,
    handler: &Handler,
    kwargs: Kwargs,
) -> Result<Output, CallError> {
    handler(kwargs).await.map_err(|error| match error {
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
    })
}
