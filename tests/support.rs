//! Helpers the test modules share.

use framex::config::{Config, Loader};

/// Loads `toml` as `test.toml`, with no environment overrides, or panics with
/// the rendered errors.
pub(crate) fn config(toml: &str) -> Config {
    Loader::default()
        .text("test.toml", toml)
        .env(Vec::<(String, String)>::new())
        .load()
        .unwrap_or_else(|e| panic!("{e}"))
}

/// Serves `app` on its configured address (port 0: a free one), without
/// installing it as the process's runtime, and returns its base URL.
pub(crate) async fn start(app: framex::App, name: &str) -> String {
    let bound = app.isolated().bind(name).await.unwrap();
    let url = format!("http://{}", bound.local_addr());
    tokio::spawn(bound.serve_until(std::future::pending()));
    url
}

/// Serves `bound` until the sender it returns is sent to (or dropped), then
/// shuts it down gracefully: its base URL, that sender, and the task serving
/// it, which ends once the shutdown has.
pub(crate) fn serve_stoppable(
    bound: framex::Bound,
) -> (
    String,
    tokio::sync::oneshot::Sender<()>,
    tokio::task::JoinHandle<()>,
) {
    let url = format!("http://{}", bound.local_addr());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let serving = tokio::spawn(bound.serve_until(async {
        let _ = stopped.await;
    }));
    (url, stop, serving)
}

/// `GET path` on the instance at `base` (`http://host:port`) over a fresh
/// connection: the status and the body as text.
pub(crate) async fn get(base: &str, path: &str) -> (u16, String) {
    let (status, body) = send(base, "GET", path, &[], b"").await;
    (status, String::from_utf8(body).unwrap())
}

/// A plain HTTP/1.1 request, `method path` with extra `headers` and `body`, to
/// the instance at `base` (`http://host:port`) over a fresh connection: the
/// status and the body.
pub(crate) async fn send(
    base: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> (u16, Vec<u8>) {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let address = base.trim_start_matches("http://");
    let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).await.unwrap();
    stream.write_all(body).await.unwrap();
    let mut response = Vec::new();
    stream.read_to_end(&mut response).await.unwrap();
    let split = response
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("an HTTP head");
    let head = String::from_utf8_lossy(&response[..split]);
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    (status, response[split + 4..].to_vec())
}

/// Sets `subscriber` as this thread's, for the test that holds the guard.
///
/// tracing caches, per callsite, whether any subscriber may want it. Tests in
/// other threads set and drop their own subscribers meanwhile, and a cache
/// rebuilt from a list of subscribers that does not yet hold this one can say
/// "never" for a span this test waits for (seen: a `proxy_call` span missing
/// from a log line). A global subscriber that answers "sometimes" for every
/// callsite and wants nothing keeps every cache at "ask the current
/// subscriber", which then decides for each span and event.
pub(crate) fn capture_with(
    subscriber: impl tracing::Subscriber + Send + Sync + 'static,
) -> tracing::subscriber::DefaultGuard {
    struct AskEachTime;
    impl tracing::Subscriber for AskEachTime {
        fn register_callsite(
            &self,
            _: &'static tracing::Metadata<'static>,
        ) -> tracing::subscriber::Interest {
            tracing::subscriber::Interest::sometimes()
        }
        fn enabled(&self, _: &tracing::Metadata<'_>) -> bool {
            false
        }
        fn new_span(&self, _: &tracing::span::Attributes<'_>) -> tracing::span::Id {
            tracing::span::Id::from_u64(1)
        }
        fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}
        fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}
        fn event(&self, _: &tracing::Event<'_>) {}
        fn enter(&self, _: &tracing::span::Id) {}
        fn exit(&self, _: &tracing::span::Id) {}
    }
    static GLOBAL: std::sync::Once = std::sync::Once::new();
    GLOBAL.call_once(|| {
        // No other test of this binary sets a global subscriber.
        let _ = tracing::subscriber::set_global_default(AskEachTime);
    });
    tracing::subscriber::set_default(subscriber)
}
