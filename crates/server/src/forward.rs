//! Route forwarding: the routes that upstream FrameX services publish in their
//! OpenAPI documents, kept when the upstream's enable/disable rules allow them,
//! served here and forwarded there.
//!
//! Documents load in the background: an upstream that is down at start-up is
//! retried with backoff, and its routes appear once it answers. A route that
//! cannot be understood is skipped and reported in `GET /health`; it never stops
//! the instance. Bodies (JSON, multipart with files, anything) pass through as
//! bytes, streamed in both directions for the paths in the stream list.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::Duration;

use bytes::Bytes;
use framex_transport::{Client, ErrorKind};
use http::header::{AUTHORIZATION, HOST};
use http::{HeaderMap, HeaderName, HeaderValue, Method, Request, Response, StatusCode, Uri};
use http_body_util::{BodyExt, Empty, Limited};
use serde_json::Value;

use crate::{BoxError, ServerBody, boxed, envelope_response};

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

/// Whether `key` of an OpenAPI path item names an operation.
pub(crate) fn is_method_key(key: &str) -> bool {
    METHODS.iter().any(|(name, _)| *name == key)
}

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
}

impl Upstream {
    /// The service at base URL `url`, whose paths `rules` allow or refuse.
    pub fn new(url: impl Into<String>, rules: framex_filter::Rules) -> Upstream {
        Upstream {
            url: url.into(),
            docs_path: crate::OPENAPI_PATH.to_owned(),
            rules,
            keys: framex_auth::Rules::default(),
            stream_paths: Vec::new(),
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

/// An upstream's OpenAPI document, reduced to what forwarding needs. Read
/// with serde_json, whose depth limit (128) bounds the recursion of
/// `rename_refs` over it.
///
/// Operation objects and schemas are held once, behind `Arc`s that the route
/// table and the merged OpenAPI document share: a document of many small
/// objects takes several times its size as `Value`s, and an upstream may
/// send up to 32 MiB of it.
#[derive(Debug, Clone, Default)]
pub struct Document {
    operations: Vec<Operation>,
    skipped: Vec<Skipped>,
    schemas: Schemas,
}

/// Schemas by name, as `components.schemas` lists them.
pub(crate) type Schemas = BTreeMap<String, Arc<Value>>;

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
    spec: Arc<Value>,
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

/// Why an upstream's OpenAPI document could not be loaded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DocumentError {
    /// The document is not JSON.
    #[error("the OpenAPI document is not JSON: {0}")]
    NotJson(#[source] serde_json::Error),
    /// The document has no `paths` object.
    #[error("the OpenAPI document has no `paths` object")]
    NoPaths,
    /// The document's URL is not one.
    #[error("{url} is not a URL: {source}")]
    InvalidUrl {
        /// The document's URL.
        url: String,
        /// What is wrong with it.
        source: http::uri::InvalidUri,
    },
    /// The key for the document's path cannot be sent in a header.
    #[error("the key for {path} is not a valid header value")]
    InvalidKey {
        /// The document's path.
        path: String,
    },
    /// No connection to the upstream could be made.
    #[error("cannot connect to {upstream}")]
    Connect {
        /// The upstream's base URL.
        upstream: String,
    },
    /// The connection failed before the answer's head arrived.
    #[error("the connection to {upstream} failed")]
    Connection {
        /// The upstream's base URL.
        upstream: String,
    },
    /// The answer's body broke off or is larger than 32 MiB.
    #[error("reading {url} failed: {source}")]
    Read {
        /// The document's URL.
        url: String,
        /// Why.
        source: BoxError,
    },
    /// The upstream answered with a status other than success.
    #[error("{url} answered {status}")]
    Status {
        /// The document's URL.
        url: String,
        /// The status.
        status: StatusCode,
    },
    /// The upstream's answer is not a usable document.
    #[error("{url}: {source}")]
    Document {
        /// The document's URL.
        url: String,
        /// What is wrong with it.
        source: Box<DocumentError>,
    },
    /// The upstream did not answer within the timeout.
    #[error("{url} did not answer within {after:?}")]
    Timeout {
        /// The document's URL.
        url: String,
        /// The timeout.
        after: Duration,
    },
}

/// Reads an OpenAPI document. Fails only when the document as a whole is
/// unusable; a path or operation that cannot be understood is skipped.
pub fn parse_document(body: &[u8]) -> Result<Document, DocumentError> {
    let mut document: Value = serde_json::from_slice(body).map_err(DocumentError::NotJson)?;
    // Taken out of the document, not copied: the operations and schemas are
    // most of it.
    let Some(Value::Object(paths)) = document.get_mut("paths").map(Value::take) else {
        return Err(DocumentError::NoPaths);
    };
    let schemas = match document.pointer_mut("/components/schemas").map(Value::take) {
        Some(Value::Object(schemas)) => schemas
            .into_iter()
            .map(|(name, schema)| (name, Arc::new(schema)))
            .collect(),
        _ => Schemas::new(),
    };
    let mut parsed = Document {
        schemas,
        ..Document::default()
    };
    for (path, item) in paths {
        let template = match Template::parse(&path) {
            Ok(template) => template,
            Err(reason) => {
                parsed.skipped.push(Skipped {
                    path: path.clone(),
                    reason,
                });
                continue;
            }
        };
        let Value::Object(item) = item else {
            parsed.skipped.push(Skipped {
                path: path.clone(),
                reason: "the path item is not an object".to_owned(),
            });
            continue;
        };
        for (key, spec) in item {
            let Some((_, method)) = METHODS.iter().find(|(name, _)| *name == key) else {
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
                spec: Arc::new(spec),
            });
        }
    }
    Ok(parsed)
}

/// A path with `{parameter}` segments, as the router takes it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Template {
    text: String,
}

impl Template {
    /// `text` if the router can match it: it starts with `/`, and each
    /// parameter is a whole segment.
    fn parse(text: &str) -> Result<Template, String> {
        if !text.starts_with('/') {
            return Err("the path does not start with `/`".to_owned());
        }
        for segment in text[1..].split('/') {
            let inner = segment.strip_prefix('{').and_then(|s| s.strip_suffix('}'));
            let parameter =
                inner.is_some_and(|name| !name.is_empty() && !name.contains(['{', '}']));
            if !parameter && segment.contains(['{', '}']) {
                return Err(format!(
                    "segment `{segment}`: a path parameter must be a whole segment"
                ));
            }
        }
        Ok(Template {
            text: text.to_owned(),
        })
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
    /// The document as fetched; it is served once a table is built with it.
    document: Option<Arc<Document>>,
}

/// What the upstreams' documents make of the routes: rebuilt whenever one
/// loads, away from any request, and looked up by a router in time that does
/// not grow with the number of routes.
#[derive(Debug, Default)]
struct Table {
    /// Each path template to its entry in `paths`.
    router: matchit::Router<usize>,
    paths: Vec<PathRoutes>,
    /// Routes served, per upstream.
    served: Vec<usize>,
    /// The documents the table was built from, per upstream: `None` for one
    /// still loading. An upstream is ready once its document is here, so that
    /// `GET /health` never reports it ready before its routes are served.
    documents: Vec<Option<Arc<Document>>>,
    /// Routes of each upstream's document not served, and why (rules,
    /// conflicts).
    refused: Vec<Vec<Skipped>>,
    /// The forwarded operations and the schemas they refer to, merged for
    /// this instance's OpenAPI document when the table is built.
    openapi: Arc<ForwardedOpenApi>,
    /// Counts the rebuilds, so that what is made from a table can be kept
    /// until the next one.
    generation: u64,
}

/// The routes of one path template: one per method.
#[derive(Debug)]
struct PathRoutes {
    routes: Vec<Route>,
}

impl Table {
    /// The index in `paths` of the template that matches `path`.
    fn entry(&self, path: &str) -> Option<usize> {
        self.router.at(path).ok().map(|found| *found.value)
    }
}

/// A forwarded route found for a request, with the table it was found in (the
/// table may be rebuilt meanwhile).
pub(crate) struct Found {
    table: Arc<Table>,
    path: usize,
    route: usize,
}

/// The forwarding side of a server.
pub(crate) struct Forwarding {
    upstreams: Vec<Upstream>,
    /// The instance's client, whose pooled connections proxy calls use too.
    client: Client,
    timeout: Duration,
    max_body_bytes: usize,
    /// Routes this instance serves itself; never forwarded.
    local: HashSet<(Method, String)>,
    /// The application's documented routes, first in the OpenAPI document,
    /// and their schemas, which forwarded ones are renamed apart from.
    local_openapi: ForwardedOpenApi,
    loads: Mutex<Vec<Load>>,
    /// Held through a whole rebuild: two upstreams loading at once rebuild
    /// in turn, so that the table published last has both documents.
    rebuilding: Mutex<()>,
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
        client: Client,
        timeout: Duration,
        max_body_bytes: usize,
        local: Vec<(Method, String)>,
        local_openapi: ForwardedOpenApi,
    ) -> Forwarding {
        let table = Table {
            openapi: Arc::new(local_openapi.clone()),
            ..Table::default()
        };
        Forwarding {
            loads: Mutex::new(vec![Load::default(); upstreams.len()]),
            rebuilding: Mutex::new(()),
            upstreams,
            client,
            timeout,
            max_body_bytes,
            local: local.into_iter().collect(),
            local_openapi,
            table: RwLock::new(Arc::new(table)),
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
            let result = fetch_document(&self.client, upstream, self.timeout).await;
            let loaded = result.is_ok();
            if let Ok(mut loads) = self.loads.lock() {
                let load = &mut loads[index];
                load.attempts += 1;
                match result {
                    Ok(document) => {
                        load.document = Some(Arc::new(document));
                        load.last_error = None;
                    }
                    Err(error) => load.last_error = Some(error.to_string()),
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
    /// first. The documents are taken from under the lock and the table built
    /// outside it, so `GET /health` and requests never wait for a rebuild.
    fn rebuild(&self) {
        // A rebuild that began before another document arrived would publish
        // a table without it, after the table that has it.
        let _rebuilding = self
            .rebuilding
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let documents: Vec<Option<Arc<Document>>> = match self.loads.lock() {
            Ok(loads) => loads.iter().map(|load| load.document.clone()).collect(),
            Err(_) => return,
        };
        let mut table = self.build_table(&documents);
        table.openapi = Arc::new(merge_openapi(&self.local_openapi, &table, &documents));
        table.documents = documents;
        if let Ok(mut current) = self.table.write() {
            table.generation = current.generation + 1;
            *current = Arc::new(table);
        }
    }

    /// The table of `documents` (by upstream), with what of each was not
    /// served and why.
    fn build_table(&self, documents: &[Option<Arc<Document>>]) -> Table {
        let mut table = Table {
            served: vec![0; documents.len()],
            ..Table::default()
        };
        let mut refused = vec![Vec::new(); documents.len()];
        // Each template's entry, by the template's text.
        let mut by_template: HashMap<String, usize> = HashMap::new();
        for (index, document) in documents.iter().enumerate() {
            let Some(document) = document else { continue };
            let upstream = &self.upstreams[index];
            let refused = &mut refused[index];
            for operation in &document.operations {
                let path = operation.path();
                let label = format!("{} {path}", operation.method);
                match upstream.rules.decide(path) {
                    framex_filter::Decision::Enabled(_) => {}
                    framex_filter::Decision::Disabled(rule) => {
                        refused.push(Skipped {
                            path: label,
                            reason: format!("disabled by `{}`", rule.pattern()),
                        });
                        continue;
                    }
                    framex_filter::Decision::Unmatched => {
                        refused.push(Skipped {
                            path: label,
                            reason: "no enable rule matches".to_owned(),
                        });
                        continue;
                    }
                }
                if self
                    .local
                    .contains(&(operation.method.clone(), path.to_owned()))
                {
                    refused.push(Skipped {
                        path: label,
                        reason: "this instance serves it itself".to_owned(),
                    });
                    continue;
                }
                let entry = match by_template.get(path) {
                    Some(&entry) => entry,
                    None => {
                        let entry = table.paths.len();
                        if let Err(error) = table.router.insert(path, entry) {
                            refused.push(Skipped {
                                path: label,
                                reason: format!("it cannot be routed beside the others: {error}"),
                            });
                            continue;
                        }
                        table.paths.push(PathRoutes { routes: Vec::new() });
                        by_template.insert(path.to_owned(), entry);
                        entry
                    }
                };
                let routes = &mut table.paths[entry].routes;
                if let Some(first) = routes
                    .iter()
                    .find(|r| r.operation.method == operation.method)
                {
                    let first_url = &self.upstreams[first.upstream].url;
                    let reason = if first.upstream == index {
                        "the document lists it twice".to_owned()
                    } else {
                        format!(
                            "{} {path} is published by two upstreams, {first_url} and {}; {first_url} (listed first) serves it",
                            operation.method, upstream.url
                        )
                    };
                    refused.push(Skipped {
                        path: label,
                        reason,
                    });
                    continue;
                }
                routes.push(Route {
                    stream: upstream.stream_paths.iter().any(|p| p == path),
                    operation: operation.clone(),
                    upstream: index,
                });
                table.served[index] += 1;
            }
        }
        table.refused = refused;
        table
    }

    fn table(&self) -> Arc<Table> {
        self.table
            .read()
            .map(|table| table.clone())
            .unwrap_or_default()
    }

    /// The forwarded route that serves `method` on `path` (decoded, see
    /// [`crate::path`]), if any: looked up once, then handed to
    /// [`Forwarding::forward`].
    pub(crate) fn find(&self, method: &Method, path: &str) -> Option<Found> {
        let table = self.table();
        let path = table.entry(path)?;
        let route = table.paths[path]
            .routes
            .iter()
            .position(|route| route.operation.method == *method)?;
        Some(Found { table, path, route })
    }

    /// Whether a forwarded route serves `path` with any method.
    pub(crate) fn knows_path(&self, path: &str) -> bool {
        self.table().entry(path).is_some()
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
        let route = &found.table.paths[found.path].routes[found.route];
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
        // The upstream's span is a child of this request's, not a sibling of
        // it: the caller's `traceparent` is replaced, its `tracestate` kept.
        framex_transport::trace::TraceContext::outgoing().insert_into(forwarded.headers_mut());
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

        let head = self.client.forward(&upstream.url, forwarded);
        let response = match tokio::time::timeout(self.timeout, head).await {
            Ok(Ok(response)) => response,
            Ok(Err(error)) => {
                let what = if *error.kind() == ErrorKind::Connect {
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
            return Response::from_parts(parts, ServerBody::new(body));
        }
        let collected = tokio::time::timeout(
            self.timeout,
            Limited::new(body, self.max_body_bytes).collect(),
        )
        .await;
        match collected {
            Ok(Ok(collected)) => {
                Response::from_parts(parts, ServerBody::from(collected.to_bytes()))
            }
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
                // What the routes are made of, not what has been fetched: a
                // document fetched but not yet in the table is still loading.
                let document = table.documents.get(index).and_then(Option::as_ref);
                let state = if document.is_some() {
                    "ready"
                } else {
                    "loading"
                };
                let skipped: Vec<String> = document
                    .into_iter()
                    .flat_map(|d| d.skipped.iter())
                    .chain(table.refused.get(index).into_iter().flatten())
                    .map(ToString::to_string)
                    .collect();
                serde_json::json!({
                    "url": upstream.url,
                    "state": state,
                    "attempts": load.attempts,
                    "error": load.last_error,
                    "routes": table.served.get(index).copied().unwrap_or(0),
                    "skipped": skipped,
                })
            })
            .collect();
        Value::Array(upstreams)
    }

    /// The forwarded operations and the schemas they refer to, for this
    /// instance's OpenAPI document, and the generation of the table they
    /// were merged for.
    pub(crate) fn openapi(&self) -> (u64, Arc<ForwardedOpenApi>) {
        let table = self.table();
        (table.generation, table.openapi.clone())
    }
}

/// The application's documented routes (`local`), then the operations of
/// `table` and the schemas of `documents` (by upstream), merged for this
/// instance's OpenAPI document.
fn merge_openapi(
    local: &ForwardedOpenApi,
    table: &Table,
    documents: &[Option<Arc<Document>>],
) -> ForwardedOpenApi {
    // Schemas merged in the order of upstreams, after the application's. Two
    // that name different schemas alike keep them apart: the later one's is
    // renamed (`Item_2`), and its operations and schemas refer to the new
    // name. What no rename touches is shared with the documents, not copied.
    let mut schemas = local.schemas.clone();
    let mut renames: Vec<HashMap<String, String>> = vec![HashMap::new(); documents.len()];
    for (index, document) in documents.iter().enumerate() {
        let Some(document) = document else { continue };
        let renames = &mut renames[index];
        *renames = schema_renames(&schemas, &document.schemas);
        for (name, schema) in &document.schemas {
            let schema = renamed(schema, renames);
            let name = renames.get(name).unwrap_or(name);
            schemas.entry(name.clone()).or_insert(schema);
        }
    }
    let no_renames = HashMap::new();
    let forwarded = table
        .paths
        .iter()
        .flat_map(|path| &path.routes)
        .map(|route| {
            let renames = renames.get(route.upstream).unwrap_or(&no_renames);
            let spec = renamed(&route.operation.spec, renames);
            (
                route.operation.path().to_owned(),
                route.operation.method.as_str().to_ascii_lowercase(),
                spec,
            )
        });
    let operations = local.operations.iter().cloned().chain(forwarded).collect();
    ForwardedOpenApi {
        operations,
        schemas,
    }
}

/// Which of `incoming`'s schemas must be renamed to be merged into `merged`,
/// and their new names: each that differs from the merged schema of its
/// name, and then each that refers to a renamed one (its references change),
/// found by walking who refers to whom once, so that a document of many
/// schemas costs time in proportion to its size.
pub(crate) fn schema_renames(merged: &Schemas, incoming: &Schemas) -> HashMap<String, String> {
    let mut referrers: HashMap<&str, Vec<&str>> = HashMap::new();
    for (name, schema) in incoming {
        let mut refs = Vec::new();
        schema_refs(schema, &mut refs);
        for target in refs {
            referrers.entry(target).or_default().push(name);
        }
    }
    let mut renamed: HashSet<&str> = incoming
        .iter()
        .filter(|(name, schema)| {
            merged
                .get(*name)
                .is_some_and(|existing| !Arc::ptr_eq(existing, schema) && existing != *schema)
        })
        .map(|(name, _)| name.as_str())
        .collect();
    let mut pending: Vec<&str> = renamed.iter().copied().collect();
    while let Some(target) = pending.pop() {
        for &referrer in referrers.get(target).into_iter().flatten() {
            if merged.contains_key(referrer) && renamed.insert(referrer) {
                pending.push(referrer);
            }
        }
    }
    let mut renames = HashMap::new();
    let mut taken: HashSet<String> = HashSet::new();
    // In the document's order, so that the new names do not depend on a hash.
    for name in incoming
        .keys()
        .filter(|name| renamed.contains(name.as_str()))
    {
        let mut n = 2;
        let new = loop {
            let candidate = format!("{name}_{n}");
            if !merged.contains_key(&candidate)
                && !incoming.contains_key(&candidate)
                && !taken.contains(&candidate)
            {
                break candidate;
            }
            n += 1;
        };
        taken.insert(new.clone());
        renames.insert(name.clone(), new);
    }
    renames
}

/// The names of the schemas `value` refers to (`$ref` to
/// `#/components/schemas/NAME`).
pub(crate) fn schema_refs<'a>(value: &'a Value, refs: &mut Vec<&'a str>) {
    match value {
        Value::Object(map) => {
            for (key, item) in map {
                match item.as_str().and_then(|r| r.strip_prefix(SCHEMAS_PREFIX)) {
                    Some(name) if key == "$ref" => refs.push(name),
                    _ => schema_refs(item, refs),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|item| schema_refs(item, refs)),
        _ => {}
    }
}

/// Where a `$ref` to a schema of the document points.
pub(crate) const SCHEMAS_PREFIX: &str = "#/components/schemas/";

/// `value` with every `$ref` to a schema in `renames` pointed at its new
/// name: a copy when it has such a reference, else `value` itself.
pub(crate) fn renamed(value: &Arc<Value>, renames: &HashMap<String, String>) -> Arc<Value> {
    if renames.is_empty() {
        return value.clone();
    }
    let mut refs = Vec::new();
    schema_refs(value, &mut refs);
    if !refs.iter().any(|name| renames.contains_key(*name)) {
        return value.clone();
    }
    let mut value = Value::clone(value);
    rename_refs(&mut value, renames);
    Arc::new(value)
}

/// Points every `$ref` to a schema in `renames` at its new name.
fn rename_refs(value: &mut Value, renames: &HashMap<String, String>) {
    const PREFIX: &str = SCHEMAS_PREFIX;
    if renames.is_empty() {
        return;
    }
    match value {
        Value::Object(map) => {
            for (key, item) in map.iter_mut() {
                if key == "$ref"
                    && let Some(name) = item.as_str().and_then(|r| r.strip_prefix(PREFIX))
                    && let Some(new) = renames.get(name)
                {
                    *item = Value::String(format!("{PREFIX}{new}"));
                } else {
                    rename_refs(item, renames);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|item| rename_refs(item, renames)),
        _ => {}
    }
}

/// A forwarded operation for this instance's OpenAPI document: path, lowercase
/// method, the upstream's operation object.
pub(crate) type OpenApiOperation = (String, String, Arc<Value>);

/// The operations of this instance's OpenAPI document besides `/health`.
#[derive(Debug, Default, Clone)]
pub(crate) struct ForwardedOpenApi {
    /// Path, lowercase method and operation object, one per route: the
    /// application's, then the forwarded ones.
    pub(crate) operations: Vec<OpenApiOperation>,
    /// The schemas those operations refer to, by their merged names.
    pub(crate) schemas: Schemas,
}

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
#[derive(Debug)]
pub struct Resolution {
    url: String,
    docs: String,
    outcome: Result<(Vec<Decided>, Vec<Skipped>), DocumentError>,
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
    pub fn decisions(&self) -> Result<&[Decided], &DocumentError> {
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
pub async fn resolve(client: &Client, upstream: &Upstream, timeout: Duration) -> Resolution {
    let outcome = fetch_document(client, upstream, timeout)
        .await
        .map(|document| {
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

/// Fetches and reads an upstream's OpenAPI document with `client`, sending the
/// client-side key for its path.
pub async fn fetch_document(
    client: &Client,
    upstream: &Upstream,
    timeout: Duration,
) -> Result<Document, DocumentError> {
    let url = format!("{}{}", upstream.url, upstream.docs_path);
    let uri: Uri = url.parse().map_err(|source| DocumentError::InvalidUrl {
        url: url.clone(),
        source,
    })?;
    let mut request = Request::new(
        Empty::<Bytes>::new()
            .map_err(|never| match never {})
            .boxed_unsync(),
    );
    *request.uri_mut() = uri;
    if let Some(key) = upstream.key_for(&upstream.docs_path) {
        let value = HeaderValue::from_str(key).map_err(|_| DocumentError::InvalidKey {
            path: upstream.docs_path.clone(),
        })?;
        request.headers_mut().insert(AUTHORIZATION, value);
    }
    let exchange = async {
        let response = client.forward(&upstream.url, request).await.map_err(|e| {
            let upstream = upstream.url.clone();
            if *e.kind() == ErrorKind::Connect {
                DocumentError::Connect { upstream }
            } else {
                DocumentError::Connection { upstream }
            }
        })?;
        let status = response.status();
        let body = Limited::new(response.into_body(), 32 * 1024 * 1024)
            .collect()
            .await
            .map_err(|source| DocumentError::Read {
                url: url.clone(),
                source,
            })?
            .to_bytes();
        if !status.is_success() {
            return Err(DocumentError::Status {
                url: url.clone(),
                status,
            });
        }
        parse_document(&body).map_err(|source| DocumentError::Document {
            url: url.clone(),
            source: Box::new(source),
        })
    };
    tokio::time::timeout(timeout, exchange)
        .await
        .map_err(|_| DocumentError::Timeout {
            url: url.clone(),
            after: timeout,
        })?
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A forwarding side with `count` upstreams enabling every route, none
    /// of their documents loaded, serving `local` itself.
    fn unloaded(count: usize, local: &[(Method, &str)]) -> Forwarding {
        let upstreams = (0..count)
            .map(|i| {
                Upstream::new(
                    format!("http://up-{i}:1"),
                    framex_filter::Rules::new(["*"], Vec::<&str>::new()).unwrap(),
                )
            })
            .collect();
        Forwarding::new(
            upstreams,
            Client::default(),
            Duration::from_secs(1),
            1024,
            local
                .iter()
                .map(|(m, p)| (m.clone(), (*p).to_owned()))
                .collect(),
            ForwardedOpenApi::default(),
        )
    }

    /// A forwarding side with one upstream enabling every route, its table
    /// built from `document`.
    fn forwarding(document: &str, local: &[(Method, &str)]) -> Forwarding {
        let forwarding = unloaded(1, local);
        forwarding.loads.lock().unwrap()[0].document =
            Some(Arc::new(parse_document(document.as_bytes()).unwrap()));
        forwarding.rebuild();
        forwarding
    }

    #[test]
    fn an_upstream_is_ready_only_once_its_routes_are_served() {
        // A readiness check reads `GET /health`: an upstream reported ready
        // must have its routes in the table, not only its document fetched.
        let forwarding = unloaded(1, &[]);
        forwarding.loads.lock().unwrap()[0].document = Some(Arc::new(
            parse_document(br#"{"paths": {"/api/v1/a": {"get": {}}, "/api/v1/b": {"get": {}}}}"#)
                .unwrap(),
        ));
        let health = forwarding.health();
        assert_eq!(health[0]["state"], "loading", "{health}");
        assert_eq!(health[0]["routes"], 0, "{health}");
        forwarding.rebuild();
        let health = forwarding.health();
        assert_eq!(health[0]["state"], "ready", "{health}");
        assert_eq!(health[0]["routes"], 2, "{health}");
    }

    #[test]
    fn upstreams_loading_at_once_all_reach_the_table() {
        // Each load stores its document and rebuilds; the table published
        // last must hold every document stored before it, whichever order
        // the rebuilds run in.
        for round in 0..200 {
            let forwarding = Arc::new(unloaded(2, &[]));
            let barrier = Arc::new(std::sync::Barrier::new(2));
            let loads: Vec<_> = (0..2)
                .map(|index| {
                    let forwarding = forwarding.clone();
                    let barrier = barrier.clone();
                    std::thread::spawn(move || {
                        let paths: String = (0..50)
                            .map(|n| format!(r#""/api/v1/u{index}/p{n}": {{"get": {{}}}}"#))
                            .collect::<Vec<_>>()
                            .join(",");
                        let document =
                            parse_document(format!(r#"{{"paths": {{{paths}}}}}"#).as_bytes())
                                .unwrap();
                        barrier.wait();
                        forwarding.loads.lock().unwrap()[index].document = Some(Arc::new(document));
                        forwarding.rebuild();
                    })
                })
                .collect();
            for load in loads {
                load.join().unwrap();
            }
            let health = forwarding.health();
            assert_eq!(health[0]["routes"], 50, "round {round}: {health}");
            assert_eq!(health[1]["routes"], 50, "round {round}: {health}");
        }
    }

    #[test]
    fn the_merged_openapi_document_shares_operations_and_schemas_with_the_upstreams() {
        // An upstream may send a document of many small objects, each taking
        // several times its JSON as a `Value`: the route table and the
        // merged document hold the document's own, not copies.
        let forwarding = forwarding(
            r##"{"paths": {"/api/v1/items/{id}": {"get": {"responses": {"200": {"content":
                    {"application/json": {"schema": {"$ref": "#/components/schemas/Item"}}}}}}}},
                "components": {"schemas": {"Item": {"type": "object"}}}}"##,
            &[],
        );
        let document = forwarding.loads.lock().unwrap()[0]
            .document
            .clone()
            .unwrap();
        let table = forwarding.table();
        let (_, merged) = forwarding.openapi();
        let route = &table.paths[0].routes[0];
        assert!(Arc::ptr_eq(
            &route.operation.spec,
            &document.operations[0].spec
        ));
        assert!(Arc::ptr_eq(
            &merged.operations[0].2,
            &document.operations[0].spec
        ));
        assert!(Arc::ptr_eq(
            &merged.schemas["Item"],
            &document.schemas["Item"]
        ));
    }

    #[test]
    fn routes_match_whole_segments_with_every_method() {
        let forwarding = forwarding(
            r#"{"paths": {
                "/api/v1/items": {"get": {}},
                "/api/v1/items/{id}": {"get": {}, "post": {}, "delete": {}},
                "/api/v1/items/special": {"get": {}},
                "/api/v1/{a}/x/{b}": {"put": {}},
                "/": {"get": {}}
            }}"#,
            &[(Method::DELETE, "/api/v1/items/{id}")],
        );
        let cases: &[(Method, &str, Option<&str>)] = &[
            (Method::GET, "/api/v1/items", Some("/api/v1/items")),
            (Method::GET, "/api/v1/items/", None),
            (Method::GET, "/api/v1/items/7", Some("/api/v1/items/{id}")),
            (Method::POST, "/api/v1/items/7", Some("/api/v1/items/{id}")),
            // Served here, so not forwarded.
            (Method::DELETE, "/api/v1/items/7", None),
            (
                Method::GET,
                "/api/v1/items/special",
                Some("/api/v1/items/special"),
            ),
            (Method::GET, "/api/v1/items/7/parts", None),
            (Method::PUT, "/api/v1/q/x/r", Some("/api/v1/{a}/x/{b}")),
            (Method::PUT, "/api/v1/q/y/r", None),
            (Method::GET, "/", Some("/")),
        ];
        for (method, path, template) in cases {
            let found = forwarding.find(method, path).map(|found| {
                found.table.paths[found.path].routes[found.route]
                    .operation
                    .path()
                    .to_owned()
            });
            assert_eq!(found.as_deref(), *template, "{method} {path}");
        }
        assert!(forwarding.knows_path("/api/v1/items/7"));
        assert!(!forwarding.knows_path("/api/v1/nothing"));
        let refused = &forwarding.table().refused[0];
        assert_eq!(
            refused.iter().map(ToString::to_string).collect::<Vec<_>>(),
            ["DELETE /api/v1/items/{id}: this instance serves it itself"]
        );
    }

    #[test]
    fn thirty_thousand_routes_build_and_look_up() {
        let paths: Vec<String> = (0..30_000)
            .map(|i| format!("\"/api/v1/r{i}/{{id}}\": {{\"get\": {{}}, \"post\": {{}}}}"))
            .collect();
        let forwarding = forwarding(&format!("{{\"paths\": {{{}}}}}", paths.join(",")), &[]);
        assert!(forwarding.find(&Method::POST, "/api/v1/r29999/7").is_some());
        assert!(forwarding.find(&Method::GET, "/api/v1/nope").is_none());
        assert_eq!(forwarding.table().served, [60_000]);
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
            parse_document(b"<html>").unwrap_err().to_string(),
            "the OpenAPI document is not JSON: expected value at line 1 column 1"
        );
        assert_eq!(
            parse_document(b"{\"openapi\": \"3.1.0\"}")
                .unwrap_err()
                .to_string(),
            "the OpenAPI document has no `paths` object"
        );
    }
}
