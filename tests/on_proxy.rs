//! `#[on_proxy]` functions: one call site, run here or on the instance that the
//! configuration lists, with the runtime installed or not.
//!
//! Tests that install the process's FrameX runtime take `RUNTIME` first, so they
//! do not see each other's runtime.

use crate::support::config;
use framex::App;
use framex::transport::wire::{self, CallBody, Envelope};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio::sync::Mutex;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

static RUNTIME: Mutex<()> = Mutex::const_new(());

/// A configuration that lists `names` for the instance at `url`.
fn routed_to(url: &str, names: &[&str]) -> framex::config::Config {
    config(&format!(
        "load_builtin_plugins = [\"proxy\"]\n[server]\nenable_proxy = true\nport = 0\n\
         [plugins.proxy]\nproxy_urls = [\"{url}\"]\nproxy_functions = {{ \"{url}\" = {names:?} }}\n"
    ))
}

#[derive(Debug, PartialEq, Serialize, Deserialize)]
struct Report {
    job_id: String,
    copies: u32,
    made_in: u32,
}

mod reports {
    use super::Report;

    /// Named by its module path.
    #[framex::on_proxy]
    pub async fn build_report(job_id: String, copies: u32) -> Result<Report, framex::Error> {
        if copies == 0 {
            return Err(framex::Error::msg(format!("no copies of {job_id} wanted")));
        }
        Ok(Report {
            job_id,
            copies,
            made_in: std::process::id(),
        })
    }
}

/// Named explicitly, as a Python FrameX service would register it.
#[framex::on_proxy(name = "tests.add")]
async fn add(a: i64, b: i64) -> Result<i64, anyhow::Error> {
    a.checked_add(b)
        .ok_or_else(|| anyhow::anyhow!("{a} + {b} overflows"))
}

/// Not an `#[on_proxy]` function.
async fn plain(a: i64) -> Result<i64, framex::Error> {
    Ok(a)
}

#[test]
fn the_default_name_is_the_module_path_with_dots() {
    let names = framex::proxy_function_names();
    assert!(
        names.contains(&"integration.on_proxy.reports.build_report"),
        "{names:?}"
    );
    assert!(names.contains(&"tests.add"), "{names:?}");
}

#[tokio::test]
async fn without_a_runtime_the_body_runs_here() {
    let _runtime = RUNTIME.lock().await;
    assert!(!framex::is_installed());
    let report = reports::build_report("j-1".into(), 2).await.unwrap();
    assert_eq!(
        report,
        Report {
            job_id: "j-1".into(),
            copies: 2,
            made_in: std::process::id()
        }
    );
    assert_eq!(
        reports::build_report("j-1".into(), 0)
            .await
            .unwrap_err()
            .to_string(),
        "no copies of j-1 wanted"
    );
    // A dynamic call by name also runs the body.
    assert_eq!(
        framex::call("tests.add", json!({"a": 2, "b": 3}))
            .await
            .unwrap(),
        json!(5)
    );
}

#[tokio::test]
async fn a_listed_function_sends_its_parameters_as_keyword_arguments() {
    let _runtime = RUNTIME.lock().await;
    let server = MockServer::start().await;
    let answer = Report {
        job_id: "j-7".into(),
        copies: 3,
        made_in: 0,
    };
    Mock::given(method("POST"))
        .and(path("/api/v1/proxy/remote"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(Envelope::success(wire::encode(&answer).unwrap())),
        )
        .expect(1)
        .mount(&server)
        .await;
    let name = "integration.on_proxy.reports.build_report";
    let app = App::from_config(routed_to(&server.uri(), &[name])).unwrap();
    let _installed = app.install().unwrap();

    let report = reports::build_report("j-7".into(), 3).await.unwrap();

    assert_eq!(report, answer, "the remote's answer, not a local run");
    let requests = server.received_requests().await.unwrap();
    let body: CallBody = serde_json::from_slice(&requests[0].body).unwrap();
    assert_eq!(wire::decode::<String>(&body.func_name).unwrap(), name);
    assert_eq!(
        wire::decode::<Value>(&body.data).unwrap(),
        json!({"job_id": "j-7", "copies": 3})
    );
}

#[tokio::test]
async fn a_remote_failure_is_an_error_never_a_value() {
    let _runtime = RUNTIME.lock().await;
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(
            ResponseTemplate::new(500).set_body_json(Envelope::failure(500, "database is down")),
        )
        .mount(&server)
        .await;
    let app = App::from_config(routed_to(&server.uri(), &["tests.add"])).unwrap();
    let _installed = app.install().unwrap();

    let error = add(1, 2).await.unwrap_err();

    let message = format!("{error:#}");
    assert!(message.contains("database is down"), "{message}");
    assert!(message.contains(&server.uri()), "{message}");
}

#[tokio::test]
async fn a_wrongly_typed_remote_result_is_an_error() {
    let _runtime = RUNTIME.lock().await;
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(Envelope::success(wire::encode("five").unwrap())),
        )
        .mount(&server)
        .await;
    let app = App::from_config(routed_to(&server.uri(), &["tests.add"])).unwrap();
    let _installed = app.install().unwrap();

    let error = add(2, 3).await.unwrap_err();

    assert!(
        error
            .to_string()
            .starts_with("the remote result does not have the declared return type"),
        "{error}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_call_runs_on_the_other_instance_when_configured() {
    let _runtime = RUNTIME.lock().await;
    // The remote registers the functions and serves without installing itself.
    let mut remote = App::from_config(config("[server]\nport = 0\n")).unwrap();
    remote.register(reports::build_report).unwrap();
    remote.register(add).unwrap();
    let remote = remote.isolated().bind("remote").await.unwrap();
    let remote_url = format!("http://{}", remote.local_addr());
    tokio::spawn(remote.serve_until(std::future::pending()));

    let mut local = App::from_config(routed_to(&remote_url, &["tests.add"])).unwrap();
    local.register(reports::build_report).unwrap();
    let _installed = local.install().unwrap();

    assert_eq!(add(40, 2).await.unwrap(), 42);
    let error = add(i64::MAX, 1).await.unwrap_err();
    // The failure came back over the wire, as a remote error with its message.
    assert_eq!(
        error.to_string(),
        format!(
            "`tests.add` failed on {remote_url} (status 500): 9223372036854775807 + 1 overflows"
        )
    );
    assert!(
        matches!(
            error.downcast_ref::<framex::Error>(),
            Some(framex::Error::Call(framex::registry::CallError::Remote(_)))
        ),
        "{error:?}"
    );
    // Unlisted: runs here.
    assert_eq!(
        reports::build_report("j-2".into(), 1).await.unwrap().job_id,
        "j-2"
    );
    // A dynamic call follows the installed runtime too.
    assert_eq!(
        framex::call("tests.add", json!({"a": 1, "b": 1}))
            .await
            .unwrap(),
        json!(2)
    );
    let error = framex::call("tests.add", json!({"a": 1, "b": 2, "c": 1}))
        .await
        .unwrap_err()
        .to_string();
    assert!(
        error.ends_with(
            "(status 422): invalid arguments for `tests.add`: unexpected keyword argument `c`"
        ),
        "{error}"
    );
    let error = framex::call("tests.add", json!([1, 1]))
        .await
        .unwrap_err()
        .to_string();
    assert_eq!(
        error,
        "keyword arguments of `tests.add` must be a JSON object, not an array"
    );
}

#[tokio::test]
async fn one_runtime_per_process_and_it_goes_with_its_guard() {
    let _runtime = RUNTIME.lock().await;
    let first = App::from_config(config("")).unwrap();
    let second = App::from_config(config("")).unwrap();
    let installed = first.install().unwrap();
    assert!(framex::is_installed());
    let error = second.install().unwrap_err();
    assert!(
        error
            .to_string()
            .starts_with("a FrameX runtime is already installed in this process"),
        "{error}"
    );
    drop(installed);
    assert!(!framex::is_installed());
    let _installed = second.install().unwrap();
}

#[test]
fn registering_checks_the_function() {
    let mut app = App::from_config(config("")).unwrap();
    app.register(add).unwrap();
    assert_eq!(
        app.register(add).unwrap_err().to_string(),
        "proxy function `tests.add` is already registered"
    );
    let error = app.register(plain).unwrap_err().to_string();
    assert_eq!(
        error,
        "`integration::on_proxy::plain` is not a proxy function: mark it with \
         #[framex::on_proxy] to register it"
    );
}

#[tokio::test]
async fn a_registered_function_checks_its_keyword_arguments() {
    let mut app = App::from_config(config("")).unwrap();
    app.register(reports::build_report).unwrap();
    let name = "integration.on_proxy.reports.build_report";
    let error = app
        .call(name, json!({"job_id": "j-1"}))
        .await
        .unwrap_err()
        .to_string();
    assert_eq!(
        error,
        format!("invalid arguments for `{name}`: missing keyword argument `copies`")
    );
    let error = app
        .call(name, json!({"job_id": 7, "copies": 1}))
        .await
        .unwrap_err()
        .to_string();
    assert_eq!(
        error,
        format!(
            "invalid arguments for `{name}`: keyword argument `job_id`: invalid type: integer `7`, expected a string"
        )
    );
    assert_eq!(
        app.call(name, json!({"job_id": "j-1", "copies": 0}))
            .await
            .unwrap_err()
            .to_string(),
        format!("`{name}` failed: no copies of j-1 wanted")
    );
}
