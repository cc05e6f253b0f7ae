//! Route forwarding: the routes that upstream FrameX services publish in their
//! OpenAPI documents, kept when the upstream's enable/disable rules allow them,
//! served here and forwarded there.
//!
//! Documents load in the background: an upstream that is down at start-up is
//! retried with backoff, and its routes appear once it answers. A route that
//! cannot be understood is skipped and reported in `GET /health`; it never stops
//! the instance. Bodies (JSON, multipart with files, anything) pass through as
//! bytes, streamed in both directions for the paths in the stream list.

use std::fmt;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use bytes::Bytes;
use http::header::{AUTHORIZATION, HOST};
use http::{HeaderMap, HeaderName, HeaderValue, Method, Request, Response, StatusCode, Uri};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Empty, Full, Limited};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client as HyperClient;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use serde_json::{Map, Value};

use crate::{BoxError, ServerBody, boxed, envelope_response};

/// The request body the forwarding client sends.
type ForwardBody = UnsyncBoxBody<Bytes, BoxError>;

/// The forwarding client: `http://` and `https://` upstreams.
type ForwardClient = HyperClient<HttpsConnector<HttpConnector>, ForwardBody>;

/// A client trusting the system's CAs and the roots of `upstreams`.
fn forward_client<'a>(
    upstreams: impl IntoIterator<Item = &'a Upstream>,
    connect_timeout: Duration,
    pooled: bool,
) -> ForwardClient {
    let roots: Vec<_> = upstreams
        .into_iter()
        .flat_map(|upstream| upstream.root_certificates.iter().cloned())
        .collect();
    let mut http = HttpConnector::new();
    http.set_nodelay(true);
    http.set_connect_timeout(Some(connect_timeout));
    // Roots that rustls cannot use were refused when the client settings of the
    // instance were built; here they are left out.
    let (connector, _rejected) = framex_transport::tls::connector(http, &roots);
    let mut builder = HyperClient::builder(TokioExecutor::new());
    builder.pool_timer(TokioTimer::new());
    if pooled {
        builder.pool_idle_timeout(Duration::from_secs(4));
    } else {
        builder.pool_max_idle_per_host(0);
    }
    builder.build(connector)
}

/// The methods an OpenAPI path item can hold.
const METHODS: [(&str, Method); 8] = [
    ("get", Method::GET),
    ("put", Method::PUT),
    ("post", Method::POST),
    ("delete", Method::DELETE),
    ("options", Method::OPTIONS),
    ("head", Method::HEAD),
    ("patch", Method::PATCH),
    ("trace", Method::TRACE),
];

/// Keys of an OpenAPI path item that are not operations.
const PATH_ITEM_FIELDS: [&str; 5] = ["summary", "description", "servers", "parameters", "$ref"];

/// Headers that describe one connection, never passed on.
const HOP_BY_HOP: [&str; 8] = [
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

/// An upstream FrameX service whose routes this instance serves.
#[derive(Debug, Clone)]
pub struct Upstream {
    url: String,
    docs_path: String,
    rules: framex_filter::Rules,
    keys: framex_auth::Rules,
    stream_paths: Vec<String>,
    root_certificates: Vec<framex_transport::CertificateDer<'static>>,
}

impl Upstream {
    /// The service at base URL `url`, whose paths `rules` allow or refuse.
    pub fn new(url: impl Into<String>, rules: framex_filter::Rules) -> Upstream {
        Upstream {
            url: url.into(),
            docs_path: "/api/v1/openapi.json".to_owned(),
            rules,
            keys: framex_auth::Rules::default(),
            stream_paths: Vec::new(),
            root_certificates: Vec::new(),
        }
    }

    /// Where its OpenAPI document is; default `/api/v1/openapi.json`.
    pub fn with_docs_path(mut self, path: impl Into<String>) -> Upstream {
        self.docs_path = path.into();
        self
    }

    /// The client-side rules that give the key to send for each path (the
    /// document's path included).
    pub fn with_keys(mut self, keys: framex_auth::Rules) -> Upstream {
        self.keys = keys;
        self
    }

    /// Paths whose answers are streamed to the caller as they arrive
    /// (`force_stream_apis`), with no overall timeout.
    pub fn with_stream_paths(mut self, paths: impl IntoIterator<Item = String>) -> Upstream {
        self.stream_paths = paths.into_iter().collect();
        self
    }

    /// CA certificates trusted for an `https://` upstream besides the system's.
    pub fn with_root_certificates(
        mut self,
        certificates: impl IntoIterator<Item = framex_transport::CertificateDer<'static>>,
    ) -> Upstream {
        self.root_certificates.extend(certificates);
        self
    }

    /// The base URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The path of its OpenAPI document.
    pub fn docs_path(&self) -> &str {
        &self.docs_path
    }

    /// Its enable/disable rules.
    pub fn rules(&self) -> &framex_filter::Rules {
        &self.rules
    }

    fn key_for(&self, path: &str) -> Option<&str> {
        self.keys.key_for(path).map(framex_auth::Key::expose)
    }
}

/// An upstream's OpenAPI document, reduced to what forwarding needs.
#[derive(Debug, Clone, Default)]
pub struct Document {
    operations: Vec<Operation>,
    skipped: Vec<Skipped>,
    schemas: Map<String, Value>,
}

impl Document {
    /// Every operation the document lists, in its order.
    pub fn operations(&self) -> &[Operation] {
        &self.operations
    }

    /// What could not be understood, and why.
    pub fn skipped(&self) -> &[Skipped] {
        &self.skipped
    }
}

/// One path and method of a document.
#[derive(Debug, Clone)]
pub struct Operation {
    template: Template,
    method: Method,
    spec: Value,
}

impl Operation {
    /// The path as the document writes it (`/api/v1/items/{item_id}`).
    pub fn path(&self) -> &str {
        &self.template.text
    }

    /// The method.
    pub fn method(&self) -> &Method {
        &self.method
    }
}

/// A part of a document that was not used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skipped {
    /// The path (with the method, when one operation was skipped).
    pub path: String,
    /// Why.
    pub reason: String,
}

impl fmt::Display for Skipped {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.reason)
    }
}

/// Reads an OpenAPI document. Fails only when the document as a whole is
/// unusable; a path or operation that cannot be understood is skipped.
pub fn parse_document(body: &[u8]) -> Result<Document, String> {
    let document: Value = serde_json::from_slice(body)
        .map_err(|e| format!("the OpenAPI document is not JSON: {e}"))?;
    let paths = document
        .get("paths")
        .and_then(Value::as_object)
        .ok_or("the OpenAPI document has no `paths` object")?;
    let mut parsed = Document {
        schemas: document
            .pointer("/components/schemas")
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default(),
        ..Document::default()
    };
    for (path, item) in paths {
        let template = match Template::parse(path) {
            Ok(template) => template,
            Err(reason) => {
                parsed.skipped.push(Skipped {
                    path: path.clone(),
                    reason,
                });
                continue;
            }
        };
        let Some(item) = item.as_object() else {
            parsed.skipped.push(Skipped {
                path: path.clone(),
                reason: "the path item is not an object".to_owned(),
            });
            continue;
        };
        for (key, spec) in item {
            let Some((_, method)) = METHODS.iter().find(|(name, _)| name == key) else {
                if !PATH_ITEM_FIELDS.contains(&key.as_str()) && !key.starts_with("x-") {
                    parsed.skipped.push(Skipped {
                        path: format!("{key} {path}"),
                        reason: format!("`{key}` is not an HTTP method"),
                    });
                }
                continue;
            };
            if !spec.is_object() {
                parsed.skipped.push(Skipped {
                    path: format!("{} {path}", method.as_str()),
                    reason: "the operation is not an object".to_owned(),
                });
                continue;
            }
            parsed.operations.push(Operation {
                template: template.clone(),
                method: method.clone(),
                spec: spec.clone(),
            });
        }
    }
    Ok(parsed)
}

/// A path with `{parameter}` segments.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Template {
    text: String,
    segments: Vec<Segment>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    Literal(String),
    Parameter,
}

impl Template {
    fn parse(text: &str) -> Result<Template, String> {
        if !text.starts_with('/') {
            return Err("the path does not start with `/`".to_owned());
        }
        let segments = text[1..]
            .split('/')
            .map(|segment| {
                let inner = segment.strip_prefix('{').and_then(|s| s.strip_suffix('}'));
                match inner {
                    Some(name) if !name.is_empty() && !name.contains(['{', '}']) => {
                        Ok(Segment::Parameter)
                    }
                    _ if segment.contains(['{', '}']) => Err(format!(
                        "segment `{segment}`: a path parameter must be a whole segment"
                    )),
                    _ => Ok(Segment::Literal(segment.to_owned())),
                }
            })
            .collect::<Result<_, _>>()?;
        Ok(Template {
            text: text.to_owned(),
            segments,
        })
    }

    fn matches(&self, path: &str) -> bool {
        let Some(path) = path.strip_prefix('/') else {
            return false;
        };
        let mut parts = path.split('/');
        for segment in &self.segments {
            match (segment, parts.next()) {
                (Segment::Literal(literal), Some(part)) if literal == part => {}
                (Segment::Parameter, Some(part)) if !part.is_empty() => {}
                _ => return false,
            }
        }
        parts.next().is_none()
    }

    fn parameters(&self) -> usize {
        self.segments
            .iter()
            .filter(|s| matches!(s, Segment::Parameter))
            .count()
    }
}

/// A route served here and forwarded to an upstream.
#[derive(Debug, Clone)]
struct Route {
    operation: Operation,
    upstream: usize,
    stream: bool,
}

/// How loading one upstream's document is going.
#[derive(Debug, Clone, Default)]
struct Load {
    attempts: u32,
    last_error: Option<String>,
    document: Option<Document>,
    /// Routes of the document not served, and why (rules, conflicts).
    refused: Vec<Skipped>,
}

/// What the upstreams' documents make of the routes: rebuilt whenever one loads.
#[derive(Debug, Default)]
struct Table {
    routes: Vec<Route>,
}

/// A forwarded route found for a request, with the table it was found in (the
/// table may be rebuilt meanwhile).
pub(crate) struct Found {
    table: Arc<Table>,
    index: usize,
}

/// The forwarding side of a server.
pub(crate) struct Forwarding {
    upstreams: Vec<Upstream>,
    client: ForwardClient,
    timeout: Duration,
    max_body_bytes: usize,
    /// Routes this instance serves itself; never forwarded.
    local: Vec<(Method, String)>,
    loads: Mutex<Vec<Load>>,
    table: RwLock<Arc<Table>>,
}

impl fmt::Debug for Forwarding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Forwarding")
            .field("upstreams", &self.upstreams)
            .finish_non_exhaustive()
    }
}

impl Forwarding {
    pub(crate) fn new(
        upstreams: Vec<Upstream>,
        timeout: Duration,
        max_body_bytes: usize,
        local: Vec<(Method, String)>,
    ) -> Forwarding {
        let client = forward_client(&upstreams, timeout.min(Duration::from_secs(10)), true);
        Forwarding {
            loads: Mutex::new(vec![Load::default(); upstreams.len()]),
            upstreams,
            client,
            timeout,
            max_body_bytes,
            local,
            table: RwLock::new(Arc::new(Table::default())),
        }
    }

    pub(crate) fn upstream_count(&self) -> usize {
        self.upstreams.len()
    }

    /// Loads upstream `index`'s document, retrying with backoff until it loads.
    pub(crate) async fn load(self: Arc<Self>, index: usize) {
        let mut delay = Duration::from_millis(250);
        loop {
            let upstream = &self.upstreams[index];
            let result = fetch_document_with(&self.client, upstream, self.timeout).await;
            let loaded = result.is_ok();
            if let Ok(mut loads) = self.loads.lock() {
                let load = &mut loads[index];
                load.attempts += 1;
                match result {
                    Ok(document) => {
                        load.document = Some(document);
                        load.last_error = None;
                    }
                    Err(error) => load.last_error = Some(error),
                }
            }
            if loaded {
                self.rebuild();
                tracing::info!(upstream = upstream.url, "upstream document loaded");
                return;
            }
            if let Ok(loads) = self.loads.lock() {
                tracing::warn!(
                    upstream = upstream.url,
                    attempts = loads[index].attempts,
                    error = loads[index].last_error.as_deref().unwrap_or_default(),
                    retry_in = ?delay,
                    "upstream document not loaded"
                );
            }
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(Duration::from_secs(30));
        }
    }

    /// Recomputes the routes from every loaded document, in the configuration's
    /// order of upstreams, so that the outcome does not depend on which loaded
    /// first.
    fn rebuild(&self) {
        let Ok(mut loads) = self.loads.lock() else {
            return;
        };
        let mut routes: Vec<Route> = Vec::new();
        for (index, load) in loads.iter_mut().enumerate() {
            load.refused.clear();
            let Some(document) = &load.document else {
                continue;
            };
            let upstream = &self.upstreams[index];
            for operation in &document.operations {
                let path = operation.path();
                let label = format!("{} {path}", operation.method);
                match upstream.rules.decide(path) {
                    framex_filter::Decision::Enabled(_) => {}
                    framex_filter::Decision::Disabled(rule) => {
                        load.refused.push(Skipped {
                            path: label,
                            reason: format!("disabled by `{}`", rule.pattern()),
                        });
                        continue;
                    }
                    framex_filter::Decision::Unmatched => {
                        load.refused.push(Skipped {
                            path: label,
                            reason: "no enable rule matches".to_owned(),
                        });
                        continue;
                    }
                }
                if self
                    .local
                    .iter()
                    .any(|(method, local)| *method == operation.method && local == path)
                {
                    load.refused.push(Skipped {
                        path: label,
                        reason: "this instance serves it itself".to_owned(),
                    });
                    continue;
                }
                if let Some(first) = routes.iter().find(|route| route.operation.path() == path) {
                    load.refused.push(Skipped {
                        path: label,
                        reason: format!(
                            "the path is served by two upstreams, {} and {}; {} (listed first) serves it",
                            self.upstreams[first.upstream].url, upstream.url, self.upstreams[first.upstream].url
                        ),
                    });
                    continue;
                }
                routes.push(Route {
                    stream: upstream.stream_paths.iter().any(|p| p == path),
                    operation: operation.clone(),
                    upstream: index,
                });
            }
        }
        // Fixed paths before templated ones, otherwise in order.
        routes.sort_by_key(|route| route.operation.template.parameters());
        if let Ok(mut table) = self.table.write() {
            *table = Arc::new(Table { routes });
        }
    }

    fn table(&self) -> Arc<Table> {
        self.table
            .read()
            .map(|table| table.clone())
            .unwrap_or_default()
    }

    /// The forwarded route that serves `method` on `path`, if any: looked up
    /// once, then handed to [`Forwarding::forward`].
    pub(crate) fn find(&self, method: &Method, path: &str) -> Option<Found> {
        let table = self.table();
        let index = table.routes.iter().position(|route| {
            route.operation.method == *method && route.operation.template.matches(path)
        })?;
        Some(Found { table, index })
    }

    /// Whether a forwarded route serves `path` with any method.
    pub(crate) fn knows_path(&self, path: &str) -> bool {
        self.table()
            .routes
            .iter()
            .any(|route| route.operation.template.matches(path))
    }

    /// Forwards a request to the upstream of the route [`Forwarding::find`] found
    /// for it.
    pub(crate) async fn forward<B>(
        &self,
        found: Found,
        request: Request<B>,
        hops: u32,
    ) -> Response<ServerBody>
    where
        B: hyper::body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<BoxError>,
    {
        let route = &found.table.routes[found.index];
        let upstream = &self.upstreams[route.upstream];
        self.send(upstream, route, request, hops).await
    }

    async fn send<B>(
        &self,
        upstream: &Upstream,
        route: &Route,
        request: Request<B>,
        hops: u32,
    ) -> Response<ServerBody>
    where
        B: hyper::body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<BoxError>,
    {
        let path = request.uri().path().to_owned();
        let (parts, body) = request.into_parts();
        let path_and_query = parts
            .uri
            .path_and_query()
            .map_or(path.as_str(), |pq| pq.as_str());
        let Ok(uri) = format!("{}{path_and_query}", upstream.url).parse::<Uri>() else {
            return boxed(envelope_response(
                StatusCode::BAD_GATEWAY,
                &format!("cannot forward {path} to {}: invalid URL", upstream.url),
            ));
        };
        let mut forwarded = Request::new(body.map_err(Into::into).boxed_unsync());
        *forwarded.method_mut() = parts.method;
        *forwarded.uri_mut() = uri;
        *forwarded.headers_mut() = pass_on(&parts.headers);
        forwarded.headers_mut().insert(
            HeaderName::from_static(framex_transport::HOPS_HEADER),
            HeaderValue::from(hops.saturating_add(1)),
        );
        if let Some(key) = upstream.key_for(route.operation.path()) {
            match HeaderValue::from_str(key) {
                Ok(value) => {
                    forwarded.headers_mut().insert(AUTHORIZATION, value);
                }
                Err(_) => {
                    return boxed(envelope_response(
                        StatusCode::BAD_GATEWAY,
                        &format!(
                            "cannot forward {path} to {}: the key for it is not a valid header value",
                            upstream.url
                        ),
                    ));
                }
            }
        }

        let head = tokio::time::timeout(self.timeout, self.client.request(forwarded)).await;
        let response = match head {
            Ok(Ok(response)) => response,
            Ok(Err(error)) => {
                let what = if error.is_connect() {
                    "cannot connect"
                } else {
                    "the connection failed"
                };
                return boxed(envelope_response(
                    StatusCode::BAD_GATEWAY,
                    &format!("{what} forwarding {path} to {}", upstream.url),
                ));
            }
            Err(_) => return self.timed_out(&path, upstream),
        };
        let (mut parts, body) = response.into_parts();
        parts.headers = pass_on(&parts.headers);
        if route.stream {
            return Response::from_parts(parts, body.map_err(Into::into).boxed_unsync());
        }
        let collected = tokio::time::timeout(
            self.timeout,
            Limited::new(body, self.max_body_bytes).collect(),
        )
        .await;
        match collected {
            Ok(Ok(collected)) => Response::from_parts(
                parts,
                Full::new(collected.to_bytes())
                    .map_err(|never| match never {})
                    .boxed_unsync(),
            ),
            Ok(Err(_)) => boxed(envelope_response(
                StatusCode::BAD_GATEWAY,
                &format!(
                    "the answer of {} to {path} broke off or is larger than {} bytes",
                    upstream.url, self.max_body_bytes
                ),
            )),
            Err(_) => self.timed_out(&path, upstream),
        }
    }

    fn timed_out(&self, path: &str, upstream: &Upstream) -> Response<ServerBody> {
        boxed(envelope_response(
            StatusCode::GATEWAY_TIMEOUT,
            &format!(
                "{} did not answer {path} within {:?}",
                upstream.url, self.timeout
            ),
        ))
    }

    /// Each upstream's state, for `GET /health`.
    pub(crate) fn health(&self) -> Value {
        let table = self.table();
        let Ok(loads) = self.loads.lock() else {
            return Value::Null;
        };
        let upstreams = self
            .upstreams
            .iter()
            .zip(loads.iter())
            .enumerate()
            .map(|(index, (upstream, load))| {
                let state = if load.document.is_some() {
                    "ready"
                } else {
                    "loading"
                };
                let skipped: Vec<String> = load
                    .document
                    .iter()
                    .flat_map(|d| d.skipped.iter())
                    .chain(load.refused.iter())
                    .map(ToString::to_string)
                    .collect();
                serde_json::json!({
                    "url": upstream.url,
                    "state": state,
                    "attempts": load.attempts,
                    "error": load.last_error,
                    "routes": table.routes.iter().filter(|r| r.upstream == index).count(),
                    "skipped": skipped,
                })
            })
            .collect();
        Value::Array(upstreams)
    }

    /// The forwarded operations and the schemas they refer to, for this
    /// instance's OpenAPI document.
    pub(crate) fn openapi(&self) -> (Vec<OpenApiOperation>, Map<String, Value>) {
        let table = self.table();
        let operations = table
            .routes
            .iter()
            .map(|route| {
                (
                    route.operation.path().to_owned(),
                    route.operation.method.as_str().to_ascii_lowercase(),
                    route.operation.spec.clone(),
                )
            })
            .collect();
        let mut schemas = Map::new();
        if let Ok(loads) = self.loads.lock() {
            for document in loads.iter().filter_map(|load| load.document.as_ref()) {
                for (name, schema) in &document.schemas {
                    schemas
                        .entry(name.clone())
                        .or_insert_with(|| schema.clone());
                }
            }
        }
        (operations, schemas)
    }
}

/// A forwarded operation for this instance's OpenAPI document: path, lowercase
/// method, the upstream's operation object.
pub(crate) type OpenApiOperation = (String, String, Value);

/// The headers of a forwarded message: everything but the connection's own
/// headers, `Host` and the caller's `Authorization`.
fn pass_on(headers: &HeaderMap) -> HeaderMap {
    let mut passed = HeaderMap::with_capacity(headers.len());
    for (name, value) in headers {
        let name_text = name.as_str();
        if HOP_BY_HOP.contains(&name_text)
            || name == HOST
            || name == AUTHORIZATION
            || name_text == framex_transport::HOPS_HEADER
        {
            continue;
        }
        passed.append(name.clone(), value.clone());
    }
    passed
}

/// What an upstream's rules make of the routes it publishes: each path and
/// method, enabled or disabled and by which rule. Its `Display` is the report of
/// `cargo xtask routes`.
#[derive(Debug, Clone)]
pub struct Resolution {
    url: String,
    docs: String,
    outcome: Result<(Vec<Decided>, Vec<Skipped>), String>,
}

/// One published route and what the rules decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decided {
    /// The method.
    pub method: Method,
    /// The path as published.
    pub path: String,
    /// Whether the rules enable it.
    pub enabled: bool,
    /// The deciding rule, as `enable rule `…`` or `disable rule `…``; `None` when no
    /// rule matches (the route is then disabled).
    pub rule: Option<String>,
}

impl Resolution {
    /// The decisions, or why the document could not be loaded.
    pub fn decisions(&self) -> Result<&[Decided], &str> {
        match &self.outcome {
            Ok((decided, _)) => Ok(decided),
            Err(error) => Err(error),
        }
    }
}

impl fmt::Display for Resolution {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (decided, skipped) = match &self.outcome {
            Ok(outcome) => outcome,
            Err(error) => {
                return writeln!(
                    f,
                    "upstream {}: cannot load {}: {error}",
                    self.url, self.docs
                );
            }
        };
        writeln!(f, "upstream {} ({})", self.url, self.docs)?;
        if decided.is_empty() && skipped.is_empty() {
            writeln!(f, "  (the document lists no routes)")?;
        }
        for route in decided {
            let verdict = if route.enabled { "enabled" } else { "disabled" };
            let why = route.rule.as_deref().unwrap_or("no enable rule matches");
            writeln!(
                f,
                "  {verdict:<9} {:<7} {:<40} {why}",
                route.method.as_str(),
                route.path
            )?;
        }
        for skipped in skipped {
            writeln!(
                f,
                "  {:<9} {:<48} {}",
                "skipped", skipped.path, skipped.reason
            )?;
        }
        Ok(())
    }
}

/// Fetches an upstream's document and decides each of its routes by the
/// upstream's rules.
pub async fn resolve(upstream: &Upstream, timeout: Duration) -> Resolution {
    let outcome = fetch_document(upstream, timeout).await.map(|document| {
        let decided = document
            .operations
            .iter()
            .map(|operation| {
                let (enabled, rule) = match upstream.rules.decide(operation.path()) {
                    framex_filter::Decision::Enabled(rule) => {
                        (true, Some(format!("enable rule `{}`", rule.pattern())))
                    }
                    framex_filter::Decision::Disabled(rule) => {
                        (false, Some(format!("disable rule `{}`", rule.pattern())))
                    }
                    framex_filter::Decision::Unmatched => (false, None),
                };
                Decided {
                    method: operation.method.clone(),
                    path: operation.path().to_owned(),
                    enabled,
                    rule,
                }
            })
            .collect();
        (decided, document.skipped)
    });
    Resolution {
        url: upstream.url.clone(),
        docs: format!("{}{}", upstream.url, upstream.docs_path),
        outcome,
    }
}

/// Fetches and reads an upstream's OpenAPI document, sending the client-side key
/// for its path.
pub async fn fetch_document(upstream: &Upstream, timeout: Duration) -> Result<Document, String> {
    let client = forward_client([upstream], timeout.min(Duration::from_secs(10)), false);
    fetch_document_with(&client, upstream, timeout).await
}

async fn fetch_document_with(
    client: &ForwardClient,
    upstream: &Upstream,
    timeout: Duration,
) -> Result<Document, String> {
    let url = format!("{}{}", upstream.url, upstream.docs_path);
    let uri: Uri = url
        .parse()
        .map_err(|e| format!("{url} is not a URL: {e}"))?;
    let mut request = Request::new(
        Empty::<Bytes>::new()
            .map_err(|never| match never {})
            .boxed_unsync(),
    );
    *request.uri_mut() = uri;
    if let Some(key) = upstream.key_for(&upstream.docs_path) {
        let value = HeaderValue::from_str(key).map_err(|_| {
            format!(
                "the key for {} is not a valid header value",
                upstream.docs_path
            )
        })?;
        request.headers_mut().insert(AUTHORIZATION, value);
    }
    let exchange = async {
        let response = client.request(request).await.map_err(|e| {
            if e.is_connect() {
                format!("cannot connect to {}", upstream.url)
            } else {
                format!("the connection to {} failed", upstream.url)
            }
        })?;
        let status = response.status();
        let body = Limited::new(response.into_body(), 32 * 1024 * 1024)
            .collect()
            .await
            .map_err(|e| format!("reading {url} failed: {e}"))?
            .to_bytes();
        if !status.is_success() {
            return Err(format!("{url} answered {status}"));
        }
        parse_document(&body).map_err(|e| format!("{url}: {e}"))
    };
    tokio::time::timeout(timeout, exchange)
        .await
        .map_err(|_| format!("{url} did not answer within {timeout:?}"))?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_match_whole_segments() {
        let cases: &[(&str, &str, bool)] = &[
            ("/api/v1/items", "/api/v1/items", true),
            ("/api/v1/items", "/api/v1/items/", false),
            ("/api/v1/items/{id}", "/api/v1/items/7", true),
            ("/api/v1/items/{id}", "/api/v1/items/", false),
            ("/api/v1/items/{id}", "/api/v1/items/7/parts", false),
            ("/api/v1/{a}/x/{b}", "/api/v1/q/x/r", true),
            ("/api/v1/{a}/x/{b}", "/api/v1/q/y/r", false),
            ("/", "/", true),
        ];
        for (template, path, expected) in cases {
            let template = Template::parse(template).unwrap();
            assert_eq!(template.matches(path), *expected, "{template:?} {path}");
        }
    }

    #[test]
    fn templates_that_cannot_be_matched_are_refused() {
        assert_eq!(
            Template::parse("/files/{name}.txt").unwrap_err(),
            "segment `{name}.txt`: a path parameter must be a whole segment"
        );
        assert_eq!(
            Template::parse("files").unwrap_err(),
            "the path does not start with `/`"
        );
    }

    #[test]
    fn a_document_keeps_what_it_understands() {
        let document = parse_document(
            br#"{"paths": {
                "/a": {"get": {"operationId": "a"}, "parameters": [], "x-internal": true, "summary": "s"},
                "/b/{id}.json": {"get": {}},
                "/c": {"post": "not an object", "fetch": {}},
                "/d": []
            }}"#,
        )
        .unwrap();
        let operations: Vec<String> = document
            .operations()
            .iter()
            .map(|o| format!("{} {}", o.method(), o.path()))
            .collect();
        assert_eq!(operations, ["GET /a"]);
        let skipped: Vec<String> = document.skipped().iter().map(ToString::to_string).collect();
        assert_eq!(
            skipped,
            [
                "/b/{id}.json: segment `{id}.json`: a path parameter must be a whole segment",
                "fetch /c: `fetch` is not an HTTP method",
                "POST /c: the operation is not an object",
                "/d: the path item is not an object",
            ]
        );
    }

    #[test]
    fn unusable_documents_say_why() {
        assert_eq!(
            parse_document(b"<html>").unwrap_err(),
            "the OpenAPI document is not JSON: expected value at line 1 column 1"
        );
        assert_eq!(
            parse_document(b"{\"openapi\": \"3.1.0\"}").unwrap_err(),
            "the OpenAPI document has no `paths` object"
        );
    }
}
