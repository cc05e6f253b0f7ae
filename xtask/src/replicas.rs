//! The replica faults of `cargo xtask load`: three remote demo instances, `a`,
//! `b` and `c`, on one port of three loopback addresses of this run
//! (`127.X.Y.Z`, from the process id), behind the name
//! `reports.replicas.test`, which a DNS server this run serves answers with a
//! 1 s TTL. The local instance looks the name up there
//! (`plugins.proxy.nameservers`) and balances its calls over what it finds.
//!
//! - `kill-one`: `b` is killed (SIGKILL) a third of the way in; at most the
//!   calls in flight on it fail, and none after it died.
//! - `cut-one`: `c` serves inside a network namespace, and a third of the way
//!   in every packet into it is dropped (root only; skipped otherwise); calls
//!   keep succeeding on the others, and failures are few.
//! - `slow-one`: `c` answers 100 ms later than the others; it gets under a
//!   tenth of the calls.
//! - `dns-change`: DNS names `a` and `b`; a third of the way in `c` is added,
//!   two thirds of the way `a` is removed; `c` takes calls within the TTL plus
//!   1 s, `a` none once that has passed, and no call fails.
//! - `all-down`: every replica is killed a third of the way in; every call
//!   after fails fast with an error that names what it tried.
//! - `rolling-restart`: each replica in turn gets SIGTERM, exits and starts
//!   again; no call fails.

#[path = "../../tests/replicas/dns.rs"]
mod dns;
#[path = "../../tests/replicas/netns.rs"]
mod netns;

use std::net::Ipv4Addr;
use std::path::Path;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result, ensure};

use crate::instances::{Instance, spawn};
use crate::load::{Counts, Fault, Options, drive, local_config, remote_config};

const PORT: u16 = 18081;
const NAMES: [&str; 3] = ["a", "b", "c"];

/// The DNS server, on a thread of its own; `set` changes what `svc` names.
struct DnsThread {
    address: std::net::SocketAddr,
    set: tokio::sync::mpsc::UnboundedSender<(Vec<Ipv4Addr>, std::sync::mpsc::Sender<()>)>,
}

impl DnsThread {
    fn start() -> Result<DnsThread> {
        let (ready, is_ready) = std::sync::mpsc::channel();
        let (set, mut changes) =
            tokio::sync::mpsc::unbounded_channel::<(Vec<Ipv4Addr>, std::sync::mpsc::Sender<()>)>();
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a runtime for the DNS server");
            runtime.block_on(async move {
                let dns = dns::Dns::start().await;
                let _ = ready.send(dns.address);
                while let Some((addresses, done)) = changes.recv().await {
                    dns.set("reports", &addresses).await;
                    let _ = done.send(());
                }
            });
        });
        let address = is_ready
            .recv_timeout(Duration::from_secs(10))
            .context("the DNS server did not start")?;
        Ok(DnsThread { address, set })
    }

    /// `reports` names exactly `addresses` from now on.
    fn name(&self, addresses: &[Ipv4Addr]) -> Result<()> {
        let (done, is_done) = std::sync::mpsc::channel();
        self.set
            .send((addresses.to_vec(), done))
            .ok()
            .context("the DNS server stopped")?;
        is_done
            .recv_timeout(Duration::from_secs(5))
            .context("the DNS server did not answer")
    }
}

/// The replicas' loopback addresses: three of this process alone.
fn addresses() -> [Ipv4Addr; 3] {
    let pid = std::process::id();
    let (a, b) = (1 + (pid >> 16) % 254, (pid >> 8) & 0xff);
    let last = (pid & 0x3f) * 4;
    [1, 2, 3].map(|i| Ipv4Addr::new(127, a as u8, b as u8, (last + i) as u8))
}

/// The replicas as they run; `None` for one that is down.
type Replicas = Arc<Mutex<Vec<Option<Instance>>>>;

/// How to start replica `index` again.
#[derive(Clone)]
struct Starter {
    demo: std::path::PathBuf,
    configs: Vec<std::path::PathBuf>,
    /// The replica that serves in a namespace, and its path.
    namespaced: Option<(usize, String)>,
    slow: Option<usize>,
}

impl Starter {
    fn start(&self, index: usize) -> Result<Instance> {
        let mut command = match &self.namespaced {
            Some((namespaced, path)) if *namespaced == index => {
                let mut command = Command::new("nsenter");
                command.arg(format!("--net={path}")).arg(&self.demo);
                command
            }
            _ => Command::new(&self.demo),
        };
        command
            .arg("serve")
            .arg(&self.configs[index])
            .args(["--name", NAMES[index]]);
        if self.slow == Some(index) {
            command.env("FRAMEX_DEMO_REPORT_DELAY_MS", "100");
        }
        spawn(&mut command, NAMES[index], true)
    }
}

fn lock(replicas: &Replicas) -> Result<std::sync::MutexGuard<'_, Vec<Option<Instance>>>> {
    replicas.lock().map_err(|_| anyhow::anyhow!("lock"))
}

pub(crate) fn run(fault: Fault, demo: &Path, dir: &Path, options: &Options) -> Result<()> {
    let namespace = if fault == Fault::CutOne {
        match netns::Namespace::create() {
            Some(namespace) => Some(Arc::new(namespace)),
            None => {
                println!("skipped: cutting a replica off needs root, `ip`, `nft` and `nsenter`");
                return Ok(());
            }
        }
    } else {
        None
    };
    let mut ips = addresses();
    if let Some(namespace) = &namespace {
        ips[2] = namespace.address();
        println!("replica c serves in network namespace {}", namespace.name());
    }
    let configs = (0..3)
        .map(|i| remote_config(dir, NAMES[i], &format!("{}:{PORT}", ips[i])))
        .collect::<Result<Vec<_>>>()?;
    let starter = Starter {
        demo: demo.to_owned(),
        configs,
        namespaced: namespace.as_ref().map(|n| (2, n.path())),
        slow: (fault == Fault::SlowOne).then_some(2),
    };
    let replicas: Replicas = Arc::new(Mutex::new(
        (0..3)
            .map(|i| starter.start(i).map(Some))
            .collect::<Result<Vec<_>>>()?,
    ));
    // Shared with the fault thread; the server lives until the run is over.
    let dns = Arc::new(DnsThread::start()?);
    if fault == Fault::DnsChange {
        dns.name(&ips[..2])?;
    } else {
        dns.name(&ips)?;
    }
    let url = format!("http://{}:{PORT}", dns::host("reports"));
    let local_config = local_config(
        dir,
        &url,
        &format!("connect_timeout = 1\nnameservers = [\"{}\"]\n", dns.address),
    )?;
    let local = crate::instances::start(demo, &local_config, "local")?;
    println!(
        "sending {} calls from {} threads to {} (remote {url}: {})",
        options.calls,
        options.concurrency,
        local.url,
        ips.map(|ip| ip.to_string()).join(", ")
    );

    let calls = options.calls;
    let ttl = Duration::from_secs(dns::TTL_SECS.into());
    // When the fault took effect, for the checks below.
    let marks: Arc<Mutex<Vec<Duration>>> = Arc::default();
    let run = {
        let (replicas, marks, starter) = (replicas.clone(), marks.clone(), starter.clone());
        let dns = dns.clone();
        let namespace = namespace.clone();
        // Long enough for a TTL, a connect timeout and an ejection to play out.
        let spread = matches!(fault, Fault::DnsChange | Fault::CutOne | Fault::SlowOne)
            .then_some(Duration::from_secs(6));
        drive(&local.url, options, spread, move |counts, started| {
            let mark = |marks: &Mutex<Vec<Duration>>| {
                if let Ok(mut marks) = marks.lock() {
                    marks.push(started.elapsed());
                }
            };
            match fault {
                Fault::KillOne => {
                    counts.wait_answered(calls / 3, started)?;
                    mark(&marks);
                    if let Some(b) = lock(&replicas)?[1].as_mut() {
                        b.kill()?;
                    }
                    Ok(format!("b killed at {:.2} s", marks_at(&marks, 0)))
                }
                Fault::CutOne => {
                    counts.wait_answered(calls / 3, started)?;
                    mark(&marks);
                    let namespace = namespace.context("cut-one has a namespace")?;
                    namespace.cut().map_err(anyhow::Error::msg)?;
                    Ok(format!("c cut off at {:.2} s", marks_at(&marks, 0)))
                }
                Fault::SlowOne => Ok("c answers 100 ms later than a and b throughout".to_owned()),
                Fault::DnsChange => {
                    counts.wait_answered(calls / 3, started)?;
                    mark(&marks);
                    dns.name(&ips)?;
                    counts.wait_answered(calls * 2 / 3, started)?;
                    mark(&marks);
                    dns.name(&ips[1..])?;
                    Ok(format!(
                        "c added to DNS at {:.2} s, a removed at {:.2} s",
                        marks_at(&marks, 0),
                        marks_at(&marks, 1)
                    ))
                }
                Fault::AllDown => {
                    counts.wait_answered(calls / 3, started)?;
                    mark(&marks);
                    for replica in lock(&replicas)?.iter_mut().flatten() {
                        replica.kill()?;
                    }
                    Ok(format!(
                        "every replica killed at {:.2} s",
                        marks_at(&marks, 0)
                    ))
                }
                Fault::RollingRestart => {
                    counts.wait_answered(calls / 4, started)?;
                    for index in 0..3 {
                        mark(&marks);
                        let stopped = lock(&replicas)?[index].take();
                        if let Some(mut replica) = stopped {
                            replica.terminate(Duration::from_secs(15))?;
                        }
                        let again = starter.start(index)?;
                        lock(&replicas)?[index] = Some(again);
                        // Back in the set before the next one goes.
                        std::thread::sleep(Duration::from_millis(1500));
                    }
                    Ok("a, b and c restarted in turn (SIGTERM, exit, start)".to_owned())
                }
                Fault::Restart => unreachable!("not a replica fault"),
            }
        })?
    };
    crate::load::print_endpoints(&local.url);
    drop(local);
    drop(replicas);
    run.report(options)?;

    let counts = &run.counts;
    let marks = marks.lock().map(|m| m.clone()).unwrap_or_default();
    let answers_of = |instance: &str, from: Duration, to: Duration| {
        counts
            .answered_by(from, to)
            .into_iter()
            .find(|(name, _)| name == instance)
            .map_or(0, |(_, count)| count)
    };
    let failed = Counts::get(&counts.failed_clear);
    match fault {
        Fault::KillOne | Fault::CutOne => {
            let lost_one = if fault == Fault::KillOne { "b" } else { "c" };
            // At most what was in flight on it (and, cut off, what took a
            // connection to it before it was left out).
            ensure!(
                failed <= options.concurrency,
                "{failed} calls failed, more than the {} that can be in flight",
                options.concurrency
            );
            let settled = marks[0] + Duration::from_secs(2);
            ensure!(
                answers_of(lost_one, settled, Duration::MAX) == 0,
                "{lost_one} answered calls after it was gone"
            );
            ensure!(
                Counts::get(&counts.succeeded_after_fault) > 0,
                "no call succeeded after the fault"
            );
        }
        Fault::SlowOne => {
            let (by_c, all) = (
                answers_of("c", Duration::ZERO, Duration::MAX),
                Counts::get(&counts.succeeded),
            );
            println!("  the slow replica answered {by_c} of {all}");
            ensure!(failed == 0, "calls failed");
            ensure!(
                by_c * 10 < all,
                "c answered {by_c} of {all}: not under a tenth"
            );
        }
        Fault::DnsChange => {
            ensure!(failed == 0, "calls failed");
            let first_c = counts
                .answers
                .lock()
                .map(|answers| {
                    answers
                        .iter()
                        .filter(|(_, instance)| instance == "c")
                        .map(|(at, _)| *at)
                        .min()
                })
                .ok()
                .flatten()
                .context("c answered no call after it was added")?;
            let took = first_c.saturating_sub(marks[0]);
            println!(
                "  c answered its first call {:.2} s after it was added",
                took.as_secs_f64()
            );
            ensure!(
                took <= ttl + Duration::from_secs(1),
                "c took {took:?} to be called"
            );
            let after = marks[1] + ttl + Duration::from_secs(1);
            ensure!(
                answers_of("a", after, Duration::MAX) == 0,
                "a answered calls after its TTL had passed"
            );
        }
        Fault::AllDown => {
            ensure!(failed > 0, "no call failed with every replica down");
        }
        Fault::RollingRestart => {
            ensure!(
                failed == 0,
                "{failed} calls failed during the rolling restart"
            );
        }
        Fault::Restart => {}
    }
    drop(namespace);
    Ok(())
}

/// When the fault's `index`th step took effect, in seconds into the run.
pub(crate) fn marks_at(marks: &Mutex<Vec<Duration>>, index: usize) -> f64 {
    marks
        .lock()
        .ok()
        .and_then(|marks| marks.get(index).copied())
        .unwrap_or_default()
        .as_secs_f64()
}
