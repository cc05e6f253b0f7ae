//! Interoperability with Python FrameX, proved against the real `framex-kit`
//! 0.4.2 from PyPI: Rust instances and a Python instance call each other's
//! proxy functions over loopback, and every value and failure arrives on the
//! other side as it left.
//!
//! The first test to run starts one Python FrameX (see
//! `tests/python/python_framex.rs`) and two Rust instances: `rust`, which
//! serves the `rust_*` functions behind `RUST_KEY` and lists Python's
//! functions, and `locked`, which wants a key Python does not have. Every test
//! shares them. Python's `POST /api/v1/call_rust` calls a Rust function with
//! keyword arguments that Python builds (`CASES` in the plugin) and reports,
//! as Python sees it, what came back or what was raised.

use std::sync::OnceLock;

use axum::extract::{Path, Query};
use framex::App;
use framex::config::Loader;
use framex::transport::{Client, ErrorKind};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[path = "python/python_framex.rs"]
mod python_framex;

/// The key Python requires on its proxy endpoint.
const PYTHON_KEY: &str = "py-key";
/// The key the `rust` instance requires, which Python sends.
const RUST_KEY: &str = "rust-key";

#[framex::on_proxy(name = "interop_plugin.rust_describe")]
async fn rust_describe(value: framex::Value) -> Result<framex::Value, framex::Error> {
    let mut described = framex::json::Map::new();
    described.insert("echo", value);
    described.insert("by", "rust");
    Ok(framex::Value::Object(described))
}

#[framex::on_proxy(name = "interop_plugin.rust_fail")]
async fn rust_fail(message: String) -> Result<Value, framex::Error> {
    Err(framex::Error::msg(message))
}

#[framex::on_proxy(name = "interop_plugin.rust_u64")]
async fn rust_u64(n: u64) -> Result<u64, framex::Error> {
    Ok(n)
}

#[framex::on_proxy(name = "interop_plugin.rust_f64")]
async fn rust_f64(x: f64) -> Result<f64, framex::Error> {
    Ok(x)
}

/// The keys of an object in the order Rust received them.
#[framex::on_proxy(name = "interop_plugin.rust_keys")]
async fn rust_keys(value: framex::Value) -> Result<Vec<String>, framex::Error> {
    let object = value
        .as_object()
        .ok_or_else(|| framex::Error::msg("not an object"))?;
    Ok(object.keys().cloned().collect())
}

#[derive(Debug, PartialEq, Serialize, Deserialize)]
struct Address {
    city: String,
}

/// Python's `User` model in the plugin, as a Rust type.
#[derive(Debug, PartialEq, Serialize, Deserialize)]
struct User {
    name: String,
    age: u32,
    address: Address,
}

#[framex::on_proxy(name = "interop_plugin.rust_user")]
async fn rust_user() -> Result<User, framex::Error> {
    Ok(User {
        name: "ada".into(),
        age: 36,
        address: Address {
            city: "Paris".into(),
        },
    })
}

#[framex::on_proxy(name = "interop_plugin.rust_locked")]
async fn rust_locked() -> Result<Value, framex::Error> {
    Ok(json!("unlocked"))
}

/// The query of `GET /api/v1/rust/report`.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
struct ReportQuery {
    job_id: String,
    count: u32,
}

/// `GET /api/v1/rust/report?job_id=…&count=…`: a query parameter route.
async fn rust_report(Query(query): Query<ReportQuery>) -> axum::Json<Value> {
    axum::Json(json!({"job_id": query.job_id, "count": query.count, "by": "rust"}))
}

/// `GET /api/v1/rust/items/{item_id}`: a path parameter route.
async fn rust_item(Path(item_id): Path<u32>) -> axum::Json<Value> {
    axum::Json(json!({"item_id": item_id, "by": "rust"}))
}

/// The body of `POST /api/v1/rust/orders`: nested, optional and repeated
/// fields.
#[derive(Debug, Serialize, Deserialize, schemars::JsonSchema)]
struct Order {
    customer: String,
    quantity: u32,
    ship_to: Shipping,
    note: Option<String>,
    tags: Vec<String>,
}

#[derive(Debug, Serialize, Deserialize, schemars::JsonSchema)]
struct Shipping {
    city: String,
    express: bool,
}

/// `POST /api/v1/rust/orders`: a JSON body route; answers the order as it
/// arrived.
async fn rust_order(axum::Json(order): axum::Json<Order>) -> axum::Json<Value> {
    axum::Json(json!({"order": order, "by": "rust"}))
}

/// The Rust instance's routes, which Python forwards.
fn rust_routes() -> framex::aide::axum::ApiRouter {
    use framex::aide::axum::routing::{get, post};
    framex::aide::axum::ApiRouter::new()
        .api_route("/api/v1/rust/report", get(rust_report))
        .api_route("/api/v1/rust/items/{item_id}", get(rust_item))
        .api_route("/api/v1/rust/orders", post(rust_order))
}

struct Fixture {
    runtime: tokio::runtime::Runtime,
    registry: framex::registry::Registry,
    rust_url: String,
    python_url: String,
    python_pid: u32,
    python_config: String,
    _python: python_framex::PythonFramex,
}

static FIXTURE: OnceLock<Result<Fixture, String>> = OnceLock::new();

/// The functions Python lists for the Rust instance.
/// The keys of an upstream's table that only FrameX for Rust reads: the
/// Python instance's configuration has them, which it must start with and
/// ignore.
const REPLICA_KEYS: &str = "timeout = 60\n\
     function_timeouts = { \"interop_plugin.rust_describe\" = 30 }\n\
     idempotent_functions = [\"interop_plugin.rust_u64\"]\n";

const ON_RUST: [&str; 7] = [
    "interop_plugin.rust_describe",
    "interop_plugin.rust_fail",
    "interop_plugin.rust_u64",
    "interop_plugin.rust_f64",
    "interop_plugin.rust_keys",
    "interop_plugin.rust_user",
    "interop_plugin.rust_missing",
];

/// The function Python lists for the instance that refuses its key.
const ON_LOCKED: &str = "interop_plugin.rust_locked";

/// The shared Rust and Python instances; panics with the set-up error if they
/// could not start.
fn fixture() -> &'static Fixture {
    match FIXTURE.get_or_init(start_all) {
        Ok(fixture) => fixture,
        Err(error) => panic!("the Python interoperability fixture did not start: {error}"),
    }
}

fn start_all() -> Result<Fixture, String> {
    // Python's port is chosen first, because the Rust instance lists it, and
    // Python reads the Rust instances' OpenAPI documents when it starts.
    let (python_host, python_port) = python_framex::own_address();
    let python_url = format!("http://{python_host}:{python_port}");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start a Tokio runtime: {e}"))?;
    let (registry, rust_url) = runtime.block_on(start_rust(&python_url))?;
    let locked_url = runtime.block_on(start_locked())?;

    let on_rust = format!(
        "[{}]",
        ON_RUST
            .iter()
            .map(|name| format!("\"{name}\""))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let python_config = format!(
        "load_builtin_plugins = [\"proxy\"]\n\
         load_plugins = [\"interop_plugin\"]\n\n\
         [server]\nhost = \"{python_host}\"\nport = {python_port}\nenable_proxy = true\n\n\
         [auth]\nrules = {{ \"/api/v1/proxy/remote\" = [\"{PYTHON_KEY}\"] }}\n\n\
         [plugins.proxy.proxy_urls.\"{rust_url}\"]\nenable = [\"/api/v1/*\"]\ndisable = []\n\
         endpoints = [\"{rust_endpoint}\"]\n{REPLICA_KEYS}\n\
         [plugins.proxy.proxy_urls.\"{locked_url}\"]\nenable = []\ndisable = []\n\n\
         [plugins.proxy]\nproxy_functions = {{ \"{rust_url}\" = {on_rust}, \"{locked_url}\" = [\"{ON_LOCKED}\"] }}\n\n\
         [plugins.proxy.auth]\nrules = {{ \"/api/v1/proxy/remote\" = [\"{RUST_KEY}\"] }}\n",
        rust_endpoint = rust_url.trim_start_matches("http://"),
    );
    let python = python_framex::start(
        std::path::Path::new(env!("CARGO_TARGET_TMPDIR")),
        "python-interop",
        (&python_host, python_port),
        &python_config,
        &[ON_RUST.as_slice(), &[ON_LOCKED]].concat(),
    )?;
    assert_eq!(
        python.url, python_url,
        "Python serves where the Rust instance expects it"
    );
    Ok(Fixture {
        runtime,
        registry,
        rust_url,
        python_url: python.url.clone(),
        python_pid: python.pid,
        python_config,
        _python: python,
    })
}

/// Starts the `rust` instance: it serves the `rust_*` functions behind
/// `RUST_KEY`, lists Python's functions for `python_url`, and relays
/// `interop_plugin.describe` there when a call for it arrives.
async fn start_rust(python_url: &str) -> Result<(framex::registry::Registry, String), String> {
    let config = load(&format!(
        "load_builtin_plugins = [\"proxy\"]\n\n\
         [server]\nhost = \"127.0.0.1\"\nport = 0\nenable_proxy = true\n\n\
         [auth]\nrules = {{ \"/api/v1/proxy/remote\" = [\"{RUST_KEY}\"] }}\n\n\
         [plugins.proxy.proxy_urls.\"{python_url}\"]\nenable = [\"/api/v1/*\"]\ndisable = []\n\n\
         [plugins.proxy]\nproxy_functions = {{ \"{python_url}\" = [\"interop_plugin.describe\", \"interop_plugin.inspect\", \"interop_plugin.make\", \"interop_plugin.fail\", \"interop_plugin.nope\"] }}\n\n\
         [plugins.proxy.auth]\nrules = {{ \"/api/v1/proxy/remote\" = [\"{PYTHON_KEY}\"] }}\n"
    ))?;
    let mut app = App::from_config(config).map_err(|e| e.to_string())?;
    app.register(rust_describe).map_err(|e| e.to_string())?;
    app.register(rust_fail).map_err(|e| e.to_string())?;
    app.register(rust_u64).map_err(|e| e.to_string())?;
    app.register(rust_f64).map_err(|e| e.to_string())?;
    app.register(rust_keys).map_err(|e| e.to_string())?;
    app.register(rust_user).map_err(|e| e.to_string())?;
    app.routes(rust_routes()).map_err(|e| e.to_string())?;
    let registry = app.registry().clone();
    Ok((registry, serve(app, "rust").await?))
}

/// Starts the `locked` instance: it serves `rust_locked` behind a key Python
/// does not send.
async fn start_locked() -> Result<String, String> {
    let config = load(
        "[server]\nhost = \"127.0.0.1\"\nport = 0\n\n\
         [auth]\nrules = { \"/api/v1/proxy/remote\" = [\"another-key\"] }\n",
    )?;
    let mut app = App::from_config(config).map_err(|e| e.to_string())?;
    app.register(rust_locked).map_err(|e| e.to_string())?;
    serve(app, "locked").await
}

fn load(toml: &str) -> Result<framex::config::Config, String> {
    Loader::default()
        .text("rust.toml", toml)
        .env(Vec::<(String, String)>::new())
        .load()
        .map_err(|e| e.to_string())
}

async fn serve(app: App, name: &str) -> Result<String, String> {
    let bound = app.isolated().bind(name).await.map_err(|e| e.to_string())?;
    let url = format!("http://{}", bound.local_addr());
    tokio::spawn(bound.serve_until(std::future::pending()));
    Ok(url)
}

/// A plain HTTP/1.1 request over loopback; returns the status and the JSON body.
async fn http(
    method: &str,
    url: &str,
    path: &str,
    body: Option<&Value>,
) -> Result<(u16, Value), String> {
    let address = url.trim_start_matches("http://");
    let mut stream = tokio::net::TcpStream::connect(address)
        .await
        .map_err(|e| format!("cannot connect to {url}: {e}"))?;
    let body = body.map(Value::to_string).unwrap_or_default();
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {address}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream
        .write_all(request.as_bytes())
        .await
        .map_err(|e| e.to_string())?;
    let mut response = Vec::new();
    stream
        .read_to_end(&mut response)
        .await
        .map_err(|e| e.to_string())?;
    let response = String::from_utf8(response).map_err(|e| e.to_string())?;
    let (head, body) = response
        .split_once("\r\n\r\n")
        .ok_or_else(|| format!("no HTTP head in {response:?}"))?;
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("no status in {head:?}"))?;
    let body = serde_json::from_str(body).map_err(|e| format!("{e}: {body}"))?;
    Ok((status, body))
}

impl Fixture {
    /// Python calls the Rust function `function` with `kwargs`, plus keyword
    /// arguments it builds from its `CASES` (`cases`: parameter -> case), and
    /// reports what came back or what was raised.
    fn python_calls_rust(&self, function: &str, kwargs: Value, cases: Value) -> Value {
        let request = json!({"function": function, "kwargs": kwargs, "cases": cases});
        let (status, body) = self
            .runtime
            .block_on(http(
                "POST",
                &self.python_url,
                "/api/v1/call_rust",
                Some(&request),
            ))
            .unwrap_or_else(|e| panic!("{function}: {e}"));
        assert_eq!(status, 200, "{function}: {body}");
        assert_eq!(body["status"], 200, "{function}: {body}");
        body["data"].clone()
    }

    /// Rust calls the Python function `function` through the `rust` instance's
    /// registry, with keyword arguments written as JSON text (`kwargs`), and
    /// gets the result as it arrived.
    fn rust_calls_python(
        &self,
        function: &str,
        kwargs: &str,
    ) -> Result<framex::Value, framex::Error> {
        let kwargs: framex::Value = framex::json::from_str(kwargs).expect("test kwargs are JSON");
        self.runtime
            .block_on(framex::call_on(&self.registry, function, kwargs))
    }
}

/// JSON values of every kind, as `(what, value)`.
fn values() -> Vec<(&'static str, Value)> {
    vec![
        ("null", json!(null)),
        ("true", json!(true)),
        ("false", json!(false)),
        ("zero", json!(0)),
        ("negative integer", json!(-42)),
        ("2^53 + 1", json!(9_007_199_254_740_993_u64)),
        ("i64::MIN", json!(i64::MIN)),
        ("u64::MAX", json!(u64::MAX)),
        ("fraction", json!(0.1)),
        ("negative fraction", json!(-2.5)),
        ("large float", json!(1.5e300)),
        ("empty string", json!("")),
        ("non-ASCII text", json!("héllo wörld, 日本語, Ελληνικά")),
        ("emoji", json!("🦀 + 🐍 = 🎉")),
        (
            "escapes",
            json!("quote \" backslash \\ newline \n tab \t nul \u{0}"),
        ),
        // Over 8 KiB: arguments compressed at level 1 on the wire, answers
        // stored (in one block, and in several of 65535 bytes).
        ("22 KB of text", json!("0123456789 ".repeat(2000))),
        (
            "170 KB of records",
            Value::Array(
                (0..4000)
                    .map(|i| json!({"id": i, "name": format!("record {i}"), "ok": i % 3 == 0}))
                    .collect(),
            ),
        ),
        ("empty array", json!([])),
        ("empty object", json!({})),
        (
            "nested",
            json!({"a": [1, {"b": [null, true, "ç"]}, []], "c": {"d": {"e": u64::MAX}}, "": -0.5}),
        ),
    ]
}

#[test]
fn rust_calls_python_with_every_kind_of_json_value() {
    let fixture = fixture();
    for (what, value) in values() {
        let result = fixture
            .runtime
            .block_on(framex::call_on(
                &fixture.registry,
                "interop_plugin.describe",
                json!({"value": value}),
            ))
            .unwrap_or_else(|e| panic!("{what}: {e}"));
        assert_eq!(
            result,
            json!({"echo": value, "by": "python", "pid": fixture.python_pid}),
            "{what}"
        );
    }
}

#[test]
fn python_calls_rust_with_every_kind_of_json_value() {
    let fixture = fixture();
    for (what, value) in values() {
        let data = fixture.python_calls_rust("rust_describe", json!({"value": value}), json!({}));
        assert_eq!(
            data["result"],
            json!({"echo": value, "by": "rust"}),
            "{what}: {data}"
        );
    }
}

/// Python's values that JSON readers other than Python's change or refuse,
/// and its models.
const PYTHON_CASES: [&str; 14] = [
    "2^64",
    "-2^63-1",
    "10^30",
    "a 300-digit integer",
    "nan",
    "inf",
    "-inf",
    "floats",
    "mixed",
    "key order",
    "320 levels",
    "a pydantic model",
    "a list of pydantic models",
    "a dataclass",
];

#[test]
fn python_values_come_back_from_a_rust_function_unchanged() {
    // Big integers, NaN and the infinities, Python's float texts, key order,
    // 400 levels, and models (kept wrapped, so Python gets its models back).
    let fixture = fixture();
    for case in PYTHON_CASES {
        let data = fixture.python_calls_rust("rust_describe", json!({}), json!({"value": case}));
        assert_eq!(data["echo_is_sent"], json!([true]), "{case}: {data}");
    }
    let data = fixture.python_calls_rust(
        "rust_describe",
        json!({}),
        json!({"value": "a pydantic model"}),
    );
    assert!(
        data["returned"]["repr"]
            .as_str()
            .unwrap()
            .contains("'echo': User(name='ada', age=36, address=Address(city='Paris'))"),
        "Python gets its model back: {data}"
    );
}

#[test]
fn python_values_reach_rust_exactly_and_back() {
    let fixture = fixture();
    for (case, text) in [
        ("2^64", "18446744073709551616"),
        ("-2^63-1", "-9223372036854775809"),
        ("10^30", "1000000000000000000000000000000"),
        ("nan", "NaN"),
        ("inf", "Infinity"),
        ("-inf", "-Infinity"),
        (
            "floats",
            "[1e+16,1e-05,0.1,-0.0,5e-324,1.7976931348623157e+308]",
        ),
        (
            "key order",
            r#"{"zeta":1,"alpha":2,"mid":{"b":[],"a":{}},"":null}"#,
        ),
    ] {
        let result = fixture
            .rust_calls_python("interop_plugin.make", &format!(r#"{{"case": "{case}"}}"#))
            .unwrap_or_else(|e| panic!("{case}: {e}"));
        assert_eq!(result.to_string(), text, "{case}");
    }
    let deep = fixture
        .rust_calls_python("interop_plugin.make", r#"{"case": "400 levels"}"#)
        .unwrap();
    let expected = format!("{}\"bottom\"{}", "[".repeat(400), "]".repeat(400));
    assert_eq!(deep.to_string(), expected);
}

#[test]
fn rust_values_reach_python_exactly() {
    let fixture = fixture();
    for (kwargs, python_type, python_repr) in [
        (
            r#"{"value": 18446744073709551616}"#,
            "int",
            "18446744073709551616",
        ),
        (
            r#"{"value": -9223372036854775809}"#,
            "int",
            "-9223372036854775809",
        ),
        (
            r#"{"value": 1000000000000000000000000000000}"#,
            "int",
            "1000000000000000000000000000000",
        ),
        (r#"{"value": NaN}"#, "float", "nan"),
        (r#"{"value": Infinity}"#, "float", "inf"),
        (r#"{"value": -Infinity}"#, "float", "-inf"),
        (r#"{"value": 1e+16}"#, "float", "1e+16"),
        (r#"{"value": -0.0}"#, "float", "-0.0"),
    ] {
        let seen = fixture
            .rust_calls_python("interop_plugin.inspect", kwargs)
            .unwrap_or_else(|e| panic!("{kwargs}: {e}"));
        assert_eq!(
            (seen["type"].as_str(), seen["repr"].as_str()),
            (Some(python_type), Some(python_repr)),
            "{kwargs}: {seen}"
        );
    }
    // Typed Rust values too: an f64's NaN and a u128.
    #[derive(Serialize)]
    struct Floats {
        value: Vec<f64>,
    }
    let seen = fixture
        .runtime
        .block_on(framex::call_on(
            &fixture.registry,
            "interop_plugin.inspect",
            Floats {
                value: vec![f64::NAN, f64::NEG_INFINITY, 0.1],
            },
        ))
        .unwrap();
    assert_eq!(seen["repr"], "[nan, -inf, 0.1]", "{seen}");
    #[derive(Serialize)]
    struct Wide {
        value: u128,
    }
    let seen = fixture
        .runtime
        .block_on(framex::call_on(
            &fixture.registry,
            "interop_plugin.inspect",
            Wide { value: u128::MAX },
        ))
        .unwrap();
    assert_eq!(seen["repr"], u128::MAX.to_string().as_str(), "{seen}");
}

#[test]
fn rust_keeps_python_key_order_both_ways() {
    let fixture = fixture();
    let seen = fixture
        .rust_calls_python(
            "interop_plugin.inspect",
            r#"{"value": {"zeta": 1, "alpha": 2, "mid": 3, "": 4}}"#,
        )
        .unwrap();
    assert_eq!(seen["keys"], json!(["zeta", "alpha", "mid", ""]), "{seen}");
    let data = fixture.python_calls_rust("rust_keys", json!({}), json!({"value": "key order"}));
    assert_eq!(
        data["result"],
        json!(["zeta", "alpha", "mid", ""]),
        "{data}"
    );
}

#[test]
fn nesting_as_deep_as_python_goes_crosses_both_ways_and_through_a_relay() {
    // Python FrameX's own encoder stops at about 450 levels when it answers a
    // call and 330 when a request handler makes one; Rust goes to 1000.
    let fixture = fixture();
    let deep = format!("{}\"bottom\"{}", "[".repeat(450), "]".repeat(450));
    let seen = fixture
        .rust_calls_python("interop_plugin.inspect", &format!(r#"{{"value": {deep}}}"#))
        .unwrap();
    assert_eq!(seen["depth"], 450, "{seen}");
    let data =
        fixture.python_calls_rust("rust_describe", json!({}), json!({"value": "320 levels"}));
    assert_eq!(data["echo_is_sent"], json!([true]), "{data}");
    // A call for Python's function sent to the Rust instance, which relays it.
    let kwargs: framex::Value = framex::json::from_str(&format!(r#"{{"value": {deep}}}"#)).unwrap();
    let relayed = fixture
        .runtime
        .block_on(Client::default().call(
            &fixture.rust_url,
            Some(RUST_KEY),
            "interop_plugin.describe",
            &kwargs,
        ))
        .unwrap();
    assert_eq!(relayed["echo"].to_string(), deep);
}

#[test]
fn a_typed_rust_parameter_takes_python_numbers_or_names_what_does_not_fit() {
    let fixture = fixture();
    let data = fixture.python_calls_rust("rust_f64", json!({}), json!({"x": "nan"}));
    assert_eq!(data["returned"]["repr"], "nan", "{data}");
    let data = fixture.python_calls_rust("rust_f64", json!({}), json!({"x": "-inf"}));
    assert_eq!(data["returned"]["repr"], "-inf", "{data}");
    let data = fixture.python_calls_rust("rust_u64", json!({}), json!({"n": "2^64"}));
    assert_eq!(
        data["raised"], "RuntimeError",
        "2^64 does not fit a u64: {data}"
    );
    assert!(
        data["message"]
            .as_str()
            .unwrap()
            .ends_with("returned status 422"),
        "{data}"
    );
    // The same call from Rust gets the message that names it all.
    let error = fixture
        .runtime
        .block_on(Client::default().call(
            &fixture.rust_url,
            Some(RUST_KEY),
            "interop_plugin.rust_u64",
            &framex::json::from_str::<framex::Value>(r#"{"n": 1180591620717411303424}"#).unwrap(),
        ))
        .unwrap_err();
    assert_eq!(
        error.kind(),
        &ErrorKind::Remote {
            status: 422,
            message: "invalid arguments for `interop_plugin.rust_u64`: keyword argument `n`: invalid value: integer 1180591620717411303424, expected u64".into()
        }
    );
    // Python's own integers past a Rust caller's type are refused, not rounded.
    let error = fixture
        .runtime
        .block_on(framex::call_on_as::<u64>(
            &fixture.registry,
            "interop_plugin.make",
            json!({"case": "2^70"}),
        ))
        .unwrap_err();
    assert!(
        error
            .to_string()
            .contains("invalid value: integer 1180591620717411303424, expected u64"),
        "{error}"
    );
    let exact: u128 = fixture
        .runtime
        .block_on(framex::call_on_as(
            &fixture.registry,
            "interop_plugin.make",
            json!({"case": "2^70"}),
        ))
        .unwrap();
    assert_eq!(exact, 1 << 70);
    let nan: f64 = fixture
        .runtime
        .block_on(framex::call_on_as(
            &fixture.registry,
            "interop_plugin.make",
            json!({"case": "nan"}),
        ))
        .unwrap();
    assert!(nan.is_nan());
}

#[test]
fn python_models_reach_a_typed_rust_caller_as_its_type() {
    let fixture = fixture();
    let expected = User {
        name: "ada".into(),
        age: 36,
        address: Address {
            city: "Paris".into(),
        },
    };
    let user: User = fixture
        .runtime
        .block_on(framex::call_on_as(
            &fixture.registry,
            "interop_plugin.make",
            json!({"case": "a pydantic model"}),
        ))
        .unwrap();
    assert_eq!(user, expected);
    let users: Vec<User> = fixture
        .runtime
        .block_on(framex::call_on_as(
            &fixture.registry,
            "interop_plugin.make",
            json!({"case": "a list of pydantic models"}),
        ))
        .unwrap();
    assert_eq!(users[0], expected);
    assert_eq!(users[1].address.city, "Oslo");
    // An untyped caller keeps the wrapper, and can look inside.
    let value = fixture
        .rust_calls_python("interop_plugin.make", r#"{"case": "a dataclass"}"#)
        .unwrap();
    let object = value.dynamic_obj().expect("a dynamic_obj");
    assert_eq!(object.class, Some("Point"));
    assert_eq!(object.data.to_string(), r#"{"x":1.5,"y":-2.0}"#);
    assert_eq!(
        value.unwrap_dynamic_objs().to_string(),
        r#"{"x":1.5,"y":-2.0}"#
    );
}

#[test]
fn a_rust_struct_reaches_python_as_a_dict() {
    let fixture = fixture();
    let data = fixture.python_calls_rust("rust_user", json!({}), json!({}));
    assert_eq!(data["returned"]["type"], "dict", "{data}");
    assert_eq!(
        data["result"],
        json!({"name": "ada", "age": 36, "address": {"city": "Paris"}}),
        "{data}"
    );
}

#[test]
fn every_failure_of_a_rust_remote_raises_in_the_python_caller() {
    let fixture = fixture();
    for (function, kwargs, status) in [
        ("rust_fail", json!({"message": "quota exceeded"}), 500),
        ("rust_missing", json!({}), 404),
        ("rust_u64", json!({"n": "seven"}), 422),
        ("rust_u64", json!({"n": 1, "extra": 2}), 422),
        ("rust_locked", json!({}), 401),
    ] {
        let data = fixture.python_calls_rust(function, kwargs, json!({}));
        assert_eq!(data["raised"], "RuntimeError", "{function}: {data}");
        let message = data["message"].as_str().unwrap();
        assert!(
            message.ends_with(&format!("returned status {status}")),
            "{function}: {message}"
        );
    }
}

#[test]
fn a_rust_caller_still_gets_the_real_statuses_of_a_rust_remote() {
    let fixture = fixture();
    let error = fixture
        .runtime
        .block_on(Client::default().call(
            &fixture.rust_url,
            Some("wrong"),
            "interop_plugin.rust_u64",
            &json!({"n": 1}),
        ))
        .unwrap_err();
    assert!(error.is_unauthorized(), "{error}");
    let error = fixture
        .runtime
        .block_on(Client::default().call(
            &fixture.rust_url,
            Some(RUST_KEY),
            "interop_plugin.rust_fail",
            &json!({"message": "disk full"}),
        ))
        .unwrap_err();
    assert_eq!(
        error.kind(),
        &ErrorKind::Remote {
            status: 500,
            message: "disk full".into()
        }
    );
}

#[test]
fn a_python_failure_is_a_rust_error_with_its_message() {
    let fixture = fixture();
    let error = fixture
        .runtime
        .block_on(framex::call_on(
            &fixture.registry,
            "interop_plugin.fail",
            json!({"message": "disk full: ü"}),
        ))
        .unwrap_err();
    let framex::Error::Call(framex::registry::CallError::Remote(error)) = error else {
        panic!("expected a remote error, got {error:?}");
    };
    assert_eq!(
        error.kind(),
        &ErrorKind::Remote {
            status: 500,
            message: "disk full: ü".into()
        },
        "{error}"
    );
    assert_eq!(error.url(), fixture.python_url);
}

#[test]
fn python_answers_unknown_functions_and_bad_arguments_with_errors() {
    let fixture = fixture();
    let error = fixture
        .runtime
        .block_on(framex::call_on(
            &fixture.registry,
            "interop_plugin.nope",
            json!({}),
        ))
        .unwrap_err();
    assert_eq!(
        error.to_string(),
        format!(
            "function `interop_plugin.nope` is not registered on {}",
            fixture.python_url
        )
    );
    let error = fixture
        .runtime
        .block_on(framex::call_on(
            &fixture.registry,
            "interop_plugin.describe",
            json!({"valu": 1}),
        ))
        .unwrap_err();
    assert!(
        error
            .to_string()
            .contains("unexpected keyword argument 'valu'"),
        "{error}"
    );
}

#[test]
fn a_wrong_key_is_an_auth_error_from_python() {
    let fixture = fixture();
    for key in [None, Some("wrong-key")] {
        let error = fixture
            .runtime
            .block_on(Client::default().call(
                &fixture.python_url,
                key,
                "interop_plugin.describe",
                &json!({"value": 1}),
            ))
            .unwrap_err();
        assert!(error.is_unauthorized(), "{key:?}: {error}");
        assert_eq!(
            error.kind(),
            &ErrorKind::Unauthorized {
                message: "Invalid API Key for API(/api/v1/proxy/remote)".into()
            }
        );
    }
}

#[test]
fn the_rust_server_requires_the_key_python_sends() {
    let fixture = fixture();
    // Python sent RUST_KEY in every call above; without it the Rust server refuses.
    let error = fixture
        .runtime
        .block_on(Client::default().call(
            &fixture.rust_url,
            None,
            "interop_plugin.rust_describe",
            &json!({"value": 1}),
        ))
        .unwrap_err();
    assert!(error.is_unauthorized(), "{error}");
    let data = fixture.python_calls_rust("rust_describe", json!({"value": "keyed"}), json!({}));
    assert_eq!(data["result"]["echo"], "keyed", "{data}");
}

#[test]
fn the_python_configuration_loads_unchanged_in_rust() {
    let fixture = fixture();
    let config = Loader::default()
        .text("config.toml", fixture.python_config.as_str())
        .env(Vec::<(String, String)>::new())
        .load()
        .unwrap_or_else(|e| panic!("{e}"));
    let proxy = config.proxy();
    assert_eq!(
        proxy.function_url("interop_plugin.rust_describe"),
        Some(fixture.rust_url.as_str())
    );
    assert_eq!(
        proxy.function_url("interop_plugin.rust_fail"),
        Some(fixture.rust_url.as_str())
    );
    // Python's plugin list is accepted and not used.
    assert_eq!(config.load_plugins(), ["interop_plugin"]);
    // The replica settings that Python FrameX started with and ignored.
    let upstream = proxy.upstream(&fixture.rust_url).unwrap();
    assert_eq!(
        upstream.endpoints(),
        [fixture.rust_url.trim_start_matches("http://")]
    );
    assert_eq!(upstream.timeout(), Some(std::time::Duration::from_secs(60)));
    assert_eq!(
        proxy.function_timeout("interop_plugin.rust_describe"),
        Some(std::time::Duration::from_secs(30))
    );
    assert!(proxy.is_idempotent("interop_plugin.rust_u64"));
    let warnings: Vec<String> = config.warnings().iter().map(ToString::to_string).collect();
    assert_eq!(warnings, Vec::<String>::new());
}

/// Python FrameX forwards the Rust instance's routes, read from its OpenAPI
/// document, with their query parameters, path parameters and JSON bodies:
/// each answer through Python is the answer of the Rust instance itself.
#[test]
fn python_forwards_rust_routes_with_their_parameters_and_bodies() {
    let fixture = fixture();
    let order = json!({
        "customer": "ada",
        "quantity": 3,
        "ship_to": {"city": "Zürich", "express": true},
        "note": null,
        "tags": ["a", "b c"],
    });
    for (method, path, body) in [
        ("GET", "/api/v1/rust/report?job_id=a%20b%2Bc&count=3", None),
        ("GET", "/api/v1/rust/items/42", None),
        ("POST", "/api/v1/rust/orders", Some(&order)),
    ] {
        let direct = fixture
            .runtime
            .block_on(http(method, &fixture.rust_url, path, body))
            .unwrap();
        assert_eq!(direct.0, 200, "{method} {path} on Rust: {}", direct.1);
        let through_python = fixture
            .runtime
            .block_on(http(method, &fixture.python_url, path, body))
            .unwrap();
        assert_eq!(through_python, direct, "{method} {path} through Python");
    }
}

/// The Rust instance's OpenAPI document validates as OpenAPI 3 (with
/// `openapi-spec-validator`), its routes with their parameters and body
/// schemas, and the routes it forwards from Python beside them.
#[test]
fn the_rust_document_validates_as_openapi_3_with_parameters_and_schemas() {
    let fixture = fixture();
    // Python's routes are in it once the Rust instance has read Python's
    // document, which it fetches in the background: it started before Python
    // did, so its next attempt may be up to the loader's 30 s backoff away
    // (a fresh machine installs framex-kit first).
    let mut document = Value::Null;
    for _ in 0..700 {
        let (status, body) = fixture
            .runtime
            .block_on(http("GET", &fixture.rust_url, "/api/v1/openapi.json", None))
            .unwrap();
        assert_eq!(status, 200, "{body}");
        document = body;
        if document["paths"].get("/api/v1/call_rust").is_some() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert!(
        document["paths"].get("/api/v1/call_rust").is_some(),
        "Python's routes are forwarded: {document}"
    );
    python_framex::validate_openapi(
        std::path::Path::new(env!("CARGO_TARGET_TMPDIR")),
        document.to_string().as_bytes(),
    )
    .unwrap_or_else(|e| panic!("{e}\n{document:#}"));

    let report = &document["paths"]["/api/v1/rust/report"]["get"];
    let names: Vec<(&str, &str)> = report["parameters"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p["name"].as_str().unwrap(), p["in"].as_str().unwrap()))
        .collect();
    // By name: the JSON Schema of the query's type lists its fields so.
    assert_eq!(names, [("count", "query"), ("job_id", "query")]);
    assert_eq!(report["parameters"][0]["schema"]["type"], "integer");
    let item = &document["paths"]["/api/v1/rust/items/{item_id}"]["get"];
    assert_eq!(item["parameters"][0]["in"], "path");
    assert_eq!(item["parameters"][0]["required"], true);
    let order = &document["paths"]["/api/v1/rust/orders"]["post"]["requestBody"];
    assert_eq!(
        order["content"]["application/json"]["schema"]["$ref"],
        "#/components/schemas/Order"
    );
    let schemas = &document["components"]["schemas"];
    assert_eq!(
        schemas["Order"]["properties"]["ship_to"]["$ref"],
        "#/components/schemas/Shipping"
    );
    assert_eq!(
        schemas["Order"]["properties"]["note"]["anyOf"],
        json!([{"type": "string"}, {"type": "null"}])
    );
}
