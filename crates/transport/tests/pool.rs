//! The client's connection pool against a plain HTTP/1 server on loopback that
//! counts its connections: reuse, the idle timeout, the per-upstream limit, and
//! connections the server closes while they wait in the pool.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use framex_transport::wire::{self, Envelope};
use framex_transport::{Client, ClientSettings};
use serde_json::{Map, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;

/// What the test server saw.
struct Server {
    url: String,
    accepted: Arc<AtomicUsize>,
    /// Gets a message each time a client closes a connection.
    closed: mpsc::UnboundedReceiver<()>,
    /// Lets the server close a connection that has had its answers.
    close: Arc<tokio::sync::Notify>,
    /// Gets a message each time the server has closed a connection.
    server_closed: mpsc::UnboundedReceiver<()>,
}

impl Server {
    fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }

    /// Waits up to 5 s for the client to close a connection; `what` says
    /// which, when it does not.
    async fn client_closed(&mut self, what: &str) {
        tokio::time::timeout(Duration::from_secs(5), self.closed.recv())
            .await
            .expect(what)
            .unwrap();
    }
}

/// A keep-alive server answering every call with success, holding the
/// answers until `together` requests have arrived (so that that many are in
/// flight at once); it closes each connection after `answers_per_connection`
/// answers, when given.
async fn server(answers_per_connection: Option<usize>, together: usize) -> Server {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let accepted = Arc::new(AtomicUsize::new(0));
    let (closed_tx, closed) = mpsc::unbounded_channel();
    let (server_closed_tx, server_closed) = mpsc::unbounded_channel();
    let close = Arc::new(tokio::sync::Notify::new());
    let count = accepted.clone();
    let close_when = close.clone();
    let (arrived_tx, arrived) = tokio::sync::watch::channel(0usize);
    let arrived_tx = Arc::new(arrived_tx);
    let body =
        serde_json::to_string(&Envelope::success(wire::encode(&json!("ok")).unwrap())).unwrap();
    let answer = format!(
        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    );
    tokio::spawn(async move {
        loop {
            let (mut stream, _) = listener.accept().await.unwrap();
            count.fetch_add(1, Ordering::SeqCst);
            let (answer, closed_tx) = (answer.clone(), closed_tx.clone());
            let (close, server_closed_tx) = (close_when.clone(), server_closed_tx.clone());
            let (arrived_tx, mut arrived) = (arrived_tx.clone(), arrived.clone());
            tokio::spawn(async move {
                let mut answered = 0;
                let mut buffer = Vec::new();
                let mut chunk = [0; 4096];
                loop {
                    if answers_per_connection == Some(answered) {
                        // Closed by the server when the test says, once the
                        // client has put the connection back in its pool.
                        close.notified().await;
                        drop(stream);
                        let _ = server_closed_tx.send(());
                        return;
                    }
                    // One request: its head, then its body by content-length.
                    let request_end = loop {
                        if let Some(end) = complete_request(&buffer) {
                            break end;
                        }
                        match stream.read(&mut chunk).await {
                            Ok(0) | Err(_) => {
                                let _ = closed_tx.send(());
                                return;
                            }
                            Ok(n) => buffer.extend_from_slice(&chunk[..n]),
                        }
                    };
                    buffer.drain(..request_end);
                    arrived_tx.send_modify(|count| *count += 1);
                    arrived.wait_for(|count| *count >= together).await.unwrap();
                    stream.write_all(answer.as_bytes()).await.unwrap();
                    answered += 1;
                }
            });
        }
    });
    Server {
        url,
        accepted,
        closed,
        close,
        server_closed,
    }
}

/// The length of the first whole request in `buffer`, if it holds one.
fn complete_request(buffer: &[u8]) -> Option<usize> {
    let head_end = buffer.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
    let head = std::str::from_utf8(&buffer[..head_end])
        .unwrap()
        .to_lowercase();
    let length: usize = head
        .lines()
        .find_map(|line| line.strip_prefix("content-length:"))
        .map_or(0, |value| value.trim().parse().unwrap());
    (buffer.len() >= head_end + length).then_some(head_end + length)
}

fn client(settings: ClientSettings) -> Client {
    Client::new(settings.with_timeout(Duration::from_secs(5)))
}

async fn call(client: &Client, server: &Server) {
    let result = client
        .call(&server.url, None, "m.f", &Map::new())
        .await
        .unwrap();
    assert_eq!(result, json!("ok"));
}

/// `count` calls in flight together, each answered.
async fn calls_at_once(client: &Client, server: &Server, count: usize) {
    let calls: Vec<_> = (0..count)
        .map(|_| {
            let client = client.clone();
            let url = server.url.clone();
            tokio::spawn(async move { client.call(&url, None, "m.f", &Map::new()).await })
        })
        .collect();
    for call in calls {
        assert_eq!(call.await.unwrap().unwrap(), json!("ok"));
    }
}

#[tokio::test]
async fn calls_one_after_another_share_one_connection() {
    let server = server(None, 0).await;
    let client = client(ClientSettings::default());
    for _ in 0..5 {
        call(&client, &server).await;
    }
    assert_eq!(server.accepted(), 1);
}

#[tokio::test]
async fn concurrent_calls_open_connections_that_later_calls_reuse() {
    let server = server(None, 0).await;
    let client = client(ClientSettings::default());
    calls_at_once(&client, &server, 8).await;
    let opened = server.accepted();
    assert!((1..=8).contains(&opened), "{opened} connections");
    for _ in 0..8 {
        call(&client, &server).await;
    }
    assert_eq!(server.accepted(), opened, "later calls reuse the idle ones");
}

#[tokio::test]
async fn a_connection_idle_past_the_timeout_is_closed_and_not_reused() {
    let mut server = server(None, 0).await;
    let client =
        client(ClientSettings::default().with_pool_idle_timeout(Duration::from_millis(100)));
    call(&client, &server).await;
    // The sweeper closes it without another call.
    server
        .client_closed("the idle connection is closed after the idle timeout")
        .await;
    call(&client, &server).await;
    assert_eq!(server.accepted(), 2);
}

#[tokio::test]
async fn no_connection_is_kept_when_the_pool_holds_none() {
    let server = server(None, 0).await;
    let client = client(ClientSettings::default().with_pool_max_idle_per_host(0));
    for _ in 0..3 {
        call(&client, &server).await;
    }
    assert_eq!(server.accepted(), 3);
}

#[tokio::test]
async fn a_connection_the_server_closed_while_idle_is_replaced_before_the_call() {
    // One answer per connection, then the server closes it: the pooled
    // connection is found closed when taken, so the call goes out on a new one
    // and needs no retry.
    let mut server = server(Some(1), 0).await;
    let client = client(ClientSettings::default().with_retry_closed_connection(false));
    call(&client, &server).await;
    // The call has returned: its connection is in the pool. The server closes
    // it now, and its close has reached this side's socket when the server's
    // `close` returned (loopback).
    server.close.notify_one();
    server.server_closed.recv().await.unwrap();
    call(&client, &server).await;
    assert_eq!(server.accepted(), 2);
}

#[tokio::test]
async fn the_pool_of_one_upstream_keeps_at_most_its_limit() {
    // Answers held until all four calls are in flight, on four connections.
    let mut server = server(None, 4).await;
    let client = client(ClientSettings::default().with_pool_max_idle_per_host(2));
    calls_at_once(&client, &server, 4).await;
    assert_eq!(server.accepted(), 4);
    // Two of them were closed when they came back.
    for _ in 0..2 {
        server
            .client_closed("connections past the limit are closed")
            .await;
    }
    for _ in 0..4 {
        call(&client, &server).await;
    }
    assert_eq!(
        server.accepted(),
        4,
        "the two kept connections serve later calls"
    );
}

#[tokio::test]
async fn forwarded_requests_and_calls_share_the_pooled_connections() {
    use http_body_util::BodyExt as _;
    let mut server = server(None, 0).await;
    let client = client(ClientSettings::default());
    for _ in 0..3 {
        let request = http::Request::get(format!("{}/api/v1/anything?x=1", server.url))
            .body(http_body_util::Empty::<bytes::Bytes>::new())
            .unwrap();
        let response = client.forward(&server.url, request).await.unwrap();
        assert_eq!(response.status(), 200);
        // Read to its end: then the connection is back in the pool.
        let body = response.into_body().collect().await.unwrap().to_bytes();
        assert!(!body.is_empty());
        call(&client, &server).await;
    }
    assert_eq!(server.accepted(), 1, "one connection for all six");

    // An answer dropped before its end takes its connection with it.
    let request = http::Request::get(format!("{}/api/v1/anything", server.url))
        .body(http_body_util::Empty::<bytes::Bytes>::new())
        .unwrap();
    drop(client.forward(&server.url, request).await.unwrap());
    server
        .client_closed("the connection of a dropped answer is closed")
        .await;
    call(&client, &server).await;
    assert_eq!(server.accepted(), 2);
}
