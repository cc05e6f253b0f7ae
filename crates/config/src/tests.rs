//! Unit tests for loading: every validation error, with the message, key path and
//! line:column it reports, plus sources and defaults.

use std::time::Duration;

use super::{Config, DiagnosticKind, Loader, Location, Severity};

fn load(toml: &str, env: &[(&str, &str)]) -> Result<Config, super::Error> {
    Loader::default()
        .text("config.toml", toml)
        .env(env.iter().map(|(k, v)| (k.to_string(), v.to_string())))
        .load()
}

/// Checks that `toml` (with `env`) fails with exactly the `expect`ed errors, each as
/// rendered: `error: config.toml:LINE:COL: `key`: message`.
#[track_caller]
fn check_errors(toml: &str, env: &[(&str, &str)], expect: &[&str]) {
    let error = match load(toml, env) {
        Ok(config) => panic!("expected errors, loaded {config:?}"),
        Err(error) => error,
    };
    let actual: Vec<String> = error.errors().map(ToString::to_string).collect();
    assert_eq!(actual, expect, "\nwhole error:\n{error}");
}

/// Checks that `toml` loads and has exactly the `expect`ed warnings.
#[track_caller]
fn check_warnings(toml: &str, expect: &[&str]) -> Config {
    let config = load(toml, &[]).unwrap_or_else(|e| panic!("{e}"));
    let actual: Vec<String> = config.warnings().iter().map(ToString::to_string).collect();
    assert_eq!(actual, expect);
    config
}

const PROXY_ON: &str = "load_builtin_plugins = [\"proxy\"]\n[server]\nenable_proxy = true\n";

#[test]
fn defaults() {
    let config = load("", &[]).unwrap();
    assert_eq!(config.server().host(), "127.0.0.1");
    assert_eq!(config.server().port(), 8080);
    assert!(!config.server().enable_proxy());
    assert!(!config.proxy_enabled());
    assert_eq!(config.proxy().timeout(), Duration::from_secs(600));
    assert!(config.proxy().upstreams().is_empty());
    assert!(config.auth().is_empty());
    assert!(config.warnings().is_empty());
    assert_eq!(config.function_url("any.function"), None);
}

#[test]
fn syntax_errors_name_the_line() {
    check_errors(
        "[server]\nport = = 1\n",
        &[],
        &["error: config.toml:2:8: invalid TOML: extra `=`, expected nothing"],
    );
}

#[test]
fn unknown_keys_suggest_the_known_one() {
    check_errors(
        "[server]\nprot = 9000\n",
        &[],
        &["error: config.toml:2:1: `server.prot`: unknown key `prot`; did you mean `port`?"],
    );
    check_errors(
        &format!("{PROXY_ON}[plugins.proxy]\nproxy_function = {{}}\n"),
        &[],
        &[
            "error: config.toml:5:1: `plugins.proxy.proxy_function`: unknown key `proxy_function`; did you mean `proxy_functions`?",
        ],
    );
    check_errors(
        "lod_plugins = []\n",
        &[],
        &[
            "error: config.toml:1:1: `lod_plugins`: unknown key `lod_plugins`; did you mean `load_plugins`?",
        ],
    );
    check_errors(
        "[plugins.proxy.proxy_urls.\"http://a:1\"]\nenabel = []\n",
        &[],
        &[
            "error: config.toml:2:1: `plugins.proxy.proxy_urls.\"http://a:1\".enabel`: unknown key `enabel`; did you mean `enable`?",
        ],
    );
    check_errors(
        "[auth]\nrule = {}\n",
        &[],
        &["error: config.toml:2:1: `auth.rule`: unknown key `rule`; did you mean `rules`?"],
    );
    check_errors(
        "[zzz]\n",
        &[],
        &[
            "error: config.toml:1:2: `zzz`: unknown key `zzz`; expected one of `load_builtin_plugins`, `load_plugins`, `server`, `auth`, `plugins`",
        ],
    );
}

#[test]
fn every_error_is_reported_at_once() {
    check_errors(
        "[server]\nprot = 1\nport = \"x\"\nenable_proxy = 1\n",
        &[],
        &[
            "error: config.toml:2:1: `server.prot`: unknown key `prot`; did you mean `port`?",
            "error: config.toml:3:8: `server.port`: expected an integer, found a string",
            "error: config.toml:4:16: `server.enable_proxy`: expected a boolean (true or false), found an integer",
        ],
    );
}

#[test]
fn python_only_keys_are_accepted_with_a_warning() {
    let config = check_warnings(
        "base_ingress_config = {}\n[server]\nuse_ray = false\ndashboard_port = 8260\nnum_cpus = 2\n[log]\nsimple_log = true\n[auth.oauth]\nprovider = \"x\"\n[plugins.echo]\nx = 1\n",
        &[
            "warning: config.toml:1:1: `base_ingress_config`: `base_ingress_config` is a Python FrameX setting that FrameX for Rust ignores",
            "warning: config.toml:3:1: `server.use_ray`: `use_ray` is a Python FrameX setting that FrameX for Rust ignores",
            "warning: config.toml:4:1: `server.dashboard_port`: `dashboard_port` is a Python FrameX setting that FrameX for Rust ignores",
            "warning: config.toml:5:1: `server.num_cpus`: `num_cpus` is a Python FrameX setting that FrameX for Rust ignores",
            "warning: config.toml:6:2: `log`: `log` is a Python FrameX setting that FrameX for Rust ignores",
            "warning: config.toml:8:7: `auth.oauth`: `oauth` is a Python FrameX setting that FrameX for Rust ignores",
            "warning: config.toml:10:10: `plugins.echo`: settings of plugin `echo` are for Python FrameX plugins; FrameX for Rust ignores them",
        ],
    );
    assert!(
        config
            .warnings()
            .iter()
            .all(|w| w.severity() == Severity::Warning)
    );
    assert!(
        config
            .warnings()
            .iter()
            .all(|w| w.kind() == DiagnosticKind::IgnoredKey)
    );
}

#[test]
fn wrong_types() {
    check_errors(
        "load_builtin_plugins = \"proxy\"\n",
        &[],
        &[
            "error: config.toml:1:24: `load_builtin_plugins`: expected an array of strings, found a string",
        ],
    );
    check_errors(
        "load_plugins = [1]\n",
        &[],
        &["error: config.toml:1:17: `load_plugins[0]`: expected a string, found an integer"],
    );
    check_errors(
        "server = 1\n",
        &[],
        &["error: config.toml:1:10: `server`: expected a table, found an integer"],
    );
    check_errors(
        "[plugins.proxy]\nproxy_urls = \"http://a:1\"\n",
        &[],
        &[
            "error: config.toml:2:14: `plugins.proxy.proxy_urls`: expected an array of URLs or a table keyed by URL, found a string",
        ],
    );
    check_errors(
        "[plugins.proxy]\ntimeout = 1.5\n",
        &[],
        &["error: config.toml:2:11: `plugins.proxy.timeout`: expected an integer, found a float"],
    );
}

#[test]
fn out_of_range_values() {
    check_errors(
        "[server]\nport = 70000\n",
        &[],
        &[
            "error: config.toml:2:8: `server.port`: port 70000 is out of range: use 0 to 65535 (0 picks a free port)",
        ],
    );
    check_errors(
        "[server]\nhost = \"\"\n",
        &[],
        &["error: config.toml:2:8: `server.host`: the host must not be empty"],
    );
    check_errors(
        "[plugins.proxy]\ntimeout = 0\n",
        &[],
        &[
            "error: config.toml:2:11: `plugins.proxy.timeout`: expected a number of seconds from 1 to 3153600000 (100 years), found 0",
        ],
    );
    check_errors(
        "[plugins.proxy]\ntimeout = -5\n",
        &[],
        &[
            "error: config.toml:2:11: `plugins.proxy.timeout`: expected a number of seconds from 1 to 3153600000 (100 years), found -5",
        ],
    );
}

#[test]
fn proxy_functions_need_a_listed_url() {
    check_errors(
        &format!(
            "{PROXY_ON}[plugins.proxy]\nproxy_urls = [\"http://remote:8080\"]\nproxy_functions = {{ \"http://remote:8081\" = [\"m.f\"] }}\n"
        ),
        &[],
        &[
            "error: config.toml:6:21: `plugins.proxy.proxy_functions.\"http://remote:8081\"`: URL `http://remote:8081` is not listed in `plugins.proxy.proxy_urls`; every URL in `proxy_functions` must be listed there; did you mean `http://remote:8080`?",
        ],
    );
    check_errors(
        &format!(
            "{PROXY_ON}[plugins.proxy]\nproxy_functions = {{ \"http://remote:8081\" = [\"m.f\"] }}\n"
        ),
        &[],
        &[
            "error: config.toml:5:21: `plugins.proxy.proxy_functions.\"http://remote:8081\"`: URL `http://remote:8081` is not listed in `plugins.proxy.proxy_urls`; every URL in `proxy_functions` must be listed there",
        ],
    );
}

#[test]
fn proxy_functions_need_the_proxy_plugin() {
    let functions = "[plugins.proxy]\nproxy_urls = [\"http://a:1\"]\nproxy_functions = { \"http://a:1\" = [\"m.f\"] }\n";
    check_errors(
        functions,
        &[],
        &[
            "error: config.toml:3:1: `plugins.proxy.proxy_functions`: proxy functions are listed but the proxy plugin is off: set both `server.enable_proxy = true` and `load_builtin_plugins = [\"proxy\"]` (both are missing)",
        ],
    );
    check_errors(
        &format!("load_builtin_plugins = [\"proxy\"]\n{functions}"),
        &[],
        &[
            "error: config.toml:4:1: `plugins.proxy.proxy_functions`: proxy functions are listed but the proxy plugin is off: set both `server.enable_proxy = true` and `load_builtin_plugins = [\"proxy\"]` (`server.enable_proxy` is false)",
        ],
    );
    check_errors(
        &format!("[server]\nenable_proxy = true\n{functions}"),
        &[],
        &[
            "error: config.toml:5:1: `plugins.proxy.proxy_functions`: proxy functions are listed but the proxy plugin is off: set both `server.enable_proxy = true` and `load_builtin_plugins = [\"proxy\"]` (`load_builtin_plugins` lacks \"proxy\")",
        ],
    );
}

#[test]
fn proxy_urls_must_be_base_urls() {
    let cases = [
        (
            "remote:8080",
            "it must be absolute, like `http://host:8080`",
        ),
        (
            "ftp://remote",
            "the scheme must be `http` or `https`, not `ftp`",
        ),
        (
            "http://remote:8080/api",
            "it carries a path (`/api`); give the base URL only",
        ),
        ("http://remote:8080/", "remove the trailing `/`"),
        (
            "http://remote?x=1",
            "it carries a query (`?x=1`); give the base URL only",
        ),
        (
            "http://remote#top",
            "it carries a fragment (`#top`); give the base URL only",
        ),
        ("http://", "the host is missing"),
        ("http://:80", "the host is missing"),
        (
            "http://remote:http",
            "`http` is not a port number (0 to 65535)",
        ),
        (
            "http://remote:99999",
            "`99999` is not a port number (0 to 65535)",
        ),
        (
            "http://user:pw@remote",
            "it must not carry credentials; use `[plugins.proxy.auth] rules` for keys",
        ),
        ("http://[::1", "the IPv6 address has no closing `]`"),
    ];
    for (url, problem) in cases {
        check_errors(
            &format!("{PROXY_ON}[plugins.proxy]\nproxy_urls = [\"{url}\"]\n"),
            &[],
            &[&format!(
                "error: config.toml:5:15: `plugins.proxy.proxy_urls[0]`: `{url}` is not a usable upstream URL: {problem}"
            )],
        );
    }
    let config = load(
        &format!("{PROXY_ON}[plugins.proxy]\nproxy_urls = [\"http://[::1]:8080\", \"HTTPS://example.com\", \"http://10.0.0.1\"]\n"),
        &[],
    )
    .unwrap();
    assert_eq!(config.proxy().upstreams().len(), 3);
}

#[test]
fn table_form_urls_are_checked_too() {
    check_errors(
        &format!("{PROXY_ON}[plugins.proxy.proxy_urls.\"http://remote/x\"]\nenable = [\"*\"]\n"),
        &[],
        &[
            "error: config.toml:4:27: `plugins.proxy.proxy_urls.\"http://remote/x\"`: `http://remote/x` is not a usable upstream URL: it carries a path (`/x`); give the base URL only",
        ],
    );
}

#[test]
fn a_function_runs_in_one_place() {
    check_errors(
        &format!(
            "{PROXY_ON}[plugins.proxy]\nproxy_urls = [\"http://a:1\", \"http://b:2\"]\nproxy_functions = {{ \"http://a:1\" = [\"m.f\"], \"http://b:2\" = [\"m.g\", \"m.f\"] }}\n"
        ),
        &[],
        &[
            "error: config.toml:6:68: `plugins.proxy.proxy_functions.\"http://b:2\"[1]`: function `m.f` is listed for both `http://a:1` and `http://b:2`; a function runs in one place",
        ],
    );
}

#[test]
fn a_function_listed_twice_for_one_url_is_a_warning() {
    let config = check_warnings(
        &format!(
            "{PROXY_ON}[plugins.proxy]\nproxy_urls = [\"http://a:1\"]\nproxy_functions = {{ \"http://a:1\" = [\"m.f\", \"m.f\"] }}\n"
        ),
        &[
            "warning: config.toml:6:44: `plugins.proxy.proxy_functions.\"http://a:1\"[1]`: function `m.f` is listed twice for `http://a:1`",
        ],
    );
    assert_eq!(config.function_url("m.f"), Some("http://a:1"));
}

#[test]
fn empty_names_keys_and_paths() {
    check_errors(
        &format!(
            "{PROXY_ON}[plugins.proxy]\nproxy_urls = [\"http://a:1\"]\nproxy_functions = {{ \"http://a:1\" = [\"\", \"m .f\"] }}\n"
        ),
        &[],
        &[
            "error: config.toml:6:37: `plugins.proxy.proxy_functions.\"http://a:1\"[0]`: a function name must not be empty",
            "error: config.toml:6:41: `plugins.proxy.proxy_functions.\"http://a:1\"[1]`: function name `m .f` must not contain whitespace",
        ],
    );
    check_errors(
        "[auth]\nrules = { \"\" = [\"k\"], \"/a\" = [\"\"], \"/b\" = [], \"c/*\" = [\"k\"] }\n",
        &[],
        &[
            "error: config.toml:2:11: `auth.rules.\"\"`: an auth rule path must not be empty",
            "error: config.toml:2:31: `auth.rules.\"/a\"[0]`: auth rule `/a`: the key at position 0 is empty",
            "error: config.toml:2:43: `auth.rules.\"/b\"`: auth rule `/b` lists no key; remove the rule to make the path public",
            "error: config.toml:2:47: `auth.rules.\"c/*\"`: auth rule path `c/*` must start with `/`",
        ],
    );
    check_errors(
        "[plugins.proxy.auth]\nrules = { \"/api/*\" = [\"\"] }\n",
        &[],
        &[
            "error: config.toml:2:23: `plugins.proxy.auth.rules.\"/api/*\"[0]`: auth rule `/api/*`: the key at position 0 is empty",
        ],
    );
    // Rules that Python FrameX would take as exact paths, and keys that a
    // header cannot carry as they are.
    check_errors(
        "[auth]\nrules = { \"/api/*/remote\" = [\"k\"], \"/api/v1/admin*\" = [\"k\"], \"/x\" = [\"ok\", \" padded\", \"line\\n\"] }\n",
        &[],
        &[
            "error: config.toml:2:11: `auth.rules.\"/api/*/remote\"`: auth rule path `/api/*/remote`: `*` may only be a rule's whole last segment (`/api/v1/*` covers every path under `/api/v1/`); any other rule is an exact path",
            "error: config.toml:2:36: `auth.rules.\"/api/v1/admin*\"`: auth rule path `/api/v1/admin*`: `*` may only be a rule's whole last segment (`/api/v1/*` covers every path under `/api/v1/`); any other rule is an exact path",
            "error: config.toml:2:76: `auth.rules.\"/x\"[1]`: auth rule `/x`: the key at position 1 starts or ends with a space, which the server trims from the header",
        ],
    );
    check_errors(
        &format!(
            "{PROXY_ON}[plugins.proxy.proxy_urls.\"http://a:1\"]\nenable = [\"\"]\ndisable = [\"\"]\ndocs_path = \"openapi.json\"\n"
        ),
        &[],
        &[
            "error: config.toml:7:13: `plugins.proxy.proxy_urls.\"http://a:1\".docs_path`: the docs path `openapi.json` must start with `/`",
            "error: config.toml:5:11: `plugins.proxy.proxy_urls.\"http://a:1\".enable[0]`: a rule must not be empty",
            "error: config.toml:6:12: `plugins.proxy.proxy_urls.\"http://a:1\".disable[0]`: a rule must not be empty",
        ],
    );
    check_errors(
        "[plugins.proxy]\nforce_stream_apis = [\"api/chat\"]\n",
        &[],
        &[
            "error: config.toml:2:22: `plugins.proxy.force_stream_apis[0]`: a streaming API path `api/chat` must start with `/`",
        ],
    );
}

#[test]
fn invalid_globs_name_the_pattern() {
    check_errors(
        &format!(
            "{PROXY_ON}[plugins.proxy.proxy_urls.\"http://a:1\"]\nenable = [\"/api/{{v1\"]\ndisable = [\"/x/[\"]\n"
        ),
        &[],
        &[
            "error: config.toml:5:11: `plugins.proxy.proxy_urls.\"http://a:1\".enable[0]`: `/api/{v1` is not a valid rule: error parsing glob '/api/{v1': unclosed alternate group; missing '}' (maybe escape '{' with '[{]'?)",
            "error: config.toml:6:12: `plugins.proxy.proxy_urls.\"http://a:1\".disable[0]`: `/x/[` is not a valid rule: error parsing glob '/x/[': unclosed character class; missing ']'",
        ],
    );
}

#[test]
fn disabling_the_proxy_endpoint_of_a_used_upstream() {
    let toml = format!(
        "{PROXY_ON}[plugins.proxy.proxy_urls.\"http://a:1\"]\nenable = [\"/api/v1/*\"]\ndisable = [\"/api/v1/proxy/*\"]\n[plugins.proxy]\nproxy_functions = {{ \"http://a:1\" = [\"m.f\"] }}\n"
    );
    check_errors(
        &toml,
        &[],
        &[
            "error: config.toml:6:12: `plugins.proxy.proxy_urls.\"http://a:1\".disable[0]`: disable rule `/api/v1/proxy/*` blocks `/api/v1/proxy/remote` on `http://a:1`, which `proxy_functions` uses for its functions",
        ],
    );
    // The same rules without proxy functions are fine: routes are forwarded, just not that one.
    let unused = toml.replace("[\"m.f\"]", "[]");
    let config = load(&unused, &[]).unwrap();
    let routes = config
        .proxy()
        .upstream("http://a:1")
        .unwrap()
        .routes()
        .unwrap();
    assert!(!routes.rules().decide("/api/v1/proxy/remote").is_enabled());
    // An upstream whose enable rules merely do not mention the endpoint still serves functions,
    // as in Python FrameX.
    let narrow = toml
        .replace("disable = [\"/api/v1/proxy/*\"]\n", "")
        .replace("/api/v1/*", "/api/v1/users/*");
    assert_eq!(
        load(&narrow, &[]).unwrap().function_url("m.f"),
        Some("http://a:1")
    );
}

/// The route rules that `proxy` (a `[plugins.proxy]` fragment) gives `http://a:1`.
fn routes_of(proxy: &str) -> Option<super::Routes> {
    let config = load(&format!("{PROXY_ON}{proxy}"), &[]).unwrap_or_else(|e| panic!("{e}"));
    let upstream = config
        .proxy()
        .upstream("http://a:1")
        .expect("upstream listed");
    upstream.routes().cloned()
}

#[test]
fn upstream_forms() {
    let list = routes_of("[plugins.proxy]\nproxy_urls = [\"http://a:1\"]\n");
    assert!(list.is_none(), "the list form forwards no routes");

    let defaults = routes_of("[plugins.proxy.proxy_urls.\"http://a:1\"]\n").unwrap();
    assert!(
        defaults.rules().decide("/anything").is_enabled(),
        "enable defaults to everything"
    );
    assert_eq!(defaults.docs_path(), "/api/v1/openapi.json");

    let empty = routes_of(
        "[plugins.proxy.proxy_urls.\"http://a:1\"]\nenable = []\ndocs_path = \"/openapi.json\"\n",
    )
    .unwrap();
    assert!(
        !empty.rules().decide("/anything").is_enabled(),
        "an empty enable list forwards nothing"
    );
    assert_eq!(empty.docs_path(), "/openapi.json");
}

#[test]
fn proxy_urls_without_the_plugin_warn() {
    check_warnings(
        "[plugins.proxy]\nproxy_urls = [\"http://a:1\"]\n",
        &[
            "warning: config.toml:1:1: `plugins.proxy.proxy_urls`: `proxy_urls` has no effect: set both `server.enable_proxy = true` and `load_builtin_plugins = [\"proxy\"]` (both are missing)",
        ],
    );
}

#[test]
fn unknown_builtin_plugins_warn() {
    check_warnings(
        "load_builtin_plugins = [\"proxy\", \"echo\"]\n",
        &[
            "warning: config.toml:1:34: `load_builtin_plugins[1]`: builtin plugin `echo` is not part of FrameX for Rust and is ignored",
        ],
    );
}

#[test]
fn environment_overrides_win_over_the_file() {
    let config = load(
        "[server]\nport = 8000\nhost = \"0.0.0.0\"\n",
        &[
            ("FRAMEX__SERVER__PORT", "9000"),
            ("framex__server__enable_proxy", "true"),
            ("FRAMEX__LOAD_BUILTIN_PLUGINS", "[\"proxy\"]"),
            ("FRAMEX__PLUGINS__PROXY__PROXY_URLS", "[\"http://a:1\"]"),
            (
                "FRAMEX__PLUGINS__PROXY__PROXY_FUNCTIONS",
                "{ \"http://a:1\" = [\"m.f\"] }",
            ),
            ("FRAMEX__PLUGINS__PROXY__TIMEOUT", "30"),
            ("OTHER__SERVER__PORT", "1"),
        ],
    )
    .unwrap();
    assert_eq!(config.server().port(), 9000);
    assert_eq!(config.server().host(), "0.0.0.0");
    assert!(config.proxy_enabled());
    assert_eq!(config.function_url("m.f"), Some("http://a:1"));
    assert_eq!(config.proxy().timeout(), Duration::from_secs(30));
}

#[test]
fn environment_values_fall_back_to_strings() {
    let config = load("", &[("FRAMEX__SERVER__HOST", "10.1.2.3")]).unwrap();
    assert_eq!(config.server().host(), "10.1.2.3");
    let config = load("", &[("FRAMEX__SERVER__HOST", "\"quoted\"")]).unwrap();
    assert_eq!(config.server().host(), "quoted");
}

#[test]
fn environment_errors_name_the_variable() {
    check_errors(
        "",
        &[("FRAMEX__SERVER__PROT", "1")],
        &[
            "error: environment variable FRAMEX__SERVER__PROT: `server.prot`: unknown key `prot`; did you mean `port`?",
        ],
    );
    check_errors(
        "",
        &[("FRAMEX__SERVER__PORT", "high")],
        &[
            "error: environment variable FRAMEX__SERVER__PORT: `server.port`: expected an integer, found a string",
        ],
    );
    check_errors(
        "[server]\nport = 1\n",
        &[("FRAMEX__SERVER__PORT__X", "1")],
        &[
            "error: environment variable FRAMEX__SERVER__PORT__X: `server.port`: cannot set `x` inside an integer",
        ],
    );
    check_errors(
        "",
        &[("FRAMEX__SERVER____PORT", "1")],
        &[
            "error: environment variable FRAMEX__SERVER____PORT: the variable's name has an empty key between `__` separators",
        ],
    );
}

#[test]
fn file_sources() {
    let dir = std::env::temp_dir().join(format!("framex-config-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();

    // No file anywhere: defaults.
    let config = Loader::default()
        .working_dir(&dir)
        .env([("A", "B")])
        .load()
        .unwrap();
    assert_eq!(config.source(), None);

    // config.toml in the working directory.
    std::fs::write(dir.join("config.toml"), "[server]\nport = 1234\n").unwrap();
    let config = Loader::default()
        .working_dir(&dir)
        .env([("A", "B")])
        .load()
        .unwrap();
    assert_eq!(config.server().port(), 1234);
    assert_eq!(config.source(), Some(dir.join("config.toml").as_path()));

    // A named file wins over config.toml, and must exist.
    std::fs::write(dir.join("other.toml"), "[server]\nport = 4321\n").unwrap();
    let config = Loader::default()
        .working_dir(&dir)
        .file(dir.join("other.toml"))
        .env([("A", "B")])
        .load()
        .unwrap();
    assert_eq!(config.server().port(), 4321);

    let missing = dir.join("missing.toml");
    let error = Loader::default()
        .file(&missing)
        .env([("A", "B")])
        .load()
        .unwrap_err();
    let diagnostic = error.errors().next().unwrap();
    assert_eq!(diagnostic.kind(), DiagnosticKind::Io);
    assert_eq!(
        diagnostic.location(),
        &Location::Path {
            path: missing.clone()
        }
    );
    assert!(
        error.to_string().contains(&missing.display().to_string()),
        "{error}"
    );

    // Errors in a named file carry its path and line.
    std::fs::write(dir.join("bad.toml"), "\n\n[server]\nportt = 1\n").unwrap();
    let error = Loader::default()
        .file(dir.join("bad.toml"))
        .env([("A", "B")])
        .load()
        .unwrap_err();
    let diagnostic = error.errors().next().unwrap();
    assert_eq!(
        diagnostic.location().file(),
        Some(dir.join("bad.toml").as_path())
    );
    assert_eq!(diagnostic.location().line(), Some(4));
    assert_eq!(diagnostic.key(), "server.portt");

    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn error_display_counts_and_lists_errors() {
    let error = load("[server]\nprot = 1\nport = \"x\"\n", &[]).unwrap_err();
    assert_eq!(
        error.to_string(),
        "invalid FrameX configuration (2 errors)\n  error: config.toml:2:1: `server.prot`: unknown key `prot`; did you mean `port`?\n  error: config.toml:3:8: `server.port`: expected an integer, found a string"
    );
}

#[test]
fn debug_output_hides_keys() {
    let config = load("[auth]\nrules = { \"/a\" = [\"top-secret\"] }\n", &[]).unwrap();
    let shown = format!("{config:?} {}", config.summary());
    assert!(!shown.contains("top-secret"), "{shown}");
    assert_eq!(
        config.auth().key_for("/a").map(|k| k.expose()),
        Some("top-secret")
    );
}

#[test]
fn columns_count_characters() {
    check_errors(
        "# ünïcödé\n[server]\nport = \"π\"\n",
        &[],
        &["error: config.toml:3:8: `server.port`: expected an integer, found a string"],
    );
    check_errors(
        "[server]\nhost = \"é\"; port = 1\n",
        &[],
        &["error: config.toml:2:11: invalid TOML: unexpected key or value, expected newline, `#`"],
    );
}

#[test]
fn server_limits_have_defaults_and_take_positive_integers() {
    let defaults = load("", &[]).unwrap();
    let server = defaults.server();
    assert_eq!(server.max_body_bytes(), 16 * 1024 * 1024);
    assert_eq!(server.max_inflated_bytes(), 32 * 1024 * 1024);
    assert_eq!(server.header_read_timeout(), Duration::from_secs(30));
    assert_eq!(server.body_read_timeout(), Duration::from_secs(60));
    assert_eq!(server.max_in_flight(), 1024);
    assert_eq!(server.shutdown_grace(), Duration::from_secs(30));

    let config = load(
        "[server]\nmax_body_bytes = 1024\nmax_inflated_bytes = 2048\nheader_read_timeout = 5\n\
         body_read_timeout = 6\nmax_in_flight = 60\nshutdown_grace = 7\n",
        &[("FRAMEX__SERVER__MAX_IN_FLIGHT", "61")],
    )
    .unwrap();
    let server = config.server();
    assert_eq!(
        (
            server.max_body_bytes(),
            server.max_inflated_bytes(),
            server.header_read_timeout(),
            server.body_read_timeout(),
            server.max_in_flight(),
            server.shutdown_grace(),
        ),
        (
            1024,
            2048,
            Duration::from_secs(5),
            Duration::from_secs(6),
            61,
            Duration::from_secs(7)
        )
    );

    check_errors(
        "[server]\nmax_body_bytes = 0\nmax_in_flight = -3\nbody_read_timeout = \"60s\"\n",
        &[],
        &[
            "error: config.toml:2:18: `server.max_body_bytes`: expected a number of bytes above 0, found 0",
            "error: config.toml:3:17: `server.max_in_flight`: expected a number of calls above 0, found -3",
            "error: config.toml:4:21: `server.body_read_timeout`: expected an integer, found a string",
        ],
    );
}

#[test]
fn compression_is_a_zlib_level_for_the_instance_and_per_upstream() {
    let defaults = load("", &[]).unwrap();
    assert_eq!(defaults.server().compression(), None);

    let config = load(
        "load_builtin_plugins = [\"proxy\"]\n[server]\nenable_proxy = true\ncompression = 0\n\
         [plugins.proxy.proxy_urls.\"http://near:8080\"]\ncompression = 6\n\
         [plugins.proxy.proxy_urls.\"http://far:8080\"]\nenable = []\n",
        &[],
    )
    .unwrap();
    assert_eq!(config.server().compression(), Some(0));
    let proxy = config.proxy();
    assert_eq!(
        proxy.upstream("http://near:8080").unwrap().compression(),
        Some(6)
    );
    assert_eq!(
        proxy.upstream("http://far:8080").unwrap().compression(),
        None
    );

    // Through the environment, as a file Python FrameX also reads sets it.
    let config = load("", &[("FRAMEX__SERVER__COMPRESSION", "9")]).unwrap();
    assert_eq!(config.server().compression(), Some(9));

    check_errors(
        "[server]\ncompression = 10\n[plugins.proxy.proxy_urls.\"http://a:1\"]\ncompression = -1\n\
         [plugins.proxy.proxy_urls.\"http://b:1\"]\ncompression = \"fast\"\n",
        &[],
        &[
            "error: config.toml:2:15: `server.compression`: expected a zlib level from 0 (stored, no compression) to 9, found 10",
            "error: config.toml:4:15: `plugins.proxy.proxy_urls.\"http://a:1\".compression`: expected a zlib level from 0 (stored, no compression) to 9, found -1",
            "error: config.toml:6:15: `plugins.proxy.proxy_urls.\"http://b:1\".compression`: expected an integer, found a string",
        ],
    );
}

#[test]
fn http2_is_chosen_per_plain_http_upstream() {
    let config = load(
        "load_builtin_plugins = [\"proxy\"]\n[server]\nenable_proxy = true\n\
         [plugins.proxy.proxy_urls.\"http://rust:8080\"]\nhttp2 = true\n\
         [plugins.proxy.proxy_urls.\"http://python:8080\"]\nenable = []\n",
        &[],
    )
    .unwrap();
    let proxy = config.proxy();
    assert!(proxy.upstream("http://rust:8080").unwrap().http2());
    assert!(!proxy.upstream("http://python:8080").unwrap().http2());

    check_errors(
        "[plugins.proxy.proxy_urls.\"https://a:1\"]\nhttp2 = true\n\
         [plugins.proxy.proxy_urls.\"http://b:1\"]\nhttp2 = \"yes\"\n",
        &[],
        &[
            "error: config.toml:2:9: `plugins.proxy.proxy_urls.\"https://a:1\".http2`: HTTP/2 is spoken with prior knowledge over plain TCP only; an https:// upstream is called over HTTP/1: remove `http2`",
            "error: config.toml:4:9: `plugins.proxy.proxy_urls.\"http://b:1\".http2`: expected a boolean (true or false), found a string",
        ],
    );
}

#[test]
fn durations_are_refused_past_what_a_deadline_can_hold() {
    for key in [
        "server.header_read_timeout",
        "server.body_read_timeout",
        "server.shutdown_grace",
        "plugins.proxy.timeout",
    ] {
        let (table, name) = key.rsplit_once('.').unwrap();
        for (value, accepted) in [
            ("1", true),
            ("3153600000", true),
            ("3153600001", false),
            ("9223372036854775807", false),
            ("0", false),
            ("-5", false),
        ] {
            let result = load(&format!("[{table}]\n{name} = {value}\n"), &[]);
            match (result, accepted) {
                (Ok(_), true) => {}
                (Err(error), false) => assert_eq!(
                    error.to_string(),
                    format!(
                        "invalid FrameX configuration (1 error)\n  error: config.toml:2:{}: `{key}`: expected a number of seconds from 1 to 3153600000 (100 years), found {value}",
                        name.len() + 4
                    ),
                    "{key} = {value}"
                ),
                (result, _) => panic!("{key} = {value}: {result:?}"),
            }
        }
    }
}

#[test]
fn only_regular_files_of_a_bounded_size_are_read() {
    let dir = std::env::temp_dir().join(format!("framex-config-files-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let read = |path: &std::path::Path| {
        Loader::default()
            .file(path)
            .env([("A", "B")])
            .load()
            .unwrap_err()
            .to_string()
    };
    // A FIFO is refused, not opened: opening it would wait for a writer.
    let fifo = dir.join("fifo.toml");
    let _ = std::fs::remove_file(&fifo);
    assert!(
        std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap()
            .success()
    );
    assert!(
        read(&fifo)
            .ends_with("cannot read the configuration file: it is a FIFO, not a regular file"),
        "{}",
        read(&fifo)
    );
    assert!(read(std::path::Path::new("/dev/zero")).ends_with(
        "cannot read the configuration file: it is a character device, not a regular file"
    ));
    assert!(
        read(&dir)
            .ends_with("cannot read the configuration file: it is a directory, not a regular file")
    );
    // A file past the cap is refused without reading it (this one is sparse).
    let large = dir.join("large.toml");
    let file = std::fs::File::create(&large).unwrap();
    file.set_len(super::MAX_FILE_BYTES + 1).unwrap();
    assert!(read(&large).ends_with("cannot read the configuration file: it is 16777217 bytes, more than the 16777216 bytes a configuration may be"), "{}", read(&large));
    // A link to a regular file is read.
    let target = dir.join("target.toml");
    std::fs::write(&target, "[server]\nport = 7\n").unwrap();
    let link = dir.join("link.toml");
    let _ = std::fs::remove_file(&link);
    std::os::unix::fs::symlink(&target, &link).unwrap();
    let config = Loader::default()
        .file(&link)
        .env([("A", "B")])
        .load()
        .unwrap();
    assert_eq!(config.server().port(), 7);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn thousands_of_unlisted_urls_are_each_reported_and_only_the_first_get_a_hint() {
    let listed: Vec<String> = (0..2000)
        .map(|i| format!("\"http://listed{i}:8080\""))
        .collect();
    let functions: Vec<String> = (0..2000)
        .map(|i| format!("\"http://listed{i}:8081\" = [\"m.f{i}\"]"))
        .collect();
    let toml = format!(
        "{PROXY_ON}[plugins.proxy]\nproxy_urls = [{}]\nproxy_functions = {{ {} }}\n",
        listed.join(", "),
        functions.join(", ")
    );
    let error = load(&toml, &[]).unwrap_err();
    let errors: Vec<String> = error.errors().map(ToString::to_string).collect();
    assert_eq!(errors.len(), 2000);
    let hinted = errors.iter().filter(|e| e.contains("did you mean")).count();
    assert_eq!(hinted, 20);
    assert!(
        errors[0].ends_with("did you mean `http://listed0:8080`?"),
        "{}",
        errors[0]
    );
    // A column far into one long line is right.
    assert!(
        errors[1999].contains(&format!(
            "config.toml:6:{}:",
            toml.lines()
                .nth(5)
                .unwrap()
                .find("\"http://listed1999:8081\"")
                .unwrap()
                + 1
        )),
        "{}",
        errors[1999]
    );
}

/// An upstream in table form with two functions, and `extra` keys in its
/// table, then `[plugins.proxy]` keys in `proxy`.
fn replicas(upstream: &str, proxy: &str) -> String {
    format!(
        "{PROXY_ON}[plugins.proxy.proxy_urls.\"http://reports:8080\"]\nenable = []\n{upstream}\n\
         [plugins.proxy.proxy_urls.\"http://other:8080\"]\nenable = []\n\n\
         [plugins.proxy]\n\
         proxy_functions = {{ \"http://reports:8080\" = [\"reports.build\", \"reports.get\"], \"http://other:8080\" = [\"other.f\"] }}\n\
         {proxy}"
    )
}

#[test]
fn replica_settings_load() {
    let toml = replicas(
        r#"endpoints = ["10.0.0.5:8080", "reports-1.reports", "[fd00::1]:9000"]
timeout = 20
function_timeouts = { "reports.build" = 120 }
idempotent_functions = ["reports.get"]
"#,
        r#"connect_timeout = 2
nameservers = ["10.96.0.10", "127.0.0.1:5353", "[::1]:53"]
dns_ttl_floor = 2
dns_ttl_ceiling = 30
"#,
    );
    let config = load(&toml, &[]).unwrap_or_else(|e| panic!("{e}"));
    assert!(config.warnings().is_empty(), "{:?}", config.warnings());
    let proxy = config.proxy();
    assert_eq!(proxy.connect_timeout(), Some(Duration::from_secs(2)));
    assert_eq!(
        proxy.nameservers(),
        &[
            "10.96.0.10:53".parse().unwrap(),
            "127.0.0.1:5353".parse().unwrap(),
            "[::1]:53".parse().unwrap()
        ]
    );
    assert_eq!(
        proxy.dns_ttl_bounds(),
        (Duration::from_secs(2), Duration::from_secs(30))
    );
    let upstream = proxy.upstream("http://reports:8080").unwrap();
    assert_eq!(
        upstream.endpoints(),
        ["10.0.0.5:8080", "reports-1.reports", "[fd00::1]:9000"]
    );
    assert_eq!(upstream.timeout(), Some(Duration::from_secs(20)));
    let other = proxy.upstream("http://other:8080").unwrap();
    assert!(other.endpoints().is_empty());
    assert_eq!(other.timeout(), None);
    assert_eq!(
        proxy.function_timeout("reports.build"),
        Some(Duration::from_secs(120))
    );
    assert_eq!(proxy.function_timeout("reports.get"), None);
    assert!(proxy.is_idempotent("reports.get"));
    assert!(!proxy.is_idempotent("reports.build"));
}

#[test]
fn replica_settings_refuse_what_would_be_ignored_or_misread() {
    let one = |upstream: &str, proxy: &str, expect: &str| {
        let toml = replicas(upstream, proxy);
        let found: Vec<String> = match load(&toml, &[]) {
            Ok(_) => panic!("loaded: {upstream} {proxy}"),
            Err(error) => error.errors().map(ToString::to_string).collect(),
        };
        assert!(
            found.len() == 1 && found[0].contains(expect),
            "{upstream} {proxy}: {found:?}"
        );
    };
    one(
        "function_timeouts = { \"reports.buil\" = 5 }\n",
        "",
        "function `reports.buil` in `function_timeouts` is not sent to `http://reports:8080` by `proxy_functions`, so `function_timeouts` would not apply to it; did you mean `reports.build`?",
    );
    // Listed, but for another upstream.
    one(
        "idempotent_functions = [\"other.f\"]\n",
        "",
        "function `other.f` in `idempotent_functions` is not sent to `http://reports:8080`",
    );
    one("endpoints = []\n", "", "lists no endpoints");
    one("timeout = 0\n", "", "expected a number of seconds from 1");
    for (endpoint, why) in [
        ("http://10.0.0.5:8080", "without a scheme"),
        ("10.0.0.5:0", "port that is not a number from 1 to 65535"),
        ("10.0.0.5:http", "port that is not a number"),
        ("fd00::zz:8080", "is not host:port"),
        ("[fd00::1", "unclosed"),
        (":8080", "has no host"),
        ("a b", "must be host or host:port"),
        ("user@10.0.0.5", "must be host or host:port"),
        ("", "is empty"),
    ] {
        let upstream = format!("endpoints = [{endpoint:?}]\n");
        one(&upstream, "", &format!("endpoint `{endpoint}` "));
        one(&upstream, "", why);
    }
    one(
        "",
        "nameservers = [\"dns.local\"]\n",
        "nameserver `dns.local` is not an IP address or IP:port",
    );
    one(
        "",
        "dns_ttl_floor = 90\n",
        "`dns_ttl_floor` (90 s) is above `dns_ttl_ceiling` (60 s)",
    );
    one(
        "",
        "connect_timeout = 0\n",
        "expected a number of seconds from 1",
    );
    // The per-upstream keys belong to the upstream, not to `[plugins.proxy]`.
    one(
        "",
        "endpoints = { \"http://reports:8080\" = [\"10.0.0.5\"] }\n",
        "unknown key `endpoints`",
    );
}
