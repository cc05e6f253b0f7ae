//! The pooled HTTP client that calls proxy functions on other FrameX instances.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use framex_json::Value;
use http::header::{AUTHORIZATION, CONTENT_TYPE, HOST};
use http::{HeaderMap, HeaderValue, Request, Response, StatusCode, Uri};
use hyper_util::client::legacy::connect::HttpConnector;
use serde::Serialize;
use serde::de::DeserializeOwned;

use rustls_pki_types::CertificateDer;

use crate::error::{Error, ErrorKind};
use crate::pool::{OutgoingBody, StreamedBody};
use crate::trace::TraceContext;
use crate::upstream::discover::{Lookup, Refresh, Target, bare_host};
use crate::upstream::endpoint::{AttemptError, EndpointShared, Failure};
use crate::upstream::{
    Attempts, CallTemplate, Connector, Parts, Policy, Tried, Upstream, UpstreamStatus,
};
use crate::wire::{self, CallBody, Envelope, PROXY_FUNCTION_PATH};
use crate::{deadline, tls};

/// The header that counts how many FrameX instances a call has passed through.
pub const HOPS_HEADER: &str = "x-framex-hops";

/// The header a caller sends, with the value [`ERRORS_BY_STATUS`], to be told
/// of a failed call by the HTTP status as well as the envelope. Every FrameX
/// for Rust client sends it. A FrameX for Rust server answers a caller that
/// does not (Python FrameX's client, which raises only on an HTTP 200 whose
/// envelope says otherwise) with HTTP 200 and the status in the envelope.
pub const ERRORS_HEADER: &str = "x-framex-errors";

/// The value of [`ERRORS_HEADER`].
pub const ERRORS_BY_STATUS: &str = "http-status";

/// Settings of a [`Client`].
#[derive(Debug, Clone)]
pub struct ClientSettings {
    timeout: Duration,
    connect_timeout: Duration,
    max_response_bytes: usize,
    max_inflated_bytes: usize,
    pool_idle_timeout: Duration,
    pool_max_idle_per_host: usize,
    retry_closed_connection: bool,
    root_certificates: Vec<CertificateDer<'static>>,
    upstreams: HashMap<String, UpstreamSettings>,
    nameservers: Vec<SocketAddr>,
    dns_refresh: Refresh,
    eject_base: Duration,
    eject_max: Duration,
}

/// Settings of one upstream, by its base URL
/// ([`ClientSettings::with_upstream`]).
#[derive(Debug, Clone, Default)]
pub struct UpstreamSettings {
    endpoints: Vec<String>,
    timeout: Option<Duration>,
    http2: bool,
}

impl UpstreamSettings {
    /// The instances to call instead of every address of the URL's host:
    /// each `host:port` (or `host`, on the URL's port), an IP address or a
    /// name that is looked up like the URL's host. The URL's host still goes
    /// in the `Host` header and names the TLS server.
    pub fn with_endpoints<S: Into<String>>(
        mut self,
        endpoints: impl IntoIterator<Item = S>,
    ) -> UpstreamSettings {
        self.endpoints = endpoints.into_iter().map(Into::into).collect();
        self
    }

    /// How long a call to this upstream may take, instead of the client's
    /// timeout (a call's own timeout, [`CallRequest::timeout`], comes first).
    pub fn with_timeout(mut self, timeout: Duration) -> UpstreamSettings {
        self.timeout = Some(timeout);
        self
    }

    /// Calls this upstream over HTTP/2 with prior knowledge (RFC 9113,
    /// section 3.4), all of an endpoint's calls sharing one connection,
    /// instead of HTTP/1 over a pool of connections; default off. Only for a
    /// plain `http://` URL whose instances are FrameX for Rust servers
    /// (Python FrameX speaks HTTP/1 only), with nothing between that speaks
    /// HTTP/1 only. Forwarded routes still go over HTTP/1.
    pub fn with_http2(mut self, http2: bool) -> UpstreamSettings {
        self.http2 = http2;
        self
    }
}

impl Default for ClientSettings {
    fn default() -> ClientSettings {
        ClientSettings {
            timeout: Duration::from_secs(600),
            connect_timeout: Duration::from_secs(10),
            max_response_bytes: 64 * 1024 * 1024,
            max_inflated_bytes: wire::DEFAULT_MAX_INFLATED_BYTES,
            // Under the 5 s keep-alive of uvicorn, the server Python FrameX runs
            // on: a connection the server is about to close is not reused.
            pool_idle_timeout: Duration::from_secs(4),
            pool_max_idle_per_host: 64,
            retry_closed_connection: true,
            root_certificates: Vec::new(),
            upstreams: HashMap::new(),
            nameservers: Vec::new(),
            dns_refresh: Refresh {
                floor: Duration::from_secs(1),
                ceiling: Duration::from_secs(60),
            },
            eject_base: Duration::from_secs(1),
            eject_max: Duration::from_secs(30),
        }
    }
}

impl ClientSettings {
    /// How long a whole call may take, from connecting to the last byte of the
    /// answer; default 600 s (FrameX's `plugins.proxy.timeout`).
    pub fn with_timeout(mut self, timeout: Duration) -> ClientSettings {
        self.timeout = timeout;
        self
    }

    /// How long connecting may take; default 10 s, and never longer than the
    /// timeout. It is also how long a connection may go without its data being
    /// acknowledged (the socket's TCP user timeout) before it counts as cut.
    pub fn with_connect_timeout(mut self, timeout: Duration) -> ClientSettings {
        self.connect_timeout = timeout;
        self
    }

    /// The largest answer body accepted; default 64 MiB.
    pub fn with_max_response_bytes(mut self, bytes: usize) -> ClientSettings {
        self.max_response_bytes = bytes;
        self
    }

    /// The largest inflated result accepted; default 32 MiB.
    pub fn with_max_inflated_bytes(mut self, bytes: usize) -> ClientSettings {
        self.max_inflated_bytes = bytes;
        self
    }

    /// How long an idle pooled connection is kept; default 4 s, below the
    /// keep-alive timeout of the servers FrameX runs on.
    pub fn with_pool_idle_timeout(mut self, timeout: Duration) -> ClientSettings {
        self.pool_idle_timeout = timeout;
        self
    }

    /// How many idle connections are kept per upstream; default 64.
    pub fn with_pool_max_idle_per_host(mut self, count: usize) -> ClientSettings {
        self.pool_max_idle_per_host = count;
        self
    }

    /// Whether a call whose connection closes before any part of the answer
    /// arrives is sent once more, on a new connection; default on.
    ///
    /// A server may close a kept-alive connection just as a call is sent on it:
    /// Python FrameX (uvicorn) closes it right after every error answer. That call
    /// never reached the function, and without the retry it would fail for
    /// nothing. The retry can run a function twice only if the connection was cut
    /// while the function ran and the remote kept running it (something between
    /// the instances dropped the connection); turn it off for functions that must
    /// never run twice.
    pub fn with_retry_closed_connection(mut self, retry: bool) -> ClientSettings {
        self.retry_closed_connection = retry;
        self
    }

    /// CA certificates trusted for `https://` URLs besides the system's, such as
    /// a private CA's (see [`crate::tls::read_pem_certificates`]).
    pub fn with_root_certificates(
        mut self,
        certificates: impl IntoIterator<Item = CertificateDer<'static>>,
    ) -> ClientSettings {
        self.root_certificates.extend(certificates);
        self
    }

    /// Settings of the upstream at base URL `url`: its static endpoints, its
    /// timeout.
    pub fn with_upstream(
        mut self,
        url: impl Into<String>,
        settings: UpstreamSettings,
    ) -> ClientSettings {
        self.upstreams.insert(url.into(), settings);
        self
    }

    /// The DNS servers that upstreams' names are looked up on, instead of
    /// the system's (`/etc/resolv.conf`).
    pub fn with_nameservers(
        mut self,
        servers: impl IntoIterator<Item = SocketAddr>,
    ) -> ClientSettings {
        self.nameservers = servers.into_iter().collect();
        self
    }

    /// How often an upstream's name is looked up again: when its records'
    /// TTL runs out, but never sooner than `floor` (default 1 s, at least
    /// 100 ms) nor later than `ceiling` (default 60 s).
    pub fn with_dns_refresh(mut self, floor: Duration, ceiling: Duration) -> ClientSettings {
        let floor = floor.max(Duration::from_millis(100));
        self.dns_refresh = Refresh {
            floor,
            ceiling: ceiling.max(floor),
        };
        self
    }

    /// How long an endpoint that fails is left out: `base` (default 1 s) the
    /// first time, twice as long each time it fails again, at most `max`
    /// (default 30 s).
    pub fn with_ejection(mut self, base: Duration, max: Duration) -> ClientSettings {
        let base = base.max(Duration::from_millis(1));
        self.eject_base = base;
        self.eject_max = max.max(base);
        self
    }

    /// The call timeout.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// The connect timeout (never longer than the call timeout).
    pub fn connect_timeout(&self) -> Duration {
        self.connect_timeout.min(self.timeout)
    }
}

/// A call to send: the target, the encoded body and the headers that go with it.
#[derive(Debug, Clone)]
pub struct CallRequest<'a> {
    url: &'a str,
    /// The target resolved already ([`CallRequest::to`]): no lookup by URL.
    upstream: Option<&'a Upstream>,
    func_name: &'a str,
    body: CallBody,
    key: Option<&'a str>,
    hops: u32,
    timeout: Option<Duration>,
    idempotent: bool,
}

impl<'a> CallRequest<'a> {
    /// A call of `func_name` with keyword arguments `kwargs` (anything that
    /// serializes to a JSON object) on the instance at base URL `url`.
    pub fn new<A: Serialize + ?Sized>(
        url: &'a str,
        func_name: &'a str,
        kwargs: &A,
    ) -> Result<CallRequest<'a>, Error> {
        let body = CallBody::encode(func_name, kwargs)
            .map_err(|e| Error::new(ErrorKind::Encode, url, func_name).with_source(e))?;
        Ok(CallRequest::encoded(url, func_name, body))
    }

    /// A call whose body is already encoded, as when an instance relays a call it
    /// received; `func_name` is the decoded name, for messages.
    pub fn encoded(url: &'a str, func_name: &'a str, body: CallBody) -> CallRequest<'a> {
        CallRequest {
            url,
            upstream: None,
            func_name,
            body,
            key: None,
            hops: 0,
            timeout: None,
            idempotent: false,
        }
    }

    /// A call whose body is already encoded to an upstream resolved once
    /// ([`Client::upstream`]), as a caller that calls the same instances
    /// again and again holds it.
    pub fn to(upstream: &'a Upstream, func_name: &'a str, body: CallBody) -> CallRequest<'a> {
        CallRequest {
            upstream: Some(upstream),
            ..CallRequest::encoded(upstream.url(), func_name, body)
        }
    }

    /// Sends `key` in the `Authorization` header, raw, as FrameX expects.
    pub fn key(mut self, key: Option<&'a str>) -> CallRequest<'a> {
        self.key = key;
        self
    }

    /// Sets how many FrameX instances the call has already passed through.
    pub fn hops(mut self, hops: u32) -> CallRequest<'a> {
        self.hops = hops;
        self
    }

    /// How long this call may take, instead of the upstream's or the client's
    /// timeout. A call made while another is served never outlasts that one's
    /// deadline ([`crate::deadline`]).
    pub fn timeout(mut self, timeout: Option<Duration>) -> CallRequest<'a> {
        self.timeout = timeout;
        self
    }

    /// Marks the function as safe to run twice: a call whose connection failed
    /// after it was sent goes to another endpoint too (within the retry
    /// budget), not only one that provably reached no handler.
    pub fn idempotent(mut self, idempotent: bool) -> CallRequest<'a> {
        self.idempotent = idempotent;
        self
    }
}

/// A pooled, keep-alive HTTP/1 client for FrameX calls, over `http://` or
/// `https://`. Cloning it shares the pool: make one per process.
///
/// A call runs on the task that awaits it: that task writes the request and
/// reads the answer on a connection taken from the pool, with no task per
/// connection and no channel in between. Each base URL is an [`Upstream`]:
/// every address its host resolves to (looked up again as the DNS TTL says),
/// each with its own idle connections, at most
/// [`ClientSettings::with_pool_max_idle_per_host`] of them, closed after
/// [`ClientSettings::with_pool_idle_timeout`]. Each call goes to the endpoint
/// that power-of-two-choices over peak-EWMA latency picks; one that provably
/// never reached a handler (refused, closed before it was written, shed with a
/// 503) goes to another, within a retry budget of 20% of the calls plus 10 a
/// second; an endpoint that keeps failing is left out for a backoff.
#[derive(Clone)]
pub struct Client {
    connectors: Arc<Connectors>,
    settings: Arc<ClientSettings>,
    lookup: Lookup,
    upstreams: Arc<RwLock<HashMap<Box<str>, Upstream>>>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

/// What every endpoint's connector is made of.
struct Connectors {
    tls: rustls::ClientConfig,
    connect_timeout: Duration,
    policy: Arc<Policy>,
}

impl Connectors {
    /// The connector of the endpoints of a URL whose host is `host`: the
    /// TLS server's name.
    fn for_host(&self, host: &str) -> Connector {
        let mut http = HttpConnector::new();
        http.set_nodelay(true);
        http.set_connect_timeout(Some(self.connect_timeout));
        // A connection whose data goes unacknowledged this long is cut, so
        // that a call on an endpoint that vanished fails instead of hanging.
        http.set_tcp_user_timeout(Some(self.connect_timeout));
        tls::wrap(http, self.tls.clone(), host)
    }
}

/// How many base URLs a [`Client`] keeps resolved.
const MAX_REMEMBERED_UPSTREAMS: usize = 1024;

impl Default for Client {
    fn default() -> Client {
        Client::new(ClientSettings::default())
    }
}

impl Client {
    /// A client with these settings. Must be used inside a Tokio runtime.
    ///
    /// A root certificate that rustls cannot use is left out; [`Client::try_new`]
    /// refuses it instead.
    pub fn new(settings: ClientSettings) -> Client {
        let (tls, _rejected) = tls::client_config(&settings.root_certificates);
        Client::build(tls, settings)
    }

    /// A client with these settings, or the error of the first root certificate
    /// that rustls cannot use.
    pub fn try_new(settings: ClientSettings) -> Result<Client, tls::TlsError> {
        let (tls, rejected) = tls::client_config(&settings.root_certificates);
        if let Some(error) = rejected.into_iter().next() {
            return Err(error);
        }
        Ok(Client::build(tls, settings))
    }

    fn build(tls: rustls::ClientConfig, settings: ClientSettings) -> Client {
        let policy = Arc::new(Policy {
            pool_idle_timeout: settings.pool_idle_timeout,
            pool_max_idle: settings.pool_max_idle_per_host,
            retry_closed_connection: settings.retry_closed_connection,
            eject_base: settings.eject_base,
            eject_max: settings.eject_max,
        });
        Client {
            connectors: Arc::new(Connectors {
                tls,
                connect_timeout: settings.connect_timeout(),
                policy,
            }),
            lookup: dns_lookup(&settings.nameservers, settings.dns_refresh),
            settings: Arc::new(settings),
            upstreams: Arc::default(),
        }
    }

    /// The instances behind base URL `url`, which calls of it
    /// ([`CallRequest::to`]) go to without looking the URL up; from now on,
    /// its host is looked up as its TTL says. Every upstream of one URL shares
    /// its endpoints and their connections. The error is an
    /// [`ErrorKind::InvalidUrl`] naming the URL (its source names the static
    /// endpoint of [`UpstreamSettings::with_endpoints`] that is not one).
    pub fn upstream(&self, url: &str) -> Result<Upstream, Error> {
        self.lookup(url, "")
    }

    /// Every upstream this client has called or resolved, and the state of
    /// its endpoints, by URL.
    pub fn upstreams(&self) -> Vec<UpstreamStatus> {
        let upstreams: Vec<Upstream> = self
            .upstreams
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .values()
            .cloned()
            .collect();
        let mut statuses: Vec<UpstreamStatus> = upstreams.iter().map(Upstream::status).collect();
        statuses.sort_by(|a, b| a.url.cmp(&b.url));
        statuses
    }

    /// The upstream of `url`, made once per URL: calls go to a handful of
    /// upstreams, again and again.
    pub(crate) fn lookup(&self, url: &str, func: &str) -> Result<Upstream, Error> {
        if let Some(upstream) = self
            .upstreams
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(url)
        {
            return Ok(upstream.clone());
        }
        let invalid = || Error::new(ErrorKind::InvalidUrl, url, func);
        let uri: Uri = format!("{url}{PROXY_FUNCTION_PATH}")
            .parse()
            .ok()
            .filter(|uri: &Uri| {
                let scheme = uri.scheme();
                (scheme == Some(&http::uri::Scheme::HTTP)
                    || scheme == Some(&http::uri::Scheme::HTTPS))
                    && uri.host().is_some()
            })
            .ok_or_else(invalid)?;
        let default_port = match uri.scheme_str() {
            Some("https") => 443,
            _ => 80,
        };
        let authority = uri.authority().ok_or_else(invalid)?;
        // Credentials in the URL would be dropped without a word: FrameX
        // sends keys in `Authorization` (`[plugins.proxy.auth]`).
        if authority.as_str().contains('@') {
            return Err(invalid().with_source("a base URL must not hold credentials"));
        }
        let port = authority.port_u16().unwrap_or(default_port);
        // The host and port as written, which is what the connection pool would
        // otherwise format into a `Host` header on every call.
        let host = match authority.port_u16() {
            Some(port) if port != default_port => {
                HeaderValue::from_str(&format!("{}:{port}", authority.host()))
            }
            _ => HeaderValue::from_str(authority.host()),
        }
        .map_err(|_| invalid())?;
        let path = uri
            .path_and_query()
            .map(|path| Uri::from(path.clone()))
            .ok_or_else(invalid)?;
        let host_name = bare_host(authority);
        let own = self.settings.upstreams.get(url);
        let targets = match own.map(|own| own.endpoints.as_slice()) {
            Some(endpoints) if !endpoints.is_empty() => endpoints
                .iter()
                .map(|endpoint| Target::parse(endpoint, port))
                .collect::<Result<Vec<_>, _>>()
                .map_err(|detail| invalid().with_source(detail))?,
            _ => vec![Target {
                host: host_name.to_owned(),
                port,
            }],
        };
        let http2 = own.is_some_and(|own| own.http2);
        if http2 && uri.scheme() == Some(&http::uri::Scheme::HTTPS) {
            return Err(invalid().with_source(
                "HTTP/2 is spoken with prior knowledge over plain TCP only: \
                 an https:// upstream is called over HTTP/1",
            ));
        }
        // Every endpoint connects through the same connector, handed its own
        // address, and checks the URL's host in the TLS server's certificate.
        let connector = self.connectors.for_host(host_name);
        let policy = self.connectors.policy.clone();
        let endpoint_uri = uri.clone();
        let upstream_url: Arc<str> = Arc::from(url);
        let make = move |address: SocketAddr, changed| {
            EndpointShared::new(
                address,
                upstream_url.clone(),
                connector.clone(),
                endpoint_uri.clone(),
                http2,
                policy.clone(),
                changed,
            )
        };
        let mut upstreams = self
            .upstreams
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(upstream) = upstreams.get(url) {
            // Another call made it first: share its endpoints.
            return Ok(upstream.clone());
        }
        let upstream = Upstream::new(Parts {
            url: url.into(),
            path,
            host,
            timeout: own.and_then(|own| own.timeout),
            targets,
            lookup: self.lookup.clone(),
            refresh: self.settings.dns_refresh,
            make: Box::new(make),
        });
        // Bounded, for a program that calls ever new URLs: those past the
        // bound are made for the call, and their connections closed after it.
        if upstreams.len() < MAX_REMEMBERED_UPSTREAMS {
            upstreams.insert(url.into(), upstream.clone());
        }
        Ok(upstream)
    }

    /// The client's settings.
    pub fn settings(&self) -> &ClientSettings {
        &self.settings
    }

    /// Calls `func_name` with keyword arguments `kwargs` (anything that
    /// serializes to a JSON object: a struct, a map, an object [`Value`]) on
    /// the FrameX instance at base URL `url`, sending `key` if given, and
    /// returns the result as it came.
    pub async fn call<A: Serialize + ?Sized>(
        &self,
        url: &str,
        key: Option<&str>,
        func_name: &str,
        kwargs: &A,
    ) -> Result<Value, Error> {
        self.send(CallRequest::new(url, func_name, kwargs)?.key(key))
            .await
    }

    /// [`Client::call`], with the result read into an `R` (a `dynamic_obj`
    /// that Python FrameX sent is read as the object it wraps).
    pub async fn call_as<A: Serialize + ?Sized, R: DeserializeOwned>(
        &self,
        url: &str,
        key: Option<&str>,
        func_name: &str,
        kwargs: &A,
    ) -> Result<R, Error> {
        self.send_as(CallRequest::new(url, func_name, kwargs)?.key(key))
            .await
    }

    /// Sends a prepared call and returns the result as it came.
    pub async fn send(&self, call: CallRequest<'_>) -> Result<Value, Error> {
        self.send_as(call).await
    }

    /// Sends a prepared call and reads the result into an `R`.
    pub async fn send_as<R: DeserializeOwned>(&self, call: CallRequest<'_>) -> Result<R, Error> {
        let (url, func) = (call.url, call.func_name);
        let json = self.send_json(call).await?;
        framex_json::from_slice(&json).map_err(|e| {
            let detail = "the result does not have the type the caller expects".to_owned();
            Error::new(ErrorKind::Decode { detail }, url, func).with_source(e)
        })
    }

    /// Sends a prepared call and returns the result's JSON, decoded from the
    /// wire but not read.
    pub async fn send_json(&self, call: CallRequest<'_>) -> Result<Vec<u8>, Error> {
        let (url, func) = (call.url, call.func_name);
        let encoded = self.send_encoded(call).await?;
        let json: Result<Vec<u8>, Box<dyn std::error::Error + Send + Sync>> = match encoded {
            Value::String(data) => {
                wire::decode_json(&data, self.settings.max_inflated_bytes).map_err(Into::into)
            }
            // Python FrameX hands back a `data` that is not an encoded string as it
            // is; so does FrameX for Rust.
            other => framex_json::to_vec(&other).map_err(Into::into),
        };
        json.map_err(|e| decode_error(url, func, "the result does not decode").with_source(e))
    }

    /// Sends a prepared call and returns the envelope's `data` still encoded, as a
    /// relaying instance passes it on.
    ///
    /// The call may take its own timeout ([`CallRequest::timeout`]), else its
    /// upstream's ([`UpstreamSettings::with_timeout`]), else the client's; and
    /// never longer than the deadline of the call being served, if any.
    pub async fn send_encoded(&self, call: CallRequest<'_>) -> Result<Value, Error> {
        let (url, func) = (call.url, call.func_name);
        let looked_up;
        let upstream = match call.upstream {
            Some(upstream) => upstream,
            None => {
                looked_up = self.lookup(url, func)?;
                &looked_up
            }
        };
        let timeout = call
            .timeout
            .or(upstream.inner.timeout)
            .unwrap_or(self.settings.timeout);
        let now = Instant::now();
        let deadline = match (now.checked_add(timeout), deadline::current()) {
            (Some(own), Some(caller)) => Some(own.min(caller)),
            (own, caller) => own.or(caller),
        };
        let after = deadline.map_or(timeout, |deadline| deadline.saturating_duration_since(now));
        let attempts = Attempts::default();
        let exchange = self.exchange(&call, upstream, deadline, after, &attempts);
        let result = match deadline {
            // The call it is made from has no time left: nothing is sent.
            Some(_) if after.is_zero() => Err(Error::new(ErrorKind::Timeout { after }, url, func)
                .with_source("the deadline of the call it is made for had passed")),
            Some(deadline) => match tokio::time::timeout_at(deadline.into(), exchange).await {
                Ok(result) => result,
                Err(_) => Err(Error::new(ErrorKind::Timeout { after }, url, func)),
            },
            None => exchange.await,
        };
        result.map_err(|error| error.with_tried(tried(&attempts)))
    }

    async fn exchange(
        &self,
        call: &CallRequest<'_>,
        upstream: &Upstream,
        deadline: Option<Instant>,
        after: Duration,
        attempts: &Attempts,
    ) -> Result<Value, Error> {
        let (url, func) = (call.url, call.func_name);
        let inner = &upstream.inner;
        let mut headers = HeaderMap::with_capacity(8);
        headers.insert(HOST, inner.host.clone());
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        headers.insert(
            const { http::HeaderName::from_static(ERRORS_HEADER) },
            HeaderValue::from_static(ERRORS_BY_STATUS),
        );
        if let Some(key) = call.key {
            let mut value = HeaderValue::from_str(key).map_err(|e| {
                let detail = "the key is not a valid header value".to_owned();
                Error::new(ErrorKind::Decode { detail }, url, func).with_source(e)
            })?;
            value.set_sensitive(true);
            headers.insert(AUTHORIZATION, value);
        }
        if call.hops > 0 {
            headers.insert(
                const { http::HeaderName::from_static(HOPS_HEADER) },
                HeaderValue::from(call.hops),
            );
        }
        // The caller's trace goes on, from the current span.
        TraceContext::outgoing().insert_into(&mut headers);
        let template = Arc::new(CallTemplate {
            path: inner.path.clone(),
            headers,
            body: Bytes::from(call.body.to_json()),
            deadline,
            max_response_bytes: self.settings.max_response_bytes,
        });
        let answered = inner
            .call(template, call.idempotent, attempts)
            .await
            .map_err(|error| attempt_error(error, url, func, self.settings.max_response_bytes))?;
        if answered.deadline_passed {
            // The remote stopped at this call's deadline, just before this
            // side's timer: the same timeout.
            return Err(Error::new(ErrorKind::Timeout { after }, url, func));
        }
        interpret(answered.status, &answered.body, url, func)
    }

    /// Sends `request` (any method, any body, streamed; its URI a URL under
    /// base URL `url`) to one of that upstream's endpoints, over the idle
    /// connections that calls of `url` use, and returns the answer as soon as
    /// its head arrives; its body is read as the caller reads it, and its
    /// connection goes back to the pool once it has ended. The request line
    /// carries the URI's path and query, the `Host` header the URL's host; the
    /// caller's timeouts apply (this waits for the head without one). A
    /// request that never left goes to another endpoint. What route
    /// forwarding sends through.
    pub async fn forward<B>(
        &self,
        url: &str,
        mut request: Request<B>,
    ) -> Result<Response<StreamedBody>, Error>
    where
        B: hyper::body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let upstream = self.lookup(url, "")?;
        let inner = &upstream.inner;
        let origin_form = request
            .uri()
            .path_and_query()
            .map_or_else(|| Uri::from_static("/"), |path| Uri::from(path.clone()));
        *request.uri_mut() = origin_form;
        request.headers_mut().insert(HOST, inner.host.clone());
        let request = request.map(|body| {
            OutgoingBody::Right(http_body_util::BodyExt::boxed_unsync(
                http_body_util::BodyExt::map_err(body, Into::into),
            ))
        });
        let attempts = Attempts::default();
        inner.forward(request, &attempts).await.map_err(|error| {
            attempt_error(error, url, "", self.settings.max_response_bytes)
                .with_tried(tried(&attempts))
        })
    }
}

/// The client's DNS: `nameservers`, else the system's configuration, else
/// the system's resolver. The resolver's cache keeps an answer no longer than
/// `refresh.ceiling`: without that bound, a name looked up again after the
/// ceiling got the cached answer for its whole TTL (Docker's DNS gives 600
/// s), and replicas added meanwhile were not seen.
fn dns_lookup(nameservers: &[SocketAddr], refresh: Refresh) -> Lookup {
    use hickory_resolver::config::{ConnectionConfig, NameServerConfig, ResolverConfig};
    use hickory_resolver::net::runtime::TokioRuntimeProvider;
    let builder = if nameservers.is_empty() {
        match hickory_resolver::TokioResolver::builder_tokio() {
            Ok(builder) => builder,
            Err(error) => {
                tracing::debug!(%error, "no DNS configuration: names are looked up by the system");
                return Lookup::System;
            }
        }
    } else {
        let servers = nameservers
            .iter()
            .map(|server| {
                let mut udp = ConnectionConfig::udp();
                udp.port = server.port();
                let mut tcp = ConnectionConfig::tcp();
                tcp.port = server.port();
                NameServerConfig::new(server.ip(), true, vec![udp, tcp])
            })
            .collect();
        hickory_resolver::TokioResolver::builder_with_config(
            ResolverConfig::from_parts(None, Vec::new(), servers),
            TokioRuntimeProvider::default(),
        )
    };
    let mut builder = builder;
    let options = builder.options_mut();
    options.positive_max_ttl = Some(refresh.ceiling);
    options.negative_max_ttl = Some(refresh.ceiling);
    match builder.build() {
        Ok(resolver) => Lookup::Dns(Arc::new(resolver)),
        Err(error) => {
            tracing::debug!(%error, "no DNS resolver: names are looked up by the system");
            Lookup::System
        }
    }
}

fn tried(attempts: &Attempts) -> Vec<Tried> {
    attempts
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .clone()
}

/// The error of a call whose last attempt failed so.
fn attempt_error(error: AttemptError, url: &str, func: &str, limit: usize) -> Error {
    let kind = match error.failure {
        Failure::NoEndpoints | Failure::Connect => ErrorKind::Connect,
        Failure::NotSent | Failure::Interrupted | Failure::Unreachable => ErrorKind::Interrupted,
        Failure::TooLarge => ErrorKind::Decode {
            detail: format!("the answer is larger than {limit} bytes"),
        },
    };
    Error::new(kind, url, func).with_source(error.source)
}

/// Turns an HTTP answer into the envelope's encoded data or an error.
fn interpret(status: StatusCode, body: &[u8], url: &str, func: &str) -> Result<Value, Error> {
    let envelope: Option<Envelope> = framex_json::from_slice(body).ok();
    if !status.is_success() {
        let message = match &envelope {
            Some(envelope) if !envelope.message.is_empty() => envelope.message.clone(),
            _ => body_excerpt(body, status),
        };
        return Err(classify(status.as_u16(), message, url, func));
    }
    let Some(envelope) = envelope else {
        return Err(decode_error(
            url,
            func,
            "the answer is not a FrameX envelope",
        ));
    };
    if envelope.status != 200 {
        return Err(classify(envelope.status, envelope.message, url, func));
    }
    match envelope.data {
        Some(data) => Ok(data),
        None => Err(decode_error(url, func, "the envelope has no data")),
    }
}

fn classify(status: u16, message: String, url: &str, func: &str) -> Error {
    let kind = if status == 401 || status == 403 {
        ErrorKind::Unauthorized { message }
    } else if wire::parse_not_registered(&message).is_some() {
        // Python FrameX tells an unknown function by these words alone (HTTP
        // and envelope status 500, like any failure), and FrameX for Rust
        // answers with the same words (and 404), so one test reads both.
        ErrorKind::NotRegistered
    } else {
        ErrorKind::Remote { status, message }
    };
    Error::new(kind, url, func)
}

fn decode_error(url: &str, func: &str, detail: &str) -> Error {
    Error::new(
        ErrorKind::Decode {
            detail: detail.to_owned(),
        },
        url,
        func,
    )
}

/// A short, printable piece of a non-envelope error body, for the message.
fn body_excerpt(body: &[u8], status: StatusCode) -> String {
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    if text.is_empty() {
        return status.canonical_reason().unwrap_or("no message").to_owned();
    }
    let mut excerpt: String = text.chars().take(200).collect();
    if excerpt.len() < text.len() {
        excerpt.push('…');
    }
    excerpt
}
