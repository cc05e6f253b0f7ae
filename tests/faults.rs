//! Faults between instances: a remote that stops in the middle of a run and comes
//! back, a remote that answers too slowly, and a shutdown under load. Every call
//! ends with a result or a clear error; none hangs and none is lost.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use crate::support::{config, serve_stoppable};
use framex::App;
use framex::registry::CallError;
use framex::transport::ErrorKind;
use serde_json::{Value, json};

/// A loopback address that stays this test's while remotes come and go on it:
/// a bound socket that never listens holds the port (a connection to it is
/// refused while no remote listens), and each remote listens on it beside
/// that socket (`SO_REUSEPORT`). No other test can take the port meanwhile.
struct Address {
    _holder: tokio::net::TcpSocket,
    address: std::net::SocketAddr,
}

impl Address {
    fn new() -> Address {
        let holder = tokio::net::TcpSocket::new_v4().unwrap();
        holder.set_reuseport(true).unwrap();
        holder.bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let address = holder.local_addr().unwrap();
        Address {
            _holder: holder,
            address,
        }
    }

    /// A listener on the address.
    fn listen(&self) -> tokio::net::TcpListener {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.set_reuseport(true).unwrap();
        socket.bind(self.address).unwrap();
        socket.listen(1024).unwrap()
    }
}

/// A remote listening on `address` whose `f.work` waits `work` and answers
/// its argument; returns its URL and the sender that stops it.
async fn remote(
    address: &Address,
    work: Duration,
    running: Arc<AtomicUsize>,
) -> (
    String,
    tokio::sync::oneshot::Sender<()>,
    tokio::task::JoinHandle<()>,
) {
    let mut app = App::from_config(config("[server]\nport = 0\n")).unwrap();
    app.register_handler(
        "f.work",
        framex::registry::typed(move |args: Value| {
            let running = running.clone();
            async move {
                running.fetch_add(1, Ordering::SeqCst);
                tokio::time::sleep(work).await;
                Ok::<_, String>(args["n"].clone())
            }
        }),
    )
    .unwrap();
    serve_stoppable(
        app.isolated()
            .bind_listener(address.listen(), "remote")
            .await
            .unwrap(),
    )
}

/// An app that sends `f.work` to `remote` with a `timeout_secs` timeout and runs
/// `f.here` itself.
fn local(remote: &str, timeout_secs: u64) -> Arc<App> {
    let mut app = App::from_config(config(&format!(
        "load_builtin_plugins = [\"proxy\"]\n[server]\nenable_proxy = true\nport = 0\n\
         [plugins.proxy]\nproxy_urls = [\"{remote}\"]\ntimeout = {timeout_secs}\n\
         proxy_functions = {{ \"{remote}\" = [\"f.work\"] }}\n"
    )))
    .unwrap();
    app.register_handler(
        "f.here",
        framex::registry::typed(|_: Value| async { Ok::<_, String>("here") }),
    )
    .unwrap();
    Arc::new(app)
}

/// How a batch of calls ended.
#[derive(Debug, Default)]
struct Outcome {
    succeeded: usize,
    failed: usize,
    hung: usize,
}

/// Sends `count` calls of `f.work` at once; a call counts as hung when it has no
/// answer `patience` after it started.
async fn run(app: &Arc<App>, count: usize, patience: Duration) -> Outcome {
    let calls: Vec<_> = (0..count)
        .map(|n| {
            let app = app.clone();
            tokio::spawn(async move {
                tokio::time::timeout(patience, app.call("f.work", json!({"n": n}))).await
            })
        })
        .collect();
    let mut outcome = Outcome::default();
    for (n, call) in calls.into_iter().enumerate() {
        match call.await.unwrap() {
            Ok(Ok(value)) => {
                assert_eq!(value, json!(n), "call {n} got another call's result");
                outcome.succeeded += 1;
            }
            Ok(Err(error)) => {
                let framex::Error::Call(CallError::Remote(error)) = &error else {
                    panic!("call {n}: not a remote error: {error}");
                };
                assert!(
                    matches!(
                        error.kind(),
                        ErrorKind::Connect | ErrorKind::Interrupted | ErrorKind::Remote { .. }
                    ),
                    "call {n}: {error}"
                );
                outcome.failed += 1;
            }
            Err(_) => outcome.hung += 1,
        }
    }
    outcome
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_remote_that_stops_mid_run_and_returns_loses_and_hangs_nothing() {
    let running = Arc::new(AtomicUsize::new(0));
    let address = Address::new();
    let (url, stop, serving) = remote(&address, Duration::from_millis(20), running.clone()).await;
    let app = local(&url, 5);

    let load = {
        let app = app.clone();
        tokio::spawn(async move { run(&app, 300, Duration::from_secs(8)).await })
    };
    // Stop the remote once calls are running on it.
    while running.load(Ordering::SeqCst) < 20 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    stop.send(()).unwrap();
    serving.await.unwrap();
    let outcome = load.await.unwrap();
    assert_eq!(outcome.hung, 0, "{outcome:?}");
    assert_eq!(outcome.succeeded + outcome.failed, 300, "{outcome:?}");
    assert!(outcome.succeeded >= 20, "{outcome:?}");

    // The local instance keeps serving its own functions.
    assert_eq!(app.call("f.here", json!({})).await.unwrap(), json!("here"));
    // (Or interrupted, the resend unable to connect, on a kept-alive
    // connection whose close arrived late: see the shutdown test below.)
    let error = app.call("f.work", json!({"n": 0})).await.unwrap_err();
    assert!(error.to_string().contains("cannot connect"), "{error}");

    // The remote comes back on the same address: calls succeed again, with
    // nothing restarted here.
    let (_, _stop, _serving) = remote(&address, Duration::ZERO, running).await;
    let outcome = run(&app, 50, Duration::from_secs(8)).await;
    assert_eq!(
        (outcome.succeeded, outcome.failed, outcome.hung),
        (50, 0, 0)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_remote_times_out_at_the_configured_timeout() {
    let (url, _stop, _serving) = remote(
        &Address::new(),
        Duration::from_secs(30),
        Arc::new(AtomicUsize::new(0)),
    )
    .await;
    let app = local(&url, 1);
    let error = tokio::time::timeout(Duration::from_secs(10), app.call("f.work", json!({"n": 1})))
        .await
        .expect("the call ends at its timeout")
        .unwrap_err();
    let framex::Error::Call(CallError::Remote(error)) = &error else {
        panic!("not a remote error: {error}");
    };
    assert_eq!(
        error.kind(),
        &ErrorKind::Timeout {
            after: Duration::from_secs(1)
        }
    );
    assert_eq!(
        error.to_string(),
        format!("call to `f.work` on {url} timed out after 1 s")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_under_load_finishes_every_call_in_flight() {
    let running = Arc::new(AtomicUsize::new(0));
    let (url, stop, serving) =
        remote(&Address::new(), Duration::from_millis(300), running.clone()).await;
    let app = local(&url, 10);
    let load = {
        let app = app.clone();
        tokio::spawn(async move { run(&app, 200, Duration::from_secs(15)).await })
    };
    // Stop while all 200 calls are running on the remote.
    while running.load(Ordering::SeqCst) < 200 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    stop.send(()).unwrap();
    let outcome = load.await.unwrap();
    serving.await.unwrap();
    assert_eq!(
        (outcome.succeeded, outcome.failed, outcome.hung),
        (200, 0, 0),
        "every call in flight at shutdown finishes"
    );
    // And the stopped remote takes no new calls: the call cannot connect. When
    // the remote's close of a kept-alive connection reaches the client only
    // after the call took that connection (a loaded machine delays loopback
    // delivery), the call is interrupted and says that, sent again, it could
    // not connect.
    let error = app.call("f.work", json!({"n": 0})).await.unwrap_err();
    assert!(error.to_string().contains("cannot connect"), "{error}");
    assert_eq!(
        running.load(Ordering::SeqCst),
        200,
        "the stopped remote ran no new call"
    );
}
