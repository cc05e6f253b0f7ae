//! Walks the value tree against the FrameX schema and produces a [`RawConfig`]:
//! every key known, every value of the right type and shape. Checks that need more
//! than one value (a URL used but not listed, a function listed twice) are
//! `validate.rs`'s.
//!
//! Every problem is reported, not only the first.

use crate::diagnostic::DiagnosticKind as Kind;
use crate::tree::{Entry, KeyPath, Node, Origin, Reporter, Value};

/// A value together with where it came from and its key path.
#[derive(Debug, Clone)]
pub(crate) struct Item<T> {
    pub(crate) value: T,
    pub(crate) origin: Origin,
    pub(crate) path: KeyPath,
}

#[derive(Debug, Default)]
pub(crate) struct RawConfig {
    pub(crate) load_builtin_plugins: Vec<Item<String>>,
    pub(crate) load_plugins: Vec<String>,
    pub(crate) server: RawServer,
    pub(crate) auth_rules: Vec<framex_auth::Rule>,
    pub(crate) proxy: RawProxy,
}

#[derive(Debug)]
pub(crate) struct RawServer {
    pub(crate) host: String,
    pub(crate) port: u16,
    pub(crate) enable_proxy: bool,
    pub(crate) max_body_bytes: u64,
    pub(crate) max_inflated_bytes: u64,
    pub(crate) header_read_timeout_secs: u64,
    pub(crate) body_read_timeout_secs: u64,
    pub(crate) max_in_flight: u64,
    pub(crate) max_argument_memory: u64,
    pub(crate) shutdown_grace_secs: u64,
    /// `compression`: a zlib level, 0 to 9; `None` for the transport's default.
    pub(crate) compression: Option<u32>,
    pub(crate) tls_cert: Option<Item<String>>,
    pub(crate) tls_key: Option<Item<String>>,
}

impl Default for RawServer {
    fn default() -> RawServer {
        RawServer {
            host: crate::DEFAULT_HOST.to_owned(),
            port: crate::DEFAULT_PORT,
            enable_proxy: false,
            max_body_bytes: crate::DEFAULT_MAX_BODY_BYTES,
            max_inflated_bytes: crate::DEFAULT_MAX_INFLATED_BYTES,
            header_read_timeout_secs: crate::DEFAULT_HEADER_READ_TIMEOUT_SECS,
            body_read_timeout_secs: crate::DEFAULT_BODY_READ_TIMEOUT_SECS,
            max_in_flight: crate::DEFAULT_MAX_IN_FLIGHT,
            max_argument_memory: crate::DEFAULT_MAX_ARGUMENT_MEMORY,
            shutdown_grace_secs: crate::DEFAULT_SHUTDOWN_GRACE_SECS,
            compression: None,
            tls_cert: None,
            tls_key: None,
        }
    }
}

#[derive(Debug)]
pub(crate) struct RawProxy {
    /// Where `[plugins.proxy]` is, for whole-section messages.
    pub(crate) origin: Option<Origin>,
    pub(crate) upstreams: Vec<RawUpstream>,
    pub(crate) functions: Vec<RawFunctions>,
    pub(crate) functions_origin: Option<Item<()>>,
    pub(crate) timeout_secs: u64,
    pub(crate) force_stream_apis: Vec<String>,
    pub(crate) auth_rules: Vec<framex_auth::Rule>,
    pub(crate) ca_file: Option<Item<String>>,
    pub(crate) connect_timeout_secs: Option<u64>,
    pub(crate) nameservers: Vec<std::net::SocketAddr>,
    pub(crate) dns_ttl_floor_secs: Option<u64>,
    pub(crate) dns_ttl_ceiling_secs: Option<u64>,
}

impl Default for RawProxy {
    fn default() -> RawProxy {
        RawProxy {
            origin: None,
            upstreams: Vec::new(),
            functions: Vec::new(),
            functions_origin: None,
            timeout_secs: crate::DEFAULT_TIMEOUT_SECS,
            force_stream_apis: Vec::new(),
            auth_rules: Vec::new(),
            ca_file: None,
            connect_timeout_secs: None,
            nameservers: Vec::new(),
            dns_ttl_floor_secs: None,
            dns_ttl_ceiling_secs: None,
        }
    }
}

#[derive(Debug)]
pub(crate) struct RawUpstream {
    pub(crate) url: Item<String>,
    /// `None` for the list form, which forwards no routes.
    pub(crate) routes: Option<RawRoutes>,
}

#[derive(Debug)]
pub(crate) struct RawRoutes {
    pub(crate) enable: Vec<Item<String>>,
    pub(crate) disable: Vec<Item<String>>,
    pub(crate) docs_path: String,
    /// `endpoints`: the upstream's static endpoints.
    pub(crate) endpoints: Vec<String>,
    pub(crate) timeout_secs: Option<u64>,
    /// `compression`: a zlib level, 0 to 9, for the arguments sent there.
    pub(crate) compression: Option<u32>,
    /// `http2`: calls go over HTTP/2 with prior knowledge.
    pub(crate) http2: bool,
    /// `function_timeouts`: function name to seconds.
    pub(crate) function_timeouts: Vec<(Item<String>, u64)>,
    pub(crate) idempotent_functions: Vec<Item<String>>,
}

#[derive(Debug)]
pub(crate) struct RawFunctions {
    pub(crate) url: Item<String>,
    pub(crate) names: Vec<Item<String>>,
}

const TOP_LEVEL: &[&str] = &[
    "load_builtin_plugins",
    "load_plugins",
    "server",
    "auth",
    "plugins",
];
const TOP_LEVEL_IGNORED: &[&str] = &[
    "base_ingress_config",
    "log",
    "test",
    "docs",
    "sentry",
    "repository",
    "cache",
];
const SERVER: &[&str] = &[
    "host",
    "port",
    "enable_proxy",
    "max_body_bytes",
    "max_inflated_bytes",
    "header_read_timeout",
    "body_read_timeout",
    "max_in_flight",
    "max_argument_memory",
    "shutdown_grace",
    "compression",
    "tls_cert",
    "tls_key",
];
const SERVER_IGNORED: &[&str] = &[
    "dashboard_host",
    "dashboard_port",
    "use_ray",
    "legal_proxy_code",
    "num_cpus",
    "excluded_log_paths",
    "ingress_config",
    "reversion",
];
const AUTH: &[&str] = &["rules"];
const AUTH_IGNORED: &[&str] = &["oauth"];
const PROXY: &[&str] = &[
    "ca_file",
    "proxy_urls",
    "proxy_functions",
    "timeout",
    "force_stream_apis",
    "auth",
    // FrameX for Rust only; Python FrameX ignores them.
    "connect_timeout",
    "nameservers",
    "dns_ttl_floor",
    "dns_ttl_ceiling",
];
const PROXY_IGNORED: &[&str] = &["ingress_config"];
const UPSTREAM: &[&str] = &[
    "enable",
    "disable",
    "docs_path",
    // FrameX for Rust only; Python FrameX ignores them here.
    "endpoints",
    "timeout",
    "compression",
    "http2",
    "function_timeouts",
    "idempotent_functions",
];

/// The builtin plugins that FrameX for Rust provides.
const BUILTIN_PLUGINS: &[&str] = &["proxy"];

pub(crate) struct Walker<'r, 'a> {
    pub(crate) reporter: &'r mut Reporter<'a>,
}

impl Walker<'_, '_> {
    pub(crate) fn walk(&mut self, root: &Node) -> RawConfig {
        let mut raw = RawConfig::default();
        let Some(entries) = self.table(root, &KeyPath::default()) else {
            return raw;
        };
        for entry in entries {
            let path = KeyPath::default().child(&entry.key);
            match entry.key.as_str() {
                "load_builtin_plugins" => {
                    raw.load_builtin_plugins =
                        self.string_items(&entry.value, &path).unwrap_or_default();
                    for plugin in &raw.load_builtin_plugins {
                        if !BUILTIN_PLUGINS.contains(&plugin.value.as_str()) {
                            self.reporter.warn(
                                Kind::IgnoredKey,
                                &plugin.origin,
                                &plugin.path,
                                format!("builtin plugin `{}` is not part of FrameX for Rust and is ignored", plugin.value),
                            );
                        }
                    }
                }
                "load_plugins" => {
                    raw.load_plugins = self
                        .string_items(&entry.value, &path)
                        .unwrap_or_default()
                        .into_iter()
                        .map(|item| item.value)
                        .collect();
                }
                "server" => raw.server = self.server(&entry.value, &path),
                "auth" => raw.auth_rules = self.auth(&entry.value, &path),
                "plugins" => raw.proxy = self.plugins(&entry.value, &path),
                _ => self.other_key(entry, &path, TOP_LEVEL, TOP_LEVEL_IGNORED),
            }
        }
        raw
    }

    fn server(&mut self, node: &Node, path: &KeyPath) -> RawServer {
        let mut server = RawServer::default();
        for entry in self.table(node, path).unwrap_or_default() {
            let path = path.child(&entry.key);
            match entry.key.as_str() {
                "host" => {
                    if let Some(host) = self.string(&entry.value, &path) {
                        if host.trim().is_empty() {
                            self.invalid(&entry.value, &path, "the host must not be empty".into());
                        } else {
                            server.host = host.to_owned();
                        }
                    }
                }
                "port" => {
                    if let Some(port) = self.integer(&entry.value, &path) {
                        match u16::try_from(port) {
                            Ok(port) => server.port = port,
                            Err(_) => self.invalid(
                                &entry.value,
                                &path,
                                format!("port {port} is out of range: use 0 to 65535 (0 picks a free port)"),
                            ),
                        }
                    }
                }
                "enable_proxy" => {
                    if let Some(enable) = self.boolean(&entry.value, &path) {
                        server.enable_proxy = enable;
                    }
                }
                "max_body_bytes" => {
                    if let Some(n) = self.positive(&entry.value, &path, "a number of bytes") {
                        server.max_body_bytes = n;
                    }
                }
                "max_inflated_bytes" => {
                    if let Some(n) = self.positive(&entry.value, &path, "a number of bytes") {
                        server.max_inflated_bytes = n;
                    }
                }
                "header_read_timeout" => {
                    if let Some(n) = self.seconds(&entry.value, &path) {
                        server.header_read_timeout_secs = n;
                    }
                }
                "body_read_timeout" => {
                    if let Some(n) = self.seconds(&entry.value, &path) {
                        server.body_read_timeout_secs = n;
                    }
                }
                "max_argument_memory" => {
                    if let Some(n) = self.positive(&entry.value, &path, "a number of bytes") {
                        server.max_argument_memory = n;
                    }
                }
                "max_in_flight" => {
                    if let Some(n) = self.positive(&entry.value, &path, "a number of calls") {
                        server.max_in_flight = n;
                    }
                }
                "shutdown_grace" => {
                    if let Some(n) = self.seconds(&entry.value, &path) {
                        server.shutdown_grace_secs = n;
                    }
                }
                "compression" => server.compression = self.zlib_level(&entry.value, &path),
                "tls_cert" => server.tls_cert = self.file_path(&entry.value, &path),
                "tls_key" => server.tls_key = self.file_path(&entry.value, &path),
                _ => self.other_key(entry, &path, SERVER, SERVER_IGNORED),
            }
        }
        server
    }

    fn auth(&mut self, node: &Node, path: &KeyPath) -> Vec<framex_auth::Rule> {
        let mut rules = Vec::new();
        for entry in self.table(node, path).unwrap_or_default() {
            let path = path.child(&entry.key);
            match entry.key.as_str() {
                "rules" => rules = self.auth_rules(&entry.value, &path),
                _ => self.other_key(entry, &path, AUTH, AUTH_IGNORED),
            }
        }
        rules
    }

    /// Each rule, built and checked by `framex_auth` (one definition of what a
    /// rule may be), its error reported at the part of the file it is about.
    fn auth_rules(&mut self, node: &Node, path: &KeyPath) -> Vec<framex_auth::Rule> {
        let mut rules = Vec::new();
        for entry in self.table(node, path).unwrap_or_default() {
            let rule_path = path.child(&entry.key);
            let Some(keys) = self.string_items(&entry.value, &rule_path) else {
                continue;
            };
            let values = keys.iter().map(|key| key.value.clone());
            match framex_auth::Rule::new(entry.key.clone(), values) {
                Ok(rule) => rules.push(rule),
                Err(error) => {
                    let message = error.to_string();
                    match &error {
                        framex_auth::Error::InvalidKey { index, .. } if *index < keys.len() => {
                            self.invalid_item(&keys[*index], message);
                        }
                        framex_auth::Error::NoKeys { .. } => {
                            self.invalid(&entry.value, &rule_path, message);
                        }
                        _ => self.reporter.error(
                            Kind::InvalidValue,
                            &entry.key_origin,
                            &rule_path,
                            message,
                        ),
                    }
                }
            }
        }
        rules
    }

    fn plugins(&mut self, node: &Node, path: &KeyPath) -> RawProxy {
        let mut proxy = RawProxy::default();
        for entry in self.table(node, path).unwrap_or_default() {
            let path = path.child(&entry.key);
            if entry.key == "proxy" {
                proxy = self.proxy(&entry.value, &path);
            } else {
                self.reporter.warn(
                    Kind::IgnoredKey,
                    &entry.key_origin,
                    &path,
                    format!(
                        "settings of plugin `{}` are for Python FrameX plugins; FrameX for Rust ignores them",
                        entry.key
                    ),
                );
            }
        }
        proxy
    }

    fn proxy(&mut self, node: &Node, path: &KeyPath) -> RawProxy {
        let mut proxy = RawProxy {
            origin: Some(node.origin.clone()),
            ..RawProxy::default()
        };
        for entry in self.table(node, path).unwrap_or_default() {
            let path = path.child(&entry.key);
            match entry.key.as_str() {
                "proxy_urls" => proxy.upstreams = self.proxy_urls(&entry.value, &path),
                "proxy_functions" => {
                    proxy.functions_origin = Some(Item {
                        value: (),
                        origin: entry.key_origin.clone(),
                        path: path.clone(),
                    });
                    proxy.functions = self.proxy_functions(&entry.value, &path);
                }
                "timeout" => {
                    if let Some(secs) = self.seconds(&entry.value, &path) {
                        proxy.timeout_secs = secs;
                    }
                }
                "force_stream_apis" => {
                    for api in self.string_items(&entry.value, &path).unwrap_or_default() {
                        if self.route_path(&api, "a streaming API path") {
                            proxy.force_stream_apis.push(api.value);
                        }
                    }
                }
                "auth" => proxy.auth_rules = self.auth(&entry.value, &path),
                "ca_file" => proxy.ca_file = self.file_path(&entry.value, &path),
                "connect_timeout" => proxy.connect_timeout_secs = self.seconds(&entry.value, &path),
                "dns_ttl_floor" => proxy.dns_ttl_floor_secs = self.seconds(&entry.value, &path),
                "dns_ttl_ceiling" => proxy.dns_ttl_ceiling_secs = self.seconds(&entry.value, &path),
                "nameservers" => {
                    for server in self.string_items(&entry.value, &path).unwrap_or_default() {
                        match parse_nameserver(&server.value) {
                            Some(address) => proxy.nameservers.push(address),
                            None => self.invalid_item(
                                &server,
                                format!(
                                    "nameserver `{}` is not an IP address or IP:port",
                                    server.value
                                ),
                            ),
                        }
                    }
                }
                _ => self.other_key(entry, &path, PROXY, PROXY_IGNORED),
            }
        }
        proxy
    }

    fn proxy_urls(&mut self, node: &Node, path: &KeyPath) -> Vec<RawUpstream> {
        let mut upstreams = Vec::new();
        match &node.value {
            Value::Array(items) => {
                for (index, item) in items.iter().enumerate() {
                    let path = path.index(index);
                    if let Some(url) = self.string(item, &path) {
                        let url = Item {
                            value: url.to_owned(),
                            origin: item.origin.clone(),
                            path,
                        };
                        if self.url(&url) {
                            upstreams.push(RawUpstream { url, routes: None });
                        }
                    }
                }
            }
            Value::Table(entries) => {
                for entry in entries {
                    let path = path.child(&entry.key);
                    let url = Item {
                        value: entry.key.clone(),
                        origin: entry.key_origin.clone(),
                        path: path.clone(),
                    };
                    let url_ok = self.url(&url);
                    let routes = self.upstream_routes(&url.value, &entry.value, &path);
                    if let (true, Some(routes)) = (url_ok, routes) {
                        upstreams.push(RawUpstream {
                            url,
                            routes: Some(routes),
                        });
                    }
                }
            }
            other => self.wrong_type(
                node,
                path,
                "an array of URLs or a table keyed by URL",
                other,
            ),
        }
        upstreams
    }

    fn upstream_routes(&mut self, url: &str, node: &Node, path: &KeyPath) -> Option<RawRoutes> {
        let entries = self.table(node, path)?;
        let mut routes = RawRoutes {
            enable: vec![Item {
                value: "*".to_owned(),
                origin: node.origin.clone(),
                path: path.child("enable"),
            }],
            disable: Vec::new(),
            docs_path: crate::DEFAULT_DOCS_PATH.to_owned(),
            endpoints: Vec::new(),
            timeout_secs: None,
            compression: None,
            http2: false,
            function_timeouts: Vec::new(),
            idempotent_functions: Vec::new(),
        };
        for entry in entries {
            let path = path.child(&entry.key);
            match entry.key.as_str() {
                "enable" => {
                    routes.enable = self.string_items(&entry.value, &path).unwrap_or_default()
                }
                "disable" => {
                    routes.disable = self.string_items(&entry.value, &path).unwrap_or_default()
                }
                "docs_path" => {
                    if let Some(docs_path) = self.string(&entry.value, &path) {
                        let item = Item {
                            value: docs_path.to_owned(),
                            origin: entry.value.origin.clone(),
                            path,
                        };
                        if self.route_path(&item, "the docs path") {
                            routes.docs_path = item.value;
                        }
                    }
                }
                "endpoints" => {
                    let endpoints = self.string_items(&entry.value, &path).unwrap_or_default();
                    if endpoints.is_empty() {
                        self.invalid(
                            &entry.value,
                            &path,
                            "lists no endpoints; leave `endpoints` out to call every address of the URL's host"
                                .into(),
                        );
                    }
                    for endpoint in endpoints {
                        match check_endpoint(&endpoint.value) {
                            Ok(()) => routes.endpoints.push(endpoint.value),
                            Err(message) => self.invalid_item(&endpoint, message),
                        }
                    }
                }
                "timeout" => routes.timeout_secs = self.seconds(&entry.value, &path),
                "compression" => routes.compression = self.zlib_level(&entry.value, &path),
                "http2" => match self.boolean(&entry.value, &path) {
                    Some(true)
                        if url
                            .get(..8)
                            .is_some_and(|s| s.eq_ignore_ascii_case("https://")) =>
                    {
                        self.invalid(
                            &entry.value,
                            &path,
                            "HTTP/2 is spoken with prior knowledge over plain TCP only; an https:// upstream is called over HTTP/1: remove `http2`"
                                .into(),
                        );
                    }
                    Some(http2) => routes.http2 = http2,
                    None => {}
                },
                "function_timeouts" => {
                    for (name, item) in self.keyed(&entry.value, &path) {
                        if let Some(secs) = self.seconds(&item.value, &name.path) {
                            routes.function_timeouts.push((name, secs));
                        }
                    }
                }
                "idempotent_functions" => {
                    routes.idempotent_functions =
                        self.string_items(&entry.value, &path).unwrap_or_default();
                }
                _ => self.other_key(entry, &path, UPSTREAM, &[]),
            }
        }
        for rule in routes.enable.iter().chain(&routes.disable) {
            if rule.value.is_empty() {
                self.invalid_item(rule, "a rule must not be empty".into());
            }
        }
        Some(routes)
    }

    /// A table's entries, each key an item of its own.
    fn keyed<'n>(&mut self, node: &'n Node, path: &KeyPath) -> Vec<(Item<String>, &'n Entry)> {
        self.table(node, path)
            .unwrap_or_default()
            .iter()
            .map(|entry| {
                let key = Item {
                    value: entry.key.clone(),
                    origin: entry.key_origin.clone(),
                    path: path.child(&entry.key),
                };
                (key, entry)
            })
            .collect()
    }

    fn proxy_functions(&mut self, node: &Node, path: &KeyPath) -> Vec<RawFunctions> {
        let mut functions = Vec::new();
        for entry in self.table(node, path).unwrap_or_default() {
            let path = path.child(&entry.key);
            let url = Item {
                value: entry.key.clone(),
                origin: entry.key_origin.clone(),
                path: path.clone(),
            };
            let names = self.string_items(&entry.value, &path).unwrap_or_default();
            let mut valid = Vec::with_capacity(names.len());
            for name in names {
                if name.value.is_empty() {
                    self.invalid_item(&name, "a function name must not be empty".into());
                } else if name.value.len() > crate::MAX_FUNCTION_NAME_BYTES {
                    let prefix: String = name.value.chars().take(32).collect();
                    self.invalid_item(
                        &name,
                        format!(
                            "function name `{prefix}…` is {} bytes, longer than the {} bytes FrameX accepts",
                            name.value.len(),
                            crate::MAX_FUNCTION_NAME_BYTES
                        ),
                    );
                } else if name.value.chars().any(char::is_whitespace) {
                    self.invalid_item(
                        &name,
                        format!("function name `{}` must not contain whitespace", name.value),
                    );
                } else {
                    valid.push(name);
                }
            }
            functions.push(RawFunctions { url, names: valid });
        }
        functions
    }

    /// Checks that a URL is an absolute `http`/`https` base URL with no path, query
    /// or fragment, as FrameX appends route paths to it.
    fn url(&mut self, url: &Item<String>) -> bool {
        match check_base_url(&url.value) {
            Ok(()) => true,
            Err(problem) => {
                self.reporter.error(
                    Kind::InvalidUrl,
                    &url.origin,
                    &url.path,
                    format!("`{}` is not a usable upstream URL: {problem}", url.value),
                );
                false
            }
        }
    }

    fn route_path(&mut self, item: &Item<String>, what: &str) -> bool {
        if item.value.starts_with('/') {
            return true;
        }
        self.invalid_item(item, format!("{what} `{}` must start with `/`", item.value));
        false
    }

    fn other_key(&mut self, entry: &Entry, path: &KeyPath, known: &[&str], ignored: &[&str]) {
        if ignored.contains(&entry.key.as_str()) {
            self.reporter.warn(
                Kind::IgnoredKey,
                &entry.key_origin,
                path,
                format!(
                    "`{}` is a Python FrameX setting that FrameX for Rust ignores",
                    entry.key
                ),
            );
            return;
        }
        let mut message = format!("unknown key `{}`", entry.key);
        if let Some(suggestion) = did_you_mean(&entry.key, known.iter().chain(ignored)) {
            message.push_str(&format!("; did you mean `{suggestion}`?"));
        } else {
            message.push_str(&format!("; expected one of {}", list(known)));
        }
        self.reporter
            .error(Kind::UnknownKey, &entry.key_origin, path, message);
    }

    fn table<'n>(&mut self, node: &'n Node, path: &KeyPath) -> Option<&'n [Entry]> {
        match &node.value {
            Value::Table(entries) => Some(entries),
            other => {
                self.wrong_type(node, path, "a table", other);
                None
            }
        }
    }

    fn string<'n>(&mut self, node: &'n Node, path: &KeyPath) -> Option<&'n str> {
        match &node.value {
            Value::String(s) => Some(s),
            other => {
                self.wrong_type(node, path, "a string", other);
                None
            }
        }
    }

    fn boolean(&mut self, node: &Node, path: &KeyPath) -> Option<bool> {
        match &node.value {
            Value::Boolean(b) => Some(*b),
            other => {
                self.wrong_type(node, path, "a boolean (true or false)", other);
                None
            }
        }
    }

    fn integer(&mut self, node: &Node, path: &KeyPath) -> Option<i64> {
        match &node.value {
            Value::Integer(Some(i)) => Some(*i),
            Value::Integer(None) => {
                self.invalid(node, path, "the integer is too large".into());
                None
            }
            other => {
                self.wrong_type(node, path, "an integer", other);
                None
            }
        }
    }

    /// A file path: a non-empty string, kept with where it was written.
    fn file_path(&mut self, node: &Node, path: &KeyPath) -> Option<Item<String>> {
        let text = self.string(node, path)?;
        if text.trim().is_empty() {
            self.invalid(node, path, "the file path must not be empty".into());
            return None;
        }
        Some(Item {
            value: text.to_owned(),
            origin: node.origin.clone(),
            path: path.clone(),
        })
    }

    /// A duration in whole seconds, from 1 to [`crate::MAX_SECONDS`]: any
    /// longer is no timeout a runtime can keep (its deadline would overflow).
    fn seconds(&mut self, node: &Node, path: &KeyPath) -> Option<u64> {
        let value = self.integer(node, path)?;
        match u64::try_from(value) {
            Ok(value @ 1..=crate::MAX_SECONDS) => Some(value),
            _ => {
                self.invalid(
                    node,
                    path,
                    format!(
                        "expected a number of seconds from 1 to {} (100 years), found {value}",
                        crate::MAX_SECONDS
                    ),
                );
                None
            }
        }
    }

    /// A zlib compression level: 0 (stored) to 9.
    fn zlib_level(&mut self, node: &Node, path: &KeyPath) -> Option<u32> {
        let value = self.integer(node, path)?;
        match u32::try_from(value) {
            Ok(level @ 0..=9) => Some(level),
            _ => {
                self.invalid(
                    node,
                    path,
                    format!(
                        "expected a zlib level from 0 (stored, no compression) to 9, found {value}"
                    ),
                );
                None
            }
        }
    }

    /// A positive integer: `what` says what it counts, for the message.
    fn positive(&mut self, node: &Node, path: &KeyPath, what: &str) -> Option<u64> {
        let value = self.integer(node, path)?;
        match u64::try_from(value) {
            Ok(value) if value > 0 => Some(value),
            _ => {
                self.invalid(
                    node,
                    path,
                    format!("expected {what} above 0, found {value}"),
                );
                None
            }
        }
    }

    /// An array of strings, each with its own location.
    fn string_items(&mut self, node: &Node, path: &KeyPath) -> Option<Vec<Item<String>>> {
        let Value::Array(items) = &node.value else {
            self.wrong_type(node, path, "an array of strings", &node.value);
            return None;
        };
        let mut strings = Vec::with_capacity(items.len());
        for (index, item) in items.iter().enumerate() {
            let path = path.index(index);
            if let Some(s) = self.string(item, &path) {
                strings.push(Item {
                    value: s.to_owned(),
                    origin: item.origin.clone(),
                    path,
                });
            }
        }
        Some(strings)
    }

    fn wrong_type(&mut self, node: &Node, path: &KeyPath, expected: &str, found: &Value) {
        self.reporter.error(
            Kind::WrongType,
            &node.origin,
            path,
            format!("expected {expected}, found {}", found.type_name()),
        );
    }

    fn invalid(&mut self, node: &Node, path: &KeyPath, message: String) {
        self.reporter
            .error(Kind::InvalidValue, &node.origin, path, message);
    }

    fn invalid_item<T>(&mut self, item: &Item<T>, message: String) {
        self.reporter
            .error(Kind::InvalidValue, &item.origin, &item.path, message);
    }
}

/// The closest candidate to a misspelled key, if one is close enough to be meant.
///
/// Linear in the candidates and cheap for each: candidates whose length is too
/// far off are not compared, and a key longer than any name FrameX uses is
/// not compared at all, so a file of many long unknown keys stays fast.
pub(crate) fn did_you_mean<'c>(
    key: &str,
    candidates: impl IntoIterator<Item = &'c &'c str>,
) -> Option<&'c str> {
    const LONGEST_COMPARED: usize = 256;
    if key.len() > LONGEST_COMPARED {
        return None;
    }
    let key = key.to_ascii_lowercase();
    candidates
        .into_iter()
        .filter_map(|candidate| {
            let allowed = (candidate.len() / 3).max(1);
            if key.len().abs_diff(candidate.len()) > allowed {
                return None;
            }
            let distance = strsim::osa_distance(&key, candidate);
            (distance <= allowed).then_some((distance, *candidate))
        })
        .min_by_key(|(distance, _)| *distance)
        .map(|(_, candidate)| candidate)
}

fn list(keys: &[&str]) -> String {
    keys.iter()
        .map(|k| format!("`{k}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Checks an upstream base URL: `http` or `https`, a host, an optional port, and
/// nothing after it. Returns what is wrong.
/// A nameserver: an IP address, with a port or on 53.
fn parse_nameserver(text: &str) -> Option<std::net::SocketAddr> {
    text.parse().ok().or_else(|| {
        text.parse::<std::net::IpAddr>()
            .ok()
            .map(|ip| std::net::SocketAddr::new(ip, 53))
    })
}

/// A static endpoint: `host` or `host:port`, an IP address (`[v6]` with a
/// port) or a DNS name.
pub(crate) fn check_endpoint(endpoint: &str) -> Result<(), String> {
    let bad = |why: &str| Err(format!("endpoint `{endpoint}` {why}"));
    if endpoint.is_empty() {
        return bad("is empty");
    }
    if endpoint.contains("://") {
        return bad("must be host or host:port, without a scheme (the upstream URL has it)");
    }
    if endpoint
        .chars()
        .any(|c| c.is_whitespace() || matches!(c, '/' | '@' | '?' | '#'))
    {
        return bad("must be host or host:port");
    }
    let (host, port) = if let Some(rest) = endpoint.strip_prefix('[') {
        match rest.split_once(']') {
            Some((ip, "")) => (ip, None),
            Some((ip, port)) => match port.strip_prefix(':') {
                Some(port) => (ip, Some(port)),
                None => return bad("must be [IPv6]:port"),
            },
            None => return bad("has an unclosed `[`"),
        }
    } else if endpoint.matches(':').count() > 1 {
        if endpoint.parse::<std::net::Ipv6Addr>().is_err() {
            return bad("is not host:port (an IPv6 address with a port goes in brackets)");
        }
        (endpoint, None)
    } else {
        match endpoint.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (endpoint, None),
        }
    };
    if host.is_empty() {
        return bad("has no host");
    }
    if let Some(port) = port
        && !port.parse::<u16>().is_ok_and(|port| port > 0)
    {
        return bad("has a port that is not a number from 1 to 65535");
    }
    Ok(())
}

pub(crate) fn check_base_url(url: &str) -> Result<(), String> {
    let Some((scheme, rest)) = url.split_once("://") else {
        return Err("it must be absolute, like `http://host:8080`".into());
    };
    if !scheme.eq_ignore_ascii_case("http") && !scheme.eq_ignore_ascii_case("https") {
        return Err(format!(
            "the scheme must be `http` or `https`, not `{scheme}`"
        ));
    }
    if let Some(at) = rest.find(['/', '?', '#']) {
        let what = match rest.as_bytes()[at] {
            b'/' if at + 1 == rest.len() => return Err("remove the trailing `/`".into()),
            b'/' => "a path",
            b'?' => "a query",
            _ => "a fragment",
        };
        return Err(format!(
            "it carries {what} (`{}`); give the base URL only",
            &rest[at..]
        ));
    }
    if rest.contains('@') {
        return Err(
            "it must not carry credentials; use `[plugins.proxy.auth] rules` for keys".into(),
        );
    }
    let (host, port) = if let Some(bracketed) = rest.strip_prefix('[') {
        let Some((host, after)) = bracketed.split_once(']') else {
            return Err("the IPv6 address has no closing `]`".into());
        };
        match after {
            "" => (host, None),
            _ => match after.strip_prefix(':') {
                Some(port) => (host, Some(port)),
                None => return Err(format!("unexpected `{after}` after the IPv6 address")),
            },
        }
    } else {
        match rest.rsplit_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (rest, None),
        }
    };
    if host.is_empty() {
        return Err("the host is missing".into());
    }
    if host.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err("the host contains whitespace".into());
    }
    if port == Some("") {
        return Err("the port after `:` is missing".into());
    }
    if let Some(port) = port
        && port.parse::<u16>().is_err()
    {
        return Err(format!("`{port}` is not a port number (0 to 65535)"));
    }
    Ok(())
}
