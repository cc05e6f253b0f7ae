//! HTTPS between instances: a remote serving TLS with a certificate from a CA
//! made for the test, and a local instance that trusts that CA through
//! `plugins.proxy.ca_file`, for proxy functions and forwarded routes alike.

use std::path::{Path, PathBuf};

use framex::App;
use framex::config::Loader;
use framex::registry::CallError;
use framex::transport::ErrorKind;
use serde_json::{Value, json};

/// Writes a CA, and a certificate it signed for `127.0.0.1` with its key, into
/// `dir` as `ca.pem`, `cert.pem` and `key.pem`.
fn write_test_pki(dir: &Path) {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(rcgen::DnType::CommonName, "FrameX test CA");
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let issuer = rcgen::Issuer::new(ca, ca_key);
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["127.0.0.1".to_owned()])
        .unwrap()
        .signed_by(&key, &issuer)
        .unwrap();
    std::fs::write(dir.join("ca.pem"), ca_cert.pem()).unwrap();
    std::fs::write(dir.join("cert.pem"), cert.pem()).unwrap();
    std::fs::write(dir.join("key.pem"), key.serialize_pem()).unwrap();
}

fn dir(name: &str) -> PathBuf {
    let dir =
        Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("tls-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Loads `toml` as the file `dir/config.toml`, so relative paths in it are
/// taken from `dir`.
fn config_file(dir: &Path, toml: &str) -> framex::config::Config {
    let path = dir.join("config.toml");
    std::fs::write(&path, toml).unwrap();
    Loader::default()
        .file(&path)
        .env(Vec::<(String, String)>::new())
        .load()
        .unwrap_or_else(|e| panic!("{e}"))
}

async fn tls_remote(dir: &Path) -> String {
    let mut app = App::from_config(config_file(
        dir,
        "[server]\nport = 0\ntls_cert = \"cert.pem\"\ntls_key = \"key.pem\"\n",
    ))
    .unwrap();
    app.register_handler(
        "t.secret",
        framex::registry::typed(|args: Value| async move {
            Ok::<_, String>(json!({"over": "tls", "n": args["n"]}))
        }),
    )
    .unwrap();
    // Documented, so that the local instance finds it in the document.
    app.routes(framex::aide::axum::ApiRouter::new().api_route(
        "/api/v1/tls_hello",
        framex::aide::axum::routing::get(|| async { "hello over tls" }),
    ))
    .unwrap();
    let bound = app.isolated().bind("tls-remote").await.unwrap();
    let url = format!("https://{}", bound.local_addr());
    tokio::spawn(bound.serve_until(std::future::pending()));
    url
}

fn local_toml(remote: &str, ca_file: Option<&str>) -> String {
    let ca = ca_file
        .map(|file| format!("ca_file = \"{file}\"\n"))
        .unwrap_or_default();
    format!(
        "load_builtin_plugins = [\"proxy\"]\n[server]\nenable_proxy = true\nport = 0\n\
         [plugins.proxy.proxy_urls.\"{remote}\"]\nenable = [\"/api/v1/*\"]\n\
         [plugins.proxy]\n{ca}proxy_functions = {{ \"{remote}\" = [\"t.secret\"] }}\n"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_and_forwarded_routes_go_over_https_to_a_private_ca() {
    let dir = dir("trusted");
    write_test_pki(&dir);
    let remote = tls_remote(&dir).await;
    let local = App::from_config(config_file(&dir, &local_toml(&remote, Some("ca.pem")))).unwrap();

    let result = local.call("t.secret", json!({"n": 7})).await.unwrap();
    assert_eq!(result, json!({"over": "tls", "n": 7}));

    let bound = local.isolated().bind("tls-local").await.unwrap();
    let api = bound.api();
    let url = format!("http://{}", bound.local_addr());
    tokio::spawn(bound.serve_until(std::future::pending()));
    let mut answer = None;
    for _ in 0..200 {
        let response = api
            .call(
                http::Request::get("/api/v1/tls_hello")
                    .body(bytes::Bytes::new())
                    .unwrap(),
            )
            .await;
        if response.status() == 200 {
            answer = Some(response.into_body());
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(
        answer.as_deref(),
        Some(b"hello over tls".as_slice()),
        "the route was never forwarded; see {url}/health"
    );
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_untrusted_certificate_is_a_connect_error() {
    let dir = dir("untrusted");
    write_test_pki(&dir);
    let remote = tls_remote(&dir).await;
    let local = App::from_config(config_file(&dir, &local_toml(&remote, None))).unwrap();
    let error = local.call("t.secret", json!({"n": 1})).await.unwrap_err();
    let framex::Error::Call(CallError::Remote(error)) = &error else {
        panic!("not a remote error: {error}");
    };
    assert_eq!(error.kind(), &ErrorKind::Connect, "{error}");
    let mut causes = String::new();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        causes.push_str(&format!("{cause}; "));
        source = cause.source();
    }
    assert!(causes.contains("UnknownIssuer"), "{causes}");
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn tls_files_are_checked_and_named() {
    let dir = dir("files");
    let error = Loader::default()
        .text("config.toml", "[server]\ntls_cert = \"cert.pem\"\n")
        .env(Vec::<(String, String)>::new())
        .load()
        .unwrap_err();
    assert_eq!(
        error.errors().map(ToString::to_string).collect::<Vec<_>>(),
        [
            "error: config.toml:2:12: `server.tls_cert`: `server.tls_key` is not set: serving HTTPS takes both `tls_cert` and `tls_key`"
        ]
    );
    let error = App::from_config(config_file(
        &dir,
        &local_toml("https://127.0.0.1:9", Some("missing-ca.pem")),
    ))
    .err()
    .unwrap();
    assert!(
        error.to_string().starts_with(&format!(
            "cannot read certificates from {}: ",
            dir.join("missing-ca.pem").display()
        )),
        "{error}"
    );
    let _ = std::fs::remove_dir_all(dir);
}
