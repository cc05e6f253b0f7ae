//! The configuration from FrameX's proxy-function guide ("How To Configure It" and
//! "Protected Remote Services"), loaded verbatim from `examples/seed.toml`.

use framex::auth;
use framex::config::{Config, Loader};

const SEED: &str = include_str!("../examples/seed.toml");

fn seed() -> Config {
    Loader::default()
        .text("examples/seed.toml", SEED)
        .env(Vec::<(String, String)>::new())
        .load()
        .unwrap_or_else(|error| panic!("{error}"))
}

#[test]
fn the_seed_loads_without_warnings() {
    let config = seed();
    assert!(config.warnings().is_empty(), "{:?}", config.warnings());
    assert!(config.proxy_enabled());
}

#[test]
fn the_listed_function_routes_to_the_remote() {
    let config = seed();
    assert_eq!(
        config.function_url("your_module.build_report"),
        Some("http://remote-framex:8080")
    );
    assert_eq!(config.function_url("your_module.other"), None);
    let functions: Vec<_> = config.proxy().functions().collect();
    assert_eq!(
        functions,
        [("your_module.build_report", "http://remote-framex:8080")]
    );
}

#[test]
fn the_client_auth_rule_sends_proxy_key() {
    let config = seed();
    let rules = config.proxy().auth();
    let key = rules.key_for("/api/v1/proxy/remote").map(auth::Key::expose);
    assert_eq!(key, Some("proxy-key"));
    assert_eq!(rules.key_for("/api/v1/other"), None);
    // This instance protects none of its own routes.
    assert!(config.auth().is_empty());
}

#[test]
fn the_upstream_enables_api_v1_routes() {
    let config = seed();
    let upstream = config
        .proxy()
        .upstream("http://remote-framex:8080")
        .unwrap();
    let routes = upstream.routes().expect("table form forwards routes");
    let decision = routes.rules().decide("/api/v1/anything");
    assert!(decision.is_enabled());
    assert_eq!(
        decision.rule().map(|rule| rule.pattern()),
        Some("/api/v1/*")
    );
    assert!(routes.rules().decide("/api/v1/proxy/remote").is_enabled());
    assert!(!routes.rules().decide("/health").is_enabled());
    assert_eq!(routes.docs_path(), "/api/v1/openapi.json");
}

#[test]
fn the_seed_file_loads_from_disk_with_the_environment_on_top() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/seed.toml");
    let config = Loader::default()
        .file(path)
        .env([("FRAMEX__SERVER__PORT", "0")])
        .load()
        .unwrap();
    assert_eq!(config.server().port(), 0);
    assert_eq!(
        config.function_url("your_module.build_report"),
        Some("http://remote-framex:8080")
    );
}
