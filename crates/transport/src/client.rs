//! The pooled HTTP client that calls proxy functions on other FrameX instances.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use bytes::Bytes;
use framex_json::Value;
use http::header::{AUTHORIZATION, CONTENT_TYPE, HOST};
use http::{HeaderValue, Method, Request, Response, StatusCode, Uri};
use http_body_util::Full;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use serde::Serialize;
use serde::de::DeserializeOwned;

use rustls_pki_types::CertificateDer;

use crate::error::{Error, ErrorKind};
use crate::pool::{Connection, Idle, OutgoingBody, StreamedBody};
use crate::tls;
use crate::trace::TraceContext;
use crate::wire::{self, CallBody, Envelope, PROXY_FUNCTION_PATH};

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

    /// How long connecting may take; default 10 s, and never longer than the timeout.
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

    /// The call timeout.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }
}

/// A call to send: the target, the encoded body and the headers that go with it.
#[derive(Debug, Clone)]
pub struct CallRequest<'a> {
    url: &'a str,
    /// The target resolved already ([`CallRequest::to`]): no lookup by URL.
    endpoint: Option<&'a Endpoint>,
    func_name: &'a str,
    body: CallBody,
    key: Option<&'a str>,
    hops: u32,
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
            endpoint: None,
            func_name,
            body,
            key: None,
            hops: 0,
        }
    }

    /// A call whose body is already encoded to an endpoint resolved once
    /// ([`Client::endpoint`]), as a caller that calls the same instance again
    /// and again holds it.
    pub fn to(endpoint: &'a Endpoint, func_name: &'a str, body: CallBody) -> CallRequest<'a> {
        CallRequest {
            url: endpoint.url(),
            endpoint: Some(endpoint),
            func_name,
            body,
            key: None,
            hops: 0,
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
}

/// A pooled, keep-alive HTTP/1 client for FrameX calls, over `http://` or
/// `https://`. Cloning it shares the pool: make one per process.
///
/// A call runs on the task that awaits it: that task writes the request and
/// reads the answer on a connection taken from the pool, with no task per
/// connection and no channel in between. Each base URL has its own idle
/// connections, at most [`ClientSettings::with_pool_max_idle_per_host`] of them,
/// closed after [`ClientSettings::with_pool_idle_timeout`].
#[derive(Debug, Clone)]
pub struct Client {
    connector: HttpsConnector<HttpConnector>,
    settings: Arc<ClientSettings>,
    endpoints: Arc<RwLock<HashMap<Box<str>, Endpoint>>>,
}

/// The proxy-function endpoint of one instance, parsed once, and its idle
/// connections: what [`Client::endpoint`] resolves a base URL to. Cloning it
/// shares the connections.
#[derive(Debug, Clone)]
pub struct Endpoint {
    pub(crate) inner: Arc<EndpointInner>,
}

impl Endpoint {
    /// The base URL it was resolved from.
    pub fn url(&self) -> &str {
        &self.inner.url
    }
}

#[derive(Debug)]
pub(crate) struct EndpointInner {
    /// The base URL, for messages.
    url: Box<str>,
    /// The whole URL, which the connector connects to.
    pub(crate) uri: Uri,
    /// Its path, which the request line carries.
    pub(crate) path: Uri,
    pub(crate) host: HeaderValue,
    /// `None` for a URL past [`MAX_REMEMBERED_ENDPOINTS`]: its connection is
    /// closed after the call.
    pub(crate) idle: Option<Arc<Idle>>,
}

/// How many base URLs a [`Client`] keeps parsed.
const MAX_REMEMBERED_ENDPOINTS: usize = 1024;

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
        let (connector, _rejected) = connector(&settings);
        Client::build(connector, settings)
    }

    /// A client with these settings, or the error of the first root certificate
    /// that rustls cannot use.
    pub fn try_new(settings: ClientSettings) -> Result<Client, tls::TlsError> {
        let (connector, rejected) = connector(&settings);
        if let Some(error) = rejected.into_iter().next() {
            return Err(error);
        }
        Ok(Client::build(connector, settings))
    }

    fn build(connector: HttpsConnector<HttpConnector>, settings: ClientSettings) -> Client {
        Client {
            connector,
            settings: Arc::new(settings),
            endpoints: Arc::default(),
        }
    }

    /// The proxy-function endpoint of the instance at base URL `url`, which
    /// calls of it ([`CallRequest::to`]) go to without looking the URL up.
    /// Every endpoint of one URL shares its idle connections. The error is an
    /// [`ErrorKind::InvalidUrl`] naming the URL.
    pub fn endpoint(&self, url: &str) -> Result<Endpoint, Error> {
        self.lookup(url, "")
    }

    /// The endpoint of `url`, parsed once per URL: calls go to a handful of
    /// instances, again and again.
    pub(crate) fn lookup(&self, url: &str, func: &str) -> Result<Endpoint, Error> {
        if let Some(endpoint) = self
            .endpoints
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(url)
        {
            return Ok(endpoint.clone());
        }
        let uri: Uri = format!("{url}{PROXY_FUNCTION_PATH}")
            .parse()
            .ok()
            .filter(|uri: &Uri| {
                let scheme = uri.scheme();
                (scheme == Some(&http::uri::Scheme::HTTP)
                    || scheme == Some(&http::uri::Scheme::HTTPS))
                    && uri.host().is_some()
            })
            .ok_or_else(|| Error::new(ErrorKind::InvalidUrl, url, func))?;
        // The host and port as written, which is what the connection pool would
        // otherwise format into a `Host` header on every call.
        let host = uri
            .authority()
            .and_then(|authority| {
                let port = authority.port_u16();
                let default = match uri.scheme_str() {
                    Some("https") => 443,
                    _ => 80,
                };
                let host = authority.host();
                match port {
                    Some(port) if port != default => {
                        HeaderValue::from_str(&format!("{host}:{port}")).ok()
                    }
                    _ => HeaderValue::from_str(host).ok(),
                }
            })
            .ok_or_else(|| Error::new(ErrorKind::InvalidUrl, url, func))?;
        let path = uri
            .path_and_query()
            .map(|path| Uri::from(path.clone()))
            .ok_or_else(|| Error::new(ErrorKind::InvalidUrl, url, func))?;
        let mut endpoints = self
            .endpoints
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(endpoint) = endpoints.get(url) {
            // Another call parsed it first: share its connections.
            return Ok(endpoint.clone());
        }
        // Bounded, for a program that calls ever new URLs.
        let remembered = endpoints.len() < MAX_REMEMBERED_ENDPOINTS;
        let endpoint = Endpoint {
            inner: Arc::new(EndpointInner {
                url: url.into(),
                uri,
                path,
                host,
                idle: remembered.then(Arc::default),
            }),
        };
        if remembered {
            endpoints.insert(url.into(), endpoint.clone());
        }
        Ok(endpoint)
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
    pub async fn send_encoded(&self, call: CallRequest<'_>) -> Result<Value, Error> {
        let timeout = self.settings.timeout;
        match tokio::time::timeout(timeout, self.exchange(&call)).await {
            Ok(result) => result,
            Err(_) => Err(Error::new(
                ErrorKind::Timeout { after: timeout },
                call.url,
                call.func_name,
            )),
        }
    }

    async fn exchange(&self, call: &CallRequest<'_>) -> Result<Value, Error> {
        let (url, func) = (call.url, call.func_name);
        let looked_up;
        let endpoint = match call.endpoint {
            Some(endpoint) => &endpoint.inner,
            None => {
                looked_up = self.lookup(url, func)?;
                &looked_up.inner
            }
        };
        let authorization = call
            .key
            .map(|key| {
                let mut value = HeaderValue::from_str(key).map_err(|e| {
                    let detail = "the key is not a valid header value".to_owned();
                    Error::new(ErrorKind::Decode { detail }, url, func).with_source(e)
                })?;
                value.set_sensitive(true);
                Ok::<_, Error>(value)
            })
            .transpose()?;
        let body = Bytes::from(call.body.to_json());
        // The caller's trace goes on, from the current span.
        let trace = TraceContext::outgoing();
        let request = || {
            let mut request = Request::new(OutgoingBody::Left(Full::new(body.clone())));
            *request.method_mut() = Method::POST;
            *request.uri_mut() = endpoint.path.clone();
            let headers = request.headers_mut();
            headers.insert(HOST, endpoint.host.clone());
            headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
            headers.insert(
                const { http::HeaderName::from_static(ERRORS_HEADER) },
                HeaderValue::from_static(ERRORS_BY_STATUS),
            );
            if let Some(value) = &authorization {
                headers.insert(AUTHORIZATION, value.clone());
            }
            if call.hops > 0 {
                headers.insert(
                    const { http::HeaderName::from_static(HOPS_HEADER) },
                    HeaderValue::from(call.hops),
                );
            }
            trace.insert_into(headers);
            request
        };

        let idle = endpoint.idle.as_ref();
        let mut connection = self.connection(endpoint, url, func).await?;
        let interrupted =
            |error: hyper::Error| Error::new(ErrorKind::Interrupted, url, func).with_source(error);
        let response = match connection.send(request()).await {
            Ok(response) => response,
            // The call is sent once more on a new connection (see
            // `ClientSettings::with_retry_closed_connection`).
            Err(error) if self.settings.retry_closed_connection && closed_before_answer(&error) => {
                connection = match self.open(endpoint, url, func).await {
                    Ok(connection) => connection,
                    // The instance is gone: the first failure says more.
                    Err(_) => return Err(interrupted(error)),
                };
                connection.send(request()).await.map_err(interrupted)?
            }
            Err(error) => return Err(interrupted(error)),
        };
        let status = response.status();
        let limit = self.settings.max_response_bytes;
        let body = connection
            .read_body(response.into_body(), limit)
            .await
            .map_err(|e| {
                if e.is::<http_body_util::LengthLimitError>() {
                    let detail = format!("the answer is larger than {limit} bytes");
                    Error::new(ErrorKind::Decode { detail }, url, func).with_source(e)
                } else {
                    Error::new(ErrorKind::Interrupted, url, func).with_source(e)
                }
            })?;
        if let Some(idle) = idle
            && connection.is_reusable().await
        {
            idle.put(
                connection,
                self.settings.pool_max_idle_per_host,
                self.settings.pool_idle_timeout,
            );
        }
        interpret(status, &body, url, func)
    }

    /// Sends `request` (any method, any body, streamed; its URI a URL under
    /// base URL `url`) to that instance, over the idle connections that calls
    /// of `url` use, and returns the answer as soon as its head arrives; its
    /// body is read as the caller reads it, and its connection goes back to
    /// the pool once it has ended. The request line carries the URI's path and
    /// query, the `Host` header the URL's host; the caller's timeouts apply
    /// (this waits for the head without one). What route forwarding sends
    /// through.
    pub async fn forward<B>(
        &self,
        url: &str,
        mut request: Request<B>,
    ) -> Result<Response<StreamedBody>, Error>
    where
        B: hyper::body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let endpoint = self.lookup(url, "")?;
        let endpoint = &endpoint.inner;
        let origin_form = request
            .uri()
            .path_and_query()
            .map_or_else(|| Uri::from_static("/"), |path| Uri::from(path.clone()));
        *request.uri_mut() = origin_form;
        request.headers_mut().insert(HOST, endpoint.host.clone());
        let request = request.map(|body| {
            OutgoingBody::Right(http_body_util::BodyExt::boxed_unsync(
                http_body_util::BodyExt::map_err(body, Into::into),
            ))
        });
        let mut connection = self.connection(endpoint, url, "").await?;
        let response = connection
            .send(request)
            .await
            .map_err(|error| Error::new(ErrorKind::Interrupted, url, "").with_source(error))?;
        let (parts, body) = response.into_parts();
        let body = StreamedBody::new(
            body,
            connection,
            endpoint.idle.clone(),
            self.settings.pool_max_idle_per_host,
            self.settings.pool_idle_timeout,
        );
        Ok(Response::from_parts(parts, body))
    }

    /// An idle connection to `endpoint` from the pool, else a new one.
    async fn connection(
        &self,
        endpoint: &EndpointInner,
        url: &str,
        func: &str,
    ) -> Result<Connection, Error> {
        if let Some(idle) = &endpoint.idle
            && let Some(connection) = idle.take(self.settings.pool_idle_timeout).await
        {
            return Ok(connection);
        }
        self.open(endpoint, url, func).await
    }

    /// A new connection to `endpoint`.
    async fn open(
        &self,
        endpoint: &EndpointInner,
        url: &str,
        func: &str,
    ) -> Result<Connection, Error> {
        Connection::open(&self.connector, &endpoint.uri)
            .await
            .map_err(|e| Error::new(ErrorKind::Connect, url, func).with_source(e))
    }
}

/// Whether a request failed because its connection closed before any part of
/// the answer arrived: the server closed a kept-alive connection as the request
/// went out on it.
fn closed_before_answer(error: &hyper::Error) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(cause) = source {
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
        if incomplete || reset {
            return true;
        }
        source = cause.source();
    }
    false
}

fn connector(settings: &ClientSettings) -> (HttpsConnector<HttpConnector>, Vec<tls::TlsError>) {
    let mut http = HttpConnector::new();
    http.set_nodelay(true);
    http.set_connect_timeout(Some(settings.connect_timeout.min(settings.timeout)));
    tls::connector(http, &settings.root_certificates)
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
