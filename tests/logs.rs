//! What the server logs: a refused request is logged with its path and reason,
//! and neither the key it presented nor the key the rule expects ever appears.

use std::io::Write;
use std::sync::{Arc, Mutex};

use crate::support::{capture_with, config, start};
use framex::App;
use framex::transport::Client;
use serde_json::Value;

/// Log lines written into a shared buffer.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Captured {
    type Writer = Captured;

    fn make_writer(&'a self) -> Captured {
        self.clone()
    }
}

/// Every event and span of this thread, written as text lines, until the
/// guard drops.
fn capture_text() -> (Captured, tracing::subscriber::DefaultGuard) {
    let captured = Captured::default();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(captured.clone())
        .with_ansi(false)
        .with_max_level(tracing::Level::TRACE)
        .finish();
    (captured, capture_with(subscriber))
}

/// Serves an instance with the function `l.f` under configuration `toml`, on
/// this thread, and returns its base URL.
async fn serve(toml: &str) -> String {
    let mut app = App::from_config(config(toml)).unwrap();
    app.register_handler(
        "l.f",
        framex::registry::typed(|_: Value| async { Ok::<_, String>(1) }),
    )
    .unwrap();
    start(app, "logs").await
}

// One thread: the server's tasks run where the subscriber is set.
#[tokio::test(flavor = "current_thread")]
async fn a_refused_key_is_logged_without_any_key() {
    let (captured, _guard) = capture_text();

    let url = serve(
        "[server]\nport = 0\n[auth]\nrules = { \"/api/v1/proxy/remote\" = [\"configured-secret-key\"] }\n",
    )
    .await;

    for key in [
        Some("presented-wrong-key"),
        Some("Bearer presented-bearer-key"),
        None,
    ] {
        let error = Client::default()
            .call(&url, key, "l.f", &serde_json::Map::new())
            .await
            .unwrap_err();
        assert!(error.is_unauthorized(), "{error}");
        assert!(!error.to_string().contains("presented"), "{error}");
    }

    let logs = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    assert_eq!(
        logs.matches("request refused by an auth rule").count(),
        3,
        "{logs}"
    );
    assert!(logs.contains("path=\"/api/v1/proxy/remote\""), "{logs}");
    assert!(logs.contains("reason=wrong key"), "{logs}");
    assert!(
        logs.contains("reason=missing Authorization header"),
        "{logs}"
    );
    for secret in [
        "presented-wrong-key",
        "presented-bearer-key",
        "configured-secret-key",
    ] {
        assert!(
            !logs.contains(secret),
            "`{secret}` appears in the logs:\n{logs}"
        );
    }
}

/// The JSON lines captured so far.
fn json_lines(captured: &Captured) -> Vec<Value> {
    String::from_utf8(captured.0.lock().unwrap().clone())
        .unwrap()
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}")))
        .collect()
}

// One thread: the server's tasks run where the subscriber is set.
#[tokio::test(flavor = "current_thread")]
async fn json_logs_carry_one_line_per_request_and_a_span_per_call() {
    use framex::logging::{LogFormat, subscriber};
    let captured = Captured::default();
    let _guard = capture_with(
        subscriber(
            LogFormat::Json,
            "info,framex_registry=debug",
            captured.clone(),
        )
        .unwrap(),
    );
    let url = serve("[server]\nport = 0\n").await;

    Client::default()
        .call(&url, None, "l.f", &serde_json::Map::new())
        .await
        .unwrap();
    Client::default()
        .call(&url, None, "l.missing", &serde_json::Map::new())
        .await
        .unwrap_err();

    let lines = json_lines(&captured);
    let answered: Vec<&Value> = lines
        .iter()
        .filter(|line| line["fields"]["message"] == "answered")
        .collect();
    assert_eq!(answered.len(), 2, "{lines:#?}");
    assert_eq!(answered[0]["level"], "INFO");
    assert_eq!(answered[0]["fields"]["status"], 200);
    assert_eq!(answered[1]["fields"]["status"], 404);
    assert!(answered[0]["fields"]["latency_ms"].as_f64().unwrap() >= 0.0);
    let request = &answered[0]["span"];
    assert_eq!(request["name"], "request");
    assert_eq!(request["method"], "POST");
    assert_eq!(request["path"], "/api/v1/proxy/remote");
    assert_eq!(request["trace_id"].as_str().unwrap().len(), 32);

    let ended: Vec<&Value> = lines
        .iter()
        .filter(|line| line["fields"]["message"] == "proxy call ended")
        .collect();
    assert_eq!(ended.len(), 2, "{lines:#?}");
    assert_eq!(ended[0]["fields"]["outcome"], "ok");
    assert_eq!(ended[1]["fields"]["outcome"], "not_registered");
    let call = &ended[0]["span"];
    assert_eq!(call["name"], "proxy_call");
    assert_eq!(call["function"], "l.f");
    assert_eq!(call["location"], "local");
    assert!(ended[0]["fields"]["duration_ms"].as_f64().is_some());
    // The call's span sits inside its request's, so the trace id is on it too.
    let spans = ended[0]["spans"].as_array().unwrap();
    assert_eq!(spans[0]["name"], "request");
    assert_eq!(spans[0]["trace_id"], request["trace_id"]);
}

#[test]
fn a_log_format_other_than_human_or_json_is_refused_by_name() {
    let error = "yaml".parse::<framex::logging::LogFormat>().unwrap_err();
    assert_eq!(
        error.to_string(),
        "FRAMEX_LOG_FORMAT must be `human` or `json`, not `yaml`"
    );
    let error =
        framex::logging::subscriber(framex::logging::LogFormat::Human, "info,=[", std::io::sink)
            .err()
            .unwrap();
    assert!(
        error
            .to_string()
            .starts_with("RUST_LOG is not a valid filter"),
        "{error}"
    );
}

/// The `call routed` events captured, as `location=…` values.
fn routed(captured: &Captured) -> Vec<String> {
    let logs = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    logs.lines()
        .filter(|line| line.contains("call routed"))
        .map(|line| {
            let location = line.split("location=").nth(1).expect("a location field");
            let value = location.split_whitespace().next().unwrap();
            value.trim_matches('"').to_owned()
        })
        .collect()
}

// One thread: both instances' tasks run where the subscriber is set.
#[tokio::test(flavor = "current_thread")]
async fn a_call_is_routed_once_on_each_instance_it_passes() {
    let (captured, _guard) = capture_text();

    let remote = serve("[server]\nport = 0\n").await;
    let config = crate::support::config(&format!(
        "load_builtin_plugins = [\"proxy\"]\n[server]\nenable_proxy = true\nport = 0\n[plugins.proxy]\nproxy_urls = [\"{remote}\"]\n\
         proxy_functions = {{ \"{remote}\" = [\"l.f\"] }}\n"
    ));
    let app = App::from_config(config).unwrap();
    let registry = app.registry().clone();
    let local = start(app, "local").await;

    // A call made here: decided by this instance, then by the remote.
    let result = framex::call_on(&registry, "l.f", serde_json::json!({}))
        .await
        .unwrap();
    assert_eq!(result, framex::Value::from(1));
    assert_eq!(routed(&captured), [remote.as_str(), "local"]);

    // A call that arrives here and is relayed: decided once here, once there.
    captured.0.lock().unwrap().clear();
    let result: i64 = Client::default()
        .call_as(&local, None, "l.f", &serde_json::Map::new())
        .await
        .unwrap();
    assert_eq!(result, 1);
    assert_eq!(routed(&captured), [remote.as_str(), "local"]);
}
