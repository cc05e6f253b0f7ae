//! Replicas: one upstream name in DNS (a hickory server run by the test) for
//! three FrameX instances on 127.0.0.2, .3 and .4, called under load while
//! replicas are killed, restarted, slowed, added, removed and cut off. Every
//! call ends with a result or a clear error; none hangs; none runs twice.

mod dns;
mod netns;

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use framex::App;
use framex::registry::CallError;
use framex::transport::ErrorKind;
use serde_json::{Value, json};

use crate::support::config;
use dns::Dns;

/// What a replica counts.
#[derive(Debug, Default)]
pub(crate) struct Stats {
    pub(crate) started: AtomicUsize,
    pub(crate) finished: AtomicUsize,
    /// How long `r.work` takes here, in milliseconds.
    pub(crate) delay_ms: AtomicU64,
}

impl Stats {
    fn in_flight(&self) -> usize {
        self.started.load(Ordering::SeqCst) - self.finished.load(Ordering::SeqCst)
    }
}

/// The app of a replica named `name`: `r.work` waits the replica's delay and
/// answers the call's `n` and the replica's name.
pub(crate) fn replica_app(name: &'static str, stats: Arc<Stats>) -> App {
    let mut app = App::from_config(config("[server]\nport = 0\nshutdown_grace = 10\n")).unwrap();
    app.register_handler(
        "r.work",
        framex::registry::typed(move |args: Value| {
            let stats = stats.clone();
            async move {
                stats.started.fetch_add(1, Ordering::SeqCst);
                let delay = stats.delay_ms.load(Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(delay)).await;
                stats.finished.fetch_add(1, Ordering::SeqCst);
                Ok::<_, String>(json!({ "n": args["n"], "replica": name }))
            }
        }),
    )
    .unwrap();
    app
}

/// One replica on its own loopback address. The port stays the test's while
/// the replica stops and starts: a socket that never listens holds it
/// (`SO_REUSEPORT`), so a connection to a stopped replica is refused.
struct Replica {
    name: &'static str,
    address: SocketAddr,
    _holder: tokio::net::TcpSocket,
    stats: Arc<Stats>,
    running: Option<(
        tokio::sync::oneshot::Sender<()>,
        tokio::task::JoinHandle<()>,
    )>,
}

impl Replica {
    fn new(name: &'static str, ip: Ipv4Addr, port: u16) -> std::io::Result<Replica> {
        let holder = tokio::net::TcpSocket::new_v4()?;
        holder.set_reuseport(true)?;
        holder.bind(SocketAddr::new(ip.into(), port))?;
        let address = holder.local_addr()?;
        Ok(Replica {
            name,
            address,
            _holder: holder,
            stats: Arc::new(Stats {
                delay_ms: AtomicU64::new(10),
                ..Stats::default()
            }),
            running: None,
        })
    }

    fn ip(&self) -> Ipv4Addr {
        match self.address.ip() {
            std::net::IpAddr::V4(ip) => ip,
            std::net::IpAddr::V6(_) => unreachable!("replicas are on IPv4"),
        }
    }

    async fn start(&mut self) {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.set_reuseport(true).unwrap();
        socket.bind(self.address).unwrap();
        let listener = socket.listen(1024).unwrap();
        let bound = replica_app(self.name, self.stats.clone())
            .isolated()
            .bind_listener(listener, self.name)
            .await
            .unwrap();
        let (_, stop, serving) = crate::support::serve_stoppable(bound);
        self.running = Some((stop, serving));
    }

    /// Shuts down gracefully, as on SIGTERM, and waits until it has.
    async fn stop(&mut self) {
        let (stop, serving) = self.running.take().expect("the replica runs");
        let _ = stop.send(());
        serving.await.unwrap();
    }

    /// Ends at once, as a killed process: its connections close mid-call.
    /// Returns once nothing of it reads a request any more.
    async fn kill(&mut self) {
        let (_, serving) = self.running.take().expect("the replica runs");
        serving.abort();
        let _ = serving.await;
    }
}

/// Three replicas on one port of 127.0.0.2, .3 and .4, all running, and a
/// DNS server on which `svc` names them.
struct Cluster {
    dns: Dns,
    replicas: Vec<Replica>,
    port: u16,
}

impl Cluster {
    async fn start() -> Cluster {
        let dns = Dns::start().await;
        // A port free on all three addresses.
        let replicas = loop {
            let first = Replica::new("a", Ipv4Addr::new(127, 0, 0, 2), 0).unwrap();
            let port = first.address.port();
            let others = [("b", 3), ("c", 4)]
                .into_iter()
                .map(|(name, last)| Replica::new(name, Ipv4Addr::new(127, 0, 0, last), port))
                .collect::<std::io::Result<Vec<_>>>();
            if let Ok(others) = others {
                let mut replicas = vec![first];
                replicas.extend(others);
                break replicas;
            }
        };
        let port = replicas[0].address.port();
        let mut cluster = Cluster {
            dns,
            replicas,
            port,
        };
        for replica in &mut cluster.replicas {
            replica.start().await;
        }
        let all: Vec<Ipv4Addr> = cluster.replicas.iter().map(Replica::ip).collect();
        cluster.dns.set("svc", &all).await;
        cluster
    }

    fn url(&self) -> String {
        format!("http://{}:{}", dns::host("svc"), self.port)
    }

    /// The calling app: `r.work` goes to `svc`, resolved on the test's DNS.
    fn caller(&self, extra: &str) -> Arc<App> {
        caller(&self.url(), self.dns.address, extra)
    }
}

/// An app that sends `r.work` to `url`, looking names up on `dns`.
fn caller(url: &str, dns: SocketAddr, extra: &str) -> Arc<App> {
    Arc::new(caller_app(url, dns, extra))
}

fn caller_app(url: &str, dns: SocketAddr, extra: &str) -> App {
    App::from_config(config(&format!(
        "load_builtin_plugins = [\"proxy\"]\n[server]\nenable_proxy = true\nport = 0\n\
         [plugins.proxy]\nproxy_urls = [\"{url}\"]\ntimeout = 5\nconnect_timeout = 1\n\
         nameservers = [\"{dns}\"]\n\
         proxy_functions = {{ \"{url}\" = [\"r.work\"] }}\n{extra}"
    )))
    .unwrap()
}

/// How one call of a load ended.
#[derive(Debug)]
enum Ended {
    By(&'static str),
    Failed(framex::transport::Error),
    Hung,
}

/// One call of a load: when it started, relative to the load's start.
#[derive(Debug)]
struct Call {
    at: Duration,
    ended: Ended,
}

/// What a load did.
#[derive(Debug, Default)]
struct Tally {
    calls: Vec<Call>,
}

impl Tally {
    fn succeeded(&self) -> usize {
        self.calls
            .iter()
            .filter(|c| matches!(c.ended, Ended::By(_)))
            .count()
    }

    fn failures(&self) -> Vec<&framex::transport::Error> {
        self.calls
            .iter()
            .filter_map(|c| match &c.ended {
                Ended::Failed(error) => Some(error),
                _ => None,
            })
            .collect()
    }

    fn hung(&self) -> usize {
        self.calls
            .iter()
            .filter(|c| matches!(c.ended, Ended::Hung))
            .count()
    }

    /// How many calls started in `from..to` each replica ran.
    fn share(&self, replica: &str, from: Duration, to: Duration) -> (usize, usize) {
        let window: Vec<&Call> = self
            .calls
            .iter()
            .filter(|c| c.at >= from && c.at < to)
            .collect();
        let by = window
            .iter()
            .filter(|c| matches!(c.ended, Ended::By(name) if name == replica))
            .count();
        (by, window.len())
    }
}

/// A load running: when it started, and its tally when it ends.
struct Load {
    started: Instant,
    tally: tokio::task::JoinHandle<Tally>,
}

impl Load {
    async fn end(self) -> Tally {
        self.tally.await.unwrap()
    }
}

/// Runs `workers` callers of `r.work` for `duration`, each call after the
/// last; a call with no answer after 10 s counts as hung.
fn load(app: &Arc<App>, workers: usize, duration: Duration) -> Load {
    let app = app.clone();
    let started = Instant::now();
    let tally = tokio::spawn(async move {
        let next = Arc::new(AtomicUsize::new(0));
        let tasks: Vec<_> = (0..workers)
            .map(|_| {
                let (app, next) = (app.clone(), next.clone());
                tokio::spawn(async move {
                    let mut calls = Vec::new();
                    while started.elapsed() < duration {
                        let n = next.fetch_add(1, Ordering::SeqCst);
                        let at = started.elapsed();
                        let call = app.call("r.work", json!({ "n": n }));
                        let ended = match tokio::time::timeout(Duration::from_secs(10), call).await
                        {
                            Ok(Ok(value)) => {
                                assert_eq!(value["n"], json!(n), "call {n} got another's result");
                                let name = match value["replica"].as_str() {
                                    Some("a") => "a",
                                    Some("b") => "b",
                                    Some("c") => "c",
                                    other => panic!("call {n} answered by {other:?}"),
                                };
                                Ended::By(name)
                            }
                            Ok(Err(framex::Error::Call(CallError::Remote(error)))) => {
                                Ended::Failed(error)
                            }
                            Ok(Err(other)) => panic!("call {n}: not a remote error: {other}"),
                            Err(_) => Ended::Hung,
                        };
                        calls.push(Call { at, ended });
                    }
                    calls
                })
            })
            .collect();
        let mut tally = Tally::default();
        for task in tasks {
            tally.calls.extend(task.await.unwrap());
        }
        tally
    });
    Load { started, tally }
}

async fn until(what: &str, within: Duration, test: impl Fn() -> bool) -> Duration {
    let started = Instant::now();
    while !test() {
        assert!(started.elapsed() < within, "not within {within:?}: {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    started.elapsed()
}

fn started(replica: &Replica) -> usize {
    replica.stats.started.load(Ordering::SeqCst)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_one_of_three_fails_only_its_calls_in_flight() {
    let mut cluster = Cluster::start().await;
    let app = cluster.caller("");
    let running = load(&app, 8, Duration::from_secs(3));
    until("every replica takes calls", Duration::from_secs(5), || {
        cluster.replicas.iter().all(|r| started(r) > 10)
    })
    .await;
    let b = &cluster.replicas[1];
    let finished_before = b.stats.finished.load(Ordering::SeqCst);
    let b_address = b.address;
    // What the caller has sent to `b` and not had answered: calls on their
    // way to it that it has not yet read die with it too.
    let sent_to_b = app.registry().client().upstreams()[0]
        .endpoints
        .iter()
        .find(|endpoint| endpoint.address == b_address)
        .map_or(0, |endpoint| endpoint.in_flight);
    cluster.replicas[1].kill().await;
    // A handler spawned for a request read before the kill starts soon after.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let started_after = started(&cluster.replicas[1]);
    let tally = running.end().await;

    assert_eq!(tally.hung(), 0);
    let failures = tally.failures();
    // At most the calls that were on `b` when it died fail (running there,
    // or sent and not yet read), each saying the connection to it broke
    // during the call.
    let in_flight = (started_after - finished_before).max(sent_to_b);
    assert!(
        failures.len() <= in_flight,
        "{} failed, {in_flight} were in flight on b: {failures:?}",
        failures.len()
    );
    for error in &failures {
        assert_eq!(error.kind(), &ErrorKind::Interrupted, "{error}");
        assert!(
            error.to_string().contains(&b_address.to_string()),
            "{error}"
        );
    }
    // No call ran twice: every call that succeeded ran once, and one that
    // failed at most once.
    let ran: usize = cluster.replicas.iter().map(started).sum();
    assert!(
        (tally.succeeded()..=tally.succeeded() + failures.len()).contains(&ran),
        "{ran} ran, {} succeeded, {} failed",
        tally.succeeded(),
        failures.len()
    );
    // The others took the calls after it.
    let late = tally
        .calls
        .iter()
        .filter(|c| c.at > Duration::from_millis(2500))
        .count();
    assert!(late > 0);
    assert_eq!(
        tally
            .share("b", Duration::from_millis(2500), Duration::MAX)
            .0,
        0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rolling_restart_of_all_three_under_load_fails_no_call() {
    let mut cluster = Cluster::start().await;
    let app = cluster.caller("");
    let running = load(&app, 8, Duration::from_secs(9));
    tokio::time::sleep(Duration::from_millis(500)).await;
    for index in 0..3 {
        cluster.replicas[index].stop().await;
        tokio::time::sleep(Duration::from_millis(200)).await;
        cluster.replicas[index].start().await;
        // Back in the set before the next one goes.
        let before = started(&cluster.replicas[index]);
        until(
            "the restarted replica takes calls",
            Duration::from_secs(5),
            || started(&cluster.replicas[index]) > before,
        )
        .await;
    }
    let tally = running.end().await;
    assert_eq!(tally.hung(), 0);
    assert_eq!(tally.failures().len(), 0, "{:?}", tally.failures());
    assert!(tally.succeeded() > 100, "{}", tally.succeeded());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_100_ms_slower_gets_under_a_tenth_of_the_calls() {
    let cluster = Cluster::start().await;
    let app = cluster.caller("");
    let running = load(&app, 8, Duration::from_secs(5));
    tokio::time::sleep(Duration::from_secs(1)).await;
    let c = &cluster.replicas[2];
    c.stats.delay_ms.fetch_add(100, Ordering::SeqCst);
    let tally = running.end().await;
    assert_eq!(tally.failures().len() + tally.hung(), 0);
    // From two seconds after it became slow.
    let (by_c, all) = tally.share("c", Duration::from_secs(3), Duration::MAX);
    assert!(all > 100, "{all}");
    assert!(by_c * 10 < all, "c ran {by_c} of {all}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_added_to_and_removed_from_dns_take_and_stop_taking_calls() {
    let cluster = Cluster::start().await;
    let [a, b, c] = [0, 1, 2].map(|i| cluster.replicas[i].ip());
    cluster.dns.set("svc", &[a, b]).await;
    let app = cluster.caller("");
    let running = load(&app, 6, Duration::from_secs(7));
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let replica_c = &cluster.replicas[2];
    // Only calls that started before it was in DNS reached nothing of it.
    assert_eq!(started(replica_c), 0);
    cluster.dns.set("svc", &[a, b, c]).await;
    let ttl = Duration::from_secs(dns::TTL_SECS.into());
    let took = until("the added replica takes calls", ttl * 3, || {
        started(replica_c) > 0
    })
    .await;
    assert!(took <= ttl + Duration::from_secs(1), "{took:?}");

    cluster.dns.set("svc", &[b, c]).await;
    let replica_a = &cluster.replicas[0];
    tokio::time::sleep(ttl + Duration::from_secs(1)).await;
    let after_ttl = started(replica_a);
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(started(replica_a), after_ttl, "a still takes calls");
    let tally = running.end().await;
    assert_eq!(tally.hung(), 0);
    assert_eq!(tally.failures().len(), 0, "{:?}", tally.failures());
    assert!(replica_a.stats.in_flight() == 0);

    // `/health` lists the endpoints and their state.
    let upstreams = app.registry().client().upstreams();
    let endpoints: Vec<SocketAddr> = upstreams[0].endpoints.iter().map(|e| e.address).collect();
    assert_eq!(
        endpoints,
        [cluster.replicas[1].address, cluster.replicas[2].address]
    );
}

/// Docker's DNS answers with a 600 s TTL. The name is looked up again after
/// `dns_ttl_ceiling` all the same, and the resolver's cache does not hand the
/// old answer back: a replica added is called within the ceiling.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_ttl_is_looked_at_again_after_the_ceiling() {
    let cluster = Cluster::start().await;
    let [a, b] = [0, 1].map(|i| cluster.replicas[i].ip());
    cluster.dns.set_with_ttl("svc", &[a], 600).await;
    let app = cluster.caller("dns_ttl_ceiling = 1\n");
    let running = load(&app, 4, Duration::from_secs(5));
    // Looked up, and the 600 s answer cached.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(started(&cluster.replicas[1]), 0);
    cluster.dns.set_with_ttl("svc", &[a, b], 600).await;
    let took = until(
        "the added replica takes calls",
        Duration::from_secs(4),
        || started(&cluster.replicas[1]) > 0,
    )
    .await;
    assert!(took <= Duration::from_secs(2), "{took:?}");
    let tally = running.end().await;
    assert_eq!(tally.hung(), 0);
    assert_eq!(tally.failures().len(), 0, "{:?}", tally.failures());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_every_replica_down_a_call_fails_in_time_naming_what_it_tried() {
    let mut cluster = Cluster::start().await;
    let app = cluster.caller("");
    for n in 0..10 {
        app.call("r.work", json!({ "n": n })).await.unwrap();
    }
    for replica in &mut cluster.replicas {
        replica.kill().await;
    }
    // A call sent once they have died (not one racing their last moment, which
    // may have reached a handler and fails as interrupted).
    tokio::time::sleep(Duration::from_millis(100)).await;
    let started = Instant::now();
    let error = tokio::time::timeout(Duration::from_secs(6), app.call("r.work", json!({"n": 0})))
        .await
        .expect("the call ends within its timeout")
        .unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(5));
    let framex::Error::Call(CallError::Remote(error)) = error else {
        panic!("not a remote error: {error}");
    };
    assert_eq!(error.kind(), &ErrorKind::Connect, "{error}");
    let message = error.to_string();
    assert!(message.contains(&cluster.url()), "{message}");
    let named = cluster
        .replicas
        .iter()
        .filter(|r| message.contains(&r.address.to_string()))
        .count();
    assert!(named >= 2, "{message}");
    assert!(message.contains("refused"), "{message}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cut_off_replica_costs_the_connect_timeout_once() {
    let Some(namespace) = netns::Namespace::create() else {
        eprintln!("skipped: cutting a replica off needs root, `ip`, `nft` and `nsenter`");
        return;
    };
    let cluster = Cluster::start().await;
    let cut_stats = Arc::new(Stats {
        delay_ms: AtomicU64::new(10),
        ..Stats::default()
    });
    let remote = serve_in(
        &namespace,
        replica_app("c", cut_stats.clone()),
        cluster.port,
    );
    let [a, b] = [0, 1].map(|i| cluster.replicas[i].ip());
    cluster.dns.set("svc", &[a, b, namespace.address()]).await;
    let app = cluster.caller("");
    let running = load(&app, 8, Duration::from_secs(6));
    until(
        "the namespaced replica takes calls",
        Duration::from_secs(5),
        || cut_stats.started.load(Ordering::SeqCst) > 10,
    )
    .await;
    let cut_at = running.started.elapsed();
    namespace.cut().unwrap();
    let tally = running.end().await;
    drop(remote);
    assert_eq!(tally.hung(), 0);
    // Calls that started once the connect timeout (1 s) had passed, plus a
    // margin, all succeeded, on the others.
    let settled = cut_at + Duration::from_millis(1500);
    for call in tally.calls.iter().filter(|c| c.at >= settled) {
        assert!(
            matches!(call.ended, Ended::By("a" | "b")),
            "{call:?} (c is in namespace {})",
            namespace.name()
        );
    }
    // What failed was on the cut replica, and said so.
    for error in tally.failures() {
        assert!(
            error.to_string().contains(&namespace.address().to_string()),
            "{error}"
        );
    }
    let (late, all) = tally.share("a", settled, Duration::MAX);
    assert!(late > 0 && all > 50, "{late} of {all}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_and_metrics_show_each_endpoint_and_its_state() {
    let mut cluster = Cluster::start().await;
    let relay =
        crate::support::start(caller_app(&cluster.url(), cluster.dns.address, ""), "relay").await;
    let client = framex::transport::Client::default();
    for n in 0..30 {
        client
            .call(&relay, None, "r.work", &json!({ "n": n }))
            .await
            .unwrap();
    }
    cluster.replicas[0].kill().await;
    // Once its connections have closed (a call racing its last moment may
    // have reached it, and fails as interrupted), calls that meet the dead
    // replica go to the others.
    tokio::time::sleep(Duration::from_millis(100)).await;
    for n in 0..30 {
        client
            .call(&relay, None, "r.work", &json!({ "n": n }))
            .await
            .unwrap();
    }

    let (status, health) = crate::support::get(&relay, "/health").await;
    assert_eq!(status, 200);
    let health: Value = serde_json::from_str(&health).unwrap();
    let endpoints = health["endpoints"][cluster.url()]["endpoints"]
        .as_array()
        .unwrap_or_else(|| panic!("{health}"));
    assert_eq!(endpoints.len(), 3, "{health}");
    for (endpoint, replica) in endpoints.iter().zip(&cluster.replicas) {
        assert_eq!(endpoint["address"], replica.address.to_string(), "{health}");
        assert!(endpoint["requests"].as_u64().unwrap() > 0, "{health}");
    }
    assert_eq!(endpoints[0]["state"], "ejected", "{health}");
    assert!(
        endpoints[0]["ejected_for_ms"].as_u64().unwrap() > 0,
        "{health}"
    );
    let why = endpoints[0]["last_error"].as_str().unwrap();
    assert!(why.contains("refused"), "{why}");
    for endpoint in &endpoints[1..] {
        assert_eq!(endpoint["state"], "healthy", "{health}");
        assert_eq!(endpoint["failures"], 0, "{health}");
        assert!(
            endpoint["latency_ewma_ms"].as_f64().unwrap() > 0.0,
            "{health}"
        );
    }

    let (_, metrics) = crate::support::get(&relay, "/metrics").await;
    let series = |name: &str, replica: &Replica| {
        format!(
            "{name}{{upstream=\"{}\",endpoint=\"{}\"}}",
            cluster.url(),
            replica.address
        )
    };
    for replica in &cluster.replicas {
        let requests = series("framex_upstream_endpoint_requests_total", replica);
        assert!(metrics.contains(&requests), "{requests} not in\n{metrics}");
    }
    let ejected = format!(
        "{} 1",
        series("framex_upstream_endpoint_ejected", &cluster.replicas[0])
    );
    assert!(metrics.contains(&ejected), "{ejected} not in\n{metrics}");
    let healthy = format!(
        "{} 0",
        series("framex_upstream_endpoint_ejected", &cluster.replicas[1])
    );
    assert!(metrics.contains(&healthy), "{healthy} not in\n{metrics}");
}

/// Serves `app` on `port` inside `namespace`, on a thread of its own (a
/// socket belongs to the namespace of the thread that opens it), until the
/// returned guard is dropped.
fn serve_in(namespace: &netns::Namespace, app: App, port: u16) -> Serving {
    let path = namespace.path();
    let address = SocketAddr::new(namespace.address().into(), port);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let (ready, is_ready) = std::sync::mpsc::channel();
    let thread = std::thread::spawn(move || {
        let file = std::fs::File::open(&path).expect("the namespace exists");
        rustix::thread::move_into_link_name_space(
            std::os::fd::AsFd::as_fd(&file),
            Some(rustix::thread::LinkNameSpaceType::Network),
        )
        .expect("entering the namespace");
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async move {
            let listener = tokio::net::TcpListener::bind(address).await.unwrap();
            let bound = app.isolated().bind_listener(listener, "c").await.unwrap();
            ready.send(()).unwrap();
            // Dropped, not shut down: its connections are cut by then.
            tokio::select! {
                () = bound.serve_until(std::future::pending()) => {}
                _ = stopped => {}
            }
        });
    });
    is_ready.recv().expect("the namespaced replica started");
    Serving {
        stop: Some(stop),
        thread: Some(thread),
    }
}

/// A replica serving in a namespace; dropping it stops it.
struct Serving {
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for Serving {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
