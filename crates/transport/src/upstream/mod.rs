//! An upstream: the instances behind one base URL, each call balanced over
//! them, and a call that never reached a handler sent to another.
//!
//! The endpoints come from [`discover`]: every address the URL's host
//! resolves to (or a static list). Each call goes to the one that tower's
//! power-of-two-choices balancer picks by peak-EWMA load
//! (`tower::balance::p2c::Balance` over `tower::load::PeakEwma`), among those
//! not ejected ([`endpoint`]). When every endpoint is ejected, calls go to the
//! one whose backoff ends first rather than waiting, so that one instance, or
//! all of them, failing never fails a call more slowly than trying would; an
//! upstream of one endpoint calls it without the balancer.
//!
//! The balancer is `&mut`: it lives behind an async mutex held only while it
//! picks (tower's `Buffer` would put a task and a channel in every call's way).

pub(crate) mod discover;
pub(crate) mod endpoint;

use std::collections::BTreeSet;
use std::future::poll_fn;
use std::net::SocketAddr;
use std::pin::pin;
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::Duration;

use http::{HeaderValue, Uri};
use tokio::sync::{Notify, mpsc};
use tower::balance::p2c::Balance;
use tower::discover::Change;
use tower::retry::budget::{Budget as _, TpsBudget};
use tower_service::Service as _;

use discover::{Balanced, Discovered};
pub(crate) use endpoint::Connector;
use endpoint::{Answer, Attempt, AttemptError, EndpointService, EndpointShared, Failure, Unsent};
pub(crate) use endpoint::{CallTemplate, Policy};
pub use endpoint::{DRAINING_HEADER, EndpointStatus};

/// The endpoints of one upstream as they are now, and how their lookup went.
pub(crate) struct EndpointSet {
    url: Arc<str>,
    endpoints: RwLock<Vec<Arc<EndpointShared>>>,
    /// Woken when the endpoints change, one is ejected, or a lookup ends.
    changed: Arc<Notify>,
    resolution: Mutex<Resolution>,
    make: Box<dyn Fn(SocketAddr, Arc<Notify>) -> EndpointShared + Send + Sync>,
}

#[derive(Debug, Default)]
struct Resolution {
    done: bool,
    error: Option<String>,
}

impl EndpointSet {
    fn endpoints(&self) -> std::sync::RwLockReadGuard<'_, Vec<Arc<EndpointShared>>> {
        self.endpoints
            .read()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn resolution(&self) -> std::sync::MutexGuard<'_, Resolution> {
        self.resolution
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Makes `addresses` the endpoints, telling the balancer what changed,
    /// and records the lookup's `errors`.
    pub(crate) fn apply(
        &self,
        addresses: &BTreeSet<SocketAddr>,
        changes: &mpsc::UnboundedSender<Change<SocketAddr, Balanced>>,
        errors: &[String],
    ) {
        let mut endpoints = self
            .endpoints
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        let (mut added, mut removed) = (Vec::new(), Vec::new());
        // What a new endpoint is assumed to take until it answers: the mean
        // latency of those that have.
        let latencies: Vec<Duration> = endpoints
            .iter()
            .filter_map(|endpoint| endpoint.latency_ewma())
            .collect();
        let rtt = match latencies.len() {
            0 => discover::DEFAULT_RTT,
            count => latencies.iter().sum::<Duration>() / count as u32,
        };
        endpoints.retain(|endpoint| {
            let keep = addresses.contains(&endpoint.address);
            if !keep {
                removed.push(endpoint.address);
                let _ = changes.send(Change::Remove(endpoint.address));
            }
            keep
        });
        for &address in addresses {
            if endpoints.iter().all(|endpoint| endpoint.address != address) {
                let shared = Arc::new((self.make)(address, self.changed.clone()));
                added.push(address);
                let _ = changes.send(Change::Insert(
                    address,
                    discover::balanced(shared.clone(), rtt),
                ));
                endpoints.push(shared);
            }
        }
        let count = endpoints.len();
        drop(endpoints);
        let error = (!errors.is_empty()).then(|| errors.join("; "));
        let mut resolution = self.resolution();
        resolution.done = true;
        let new_error = error.is_some() && resolution.error != error;
        resolution.error = error;
        drop(resolution);
        if !added.is_empty() || !removed.is_empty() {
            tracing::info!(
                upstream = %self.url,
                endpoints = count,
                added = ?added,
                removed = ?removed,
                "upstream endpoints changed"
            );
        }
        if new_error {
            tracing::warn!(
                upstream = %self.url,
                error = errors.join("; "),
                "upstream lookup failed: keeping the endpoints it had"
            );
        }
        self.changed.notify_waiters();
    }

    /// What a call can do now.
    fn availability(&self) -> Availability {
        let endpoints = self.endpoints();
        if let [only] = endpoints.as_slice() {
            // Nothing to choose from, ejected or not.
            return Availability::AllEjected(only.clone());
        }
        let mut soonest: Option<(std::time::Instant, &Arc<EndpointShared>)> = None;
        for endpoint in endpoints.iter() {
            match endpoint.ejected_until() {
                None => return Availability::Ready,
                Some(until) => {
                    if soonest.is_none_or(|(first, _)| until < first) {
                        soonest = Some((until, endpoint));
                    }
                }
            }
        }
        match soonest {
            Some((_, endpoint)) => Availability::AllEjected(endpoint.clone()),
            None => {
                let resolution = self.resolution();
                match (&resolution.error, resolution.done) {
                    (Some(error), _) => Availability::None(Some(error.clone())),
                    (None, true) => Availability::None(None),
                    (None, false) => Availability::Resolving,
                }
            }
        }
    }
}

enum Availability {
    /// At least one endpoint is not ejected: the balancer picks.
    Ready,
    /// Every endpoint is ejected, this one's backoff ends first; or it is
    /// the only one.
    AllEjected(Arc<EndpointShared>),
    /// The first lookup has not ended.
    Resolving,
    /// There are no endpoints; the lookup's error if it failed.
    None(Option<String>),
}

/// The instances behind one base URL, as [`crate::Client::upstream`] resolves
/// it: calls of it ([`crate::CallRequest::to`]) go to one of them, picked per
/// call. Cloning it shares the endpoints and their connections.
#[derive(Clone)]
pub struct Upstream {
    pub(crate) inner: Arc<UpstreamInner>,
}

impl std::fmt::Debug for Upstream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Upstream")
            .field("url", &self.inner.url)
            .finish_non_exhaustive()
    }
}

impl Upstream {
    /// The base URL it was resolved from.
    pub fn url(&self) -> &str {
        &self.inner.url
    }

    /// Its endpoints now, and their state.
    pub fn status(&self) -> UpstreamStatus {
        let set = &self.inner.set;
        let mut endpoints: Vec<EndpointStatus> = set
            .endpoints()
            .iter()
            .map(|endpoint| endpoint.status())
            .collect();
        endpoints.sort_by_key(|endpoint| endpoint.address);
        UpstreamStatus {
            url: self.inner.url.to_string(),
            endpoints,
            lookup_error: set.resolution().error.clone(),
        }
    }
}

/// An upstream's endpoints and their state, as `/health` shows them.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct UpstreamStatus {
    /// The base URL.
    pub url: String,
    /// Its endpoints, by address.
    pub endpoints: Vec<EndpointStatus>,
    /// Why the last lookup of its names failed, if it did.
    pub lookup_error: Option<String>,
}

pub(crate) struct UpstreamInner {
    pub(crate) url: Box<str>,
    /// The proxy function's path under the base URL.
    pub(crate) path: Uri,
    /// The host and port as written, for the `Host` header.
    pub(crate) host: HeaderValue,
    /// The upstream's own call timeout, if it has one.
    pub(crate) timeout: Option<Duration>,
    set: Arc<EndpointSet>,
    balance: tokio::sync::Mutex<Balance<Discovered, Attempt>>,
    /// Linkerd's and Finagle's retry budget: retries may add 20% to the
    /// calls, plus 10 a second.
    budget: TpsBudget,
    /// Keeps the balancer's change stream open for an upstream with no names
    /// to look up.
    _changes: mpsc::UnboundedSender<Change<SocketAddr, Balanced>>,
    discovery: Option<tokio::task::AbortHandle>,
}

impl Drop for UpstreamInner {
    fn drop(&mut self) {
        if let Some(discovery) = &self.discovery {
            discovery.abort();
        }
    }
}

/// The most attempts one call makes.
const MAX_ATTEMPTS: usize = 5;

/// What an upstream is made of.
pub(crate) struct Parts {
    pub(crate) url: Box<str>,
    pub(crate) path: Uri,
    pub(crate) host: HeaderValue,
    pub(crate) timeout: Option<Duration>,
    pub(crate) targets: Vec<discover::Target>,
    pub(crate) lookup: discover::Lookup,
    pub(crate) refresh: discover::Refresh,
    pub(crate) make: Box<dyn Fn(SocketAddr, Arc<Notify>) -> EndpointShared + Send + Sync>,
}

impl Upstream {
    /// An upstream of these parts, its names looked up from now on (within
    /// a Tokio runtime; without one, only its IP addresses are endpoints).
    pub(crate) fn new(parts: Parts) -> Upstream {
        let (changes, receiver) = mpsc::unbounded_channel();
        let set = Arc::new(EndpointSet {
            url: Arc::from(&*parts.url),
            endpoints: RwLock::default(),
            changed: Arc::new(Notify::new()),
            resolution: Mutex::default(),
            make: parts.make,
        });
        let names = discover::insert_addresses(&parts.targets, &set, &changes);
        let fixed = set.endpoints().iter().map(|e| e.address).collect();
        let discovery = if names.is_empty() {
            None
        } else {
            // Not done until the names have been looked up once.
            set.resolution().done = false;
            tokio::runtime::Handle::try_current().ok().map(|runtime| {
                runtime
                    .spawn(discover::run(
                        names,
                        fixed,
                        parts.lookup,
                        parts.refresh,
                        Arc::downgrade(&set),
                        changes.clone(),
                    ))
                    .abort_handle()
            })
        };
        Upstream {
            inner: Arc::new(UpstreamInner {
                url: parts.url,
                path: parts.path,
                host: parts.host,
                timeout: parts.timeout,
                set,
                balance: tokio::sync::Mutex::new(Balance::new(Discovered(receiver))),
                budget: TpsBudget::new(Duration::from_secs(10), 10, 0.2),
                _changes: changes,
                discovery,
            }),
        }
    }
}

/// A call's answer: its status and body, and whether the endpoint stopped at
/// the caller's deadline.
pub(crate) struct Answered {
    pub(crate) status: http::StatusCode,
    pub(crate) body: bytes::Bytes,
    pub(crate) deadline_passed: bool,
}

impl From<Answer> for Answered {
    fn from(answer: Answer) -> Answered {
        match answer {
            Answer::Call {
                status,
                body,
                deadline_passed,
                ..
            } => Answered {
                status,
                body,
                deadline_passed,
            },
            Answer::Forward(_) => unreachable!("a call is answered as a call"),
        }
    }
}

/// An attempt made, for the error of a call that failed.
#[derive(Debug, Clone)]
pub(crate) struct Tried {
    pub(crate) endpoint: Option<SocketAddr>,
    pub(crate) outcome: String,
}

impl std::fmt::Display for Tried {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.endpoint {
            Some(endpoint) => write!(f, "{endpoint} ({})", self.outcome),
            None => f.write_str(&self.outcome),
        }
    }
}

/// The attempts of one call, kept outside it so that a timeout can tell them.
pub(crate) type Attempts = Mutex<Vec<Tried>>;

pub(crate) fn record(attempts: &Attempts, endpoint: Option<SocketAddr>, outcome: String) {
    attempts
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .push(Tried { endpoint, outcome });
}

impl UpstreamInner {
    /// Sends one attempt to the endpoint the balancer picks.
    async fn attempt(&self, attempt: Attempt) -> Result<Answer, AttemptError> {
        let set = &self.set;
        loop {
            let mut changed = pin!(set.changed.notified());
            changed.as_mut().enable();
            match set.availability() {
                Availability::Ready => {}
                Availability::AllEjected(endpoint) => {
                    return EndpointService::new(endpoint).call(attempt).await;
                }
                Availability::Resolving => {
                    changed.await;
                    continue;
                }
                Availability::None(error) => {
                    let message = match error {
                        Some(error) => format!("no endpoints: {error}"),
                        None => "no endpoints: its name has no addresses".to_owned(),
                    };
                    return Err(AttemptError {
                        endpoint: None,
                        failure: Failure::NoEndpoints,
                        source: message.into(),
                        unsent: Unsent::new(match attempt {
                            Attempt::Forward(request) => Some(*request),
                            Attempt::Call(_) => None,
                        }),
                    });
                }
            }
            let mut balance = self.balance.lock().await;
            tokio::select! {
                biased;
                ready = poll_fn(|cx| balance.poll_ready(cx)) => {
                    // The discovery stream never fails.
                    if ready.is_ok() {
                        let answer = balance.call(attempt);
                        drop(balance);
                        return answer.await.map_err(|error| match error.downcast::<AttemptError>() {
                            Ok(error) => *error,
                            Err(error) => AttemptError {
                                endpoint: None,
                                failure: Failure::Interrupted,
                                source: error,
                                unsent: Unsent::default(),
                            },
                        });
                    }
                }
                // An endpoint was ejected or the set changed: look again.
                () = changed => {}
            }
        }
    }

    /// Sends a call, to another endpoint again when an attempt provably never
    /// reached a handler (or may have, for an `idempotent` call), within the
    /// retry budget; each attempt is added to `attempts`.
    pub(crate) async fn call(
        &self,
        template: Arc<CallTemplate>,
        idempotent: bool,
        attempts: &Attempts,
    ) -> Result<Answered, AttemptError> {
        self.budget.deposit();
        for attempt in 1.. {
            let result = self.attempt(Attempt::Call(template.clone())).await;
            let endpoints = self.set.endpoints().len();
            let (endpoint, outcome, retry) = match &result {
                Ok(Answer::Call {
                    status,
                    endpoint,
                    draining,
                    ..
                }) if *status == http::StatusCode::SERVICE_UNAVAILABLE => {
                    let outcome = if *draining {
                        "answered 503: shutting down"
                    } else {
                        "answered 503"
                    };
                    (Some(*endpoint), outcome.to_owned(), true)
                }
                Ok(_) => return result.map(Answered::from),
                Err(error) => {
                    let retry = match error.failure {
                        // Another endpoint may have it.
                        Failure::Connect => endpoints > 1,
                        Failure::NotSent => true,
                        Failure::Interrupted | Failure::Unreachable => idempotent,
                        Failure::NoEndpoints | Failure::TooLarge => false,
                    };
                    (error.endpoint, error.to_string(), retry)
                }
            };
            record(attempts, endpoint, outcome);
            if !retry || attempt >= MAX_ATTEMPTS.min(endpoints.max(2)) || !self.budget.withdraw() {
                return result.map(Answered::from);
            }
        }
        unreachable!("the loop returns")
    }

    /// Sends a forwarded request once; again, to another endpoint, only when
    /// it never left.
    pub(crate) async fn forward(
        &self,
        request: http::Request<crate::pool::OutgoingBody>,
        attempts: &Attempts,
    ) -> Result<http::Response<crate::pool::StreamedBody>, AttemptError> {
        self.budget.deposit();
        let mut request = request;
        for attempt in 1.. {
            match self.attempt(Attempt::Forward(Box::new(request))).await {
                Ok(Answer::Forward(response)) => return Ok(response),
                Ok(Answer::Call { .. }) => unreachable!("a forward is answered as a forward"),
                Err(mut error) => {
                    record(attempts, error.endpoint, error.to_string());
                    match error.unsent.take() {
                        Some(unsent)
                            if error.failure != Failure::NoEndpoints
                                && attempt < MAX_ATTEMPTS
                                && self.budget.withdraw() =>
                        {
                            request = unsent;
                        }
                        _ => return Err(error),
                    }
                }
            }
        }
        unreachable!("the loop returns")
    }
}
