//! Lowers a [`RawConfig`] into a [`Config`]: the checks that need more than one
//! value, and compiling each upstream's route rules.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::time::Duration;

use framex_filter::Decision;

use crate::config::{Config, Proxy, Routes, Server, Upstream};
use crate::diagnostic::DiagnosticKind as Kind;
use crate::tree::{KeyPath, Origin, Reporter};
use crate::walk::{RawConfig, RawRoutes, RawServer, did_you_mean};

pub(crate) fn lower(raw: RawConfig, reporter: &mut Reporter<'_>) -> Config {
    let load_builtin_plugins: Vec<String> = raw
        .load_builtin_plugins
        .into_iter()
        .map(|p| p.value)
        .collect();
    let proxy_enabled =
        raw.server.enable_proxy && load_builtin_plugins.iter().any(|p| p == "proxy");
    let proxy = raw.proxy;
    check_tls_pair(&raw.server, reporter);

    let mut upstreams: Vec<Upstream> = Vec::with_capacity(proxy.upstreams.len());
    // Where each upstream's disable rules are, to point at the one that blocks
    // the proxy-function endpoint.
    let mut raw_routes: Vec<Option<RawRoutes>> = Vec::with_capacity(proxy.upstreams.len());
    // Each upstream's index by URL: looked up once per upstream and per listed
    // URL, so that a file of thousands of them loads in linear time.
    let mut index_of: HashMap<String, usize> = HashMap::with_capacity(proxy.upstreams.len());
    for upstream in proxy.upstreams {
        if index_of.contains_key(&upstream.url.value) {
            reporter.warn(
                Kind::NoEffect,
                &upstream.url.origin,
                &upstream.url.path,
                format!("upstream `{}` is listed more than once", upstream.url.value),
            );
            continue;
        }
        let routes = upstream
            .routes
            .as_ref()
            .and_then(|routes| compile_routes(routes, reporter));
        index_of.insert(upstream.url.value.clone(), upstreams.len());
        let (endpoints, timeout, compression, http2) =
            upstream
                .routes
                .as_ref()
                .map_or((Vec::new(), None, None, false), |raw| {
                    (
                        raw.endpoints.clone(),
                        raw.timeout_secs.map(Duration::from_secs),
                        raw.compression,
                        raw.http2,
                    )
                });
        upstreams.push(Upstream {
            url: upstream.url.value,
            routes,
            endpoints,
            timeout,
            compression,
            http2,
        });
        raw_routes.push(upstream.routes);
    }

    if !proxy_enabled && !upstreams.is_empty() {
        let origin = proxy.origin.clone().unwrap_or(Origin::Defaults);
        reporter.warn(
            Kind::NoEffect,
            &origin,
            &KeyPath::default()
                .child("plugins")
                .child("proxy")
                .child("proxy_urls"),
            not_enabled_hint(
                "`proxy_urls` has no effect",
                raw.server.enable_proxy,
                &load_builtin_plugins,
            ),
        );
    }

    let mut functions: BTreeMap<String, usize> = BTreeMap::new();
    let listed_any = proxy.functions.iter().any(|f| !f.names.is_empty());
    if listed_any && !proxy_enabled {
        let at = proxy
            .functions_origin
            .as_ref()
            .expect("functions were listed");
        reporter.error(
            Kind::ProxyDisabled,
            &at.origin,
            &at.path,
            not_enabled_hint(
                "proxy functions are listed but the proxy plugin is off",
                raw.server.enable_proxy,
                &load_builtin_plugins,
            ),
        );
    }
    // Suggesting a URL compares it with every listed one: done for the first
    // few unlisted URLs only, so that thousands of them stay linear.
    let mut suggestions_left = MAX_URL_SUGGESTIONS;
    let known: Vec<&str> = upstreams.iter().map(|u| u.url.as_str()).collect();
    for listed in &proxy.functions {
        let Some(&index) = index_of.get(&listed.url.value) else {
            let mut message = format!(
                "URL `{}` is not listed in `plugins.proxy.proxy_urls`; every URL in `proxy_functions` must be listed there",
                listed.url.value
            );
            if suggestions_left > 0 {
                suggestions_left -= 1;
                if let Some(close) = closest_url(&listed.url.value, &known) {
                    message.push_str(&format!("; did you mean `{close}`?"));
                }
            }
            reporter.error(
                Kind::UnknownUpstream,
                &listed.url.origin,
                &listed.url.path,
                message,
            );
            continue;
        };
        for name in &listed.names {
            match functions.get(&name.value) {
                Some(&other) if other == index => reporter.warn(
                    Kind::DuplicateFunction,
                    &name.origin,
                    &name.path,
                    format!("function `{}` is listed twice for `{}`", name.value, listed.url.value),
                ),
                Some(&other) => reporter.error(
                    Kind::DuplicateFunction,
                    &name.origin,
                    &name.path,
                    format!(
                        "function `{}` is listed for both `{}` and `{}`; a function runs in one place",
                        name.value, upstreams[other].url, listed.url.value
                    ),
                ),
                None => {
                    functions.insert(name.value.clone(), index);
                }
            }
        }
        if !listed.names.is_empty() {
            check_endpoint_enabled(&upstreams[index], raw_routes[index].as_ref(), reporter);
        }
    }

    let mut function_timeouts = BTreeMap::new();
    let mut idempotent = std::collections::BTreeSet::new();
    for (index, raw) in raw_routes.iter().enumerate() {
        let Some(raw) = raw else { continue };
        let url = upstreams[index].url.as_str();
        for (name, secs) in &raw.function_timeouts {
            if sent_there(reporter, &functions, index, url, name, "function_timeouts") {
                function_timeouts.insert(name.value.clone(), Duration::from_secs(*secs));
            }
        }
        for name in &raw.idempotent_functions {
            if sent_there(
                reporter,
                &functions,
                index,
                url,
                name,
                "idempotent_functions",
            ) {
                idempotent.insert(name.value.clone());
            }
        }
    }
    let dns_ttl_floor = Duration::from_secs(proxy.dns_ttl_floor_secs.unwrap_or(1));
    let dns_ttl_ceiling = Duration::from_secs(proxy.dns_ttl_ceiling_secs.unwrap_or(60));
    if dns_ttl_floor > dns_ttl_ceiling {
        let origin = proxy.origin.clone().unwrap_or(Origin::Defaults);
        reporter.error(
            Kind::InvalidValue,
            &origin,
            &KeyPath::default()
                .child("plugins")
                .child("proxy")
                .child("dns_ttl_floor"),
            format!(
                "`dns_ttl_floor` ({} s) is above `dns_ttl_ceiling` ({} s)",
                dns_ttl_floor.as_secs(),
                dns_ttl_ceiling.as_secs()
            ),
        );
    }

    Config {
        source: None,
        load_builtin_plugins,
        load_plugins: raw.load_plugins,
        server: Server::from(raw.server),
        auth: framex_auth::Rules::from_rules(raw.auth_rules),
        proxy: Proxy {
            upstreams,
            functions,
            timeout: Duration::from_secs(proxy.timeout_secs),
            force_stream_apis: proxy.force_stream_apis,
            auth: framex_auth::Rules::from_rules(proxy.auth_rules),
            ca_file: proxy.ca_file.map(|file| PathBuf::from(file.value)),
            connect_timeout: proxy.connect_timeout_secs.map(Duration::from_secs),
            nameservers: proxy.nameservers,
            dns_ttl: (dns_ttl_floor, dns_ttl_ceiling),
            function_timeouts,
            idempotent,
        },
        warnings: Vec::new(),
    }
}

/// Whether `name`, listed in the upstream `url`'s `what`, is a function that
/// `proxy_functions` sends to that upstream (index `index`); reports it when
/// it is not.
fn sent_there(
    reporter: &mut Reporter<'_>,
    functions: &BTreeMap<String, usize>,
    index: usize,
    url: &str,
    name: &crate::walk::Item<String>,
    what: &str,
) -> bool {
    if functions.get(&name.value) == Some(&index) {
        return true;
    }
    let mut message = format!(
        "function `{}` in `{what}` is not sent to `{url}` by `proxy_functions`, so `{what}` would not apply to it",
        name.value
    );
    let listed: Vec<&str> = functions
        .iter()
        .filter(|(_, at)| **at == index)
        .map(|(name, _)| name.as_str())
        .collect();
    if let Some(close) = did_you_mean(&name.value, &listed) {
        message.push_str(&format!("; did you mean `{close}`?"));
    }
    reporter.error(Kind::UnknownKey, &name.origin, &name.path, message);
    false
}

fn compile_routes(routes: &RawRoutes, reporter: &mut Reporter<'_>) -> Option<Routes> {
    // Empty rules were already reported by the walk.
    let enable = routes.enable.iter().filter(|r| !r.value.is_empty());
    let disable = routes.disable.iter().filter(|r| !r.value.is_empty());
    match framex_filter::Rules::compile_all(
        enable.clone().map(|r| &r.value),
        disable.clone().map(|r| &r.value),
    ) {
        Ok(rules) => Some(Routes {
            rules,
            docs_path: routes.docs_path.clone(),
        }),
        Err(errors) => {
            for error in errors {
                let item = enable
                    .clone()
                    .chain(disable.clone())
                    .find(|r| r.value == error.pattern())
                    .expect("every error comes from a listed rule");
                let cause = std::error::Error::source(&error)
                    .map(|s| format!(": {s}"))
                    .unwrap_or_default();
                reporter.error(
                    Kind::InvalidRule,
                    &item.origin,
                    &item.path,
                    format!("`{}` is not a valid rule{cause}", item.value),
                );
            }
            None
        }
    }
}

/// An upstream whose rules disable `/api/v1/proxy/remote` cannot serve the proxy
/// functions listed for it.
fn check_endpoint_enabled(
    upstream: &Upstream,
    raw: Option<&RawRoutes>,
    reporter: &mut Reporter<'_>,
) {
    let (Some(routes), Some(raw)) = (&upstream.routes, raw) else {
        return;
    };
    if let Decision::Disabled(rule) = routes.rules.decide(crate::PROXY_FUNCTION_PATH) {
        let item = raw
            .disable
            .iter()
            .find(|r| r.value == rule.pattern())
            .expect("the deciding rule is a listed disable rule");
        reporter.error(
            Kind::ProxyEndpointDisabled,
            &item.origin,
            &item.path,
            format!(
                "disable rule `{}` blocks `{}` on `{}`, which `proxy_functions` uses for its functions",
                rule.pattern(),
                crate::PROXY_FUNCTION_PATH,
                upstream.url
            ),
        );
    }
}

fn not_enabled_hint(what: &str, enable_proxy: bool, builtin: &[String]) -> String {
    let has_plugin = builtin.iter().any(|p| p == "proxy");
    let missing = match (enable_proxy, has_plugin) {
        (false, false) => "both are missing",
        (false, true) => "`server.enable_proxy` is false",
        (true, false) => "`load_builtin_plugins` lacks \"proxy\"",
        (true, true) => "both are set",
    };
    format!(
        "{what}: set both `server.enable_proxy = true` and `load_builtin_plugins = [\"proxy\"]` ({missing})"
    )
}

/// How many unlisted URLs get a "did you mean" hint.
const MAX_URL_SUGGESTIONS: usize = 20;

fn closest_url<'a>(url: &str, known: &'a [&'a str]) -> Option<&'a str> {
    if let Some(same) = known.iter().find(|k| k.eq_ignore_ascii_case(url)) {
        return Some(same);
    }
    did_you_mean(url, known.iter()).or_else(|| (known.len() == 1).then(|| known[0]))
}

/// `tls_cert` and `tls_key` go together.
fn check_tls_pair(server: &RawServer, reporter: &mut Reporter<'_>) {
    let (given, missing) = match (&server.tls_cert, &server.tls_key) {
        (Some(cert), None) => (cert, "tls_key"),
        (None, Some(key)) => (key, "tls_cert"),
        _ => return,
    };
    reporter.error(
        Kind::InvalidValue,
        &given.origin,
        &given.path,
        format!("`server.{missing}` is not set: serving HTTPS takes both `tls_cert` and `tls_key`"),
    );
}

impl From<RawServer> for Server {
    fn from(raw: RawServer) -> Server {
        Server {
            host: raw.host,
            port: raw.port,
            enable_proxy: raw.enable_proxy,
            max_body_bytes: raw.max_body_bytes,
            max_inflated_bytes: raw.max_inflated_bytes,
            header_read_timeout: Duration::from_secs(raw.header_read_timeout_secs),
            body_read_timeout: Duration::from_secs(raw.body_read_timeout_secs),
            max_in_flight: raw.max_in_flight,
            max_argument_memory: raw.max_argument_memory,
            shutdown_grace: Duration::from_secs(raw.shutdown_grace_secs),
            compression: raw.compression,
            tls: match (raw.tls_cert, raw.tls_key) {
                (Some(cert), Some(key)) => {
                    Some((PathBuf::from(cert.value), PathBuf::from(key.value)))
                }
                _ => None,
            },
        }
    }
}
