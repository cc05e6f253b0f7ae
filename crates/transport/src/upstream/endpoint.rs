//! One address of an upstream: its connector, its idle connections and its
//! health, as the `tower::Service` the balancer picks.
//!
//! An endpoint that fails is ejected: it stops being ready, so the balancer
//! picks others, until its backoff has passed; then it is ready again, and
//! the next call it gets either re-admits it (it answered) or ejects it for
//! twice as long. An endpoint that refuses or cannot be reached is ejected at
//! the first failure; one whose answers fail otherwise, after
//! [`EJECT_AFTER_CONSECUTIVE`] in a row.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll, ready};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderMap, Request, Response, StatusCode, Uri};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use tokio::sync::Notify;
use tower_service::Service;

use crate::deadline;
use crate::pool::{Connection, Http2, Idle, OutgoingBody, SendError, StreamedBody};

pub(crate) type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The connector of one endpoint. It is handed the endpoint's address as the
/// URI's host (`EndpointShared::connect_uri`): hyper-util's connector
/// connects to an IP address in a URL without asking its resolver, and puts
/// a port written in a URL over the one a resolver gives. It names the TLS
/// server after the upstream URL's host, which the `Host` header keeps too.
pub(crate) type Connector = HttpsConnector<HttpConnector>;

/// After this many failed answers in a row (503s, connections cut after the
/// request was sent) an endpoint is ejected; one that refuses or cannot be
/// reached is ejected at once.
pub(crate) const EJECT_AFTER_CONSECUTIVE: u32 = 5;

/// The header with which a FrameX for Rust instance that is shutting down
/// marks its 503 answers: the caller moves on to another endpoint at once and
/// sends it nothing more.
pub const DRAINING_HEADER: &str = "x-framex-draining";

/// What an endpoint is asked to send.
pub(crate) enum Attempt {
    /// A proxy-function call, which can be sent again.
    Call(Arc<CallTemplate>),
    /// A forwarded request, whose body streams and is sent once (boxed: a
    /// request's head is large, and calls move attempts around).
    Forward(Box<Request<OutgoingBody>>),
}

/// A call's request, from which each attempt's is made.
#[derive(Debug)]
pub(crate) struct CallTemplate {
    pub(crate) path: Uri,
    pub(crate) headers: HeaderMap,
    pub(crate) body: Bytes,
    /// When the caller stops waiting: each attempt says how long is left.
    pub(crate) deadline: Option<Instant>,
    pub(crate) max_response_bytes: usize,
}

impl CallTemplate {
    fn request(&self) -> Request<OutgoingBody> {
        let mut request = Request::new(OutgoingBody::Left(Full::new(self.body.clone())));
        *request.method_mut() = http::Method::POST;
        *request.uri_mut() = self.path.clone();
        let headers = request.headers_mut();
        headers.clone_from(&self.headers);
        if let Some(deadline) = self.deadline {
            headers.insert(
                const { http::HeaderName::from_static(deadline::TIMEOUT_HEADER) },
                deadline::header_value(deadline.saturating_duration_since(Instant::now())),
            );
        }
        request
    }
}

/// What an endpoint answered.
pub(crate) enum Answer {
    /// A call's answer, read whole.
    Call {
        status: StatusCode,
        body: Bytes,
        /// The endpoint said it is shutting down ([`DRAINING_HEADER`]).
        draining: bool,
        /// Which endpoint answered.
        endpoint: SocketAddr,
        /// The endpoint stopped at the caller's deadline (a 504 with a zero
        /// [`deadline::TIMEOUT_HEADER`]).
        deadline_passed: bool,
    },
    /// A forwarded request's answer, its body still to be read.
    Forward(Response<StreamedBody>),
}

/// Why an attempt failed, and whether the function may have run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Failure {
    /// No endpoint to send it to: resolution found none, or failed.
    NoEndpoints,
    /// No connection could be made (refused, unreachable, timed out): the
    /// request was never sent.
    Connect,
    /// The connection closed before the request was written: never sent.
    NotSent,
    /// The connection failed after the request was written: the function
    /// may have run.
    Interrupted,
    /// The connection stopped carrying data (its TCP user timeout passed):
    /// the function may have run, and the endpoint is unreachable.
    Unreachable,
    /// The answer is longer than the limit: the function ran.
    TooLarge,
}

/// A failed attempt: on which endpoint, why, and the request back when it was
/// never sent.
#[derive(Debug)]
pub(crate) struct AttemptError {
    pub(crate) endpoint: Option<SocketAddr>,
    pub(crate) failure: Failure,
    pub(crate) source: BoxError,
    pub(crate) unsent: Unsent,
}

/// A request that never left, handed back to be sent elsewhere. Behind a
/// lock only so that the error is `Sync`, as the balancer's errors must be
/// (a streamed body is not).
#[derive(Debug, Default)]
pub(crate) struct Unsent(Mutex<Option<Request<OutgoingBody>>>);

impl Unsent {
    pub(crate) fn new(request: Option<Request<OutgoingBody>>) -> Unsent {
        Unsent(Mutex::new(request))
    }

    pub(crate) fn take(&mut self) -> Option<Request<OutgoingBody>> {
        self.0
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
    }

    fn is_some(&mut self) -> bool {
        self.0
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner)
            .is_some()
    }
}

impl std::fmt::Display for AttemptError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&crate::error::chain(&*self.source))
    }
}

impl std::error::Error for AttemptError {}

/// What every endpoint of a client does the same way.
#[derive(Debug)]
pub(crate) struct Policy {
    pub(crate) pool_idle_timeout: Duration,
    pub(crate) pool_max_idle: usize,
    pub(crate) retry_closed_connection: bool,
    pub(crate) eject_base: Duration,
    pub(crate) eject_max: Duration,
}

/// An endpoint's state, shared by the balancer's service, the calls on it
/// and `/health`.
#[derive(Debug)]
pub(crate) struct EndpointShared {
    pub(crate) address: SocketAddr,
    upstream: Arc<str>,
    connector: Connector,
    /// The upstream's URL: the URI of its HTTP/2 requests.
    uri: Uri,
    /// What the connector is handed: the URL's scheme and the endpoint's
    /// address (see [`Connector`]).
    connect_uri: Uri,
    pub(crate) idle: Arc<Idle>,
    /// Its one HTTP/2 connection, for calls, when the upstream is called
    /// over HTTP/2 (`UpstreamSettings::with_http2`); forwarded requests go
    /// over HTTP/1 still.
    http2: Option<Http2>,
    policy: Arc<Policy>,
    /// Woken when the endpoint is ejected, so that callers waiting for a
    /// ready endpoint look again.
    changed: Arc<Notify>,
    epoch: Instant,
    /// Nanoseconds after `epoch` until which it is ejected; 0 when it is not.
    ejected_until: AtomicU64,
    pub(crate) in_flight: AtomicUsize,
    pub(crate) requests: AtomicU64,
    pub(crate) failures: AtomicU64,
    pub(crate) ejections: AtomicU64,
    /// The EWMA of its answers' latency, in nanoseconds; 0 before the first.
    latency_ewma_nanos: AtomicU64,
    /// Whether `health` holds anything an answer clears: an answer then
    /// takes no lock.
    troubled: std::sync::atomic::AtomicBool,
    health: Mutex<Health>,
}

#[derive(Debug, Default)]
struct Health {
    consecutive_failures: u32,
    /// How many times in a row it was ejected: the backoff doubles with each.
    ejected_in_a_row: u32,
    ejected: bool,
    last_error: Option<String>,
}

/// An endpoint's state as `/health` shows it.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct EndpointStatus {
    /// The address calls connect to.
    pub address: SocketAddr,
    /// How long it stays ejected; `None` when it takes calls.
    pub ejected_for: Option<Duration>,
    /// Its calls in flight.
    pub in_flight: usize,
    /// The exponentially weighted moving average of its answers' latency.
    pub latency_ewma: Option<Duration>,
    /// Attempts sent to it.
    pub requests: u64,
    /// Attempts that failed on the way (not the function's own errors).
    pub failures: u64,
    /// How many times it was ejected.
    pub ejections: u64,
    /// Its last failure, while it is ejected or has failed since it answered.
    pub last_error: Option<String>,
}

impl EndpointShared {
    pub(crate) fn new(
        address: SocketAddr,
        upstream: Arc<str>,
        connector: Connector,
        uri: Uri,
        http2: bool,
        policy: Arc<Policy>,
        changed: Arc<Notify>,
    ) -> EndpointShared {
        EndpointShared {
            address,
            upstream,
            connector,
            connect_uri: connect_uri(&uri, address),
            uri,
            idle: Arc::default(),
            http2: http2.then(Http2::default),
            policy,
            changed,
            epoch: Instant::now(),
            ejected_until: AtomicU64::new(0),
            in_flight: AtomicUsize::new(0),
            requests: AtomicU64::new(0),
            failures: AtomicU64::new(0),
            ejections: AtomicU64::new(0),
            latency_ewma_nanos: AtomicU64::new(0),
            troubled: std::sync::atomic::AtomicBool::new(false),
            health: Mutex::default(),
        }
    }

    fn health(&self) -> std::sync::MutexGuard<'_, Health> {
        self.health.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Until when it is ejected, if it is now.
    pub(crate) fn ejected_until(&self) -> Option<Instant> {
        let nanos = self.ejected_until.load(Ordering::Acquire);
        if nanos == 0 {
            return None;
        }
        let until = self.epoch + Duration::from_nanos(nanos);
        (until > Instant::now()).then_some(until)
    }

    /// The moving average of its answers' latency, once it has answered.
    pub(crate) fn latency_ewma(&self) -> Option<Duration> {
        let nanos = self.latency_ewma_nanos.load(Ordering::Relaxed);
        (nanos > 0).then(|| Duration::from_nanos(nanos))
    }

    pub(crate) fn status(&self) -> EndpointStatus {
        EndpointStatus {
            address: self.address,
            ejected_for: self
                .ejected_until()
                .map(|until| until.saturating_duration_since(Instant::now())),
            in_flight: self.in_flight.load(Ordering::Relaxed),
            latency_ewma: self.latency_ewma(),
            requests: self.requests.load(Ordering::Relaxed),
            failures: self.failures.load(Ordering::Relaxed),
            ejections: self.ejections.load(Ordering::Relaxed),
            last_error: self.health().last_error.clone(),
        }
    }

    /// An answer came: the endpoint works.
    fn succeeded(&self, latency: Duration) {
        let nanos = u64::try_from(latency.as_nanos()).unwrap_or(u64::MAX).max(1);
        // A weight of 1/8 for the newest answer.
        let old = self.latency_ewma_nanos.load(Ordering::Relaxed);
        let ewma = if old == 0 {
            nanos
        } else {
            old - old / 8 + nanos / 8
        };
        self.latency_ewma_nanos.store(ewma, Ordering::Relaxed);
        if !self.troubled.swap(false, Ordering::AcqRel) {
            return;
        }
        let mut health = self.health();
        health.consecutive_failures = 0;
        health.last_error = None;
        if std::mem::take(&mut health.ejected) {
            health.ejected_in_a_row = 0;
            self.ejected_until.store(0, Ordering::Release);
            drop(health);
            tracing::info!(
                upstream = %self.upstream,
                endpoint = %self.address,
                "endpoint re-admitted: it answered again"
            );
        }
    }

    /// An attempt failed on the way (`why`): ejects the endpoint when that
    /// was one failure too many.
    fn failed(&self, eject_now: bool, why: String) {
        self.failures.fetch_add(1, Ordering::Relaxed);
        let mut health = self.health();
        self.troubled.store(true, Ordering::Release);
        if self.ejected_until().is_some() {
            // Calls that were on their way when it was ejected: it is out
            // already, and its backoff grows only when a probe fails.
            health.last_error = Some(why);
            return;
        }
        health.consecutive_failures += 1;
        let eject = eject_now || health.consecutive_failures >= EJECT_AFTER_CONSECUTIVE;
        if !eject {
            health.last_error = Some(why);
            return;
        }
        let doublings = health.ejected_in_a_row.min(16);
        let backoff = self
            .policy
            .eject_base
            .saturating_mul(1 << doublings)
            .min(self.policy.eject_max);
        health.ejected_in_a_row += 1;
        health.consecutive_failures = 0;
        let first = !std::mem::replace(&mut health.ejected, true);
        health.last_error = Some(why.clone());
        let until = Instant::now() + backoff;
        let nanos = u64::try_from(until.duration_since(self.epoch).as_nanos()).unwrap_or(u64::MAX);
        self.ejected_until.store(nanos.max(1), Ordering::Release);
        self.ejections.fetch_add(1, Ordering::Relaxed);
        drop(health);
        if first {
            tracing::warn!(
                upstream = %self.upstream,
                endpoint = %self.address,
                ?backoff,
                error = %why,
                "endpoint ejected: calls go to the other endpoints"
            );
        } else {
            tracing::debug!(
                upstream = %self.upstream,
                endpoint = %self.address,
                ?backoff,
                error = %why,
                "endpoint still failing: ejected again"
            );
        }
        self.changed.notify_waiters();
    }

    /// Runs one attempt on this endpoint and learns from how it went.
    pub(crate) async fn run(self: Arc<Self>, attempt: Attempt) -> Result<Answer, AttemptError> {
        let _in_flight = InFlight::enter(&self.in_flight);
        self.requests.fetch_add(1, Ordering::Relaxed);
        let started = Instant::now();
        let result = match attempt {
            Attempt::Call(template) => self.call(&template).await,
            Attempt::Forward(request) => self.forward(*request).await,
        };
        match &result {
            Ok(Answer::Call { draining: true, .. }) => {
                self.failed(true, "shutting down".to_owned())
            }
            Ok(Answer::Call { status, .. }) if *status == StatusCode::SERVICE_UNAVAILABLE => {
                self.failed(false, "answered 503 Service Unavailable".to_owned());
            }
            Ok(_) => self.succeeded(started.elapsed()),
            Err(error) => {
                let eject_now = matches!(error.failure, Failure::Connect | Failure::Unreachable);
                self.failed(eject_now, error.to_string());
            }
        }
        result
    }

    fn error(&self, failure: Failure, source: impl Into<BoxError>) -> AttemptError {
        AttemptError {
            endpoint: Some(self.address),
            failure,
            source: source.into(),
            unsent: Unsent::default(),
        }
    }

    /// An answer's body that failed to arrive whole: too long, or cut.
    fn body_error(&self, error: BoxError) -> AttemptError {
        if error.is::<http_body_util::LengthLimitError>() {
            self.error(Failure::TooLarge, error)
        } else {
            self.error(Failure::Interrupted, error)
        }
    }

    fn send_error(&self, error: SendError) -> AttemptError {
        let mut unsent = Unsent::new(error.unsent);
        let failure = if unsent.is_some() {
            Failure::NotSent
        } else if timed_out(&error.error) {
            Failure::Unreachable
        } else {
            Failure::Interrupted
        };
        AttemptError {
            unsent,
            ..self.error(failure, error.error)
        }
    }

    async fn call(&self, template: &CallTemplate) -> Result<Answer, AttemptError> {
        if let Some(http2) = &self.http2 {
            return self.call_http2(http2, template).await;
        }
        let (mut connection, reused) = self.connection().await?;
        let response = match connection.send(template.request()).await {
            Ok(response) => response,
            // A server may close a kept-alive connection just as a call goes
            // out on it (see `ClientSettings::with_retry_closed_connection`):
            // sent once more, here, on a new connection.
            Err(error)
                if error.unsent.is_none()
                    && reused
                    && self.policy.retry_closed_connection
                    && closed_before_answer(&error.error) =>
            {
                connection = match self.open().await {
                    Ok(connection) => connection,
                    // The instance is gone. It may have stopped and closed an
                    // idle connection, or died running the call: the call
                    // stays interrupted (never sent elsewhere unless
                    // idempotent), saying both what broke and what the resend
                    // found.
                    Err(reconnect) => {
                        let mut failed = self.send_error(error);
                        failed.source =
                            format!("{failed}; sent again, cannot connect: {reconnect}").into();
                        return Err(failed);
                    }
                };
                connection
                    .send(template.request())
                    .await
                    .map_err(|error| self.send_error(error))?
            }
            Err(error) => return Err(self.send_error(error)),
        };
        let (status, draining, deadline_passed) = answer_head(&response);
        let limit = template.max_response_bytes;
        let body = connection
            .read_body(response.into_body(), limit)
            .await
            .map_err(|e| self.body_error(e))?;
        if draining {
            // The instance closes its connections once its callers have
            // moved on: none of them is used again.
            self.idle.clear();
        } else if connection.is_reusable().await {
            self.idle.put(
                connection,
                self.policy.pool_max_idle,
                self.policy.pool_idle_timeout,
            );
        }
        Ok(Answer::Call {
            status,
            body,
            draining,
            endpoint: self.address,
            deadline_passed,
        })
    }

    /// [`EndpointShared::call`] over the endpoint's HTTP/2 connection.
    async fn call_http2(
        &self,
        http2: &Http2,
        template: &CallTemplate,
    ) -> Result<Answer, AttemptError> {
        let idle_timeout = self.policy.pool_idle_timeout;
        let (mut sender, reused) = http2
            .sender(&self.connector, &self.connect_uri, idle_timeout)
            .await
            .map_err(|e| self.error(Failure::Connect, e))?;
        let response = match self.send_http2(&mut sender, template).await {
            // The connection closed before the call went out on it (the
            // server closed it, or said it would): sent once more, on a
            // new one.
            Err(error) if reused && error.failure == Failure::NotSent => {
                http2.clear();
                let (mut sender, _) = http2
                    .sender(&self.connector, &self.connect_uri, idle_timeout)
                    .await
                    .map_err(|e| self.error(Failure::Connect, e))?;
                self.send_http2(&mut sender, template).await?
            }
            // A broken connection is not handed out again (see
            // `Http2::sender`); a stream's own failure leaves it be.
            Err(error) => return Err(error),
            Ok(response) => response,
        };
        let (status, draining, deadline_passed) = answer_head(&response);
        let body = Limited::new(response.into_body(), template.max_response_bytes)
            .collect()
            .await
            .map_err(|e| self.body_error(e))?
            .to_bytes();
        if draining {
            // The instance closes its connections once its callers have
            // moved on: no further call goes out on this one.
            http2.clear();
        }
        Ok(Answer::Call {
            status,
            body,
            draining,
            endpoint: self.address,
            deadline_passed,
        })
    }

    /// Sends one call on an HTTP/2 connection and waits for its answer's
    /// head. It never went out (`NotSent`) when the connection had closed
    /// before it was handed over, or the server refused its stream
    /// (REFUSED_STREAM: RFC 9113, section 8.7). An HTTP/2 error can say that
    /// the server went away without saying whether this stream came after
    /// the last one it answers, so any other failure may have run it.
    async fn send_http2(
        &self,
        sender: &mut hyper::client::conn::http2::SendRequest<OutgoingBody>,
        template: &CallTemplate,
    ) -> Result<Response<Incoming>, AttemptError> {
        if let Err(error) = sender.ready().await {
            return Err(self.error(Failure::NotSent, error));
        }
        let mut request = template.request();
        // HTTP/2 names the host in the `:authority` pseudo-header, from the
        // request's URI.
        *request.uri_mut() = self.uri.clone();
        request.headers_mut().remove(http::header::HOST);
        match sender.try_send_request(request).await {
            Ok(response) => Ok(response),
            Err(mut error) => {
                let unsent = error.take_message().is_some();
                let error = error.into_error();
                let failure = if unsent || refused_stream(&error) {
                    Failure::NotSent
                } else if timed_out(&error) {
                    Failure::Unreachable
                } else {
                    Failure::Interrupted
                };
                Err(self.error(failure, error))
            }
        }
    }

    async fn forward(&self, request: Request<OutgoingBody>) -> Result<Answer, AttemptError> {
        let mut connection = match self.connection().await {
            Ok((connection, _)) => connection,
            Err(error) => {
                return Err(AttemptError {
                    unsent: Unsent::new(Some(request)),
                    ..error
                });
            }
        };
        let response = connection
            .send(request)
            .await
            .map_err(|error| self.send_error(error))?;
        let (parts, body) = response.into_parts();
        let body = StreamedBody::new(
            body,
            connection,
            Some(self.idle.clone()),
            self.policy.pool_max_idle,
            self.policy.pool_idle_timeout,
        );
        Ok(Answer::Forward(Response::from_parts(parts, body)))
    }

    /// An idle connection, else a new one; and whether it was idle.
    async fn connection(&self) -> Result<(Connection, bool), AttemptError> {
        if let Some(connection) = self.idle.take(self.policy.pool_idle_timeout).await {
            return Ok((connection, true));
        }
        Ok((self.open().await?, false))
    }

    async fn open(&self) -> Result<Connection, AttemptError> {
        // Read before connecting: a draining answer that arrives meanwhile
        // keeps this connection out of the pool too.
        let generation = self.idle.generation();
        let mut connection = Connection::open(&self.connector, &self.connect_uri)
            .await
            .map_err(|e| self.error(Failure::Connect, e))?;
        connection.generation = generation;
        Ok(connection)
    }
}

/// The balancer's handle on an endpoint: ready unless the endpoint is
/// ejected, and then ready again when its backoff has passed.
pub(crate) struct EndpointService {
    pub(crate) shared: Arc<EndpointShared>,
    backoff: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl EndpointService {
    pub(crate) fn new(shared: Arc<EndpointShared>) -> EndpointService {
        EndpointService {
            shared,
            backoff: None,
        }
    }
}

impl Service<Attempt> for EndpointService {
    type Response = Answer;
    type Error = AttemptError;
    type Future = Pin<Box<dyn Future<Output = Result<Answer, AttemptError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), AttemptError>> {
        // Never an error: the balancer would drop the endpoint for good.
        loop {
            let Some(until) = self.shared.ejected_until() else {
                self.backoff = None;
                return Poll::Ready(Ok(()));
            };
            let until = tokio::time::Instant::from_std(until);
            let backoff = self
                .backoff
                .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(until)));
            if backoff.deadline() != until {
                backoff.as_mut().reset(until);
            }
            ready!(backoff.as_mut().poll(cx));
        }
    }

    fn call(&mut self, attempt: Attempt) -> Self::Future {
        Box::pin(self.shared.clone().run(attempt))
    }
}

/// Counts a call in flight for as long as it lives.
struct InFlight<'a>(&'a AtomicUsize);

impl<'a> InFlight<'a> {
    fn enter(count: &'a AtomicUsize) -> InFlight<'a> {
        count.fetch_add(1, Ordering::Relaxed);
        InFlight(count)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Whether a request failed because its connection closed before any part of
/// the answer arrived: the server closed a kept-alive connection as the request
/// went out on it.
fn closed_before_answer(error: &hyper::Error) -> bool {
    any_cause(error, |cause| {
        // Cut while the answer was awaited, or closed before the request went
        // out at all.
        let incomplete = cause
            .downcast_ref::<hyper::Error>()
            .is_some_and(|e| e.is_incomplete_message() || e.is_canceled() || e.is_closed());
        let reset = cause.downcast_ref::<std::io::Error>().is_some_and(|io| {
            matches!(
                io.kind(),
                std::io::ErrorKind::ConnectionReset | std::io::ErrorKind::BrokenPipe
            )
        });
        incomplete || reset
    })
}

/// `uri`'s scheme with `address` for its host and port: where the
/// connector connects.
fn connect_uri(uri: &Uri, address: SocketAddr) -> Uri {
    let mut parts = http::uri::Parts::default();
    parts.scheme = uri.scheme().cloned();
    parts.authority = address.to_string().parse().ok();
    parts.path_and_query = Some(http::uri::PathAndQuery::from_static("/"));
    // Cannot fail: the scheme is the URL's and an address always makes an
    // authority.
    Uri::from_parts(parts).unwrap_or_else(|_| uri.clone())
}

/// What an answer's head says: its status, whether the endpoint is
/// draining ([`DRAINING_HEADER`]), and whether it stopped at the caller's
/// deadline (a 504 with [`deadline::TIMEOUT_HEADER`]).
fn answer_head(response: &Response<Incoming>) -> (StatusCode, bool, bool) {
    let status = response.status();
    let draining = response.headers().contains_key(DRAINING_HEADER);
    let deadline_passed = status == StatusCode::GATEWAY_TIMEOUT
        && response.headers().contains_key(deadline::TIMEOUT_HEADER);
    (status, draining, deadline_passed)
}

/// Whether the server refused an HTTP/2 stream, which it does only before it
/// processes any of it.
fn refused_stream(error: &hyper::Error) -> bool {
    any_cause(error, |cause| {
        cause
            .downcast_ref::<h2::Error>()
            .is_some_and(|e| e.reason() == Some(h2::Reason::REFUSED_STREAM))
    })
}

/// Whether the connection failed because the peer stopped acknowledging
/// (the socket's TCP user timeout).
fn timed_out(error: &hyper::Error) -> bool {
    any_cause(error, |cause| {
        cause
            .downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::TimedOut)
    })
}

fn any_cause(
    error: &(dyn std::error::Error + 'static),
    test: impl Fn(&(dyn std::error::Error + 'static)) -> bool,
) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(cause) = source {
        if test(cause) {
            return true;
        }
        source = cause.source();
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_connector_is_handed_the_endpoints_address_in_place_of_the_urls() {
        let url: Uri = "https://service.internal:8443/api/v1/proxy"
            .parse()
            .unwrap();
        for address in ["10.0.0.7:9000", "[2001:db8::7]:9000", "[fe80::1%2]:9000"] {
            let address: SocketAddr = address.parse().unwrap();
            let uri = connect_uri(&url, address);
            assert_eq!(uri.scheme_str(), Some("https"), "{address}");
            assert_eq!(
                uri.authority().map(|a| a.as_str()),
                Some(&*address.to_string())
            );
        }
    }
}
