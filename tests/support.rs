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
    send(base, "GET", path, &[], b"").await
}

/// `method path` with extra `headers` and `body` on the instance at `base`
/// (`http://host:port`) over a fresh connection: the status and the body as
/// text.
pub(crate) async fn send(
    base: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> (u16, String) {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let address = base.trim_start_matches("http://");
    let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
    let mut request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    stream.write_all(body).await.unwrap();
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).await.unwrap();
    let answer = String::from_utf8(answer).unwrap();
    let (head, body) = answer.split_once("\r\n\r\n").unwrap();
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    (status, body.to_owned())
}
