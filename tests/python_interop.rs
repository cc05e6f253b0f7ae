//! Interoperability with Python FrameX, proved against the real `framex-kit`
//! 0.4.2 from PyPI: a Rust instance and a Python instance call each other's
//! proxy functions over loopback.
//!
//! The first test to run creates a virtual environment under Cargo's
//! `target/tmp` (kept for later runs), installs `framex-kit` there, and starts
//! one Python FrameX (`framex run`, plugin `tests/python/interop_plugin.py`) and
//! one Rust instance; every test shares them. Python is required: without it
//! these tests fail, they do not skip. `FRAMEX_TEST_PYTHON` names the
//! interpreter (default `python3`).
//!
//! The Python process exits when its standard input closes, that is when this
//! test process ends, however it ends. Its configuration, plugin and log are in
//! `target/tmp/python-interop/PID/`, removed by a later run once the process
//! has ended.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use framex::App;
use framex::config::Loader;
use framex::transport::{Client, ErrorKind};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const FRAMEX_KIT: &str = "framex-kit==0.4.2";
/// The key Python requires on its proxy endpoint.
const PYTHON_KEY: &str = "py-key";
/// The key Rust requires on its proxy endpoint.
const RUST_KEY: &str = "rust-key";
const PLUGIN: &str = include_str!("python/interop_plugin.py");

#[framex::on_proxy(name = "interop_plugin.rust_describe")]
async fn rust_describe(value: Value) -> Result<Value, framex::Error> {
    Ok(json!({"echo": value, "by": "rust"}))
}

#[framex::on_proxy(name = "interop_plugin.rust_fail")]
async fn rust_fail(message: String) -> Result<Value, framex::Error> {
    Err(framex::Error::msg(message))
}

struct Fixture {
    runtime: tokio::runtime::Runtime,
    registry: framex::registry::Registry,
    rust_url: String,
    python_url: String,
    python_pid: u32,
    python_config: String,
    /// Kept so the pipe to its standard input stays open while tests run.
    _python: Child,
}

static FIXTURE: OnceLock<Result<Fixture, String>> = OnceLock::new();

/// The shared Rust and Python instances; panics with the set-up error if they
/// could not start.
fn fixture() -> &'static Fixture {
    match FIXTURE.get_or_init(start_both) {
        Ok(fixture) => fixture,
        Err(error) => panic!("the Python interoperability fixture did not start: {error}"),
    }
}

fn start_both() -> Result<Fixture, String> {
    let framex = python_framex()?;
    let runs = Path::new(env!("CARGO_TARGET_TMPDIR")).join("python-interop");
    remove_finished_runs(&runs);
    let dir = runs.join(std::process::id().to_string());
    std::fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;

    // Python's port is chosen first, because the Rust instance lists it, and
    // Python reads the Rust instance's OpenAPI document when it starts.
    let python_port = free_port()?;
    let python_url = format!("http://127.0.0.1:{python_port}");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start a Tokio runtime: {e}"))?;
    let (registry, rust_url) = runtime.block_on(start_rust(&python_url))?;

    let python_config = format!(
        "load_builtin_plugins = [\"proxy\"]\n\
         load_plugins = [\"interop_plugin\"]\n\n\
         [server]\nhost = \"127.0.0.1\"\nport = {python_port}\nenable_proxy = true\n\n\
         [auth]\nrules = {{ \"/api/v1/proxy/remote\" = [\"{PYTHON_KEY}\"] }}\n\n\
         [plugins.proxy.proxy_urls.\"{rust_url}\"]\nenable = [\"/api/v1/*\"]\ndisable = []\n\n\
         [plugins.proxy]\nproxy_functions = {{ \"{rust_url}\" = [\"interop_plugin.rust_describe\", \"interop_plugin.rust_fail\"] }}\n\n\
         [plugins.proxy.auth]\nrules = {{ \"/api/v1/proxy/remote\" = [\"{RUST_KEY}\"] }}\n"
    );
    write(&dir.join("config.toml"), &python_config)?;
    write(&dir.join("interop_plugin.py"), PLUGIN)?;
    let log = dir.join("python.log");
    let log_file =
        std::fs::File::create(&log).map_err(|e| format!("cannot create {}: {e}", log.display()))?;
    let mut python = Command::new(&framex)
        .arg("run")
        .current_dir(&dir)
        .env("PYTHONPATH", &dir)
        .stdin(Stdio::piped())
        .stdout(log_file.try_clone().map_err(|e| e.to_string())?)
        .stderr(log_file)
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}", framex.display()))?;
    let python_pid = python.id();

    let started = Instant::now();
    loop {
        if let Ok(Some(status)) = python.try_wait() {
            return Err(format!(
                "Python FrameX exited with {status} before serving; its log:\n{}",
                std::fs::read_to_string(&log).unwrap_or_default()
            ));
        }
        if runtime
            .block_on(http("GET", &python_url, "/health", None))
            .is_ok_and(|(status, _)| status == 200)
        {
            break;
        }
        if started.elapsed() > Duration::from_secs(90) {
            let _ = python.kill();
            return Err(format!(
                "Python FrameX did not answer /health within 90 s; its log:\n{}",
                std::fs::read_to_string(&log).unwrap_or_default()
            ));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok(Fixture {
        runtime,
        registry,
        rust_url,
        python_url,
        python_pid,
        python_config,
        _python: python,
    })
}

/// Starts the Rust instance: it serves `rust_describe` and `rust_fail` behind
/// `RUST_KEY`, and lists Python's functions for `python_url`.
async fn start_rust(python_url: &str) -> Result<(framex::registry::Registry, String), String> {
    let config = Loader::default()
        .text(
            "rust.toml",
            format!(
                "load_builtin_plugins = [\"proxy\"]\n\n\
                 [server]\nhost = \"127.0.0.1\"\nport = 0\nenable_proxy = true\n\n\
                 [auth]\nrules = {{ \"/api/v1/proxy/remote\" = [\"{RUST_KEY}\"] }}\n\n\
                 [plugins.proxy.proxy_urls.\"{python_url}\"]\nenable = [\"/api/v1/*\"]\ndisable = []\n\n\
                 [plugins.proxy]\nproxy_functions = {{ \"{python_url}\" = [\"interop_plugin.describe\", \"interop_plugin.fail\", \"interop_plugin.nope\"] }}\n\n\
                 [plugins.proxy.auth]\nrules = {{ \"/api/v1/proxy/remote\" = [\"{PYTHON_KEY}\"] }}\n"
            ),
        )
        .env(Vec::<(String, String)>::new())
        .load()
        .map_err(|e| e.to_string())?;
    let mut app = App::from_config(config).map_err(|e| e.to_string())?;
    app.register(rust_describe).map_err(|e| e.to_string())?;
    app.register(rust_fail).map_err(|e| e.to_string())?;
    let registry = app.registry().clone();
    let bound = app
        .isolated()
        .bind("rust")
        .await
        .map_err(|e| e.to_string())?;
    let url = format!("http://{}", bound.local_addr());
    tokio::spawn(bound.serve_until(std::future::pending()));
    Ok((registry, url))
}

/// `framex` of a virtual environment with `framex-kit` installed, made once and
/// kept under `target/tmp`.
fn python_framex() -> Result<PathBuf, String> {
    let venv = Path::new(env!("CARGO_TARGET_TMPDIR")).join("framex-kit-0.4.2-venv");
    let framex = venv.join("bin").join("framex");
    let ready = venv.join(".framex-tests-ready");
    if ready.exists() && framex.exists() {
        return Ok(framex);
    }
    // Test processes may run side by side (cargo nextest): one builds, the
    // others wait on the lock and then find the environment ready.
    let lock_path = venv.with_extension("lock");
    let lock = std::fs::File::create(&lock_path)
        .map_err(|e| format!("cannot create {}: {e}", lock_path.display()))?;
    lock.lock()
        .map_err(|e| format!("cannot lock {}: {e}", lock_path.display()))?;
    if ready.exists() && framex.exists() {
        return Ok(framex);
    }
    let python = std::env::var("FRAMEX_TEST_PYTHON").unwrap_or_else(|_| "python3".to_owned());
    let _ = std::fs::remove_dir_all(&venv);
    run(Command::new(&python).args(["-m", "venv"]).arg(&venv))
        .map_err(|e| format!("cannot create a virtual environment with `{python}` (Python 3.11+ with venv is required; set FRAMEX_TEST_PYTHON to choose the interpreter): {e}"))?;
    // framex-kit 0.4.2 imports `yaml` without declaring it.
    run(Command::new(venv.join("bin").join("pip")).args([
        "install",
        "--quiet",
        "--disable-pip-version-check",
        FRAMEX_KIT,
        "pyyaml",
    ]))
    .map_err(|e| format!("cannot install {FRAMEX_KIT}: {e}"))?;
    // Written last: an environment without it is rebuilt.
    write(&ready, FRAMEX_KIT)?;
    Ok(framex)
}

/// Removes the working directories (configuration, plugin, log) of earlier test
/// processes that have ended; a directory is named by its process id.
fn remove_finished_runs(runs: &Path) {
    if !cfg!(target_os = "linux") {
        return;
    }
    let Ok(entries) = std::fs::read_dir(runs) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let alive = Path::new("/proc").join(&name).exists();
        if !alive && name.to_str().is_some_and(|n| n.parse::<u32>().is_ok()) {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

fn run(command: &mut Command) -> Result<(), String> {
    let output = command.output().map_err(|e| e.to_string())?;
    if output.status.success() {
        return Ok(());
    }
    Err(format!(
        "{} failed: {}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    ))
}

fn write(path: &Path, text: &str) -> Result<(), String> {
    std::fs::File::create(path)
        .and_then(|mut file| file.write_all(text.as_bytes()))
        .map_err(|e| format!("cannot write {}: {e}", path.display()))
}

fn free_port() -> Result<u16, String> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    Ok(listener.local_addr().map_err(|e| e.to_string())?.port())
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
        // Over 8 KiB: compressed on the wire, where smaller payloads are stored.
        ("22 KB of text", json!("0123456789 ".repeat(2000))),
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
        let request = json!({"function": "rust_describe", "kwargs": {"value": value}});
        let (status, body) = fixture
            .runtime
            .block_on(http(
                "POST",
                &fixture.python_url,
                "/api/v1/call_rust",
                Some(&request),
            ))
            .unwrap_or_else(|e| panic!("{what}: {e}"));
        assert_eq!(status, 200, "{what}: {body}");
        assert_eq!(
            body["data"],
            json!({"echo": value, "by": "rust"}),
            "{what}: {body}"
        );
    }
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
    let kwargs = json!({"value": 1});
    for key in [None, Some("wrong-key")] {
        let error = fixture
            .runtime
            .block_on(Client::default().call(
                &fixture.python_url,
                key,
                "interop_plugin.describe",
                kwargs.as_object().unwrap(),
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
            json!({"value": 1}).as_object().unwrap(),
        ))
        .unwrap_err();
    assert!(error.is_unauthorized(), "{error}");
    let request = json!({"function": "rust_describe", "kwargs": {"value": "keyed"}});
    let (status, body) = fixture
        .runtime
        .block_on(http(
            "POST",
            &fixture.python_url,
            "/api/v1/call_rust",
            Some(&request),
        ))
        .unwrap();
    assert_eq!(
        (status, &body["data"]["echo"]),
        (200, &json!("keyed")),
        "{body}"
    );
}

#[test]
fn python_turns_a_rust_failure_into_the_string_error_proxy() {
    // Python FrameX's own behaviour, whoever the remote is: a failed remote call
    // becomes the result "error proxy" (a FrameX for Rust caller gets an error).
    let fixture = fixture();
    let request = json!({"function": "rust_fail", "kwargs": {"message": "quota exceeded"}});
    let (status, body) = fixture
        .runtime
        .block_on(http(
            "POST",
            &fixture.python_url,
            "/api/v1/call_rust",
            Some(&request),
        ))
        .unwrap();
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        (&body["status"], &body["data"]),
        (&json!(200), &json!("error proxy")),
        "{body}"
    );
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
    let warnings: Vec<String> = config.warnings().iter().map(ToString::to_string).collect();
    assert_eq!(warnings, Vec::<String>::new());
}
