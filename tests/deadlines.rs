//! Deadlines: a caller's remaining time travels with its call, the serving
//! instance refuses a call whose deadline has passed and stops a handler at
//! it, a relay passes on what is left, and a handler reads its own.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use framex::App;
use framex::registry::CallError;
use framex::transport::ErrorKind;
use serde_json::{Value, json};

use crate::support::{config, send, start};

/// What the remote's handlers did: `ran` counts handlers started (either
/// function), `finished` the `d.slow` calls that ended on their own and
/// `stopped` those dropped before they ended, `brief` the `d.brief` calls
/// that ended and `brief_left` what the last one's deadline left it when it
/// ended (in ms, plus one; 0 without a deadline).
#[derive(Default)]
struct Handlers {
    ran: AtomicUsize,
    finished: AtomicUsize,
    stopped: AtomicUsize,
    brief: AtomicUsize,
    brief_left: AtomicUsize,
}

/// Counts a `d.slow` call dropped before it finished.
struct Running {
    handlers: Arc<Handlers>,
    finished: bool,
}

impl Drop for Running {
    fn drop(&mut self) {
        if !self.finished {
            self.handlers.stopped.fetch_add(1, Ordering::SeqCst);
        }
    }
}

/// A remote whose `d.left` answers the milliseconds its deadline leaves (or
/// null without one), whose `d.slow` takes 10 s and whose `d.brief` takes
/// 300 ms.
async fn remote(handlers: Arc<Handlers>) -> String {
    let mut app = App::from_config(config("[server]\nport = 0\n")).unwrap();
    let counted = handlers.clone();
    app.register_handler(
        "d.brief",
        framex::registry::typed(move |_: Value| {
            let counted = counted.clone();
            counted.ran.fetch_add(1, Ordering::SeqCst);
            async move {
                tokio::time::sleep(Duration::from_millis(300)).await;
                let left =
                    framex::deadline::remaining().map_or(0, |left| left.as_millis() as usize + 1);
                counted.brief_left.store(left, Ordering::SeqCst);
                counted.brief.fetch_add(1, Ordering::SeqCst);
                Ok::<_, String>(json!("done"))
            }
        }),
    )
    .unwrap();
    let counted = handlers.clone();
    app.register_handler(
        "d.left",
        framex::registry::typed(move |_: Value| {
            counted.ran.fetch_add(1, Ordering::SeqCst);
            async {
                let left = framex::deadline::remaining().map(|left| left.as_millis() as u64);
                Ok::<_, String>(json!(left))
            }
        }),
    )
    .unwrap();
    app.register_handler(
        "d.slow",
        framex::registry::typed(move |_: Value| {
            handlers.ran.fetch_add(1, Ordering::SeqCst);
            let mut running = Running {
                handlers: handlers.clone(),
                finished: false,
            };
            async move {
                tokio::time::sleep(Duration::from_secs(10)).await;
                running.finished = true;
                running.handlers.finished.fetch_add(1, Ordering::SeqCst);
                Ok::<_, String>(json!("done"))
            }
        }),
    )
    .unwrap();
    start(app, "remote").await
}

/// An app that sends `d.left` and `d.slow` to `url`: `timeout` seconds in all,
/// `d.slow` 2 s.
fn caller(url: &str, timeout: u64) -> App {
    App::from_config(config(&format!(
        "load_builtin_plugins = [\"proxy\"]\n[server]\nenable_proxy = true\nport = 0\n\
         [plugins.proxy.proxy_urls.\"{url}\"]\nenable = []\n\
         function_timeouts = {{ \"d.slow\" = 2 }}\n\
         [plugins.proxy]\ntimeout = {timeout}\n\
         proxy_functions = {{ \"{url}\" = [\"d.left\", \"d.slow\"] }}\n"
    )))
    .unwrap()
}

fn left_ms(value: &framex::Value) -> u64 {
    value
        .to_string()
        .parse()
        .unwrap_or_else(|_| panic!("no deadline reached the handler: {value}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_handler_reads_what_its_caller_has_left_even_through_a_relay() {
    let url = remote(Arc::default()).await;
    let direct = caller(&url, 4);
    let left = left_ms(&direct.call("d.left", json!({})).await.unwrap());
    assert!((3000..=4000).contains(&left), "{left} ms");

    // Through a relay whose own timeout is longer: the caller's time counts.
    let relay = start(caller(&url, 60), "relay").await;
    let first = caller(&relay, 2);
    let left = left_ms(&first.call("d.left", json!({})).await.unwrap());
    assert!((1000..=2000).contains(&left), "{left} ms");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handler_is_stopped_at_its_deadline_and_the_caller_times_out() {
    let handlers = Arc::new(Handlers::default());
    let url = remote(handlers.clone()).await;
    let app = caller(&url, 30);
    // A first call opens the connection, so that `d.slow` starts well within
    // its 2 s even on a loaded machine.
    app.call("d.left", json!({})).await.unwrap();
    let started = std::time::Instant::now();
    let error = app.call("d.slow", json!({})).await.unwrap_err();
    let elapsed = started.elapsed();
    let framex::Error::Call(CallError::Remote(error)) = &error else {
        panic!("not a remote error: {error}");
    };
    // The function's own timeout, not the upstream's 30 s.
    assert_eq!(
        error.kind(),
        &ErrorKind::Timeout {
            after: Duration::from_secs(2)
        }
    );
    assert!(elapsed < Duration::from_millis(2900), "{elapsed:?}");
    // The remote started the handler and stops it at the deadline, long
    // before its 10 s are up.
    let waited = std::time::Instant::now();
    while handlers.stopped.load(Ordering::SeqCst) == 0 && waited.elapsed() < Duration::from_secs(7)
    {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(handlers.ran.load(Ordering::SeqCst), 2, "d.slow started");
    assert_eq!(
        handlers.stopped.load(Ordering::SeqCst),
        1,
        "d.slow was stopped"
    );
    assert_eq!(handlers.finished.load(Ordering::SeqCst), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handler_whose_caller_hung_up_is_still_stopped_at_its_deadline() {
    let handlers = Arc::new(Handlers::default());
    let url = remote(handlers.clone()).await;
    let caller = call_and_wait_until_started(&url, "d.slow", Some(1500), &handlers).await;
    // The caller goes away: nobody waits for the answer any more.
    drop(caller);
    let hung_up = std::time::Instant::now();
    while handlers.stopped.load(Ordering::SeqCst) == 0 && hung_up.elapsed() < Duration::from_secs(6)
    {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(
        handlers.stopped.load(Ordering::SeqCst),
        1,
        "d.slow ran on past its 1.5 s deadline"
    );
    assert_eq!(handlers.finished.load(Ordering::SeqCst), 0);
}

/// Sends a call of `name` to `url` by hand, with `x-framex-timeout-ms:
/// timeout` when given, and returns the connection once a handler started.
async fn call_and_wait_until_started(
    url: &str,
    name: &str,
    timeout: Option<u64>,
    handlers: &Handlers,
) -> tokio::net::TcpStream {
    use tokio::io::AsyncWriteExt;

    let body = framex::transport::wire::CallBody::encode(name, &json!({}))
        .unwrap()
        .to_json();
    let mut caller = tokio::net::TcpStream::connect(url.trim_start_matches("http://"))
        .await
        .unwrap();
    let timeout = timeout.map_or(String::new(), |ms| format!("x-framex-timeout-ms: {ms}\r\n"));
    let head = format!(
        "POST /api/v1/proxy/remote HTTP/1.1\r\nhost: remote\r\ncontent-type: application/json\r\n\
         {timeout}content-length: {}\r\n\r\n",
        body.len()
    );
    caller.write_all(head.as_bytes()).await.unwrap();
    caller.write_all(&body).await.unwrap();
    let started = std::time::Instant::now();
    while handlers.ran.load(Ordering::SeqCst) == 0 {
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{name} never started"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    caller
}

/// Sends `d.brief` (with `x-framex-timeout-ms: timeout` when given) and hangs
/// up once it started: what its deadline left it when it ended, in ms plus
/// one (0 without one), once it has.
async fn hang_up_on_brief(timeout: Option<u64>) -> usize {
    let handlers = Arc::new(Handlers::default());
    let url = remote(handlers.clone()).await;
    let caller = call_and_wait_until_started(&url, "d.brief", timeout, &handlers).await;
    drop(caller);
    assert_eq!(
        handlers.brief.load(Ordering::SeqCst),
        0,
        "d.brief ended before its caller hung up; the test proves nothing"
    );
    let hung_up = std::time::Instant::now();
    while handlers.brief.load(Ordering::SeqCst) == 0 && hung_up.elapsed() < Duration::from_secs(5) {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(
        handlers.brief.load(Ordering::SeqCst),
        1,
        "d.brief was stopped when its caller hung up"
    );
    handlers.brief_left.load(Ordering::SeqCst)
}

/// A handler is not cut off half way because its caller went away: it runs
/// to its end, still within the deadline it came with, if any.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handler_whose_caller_hung_up_runs_to_its_end_with_its_deadline() {
    assert_eq!(hang_up_on_brief(None).await, 0, "d.brief saw a deadline");
    let left = hang_up_on_brief(Some(5000)).await;
    assert!(
        (1..=4701).contains(&left),
        "d.brief, 300 ms into a 5 s deadline, had {left} - 1 ms left"
    );
}

#[tokio::test]
async fn a_call_that_arrives_past_its_deadline_does_not_run() {
    let handlers = Arc::new(Handlers::default());
    let url = remote(handlers.clone()).await;
    let body = framex::transport::wire::CallBody::encode("d.left", &json!({}))
        .unwrap()
        .to_json();
    let call = |timeout: &'static str| {
        let (url, body) = (url.clone(), body.clone());
        async move {
            send(
                &url,
                "POST",
                "/api/v1/proxy/remote",
                &[
                    ("content-type", "application/json"),
                    ("x-framex-errors", "http-status"),
                    ("x-framex-timeout-ms", timeout),
                ],
                &body,
            )
            .await
        }
    };
    let (status, answer) = call("0").await;
    assert_eq!(status, 504);
    let answer: Value = serde_json::from_slice(&answer).unwrap();
    assert_eq!(
        answer["message"],
        "the call arrived after its caller's deadline; it did not run"
    );
    assert_eq!(handlers.ran.load(Ordering::SeqCst), 0);
    // A header that is not a number of milliseconds is refused, naming it.
    let (status, answer) = call("soon").await;
    assert_eq!(status, 400);
    let answer: Value = serde_json::from_slice(&answer).unwrap();
    assert_eq!(
        answer["message"],
        "header `x-framex-timeout-ms` must be a whole number of milliseconds, not \"soon\""
    );
    // With time left it runs, and the handler sees it.
    let (status, _) = call("5000").await;
    assert_eq!(status, 200);
    assert_eq!(handlers.ran.load(Ordering::SeqCst), 1);
}
