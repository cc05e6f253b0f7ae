//! Calls between FrameX for Rust instances over HTTP/2 with prior knowledge
//! (`proxy_urls."URL".http2 = true`), through a TCP relay that counts the
//! connections and how each began: the calls of one endpoint share one
//! connection, the server closes it once idle, and the next call opens
//! another; without the setting the same calls go over HTTP/1.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use framex::App;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::support::{config, serve_stoppable, start};

const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// What the relay saw.
#[derive(Debug, Default)]
struct Seen {
    /// Connections that began with HTTP/2's preface.
    http2: AtomicUsize,
    /// Connections that began otherwise (HTTP/1).
    other: AtomicUsize,
    /// Connections that have closed.
    closed: AtomicUsize,
}

/// Relays every connection to `target`, counting them in the returned
/// [`Seen`]; its URL is `http://` and the relay's address.
async fn relay(target: &str) -> (String, Arc<Seen>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let target = target.trim_start_matches("http://").to_owned();
    let seen = Arc::new(Seen::default());
    let counts = seen.clone();
    tokio::spawn(async move {
        loop {
            let (mut client, _) = listener.accept().await.unwrap();
            let (target, counts) = (target.clone(), counts.clone());
            tokio::spawn(async move {
                let mut server = TcpStream::connect(&target).await.unwrap();
                let mut first = vec![0; PREFACE.len()];
                let mut read = 0;
                // Up to the preface's length, or less if the client stops
                // sending before.
                while read < first.len() {
                    match client.read(&mut first[read..]).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) if first[..read + n] != PREFACE[..read + n] => {
                            read += n;
                            break;
                        }
                        Ok(n) => read += n,
                    }
                }
                if read == PREFACE.len() && first == PREFACE {
                    counts.http2.fetch_add(1, Ordering::SeqCst);
                } else {
                    counts.other.fetch_add(1, Ordering::SeqCst);
                }
                if server.write_all(&first[..read]).await.is_ok() {
                    let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                }
                counts.closed.fetch_add(1, Ordering::SeqCst);
            });
        }
    });
    (url, seen)
}

/// A remote instance whose `h.echo` answers its `n`, closing connections
/// that carry no request for `idle_secs`.
async fn remote(idle_secs: u64) -> String {
    let mut app = App::from_config(config(&format!(
        "[server]\nport = 0\nheader_read_timeout = {idle_secs}\n"
    )))
    .unwrap();
    app.register_handler(
        "h.echo",
        framex::registry::typed(|args: Value| async move {
            tokio::time::sleep(Duration::from_millis(20)).await;
            Ok::<_, String>(json!({ "n": args["n"] }))
        }),
    )
    .unwrap();
    start(app, "remote").await
}

/// A local instance that sends `h.echo` to `url`, over HTTP/2 when `http2`.
fn local(url: &str, http2: bool) -> Arc<App> {
    Arc::new(
        App::from_config(config(&format!(
            "load_builtin_plugins = [\"proxy\"]\n[server]\nenable_proxy = true\nport = 0\n\
             [plugins.proxy]\nproxy_functions = {{ \"{url}\" = [\"h.echo\"] }}\n\
             [plugins.proxy.proxy_urls.\"{url}\"]\nenable = []\nhttp2 = {http2}\n"
        )))
        .unwrap(),
    )
}

/// Makes `count` calls at once, each checked for its own answer.
async fn calls(app: &Arc<App>, count: usize) {
    let calls: Vec<_> = (0..count)
        .map(|n| {
            let app = app.clone();
            tokio::spawn(async move { app.call("h.echo", json!({ "n": n })).await })
        })
        .collect();
    for (n, call) in calls.into_iter().enumerate() {
        let answer = call
            .await
            .unwrap()
            .unwrap_or_else(|e| panic!("call {n}: {e}"));
        assert_eq!(answer, json!({ "n": n }));
    }
}

async fn settles(what: &str, done: impl Fn() -> bool) {
    for _ in 0..200 {
        if done() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("{what} did not happen within 5 s");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_calls_share_one_http2_connection() {
    let (url, seen) = relay(&remote(30).await).await;
    let app = local(&url, true);
    calls(&app, 200).await;
    // All 200 at once, each 20 ms in its handler, on one connection.
    assert_eq!(seen.http2.load(Ordering::SeqCst), 1);
    assert_eq!(seen.other.load(Ordering::SeqCst), 0);
    calls(&app, 50).await;
    assert_eq!(seen.http2.load(Ordering::SeqCst), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_setting_calls_go_over_http1() {
    let (url, seen) = relay(&remote(30).await).await;
    let app = local(&url, false);
    calls(&app, 20).await;
    assert_eq!(seen.http2.load(Ordering::SeqCst), 0);
    assert!(seen.other.load(Ordering::SeqCst) >= 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_http2_connection_is_closed_by_the_server_and_the_next_call_opens_another() {
    let (url, seen) = relay(&remote(1).await).await;
    let app = local(&url, true);
    calls(&app, 10).await;
    // Closed by the server (GOAWAY, then the socket) about a second after
    // its last call; the client's own idle timeout is 4 s.
    settles("the idle connection's close", || {
        seen.closed.load(Ordering::SeqCst) == 1
    })
    .await;
    calls(&app, 10).await;
    assert_eq!(seen.http2.load(Ordering::SeqCst), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_sends_only_the_preface_is_dropped_at_the_header_timeout() {
    let remote = remote(1).await;
    let mut stream = TcpStream::connect(remote.trim_start_matches("http://"))
        .await
        .unwrap();
    stream.write_all(PREFACE).await.unwrap();
    let mut read = Vec::new();
    // The server's SETTINGS, then its GOAWAY and the end of the stream.
    let ended = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut read)).await;
    assert!(ended.is_ok(), "the connection is still open after 5 s");
    // A client that sends part of it, then nothing, is dropped too.
    let mut stream = TcpStream::connect(remote.trim_start_matches("http://"))
        .await
        .unwrap();
    stream.write_all(&PREFACE[..10]).await.unwrap();
    let ended = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut read)).await;
    assert!(ended.is_ok(), "the connection is still open after 5 s");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_to_an_instance_that_is_gone_fail_naming_it() {
    let gone = {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        format!("http://{}", listener.local_addr().unwrap())
    };
    let app = local(&gone, true);
    let calls: Vec<_> = (0..20)
        .map(|n| {
            let app = app.clone();
            tokio::spawn(async move { app.call("h.echo", json!({ "n": n })).await })
        })
        .collect();
    for call in calls {
        let error = call.await.unwrap().unwrap_err().to_string();
        assert!(
            error.contains(&gone) && error.contains("connect"),
            "{error}"
        );
    }
}

/// A remote named `name` whose `h.echo` also says which instance ran it,
/// served until `stop` is sent; its URL and the task serving it.
async fn stoppable(
    name: &'static str,
) -> (
    String,
    tokio::sync::oneshot::Sender<()>,
    tokio::task::JoinHandle<()>,
) {
    let mut app = App::from_config(config("[server]\nport = 0\nshutdown_grace = 10\n")).unwrap();
    app.register_handler(
        "h.echo",
        framex::registry::typed(move |args: Value| async move {
            tokio::time::sleep(Duration::from_millis(5)).await;
            Ok::<_, String>(json!({ "n": args["n"], "by": name }))
        }),
    )
    .unwrap();
    serve_stoppable(app.isolated().bind(name).await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_move_to_another_endpoint_when_one_shuts_down() {
    move_on(true).await;
}

/// The same over HTTP/1; with the previous, the calls of endpoints of one
/// address on two ports each go to their own port, whatever the URL's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_http1_too() {
    move_on(false).await;
}

/// Two endpoints of one URL on one address and two ports, the URL's port
/// the first's; calls flow while the first shuts down.
async fn move_on(http2: bool) {
    let (first, stop, serving) = stoppable("first").await;
    let (second, _keep, _serving) = stoppable("second").await;
    let endpoints = [&first, &second].map(|url| url.trim_start_matches("http://").to_owned());
    let app = Arc::new(
        App::from_config(config(&format!(
            "load_builtin_plugins = [\"proxy\"]\n[server]\nenable_proxy = true\nport = 0\n\
             [plugins.proxy]\nproxy_functions = {{ \"{first}\" = [\"h.echo\"] }}\n\
             [plugins.proxy.proxy_urls.\"{first}\"]\nenable = []\nhttp2 = {http2}\n\
             endpoints = [\"{}\", \"{}\"]\n",
            endpoints[0], endpoints[1]
        )))
        .unwrap(),
    );
    // Four callers, each calling one after the other, while `first` stops.
    let callers: Vec<_> = (0..4)
        .map(|caller| {
            let app = app.clone();
            tokio::spawn(async move {
                let mut by = Vec::new();
                for n in 0..150 {
                    let answer = app
                        .call("h.echo", json!({ "n": n }))
                        .await
                        .unwrap_or_else(|e| panic!("caller {caller}, call {n}: {e}"));
                    assert_eq!(answer["n"], n);
                    by.push(answer["by"].as_str().unwrap().to_owned());
                }
                by
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(150)).await;
    stop.send(()).unwrap();
    let (mut early, mut last) = (Vec::new(), Vec::new());
    for caller in callers {
        let by = caller.await.unwrap();
        early.extend(by[..10].to_vec());
        last.extend(by[by.len() - 20..].to_vec());
    }
    // Every call was answered; once `first` had stopped, by `second`.
    assert!(last.iter().all(|by| by == "second"), "{last:?}");
    // Before, both took calls: each endpoint is called on its own port.
    assert!(
        early.iter().any(|by| by == "first") && early.iter().any(|by| by == "second"),
        "{early:?}"
    );
    tokio::time::timeout(Duration::from_secs(10), serving)
        .await
        .expect("the stopped instance shuts down")
        .unwrap();
}
