//! The validated configuration and its typed accessors. Values here have passed
//! every check; nothing in this file can fail.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::diagnostic::Diagnostic;

/// A validated FrameX configuration.
///
/// Build one with [`Config::load`], [`Config::from_toml_str`] or a
/// [`Loader`](crate::Loader). It never changes once loaded.
#[derive(Debug, Clone)]
pub struct Config {
    pub(crate) source: Option<PathBuf>,
    pub(crate) load_builtin_plugins: Vec<String>,
    pub(crate) load_plugins: Vec<String>,
    pub(crate) server: Server,
    pub(crate) auth: framex_auth::Rules,
    pub(crate) proxy: Proxy,
    pub(crate) warnings: Vec<Diagnostic>,
}

impl Config {
    /// The file the configuration was read from, if any.
    pub fn source(&self) -> Option<&Path> {
        self.source.as_deref()
    }

    /// A path from the configuration: relative paths are taken from the
    /// configuration file's directory, as a user reading the file expects.
    pub fn resolve_path(&self, path: &Path) -> PathBuf {
        match self.source.as_deref().and_then(Path::parent) {
            Some(dir) if path.is_relative() => dir.join(path),
            _ => path.to_owned(),
        }
    }

    /// `load_builtin_plugins`, as written.
    pub fn load_builtin_plugins(&self) -> &[String] {
        &self.load_builtin_plugins
    }

    /// `load_plugins`: Python plugin modules, which FrameX for Rust does not load.
    pub fn load_plugins(&self) -> &[String] {
        &self.load_plugins
    }

    /// `[server]`.
    pub fn server(&self) -> &Server {
        &self.server
    }

    /// `[auth] rules`: the keys that callers of this instance must present.
    pub fn auth(&self) -> &framex_auth::Rules {
        &self.auth
    }

    /// `[plugins.proxy]`.
    pub fn proxy(&self) -> &Proxy {
        &self.proxy
    }

    /// Whether the proxy plugin is on: `server.enable_proxy = true` and `"proxy"` in
    /// `load_builtin_plugins`, as FrameX requires both.
    pub fn proxy_enabled(&self) -> bool {
        self.server.enable_proxy && self.load_builtin_plugins.iter().any(|p| p == "proxy")
    }

    /// The upstream URL that the proxy function `name` runs on, or `None` when it
    /// runs locally.
    pub fn function_url(&self, name: &str) -> Option<&str> {
        self.proxy.function_url(name)
    }

    /// Settings that were accepted but have no effect here, such as Python-only keys.
    pub fn warnings(&self) -> &[Diagnostic] {
        &self.warnings
    }

    /// A readable account of what the configuration resolved to: where each proxy
    /// function runs and each upstream's rules. It never shows a key.
    pub fn summary(&self) -> impl fmt::Display + '_ {
        Summary(self)
    }
}

impl Default for Config {
    fn default() -> Config {
        Config {
            source: None,
            load_builtin_plugins: Vec::new(),
            load_plugins: Vec::new(),
            server: Server::from(crate::walk::RawServer::default()),
            auth: framex_auth::Rules::default(),
            proxy: Proxy {
                upstreams: Vec::new(),
                functions: BTreeMap::new(),
                timeout: Duration::from_secs(crate::DEFAULT_TIMEOUT_SECS),
                force_stream_apis: Vec::new(),
                auth: framex_auth::Rules::default(),
                ca_file: None,
                connect_timeout: None,
                nameservers: Vec::new(),
                dns_ttl: (Duration::from_secs(1), Duration::from_secs(60)),
                function_timeouts: BTreeMap::new(),
                idempotent: std::collections::BTreeSet::new(),
            },
            warnings: Vec::new(),
        }
    }
}

/// `[server]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Server {
    pub(crate) host: String,
    pub(crate) port: u16,
    pub(crate) enable_proxy: bool,
    pub(crate) max_body_bytes: u64,
    pub(crate) max_inflated_bytes: u64,
    pub(crate) header_read_timeout: Duration,
    pub(crate) body_read_timeout: Duration,
    pub(crate) max_in_flight: u64,
    pub(crate) max_argument_memory: u64,
    pub(crate) shutdown_grace: Duration,
    pub(crate) compression: Option<u32>,
    pub(crate) tls: Option<(PathBuf, PathBuf)>,
}

impl Server {
    /// `host`, default `127.0.0.1`.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// `port`, default `8080`; `0` asks for a free port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `enable_proxy`, default `false`.
    pub fn enable_proxy(&self) -> bool {
        self.enable_proxy
    }

    /// `max_body_bytes`: the largest request body accepted (413 beyond); default
    /// 16 MiB. FrameX for Rust only.
    pub fn max_body_bytes(&self) -> u64 {
        self.max_body_bytes
    }

    /// `max_inflated_bytes`: the largest decoded call payload (413 beyond);
    /// default 32 MiB. FrameX for Rust only.
    pub fn max_inflated_bytes(&self) -> u64 {
        self.max_inflated_bytes
    }

    /// `header_read_timeout` (seconds): how long a client may take to send a
    /// request's headers; default 30 s. FrameX for Rust only.
    pub fn header_read_timeout(&self) -> Duration {
        self.header_read_timeout
    }

    /// `body_read_timeout` (seconds): how long a client may take to send a
    /// request's body (408 beyond); default 60 s. FrameX for Rust only.
    pub fn body_read_timeout(&self) -> Duration {
        self.body_read_timeout
    }

    /// `max_in_flight`: how many calls the instance runs at once (503 beyond);
    /// default 1024. FrameX for Rust only.
    pub fn max_in_flight(&self) -> u64 {
        self.max_in_flight
    }

    /// `max_argument_memory` (bytes): what reading the keyword arguments of
    /// all calls in flight may take together (503 beyond); default 1 GiB.
    /// FrameX for Rust only.
    pub fn max_argument_memory(&self) -> u64 {
        self.max_argument_memory
    }

    /// `tls_cert` and `tls_key`: PEM files of the certificate chain and private
    /// key to serve HTTPS with, as written (see [`Config::resolve_path`]); `None`
    /// serves plain HTTP. FrameX for Rust only.
    pub fn tls(&self) -> Option<(&Path, &Path)> {
        self.tls
            .as_ref()
            .map(|(cert, key)| (cert.as_path(), key.as_path()))
    }

    /// `shutdown_grace` (seconds): how long shutdown waits for calls in flight;
    /// default 30 s. FrameX for Rust only.
    pub fn shutdown_grace(&self) -> Duration {
        self.shutdown_grace
    }

    /// `compression`: the zlib level, 0 (stored) to 9, of this instance's
    /// answers of more than 8 KiB of JSON; `None` for the server's default
    /// (stored). FrameX for Rust only.
    pub fn compression(&self) -> Option<u32> {
        self.compression
    }
}

/// `[plugins.proxy]`.
#[derive(Debug, Clone)]
pub struct Proxy {
    pub(crate) upstreams: Vec<Upstream>,
    /// Function name to index into `upstreams`.
    pub(crate) functions: BTreeMap<String, usize>,
    pub(crate) timeout: Duration,
    pub(crate) force_stream_apis: Vec<String>,
    pub(crate) auth: framex_auth::Rules,
    pub(crate) ca_file: Option<PathBuf>,
    pub(crate) connect_timeout: Option<Duration>,
    pub(crate) nameservers: Vec<std::net::SocketAddr>,
    pub(crate) dns_ttl: (Duration, Duration),
    pub(crate) function_timeouts: BTreeMap<String, Duration>,
    pub(crate) idempotent: std::collections::BTreeSet<String>,
}

impl Proxy {
    /// `ca_file`: a PEM file of CA certificates trusted for `https://` upstreams
    /// besides the system's, as written (see [`Config::resolve_path`]).
    pub fn ca_file(&self) -> Option<&Path> {
        self.ca_file.as_deref()
    }

    /// The upstreams of `proxy_urls`, in configuration order.
    pub fn upstreams(&self) -> &[Upstream] {
        &self.upstreams
    }

    /// The upstream with this exact URL.
    pub fn upstream(&self, url: &str) -> Option<&Upstream> {
        self.upstreams.iter().find(|u| u.url == url)
    }

    /// The URL that the proxy function `name` runs on, or `None` when it runs locally.
    pub fn function_url(&self, name: &str) -> Option<&str> {
        self.functions
            .get(name)
            .map(|&i| self.upstreams[i].url.as_str())
    }

    /// Every function listed in `proxy_functions` with its URL, by name.
    pub fn functions(&self) -> impl Iterator<Item = (&str, &str)> {
        self.functions
            .iter()
            .map(|(name, &i)| (name.as_str(), self.upstreams[i].url.as_str()))
    }

    /// `timeout`: how long a call to an upstream may take, default 600 s.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// `connect_timeout` (seconds): how long connecting to an upstream's
    /// endpoint may take; `None` for the transport's default. FrameX for
    /// Rust only.
    pub fn connect_timeout(&self) -> Option<Duration> {
        self.connect_timeout
    }

    /// `nameservers`: the DNS servers that upstreams' names are looked up on;
    /// empty for the system's. FrameX for Rust only.
    pub fn nameservers(&self) -> &[std::net::SocketAddr] {
        &self.nameservers
    }

    /// `dns_ttl_floor` and `dns_ttl_ceiling` (seconds, default 1 and 60): how
    /// soon and how late an upstream's name is looked up again, whatever its
    /// TTL says. FrameX for Rust only.
    pub fn dns_ttl_bounds(&self) -> (Duration, Duration) {
        self.dns_ttl
    }

    /// `proxy_urls."URL".function_timeouts."name"` (seconds): how long a
    /// call of `name` may take, before the upstream's and the global timeout.
    /// FrameX for Rust only.
    pub fn function_timeout(&self, name: &str) -> Option<Duration> {
        self.function_timeouts.get(name).copied()
    }

    /// `proxy_urls."URL".idempotent_functions`: whether `name` may run twice, so that a call
    /// of it whose connection failed after it was sent goes to another
    /// endpoint. FrameX for Rust only.
    pub fn is_idempotent(&self, name: &str) -> bool {
        self.idempotent.contains(name)
    }

    /// `force_stream_apis`: route paths forwarded as streams.
    pub fn force_stream_apis(&self) -> &[String] {
        &self.force_stream_apis
    }

    /// `[plugins.proxy.auth] rules`: the keys this instance sends to upstreams.
    pub fn auth(&self) -> &framex_auth::Rules {
        &self.auth
    }
}

/// One entry of `proxy_urls`.
#[derive(Debug, Clone)]
pub struct Upstream {
    pub(crate) url: String,
    pub(crate) routes: Option<Routes>,
    pub(crate) endpoints: Vec<String>,
    pub(crate) timeout: Option<Duration>,
    pub(crate) compression: Option<u32>,
    pub(crate) http2: bool,
}

impl Upstream {
    /// The base URL as written, such as `http://remote-framex:8080`.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// `proxy_urls."URL".endpoints`: the instances called instead of every address of
    /// the URL's host, each `host` or `host:port`; empty for the URL's host.
    /// FrameX for Rust only.
    pub fn endpoints(&self) -> &[String] {
        &self.endpoints
    }

    /// `proxy_urls."URL".timeout` (seconds): how long a call to this upstream
    /// may take, before the global timeout. FrameX for Rust only.
    pub fn timeout(&self) -> Option<Duration> {
        self.timeout
    }

    /// `proxy_urls."URL".compression`: the zlib level, 0 (stored) to 9, of the
    /// arguments of more than 8 KiB of JSON sent to this upstream; `None` for
    /// the transport's default (level 1). FrameX for Rust only.
    pub fn compression(&self) -> Option<u32> {
        self.compression
    }

    /// `proxy_urls."URL".http2`: calls go to this upstream over HTTP/2 with
    /// prior knowledge, one connection per endpoint; default false. For an
    /// `http://` upstream of FrameX for Rust instances only. FrameX for Rust
    /// only.
    pub fn http2(&self) -> bool {
        self.http2
    }

    /// The route-forwarding rules, for the table form; `None` for the list form,
    /// which forwards no routes (proxy functions still work).
    pub fn routes(&self) -> Option<&Routes> {
        self.routes.as_ref()
    }
}

/// The route rules of one upstream in table form.
#[derive(Debug, Clone)]
pub struct Routes {
    pub(crate) rules: framex_filter::Rules,
    pub(crate) docs_path: String,
}

impl Routes {
    /// The compiled `enable` and `disable` rules.
    pub fn rules(&self) -> &framex_filter::Rules {
        &self.rules
    }

    /// `docs_path`, default `/api/v1/openapi.json`.
    pub fn docs_path(&self) -> &str {
        &self.docs_path
    }
}

struct Summary<'a>(&'a Config);

impl fmt::Display for Summary<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let config = self.0;
        match config.source() {
            Some(path) => writeln!(f, "configuration: {}", path.display())?,
            None => writeln!(f, "configuration: defaults (no file)")?,
        }
        let server = config.server();
        writeln!(f, "server: {}:{}", server.host(), server.port())?;
        let proxy_state = if config.proxy_enabled() { "on" } else { "off" };
        writeln!(f, "proxy plugin: {proxy_state}")?;
        if let Some(level) = server.compression() {
            writeln!(f, "answers over 8 KiB: zlib level {level}")?;
        }
        write_rules(f, "auth rules (keys callers must send)", config.auth())?;
        let proxy = config.proxy();
        writeln!(f, "upstream timeout: {} s", proxy.timeout().as_secs())?;
        write_rules(
            f,
            "upstream auth rules (keys this instance sends)",
            proxy.auth(),
        )?;
        if proxy.upstreams().is_empty() {
            writeln!(f, "upstreams: none")?;
        } else {
            writeln!(f, "upstreams:")?;
        }
        for upstream in proxy.upstreams() {
            writeln!(f, "  {}", upstream.url())?;
            match upstream.routes() {
                None => writeln!(f, "    routes: none forwarded (list form)")?,
                Some(routes) => {
                    let patterns = |rules: &[framex_filter::Rule]| {
                        rules
                            .iter()
                            .map(|r| format!("{:?}", r.pattern()))
                            .collect::<Vec<_>>()
                            .join(", ")
                    };
                    writeln!(f, "    enable: [{}]", patterns(routes.rules().enable()))?;
                    writeln!(f, "    disable: [{}]", patterns(routes.rules().disable()))?;
                    writeln!(f, "    docs_path: {}", routes.docs_path())?;
                    let endpoint = routes.rules().decide(crate::PROXY_FUNCTION_PATH);
                    writeln!(f, "    {}: {endpoint}", crate::PROXY_FUNCTION_PATH)?;
                }
            }
            if upstream.endpoints().is_empty() {
                writeln!(f, "    endpoints: every address of its host, from DNS")?;
            } else {
                writeln!(f, "    endpoints: {}", upstream.endpoints().join(", "))?;
            }
            if let Some(timeout) = upstream.timeout() {
                writeln!(f, "    timeout: {} s", timeout.as_secs())?;
            }
            if let Some(level) = upstream.compression() {
                writeln!(f, "    arguments over 8 KiB: zlib level {level}")?;
            }
        }
        if proxy.functions.is_empty() {
            writeln!(
                f,
                "proxy functions: none listed, every function runs locally"
            )?;
        } else {
            writeln!(f, "proxy functions (every other function runs locally):")?;
        }
        for (name, url) in proxy.functions() {
            let mut notes = Vec::new();
            if let Some(timeout) = proxy.function_timeout(name) {
                notes.push(format!("timeout {} s", timeout.as_secs()));
            }
            if proxy.is_idempotent(name) {
                notes.push("idempotent".to_owned());
            }
            if notes.is_empty() {
                writeln!(f, "  {name} -> {url}")?;
            } else {
                writeln!(f, "  {name} -> {url} ({})", notes.join(", "))?;
            }
        }
        for api in proxy.force_stream_apis() {
            writeln!(f, "streamed route: {api}")?;
        }
        Ok(())
    }
}

fn write_rules(f: &mut fmt::Formatter<'_>, title: &str, rules: &framex_auth::Rules) -> fmt::Result {
    if rules.is_empty() {
        return writeln!(f, "{title}: none");
    }
    writeln!(f, "{title}:")?;
    for rule in rules.iter() {
        let count = rule.keys().len();
        let noun = if count == 1 { "key" } else { "keys" };
        writeln!(f, "  {} ({count} {noun})", rule.path())?;
    }
    Ok(())
}
