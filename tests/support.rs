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
