//! The client's connections. HTTP/1 ones are opened through the connector,
//! driven by the task that makes the call, and kept idle per upstream for the
//! next call; an endpoint's one HTTP/2 connection ([`Http2`]) is shared by its
//! calls and driven by a task of its own.
//!
//! A connection has no task of its own. The calling task writes the request and
//! reads the answer itself, so a call crosses no channel to a connection task and
//! wakes no other task (hyper's hand-offs between the request and its connection
//! wake the calling task from inside its own poll, which [`crate::repoll`] turns
//! into another poll), and an idle connection costs nothing but its socket. An
//! idle connection is checked for a close by the server when it is taken, and
//! one idle for longer than the idle timeout is closed by the upstream's sweeper,
//! a task that runs only while the upstream has idle connections.

use std::collections::VecDeque;
use std::future::{Future, poll_fn};
use std::pin::{Pin, pin};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, Response, Uri};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Either, Full, Limited};
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::client::conn::{http1, http2};
use hyper_rustls::MaybeHttpsStream;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tower_service::Service;

use crate::repoll::SelfWaker;
use crate::upstream::Connector;

type BoxError = Box<dyn std::error::Error + Send + Sync>;
type Io = MaybeHttpsStream<TokioIo<tokio::net::TcpStream>>;

/// What a connection sends: a call's body, whole (`Left`), or a forwarded
/// request's, streamed as it arrives (`Right`).
pub(crate) type OutgoingBody = Either<Full<Bytes>, UnsyncBoxBody<Bytes, BoxError>>;

/// One open HTTP/1 connection to an upstream.
pub(crate) struct Connection {
    sender: http1::SendRequest<OutgoingBody>,
    /// Reads and writes the socket when polled; `None` once the connection has
    /// closed. Boxed: it holds the buffers, and a connection moves in and out of
    /// the pool on every call.
    driver: Option<Box<http1::Connection<Io, OutgoingBody>>>,
    /// The pool's generation when the connection was opened
    /// ([`Idle::generation`]): one opened before the server said it is
    /// draining is not pooled again.
    pub(crate) generation: u64,
    /// The waker the connection and its call are polled with: the request
    /// handed to the connection and the answer handed back wake the calling
    /// task from inside its own poll, which would cost a trip through the
    /// scheduler each ([`crate::repoll`]).
    waker: SelfWaker,
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection")
            .field("open", &self.driver.is_some())
            .finish()
    }
}

impl Connection {
    /// Connects to `uri`'s host (TLS for `https://`) within the connector's
    /// connect timeout.
    pub(crate) async fn open(connector: &Connector, uri: &Uri) -> Result<Connection, BoxError> {
        let (sender, driver) = http1::handshake(connect(connector, uri).await?).await?;
        Ok(Connection {
            sender,
            driver: Some(Box::new(driver)),
            generation: 0,
            waker: SelfWaker::new(),
        })
    }

    /// Sends `request` and waits for the head of the answer; the request
    /// comes back with the error when it was never written.
    pub(crate) async fn send(
        &mut self,
        request: Request<OutgoingBody>,
    ) -> Result<Response<Incoming>, SendError> {
        let response = self.sender.try_send_request(request);
        self.drive(response).await.map_err(|mut error| SendError {
            unsent: error.take_message(),
            error: error.into_error(),
        })
    }

    /// Reads the whole body of an answer, refusing one longer than `limit` bytes.
    pub(crate) async fn read_body(
        &mut self,
        body: Incoming,
        limit: usize,
    ) -> Result<Bytes, BoxError> {
        let collected = self.drive(Limited::new(body, limit).collect()).await?;
        Ok(collected.to_bytes())
    }

    /// After an answer has been read: whether the connection can carry another
    /// call (the server kept it open and the answer ended where it said).
    pub(crate) async fn is_reusable(&mut self) -> bool {
        poll_fn(|cx| Poll::Ready(self.poll_reusable(cx))).await
    }

    fn poll_reusable(&mut self, cx: &mut Context<'_>) -> bool {
        self.poll_open(cx) && self.sender.is_ready()
    }

    /// Polls `future` to completion while driving the connection, which writes
    /// the request and reads the answer that `future` waits for.
    async fn drive<F: Future>(&mut self, future: F) -> F::Output {
        let mut future = pin!(future);
        poll_fn(|cx| {
            let Connection { driver, waker, .. } = &mut *self;
            waker.poll(cx, |cx| {
                // The connection first: what it reads is what `future` waits
                // for. Once it has closed, `future` fails at once (with the
                // connection's error, when there was one) or finishes with
                // what was read before.
                poll_driver(driver, cx);
                future.as_mut().poll(cx)
            })
        })
        .await
    }

    /// Lets the connection read and write what it can; false once it has closed,
    /// whether the server closed it, it failed, or the answer said so.
    fn poll_open(&mut self, cx: &mut Context<'_>) -> bool {
        poll_driver(&mut self.driver, cx)
    }
}

/// [`Connection::poll_open`] on the connection's driver alone, for a caller
/// that holds its waker too.
fn poll_driver(
    driver: &mut Option<Box<http1::Connection<Io, OutgoingBody>>>,
    cx: &mut Context<'_>,
) -> bool {
    if let Some(open) = driver.as_mut()
        && Pin::new(open.as_mut()).poll(cx).is_ready()
    {
        // Dropping it closes the socket and fails whatever still waits on it.
        *driver = None;
    }
    driver.is_some()
}

/// Connects to `uri`'s host (TLS for `https://`) within the connector's
/// connect timeout.
async fn connect(connector: &Connector, uri: &Uri) -> Result<Io, BoxError> {
    let mut connector = connector.clone();
    poll_fn(|cx| connector.poll_ready(cx)).await?;
    connector.call(uri.clone()).await
}

/// An endpoint's HTTP/2 connection (prior knowledge, plain TCP:
/// `UpstreamSettings::with_http2`), which all its calls share: a call takes
/// a handle on it, or opens it when there is none, it has closed, or it has
/// gone unused for the idle timeout (the server closes connections it has
/// not used for a while; one closed as a call goes out on it would leave the
/// call's fate unknown). hyper's client drives it from a task of its own,
/// which ends once every handle is dropped and its last stream is done.
#[derive(Debug, Default)]
pub(crate) struct Http2 {
    state: Mutex<Http2State>,
    /// Held while a connection is opened: the calls that find none then
    /// wait for it instead of each opening its own. It guards how the last
    /// opening failed: the calls that waited for it fail the same way,
    /// instead of each trying in turn, a connect timeout each.
    opening: tokio::sync::Mutex<Opening>,
    /// Counts the openings that failed.
    failed_openings: AtomicU64,
}

#[derive(Debug, Default)]
struct Opening {
    last_failure: String,
}

#[derive(Debug, Default)]
struct Http2State {
    current: Option<Shared>,
    /// Counts [`Http2::clear`]s: a connection opened before one is used for
    /// the call that opened it, and not kept.
    generation: u64,
}

#[derive(Debug)]
struct Shared {
    sender: http2::SendRequest<OutgoingBody>,
    last_used: Instant,
}

impl Http2 {
    fn state(&self) -> MutexGuard<'_, Http2State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A handle on the open connection, if there is one that is still open
    /// and was used less than `idle_timeout` ago.
    fn current(&self, idle_timeout: Duration) -> Option<http2::SendRequest<OutgoingBody>> {
        let mut state = self.state();
        let shared = state.current.as_mut()?;
        if shared.sender.is_closed() || shared.last_used.elapsed() >= idle_timeout {
            // Dropped outside the lock.
            let stale = state.current.take();
            drop(state);
            drop(stale);
            return None;
        }
        shared.last_used = Instant::now();
        Some(shared.sender.clone())
    }

    /// A handle on the connection, opened now if need be; and whether it was
    /// open already.
    pub(crate) async fn sender(
        &self,
        connector: &Connector,
        uri: &Uri,
        idle_timeout: Duration,
    ) -> Result<(http2::SendRequest<OutgoingBody>, bool), BoxError> {
        if let Some(sender) = self.current(idle_timeout) {
            return Ok((sender, true));
        }
        let failures = self.failed_openings.load(Ordering::Acquire);
        let mut opening = self.opening.lock().await;
        if let Some(sender) = self.current(idle_timeout) {
            return Ok((sender, true));
        }
        if self.failed_openings.load(Ordering::Acquire) != failures {
            // Another call opened it while this one waited, and failed.
            return Err(opening.last_failure.clone().into());
        }
        let generation = self.state().generation;
        let opened = async {
            let io = connect(connector, uri).await?;
            let mut builder = http2::Builder::new(TokioExecutor::new());
            builder.timer(TokioTimer::new());
            handshake_http2(&builder, io).await.map_err(BoxError::from)
        };
        let (sender, connection) = match opened.await {
            Ok(opened) => opened,
            Err(error) => {
                opening.last_failure = crate::error::chain(&*error);
                self.failed_openings.fetch_add(1, Ordering::Release);
                return Err(error);
            }
        };
        drop(opening);
        // How it ends reaches the calls on it through their own errors.
        tokio::spawn(connection);
        let mut state = self.state();
        if state.generation == generation && !idle_timeout.is_zero() {
            state.current = Some(Shared {
                sender: sender.clone(),
                last_used: Instant::now(),
            });
        }
        Ok((sender, false))
    }

    /// Stops handing out the connection, and one being opened now: the
    /// server said it is shutting down, or the connection broke. Calls
    /// already on it go on.
    pub(crate) fn clear(&self) {
        let mut state = self.state();
        state.generation += 1;
        let stale = state.current.take();
        drop(state);
        drop(stale);
    }
}

type Http2Connection = http2::Connection<Io, OutgoingBody, TokioExecutor>;
type Http2Handshake = hyper::Result<(http2::SendRequest<OutgoingBody>, Http2Connection)>;

/// hyper's HTTP/2 handshake, boxed here, where its type is concrete: the
/// compiler cannot prove its future `Send` for every lifetime inside the
/// endpoint's `async fn`s.
fn handshake_http2(
    builder: &http2::Builder<TokioExecutor>,
    io: Io,
) -> Pin<Box<dyn Future<Output = Http2Handshake> + Send>> {
    Box::pin(builder.handshake(io))
}

/// A request that failed: why, and the request itself when the connection
/// closed before any of it was written.
#[derive(Debug)]
pub(crate) struct SendError {
    pub(crate) error: hyper::Error,
    pub(crate) unsent: Option<Request<OutgoingBody>>,
}

pin_project_lite::pin_project! {
    /// The body of a forwarded request's answer, read as the caller reads it:
    /// polling it drives its connection, which goes back to the upstream's
    /// idle connections once the body has ended (and is closed if the body is
    /// dropped before).
    pub struct StreamedBody {
        #[pin]
        body: Incoming,
        connection: Option<Connection>,
        idle: Option<Arc<Idle>>,
        max_idle: usize,
        idle_timeout: Duration,
    }
}

impl std::fmt::Debug for StreamedBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamedBody").finish_non_exhaustive()
    }
}

impl StreamedBody {
    pub(crate) fn new(
        body: Incoming,
        connection: Connection,
        idle: Option<Arc<Idle>>,
        max_idle: usize,
        idle_timeout: Duration,
    ) -> StreamedBody {
        StreamedBody {
            body,
            connection: Some(connection),
            idle,
            max_idle,
            idle_timeout,
        }
    }
}

impl Body for StreamedBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let this = self.project();
        // The connection first: what it reads is what the body waits for.
        if let Some(connection) = this.connection.as_mut() {
            connection.poll_open(cx);
        }
        let frame = this.body.poll_frame(cx);
        if let Poll::Ready(None) = frame
            && let Some(mut connection) = this.connection.take()
            && let Some(idle) = this.idle.as_ref()
            && connection.poll_reusable(cx)
        {
            idle.put(connection, *this.max_idle, *this.idle_timeout);
        }
        frame
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

/// The idle connections to one upstream, and whether its sweeper runs.
#[derive(Debug, Default)]
pub(crate) struct Idle {
    state: Mutex<IdleState>,
}

#[derive(Debug, Default)]
struct IdleState {
    /// Oldest first, with the time each became idle.
    connections: VecDeque<(Connection, Instant)>,
    sweeping: bool,
    /// Counts [`Idle::clear`]s.
    generation: u64,
}

impl IdleState {
    /// Takes out the connections idle for `timeout` or longer: the oldest ones,
    /// to be closed once the lock is released.
    fn expire(&mut self, timeout: Duration) -> Vec<(Connection, Instant)> {
        let fresh = self
            .connections
            .iter()
            .position(|(_, since)| since.elapsed() < timeout)
            .unwrap_or(self.connections.len());
        self.connections.drain(..fresh).collect()
    }
}

impl Idle {
    fn state(&self) -> MutexGuard<'_, IdleState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The most recently used idle connection that is still open and has been
    /// idle for less than `timeout`; connections found closed or expired on the
    /// way are closed.
    pub(crate) async fn take(&self, timeout: Duration) -> Option<Connection> {
        loop {
            let (expired, newest) = {
                let mut state = self.state();
                (state.expire(timeout), state.connections.pop_back())
            };
            // Closed outside the lock.
            drop(expired);
            let (mut connection, _) = newest?;
            // A server may have closed it while it was idle: the end of the
            // stream is read now, instead of failing the call later.
            if connection.is_reusable().await {
                return Some(connection);
            }
        }
    }

    /// Closes every idle connection, and every one in use now once it comes
    /// back: the server said it closes them. A connection that carried a call
    /// answered just before the server began draining would otherwise come
    /// back after this and be reused after the server has stopped reading
    /// it, just as the server closes it: a call sent then could not tell
    /// whether it ran.
    pub(crate) fn clear(&self) {
        let mut state = self.state();
        state.generation += 1;
        let closed = std::mem::take(&mut state.connections);
        drop(state);
        drop(closed);
    }

    /// The generation a connection opened now belongs to: it is pooled only
    /// until the next [`Idle::clear`].
    pub(crate) fn generation(&self) -> u64 {
        self.state().generation
    }

    /// Keeps `connection` for the next call, closing the oldest idle one when
    /// `max` are already kept, and starts the sweeper that closes connections
    /// idle for longer than `timeout`.
    pub(crate) fn put(self: &Arc<Self>, connection: Connection, max: usize, timeout: Duration) {
        if max == 0 || timeout.is_zero() {
            return;
        }
        let mut state = self.state();
        if connection.generation != state.generation {
            drop(state);
            drop(connection);
            return;
        }
        let oldest = if state.connections.len() >= max {
            state.connections.pop_front()
        } else {
            None
        };
        state.connections.push_back((connection, Instant::now()));
        let start_sweeper = !std::mem::replace(&mut state.sweeping, true);
        drop(state);
        drop(oldest);
        if start_sweeper && !self.sweep(timeout) {
            self.state().sweeping = false;
        }
    }

    /// Starts the task that closes connections idle for `timeout` or longer,
    /// every `timeout`, and ends once none is left; false outside a Tokio runtime.
    fn sweep(self: &Arc<Self>, timeout: Duration) -> bool {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return false;
        };
        let idle: Weak<Idle> = Arc::downgrade(self);
        runtime.spawn(async move {
            loop {
                tokio::time::sleep(timeout).await;
                // The client that owned the upstream is gone: so are its connections.
                let Some(idle) = idle.upgrade() else { return };
                let mut state = idle.state();
                let expired = state.expire(timeout);
                let done = state.connections.is_empty();
                if done {
                    state.sweeping = false;
                }
                drop(state);
                drop(expired);
                if done {
                    return;
                }
            }
        });
        true
    }
}
