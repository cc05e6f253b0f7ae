//! What the server logs: a refused request is logged with its path and reason,
//! and neither the key it presented nor the key the rule expects ever appears.

use std::io::Write;
use std::sync::{Arc, Mutex};

use framex::App;
use framex::config::Loader;
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

// One thread: the server's tasks run where the subscriber is set.
#[tokio::test(flavor = "current_thread")]
async fn a_refused_key_is_logged_without_any_key() {
    let captured = Captured::default();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(captured.clone())
        .with_ansi(false)
        .with_max_level(tracing::Level::TRACE)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let config = Loader::default()
        .text(
            "test.toml",
            "[server]\nport = 0\n[auth]\nrules = { \"/api/v1/proxy/remote\" = [\"configured-secret-key\"] }\n",
        )
        .env(Vec::<(String, String)>::new())
        .load()
        .unwrap();
    let mut app = App::from_config(config).unwrap();
    app.register_fn("l.f", |_: Value| async { Ok::<_, String>(1) })
        .unwrap();
    let bound = app.isolated().bind("logs").await.unwrap();
    let url = format!("http://{}", bound.local_addr());
    tokio::spawn(bound.serve_until(std::future::pending()));

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
