//! `cargo xtask load [--calls N] [--concurrency C] [--fault F]...`: bounded
//! load runs with a fault each, on loopback (and, for `cut-one`, a network
//! namespace the run makes) only.
//!
//! Each run sends `N` calls (default 3000) from `C` threads (default 32) to a
//! local demo instance's `GET /api/v1/report`, whose `your_module.build_report`
//! runs on a remote (5 s timeout). The faults (`--fault all` runs each):
//!
//! - `restart` (the default): one remote, killed (SIGKILL, as a crash) when a
//!   third of the calls have answered and started again on the same address;
//! - the rest have three replicas behind one name on a DNS server the run
//!   serves (see `replicas.rs`): `kill-one`, `cut-one`, `slow-one`,
//!   `dns-change`, `all-down`, `rolling-restart`.
//!
//! Each call ends in one of: succeeded (its own report came back), failed with a
//! clear error (502 or 504 naming the problem), failed without one (anything
//! else), hung (no answer within the timeout plus 5 s), or lost (sent and never
//! counted). A run fails unless hung, lost and unclear failures are 0 and what
//! its fault promises held. Each run stops by itself after at most two minutes.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use serde_json::Value;

use crate::instances::{Instance, build_framex, in_work_dir, start, write};

const KEY: &str = "proxy-key";
/// `plugins.proxy.timeout` of the local instance, in seconds.
const TIMEOUT_SECS: u64 = 5;
/// Past this, a call without an answer counts as hung.
const PATIENCE: Duration = Duration::from_secs(TIMEOUT_SECS + 5);
/// The longest the run may take.
const RUN_LIMIT: Duration = Duration::from_secs(120);

/// A fault a run injects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Fault {
    Restart,
    KillOne,
    CutOne,
    SlowOne,
    DnsChange,
    AllDown,
    RollingRestart,
}

impl Fault {
    const ALL: [Fault; 7] = [
        Fault::Restart,
        Fault::KillOne,
        Fault::CutOne,
        Fault::SlowOne,
        Fault::DnsChange,
        Fault::AllDown,
        Fault::RollingRestart,
    ];

    pub(crate) fn name(self) -> &'static str {
        match self {
            Fault::Restart => "restart",
            Fault::KillOne => "kill-one",
            Fault::CutOne => "cut-one",
            Fault::SlowOne => "slow-one",
            Fault::DnsChange => "dns-change",
            Fault::AllDown => "all-down",
            Fault::RollingRestart => "rolling-restart",
        }
    }
}

/// What the command line asks for.
pub(crate) struct Options {
    pub(crate) calls: usize,
    pub(crate) concurrency: usize,
    faults: Vec<Fault>,
}

impl Options {
    /// `calls` calls from `concurrency` threads, for a caller that injects
    /// its own fault (the container scenarios).
    #[cfg_attr(not(feature = "containers"), allow(dead_code))]
    pub(crate) fn new(calls: usize, concurrency: usize) -> Options {
        Options {
            calls,
            concurrency,
            faults: Vec::new(),
        }
    }

    pub(crate) fn parse(args: impl Iterator<Item = String>) -> Result<Options> {
        let mut options = Options {
            calls: 3000,
            concurrency: 32,
            faults: Vec::new(),
        };
        let mut args = args;
        while let Some(arg) = args.next() {
            match arg.as_str() {
                "--calls" => options.calls = positive("--calls", args.next())?.min(100_000),
                "--concurrency" => {
                    options.concurrency = positive("--concurrency", args.next())?.min(256);
                }
                "--fault" => {
                    let name = args.next().context("--fault needs a fault")?;
                    match name.as_str() {
                        "all" => options.faults.extend(Fault::ALL),
                        name => {
                            let fault = Fault::ALL.into_iter().find(|f| f.name() == name);
                            let names: Vec<&str> = Fault::ALL.iter().map(|f| f.name()).collect();
                            options.faults.push(fault.with_context(|| {
                                format!(
                                    "unknown fault `{name}`: one of {}, or all",
                                    names.join(", ")
                                )
                            })?);
                        }
                    }
                }
                other => {
                    bail!("unknown option `{other}`: use --calls N, --concurrency C and --fault F")
                }
            }
        }
        if options.faults.is_empty() {
            options.faults.push(Fault::Restart);
        }
        Ok(options)
    }
}

/// The number option `name` takes: `value`, a whole number above 0.
pub(crate) fn positive(name: &str, value: Option<String>) -> Result<usize> {
    let value = value.with_context(|| format!("{name} needs a number"))?;
    let number: usize = value
        .parse()
        .with_context(|| format!("{name} needs a number, not `{value}`"))?;
    ensure!(number > 0, "{name} must be above 0");
    Ok(number)
}

/// How the calls ended, counted as they end.
#[derive(Default)]
pub(crate) struct Counts {
    pub(crate) succeeded: AtomicUsize,
    /// Calls that succeeded once the fault thread said the fault was over.
    pub(crate) succeeded_after_fault: AtomicUsize,
    /// The longest a call that succeeded took, in microseconds, among those
    /// sent once the fault had begun (its thread had marked it): what the
    /// fault cost the calls that got through.
    pub(crate) slowest_after_fault_us: AtomicU64,
    /// Set by the fault thread when the fault begins.
    pub(crate) fault_began: AtomicBool,
    pub(crate) failed_clear: AtomicUsize,
    failed_unclear: AtomicUsize,
    hung: AtomicUsize,
    pub(crate) answered: AtomicUsize,
    /// The first few distinct clear errors, to show what callers read.
    examples: Mutex<Vec<String>>,
    /// When each successful call was answered, and by which instance.
    pub(crate) answers: Mutex<Vec<(Duration, String)>>,
}

impl Counts {
    /// Waits until `count` calls have answered, within the run's limit.
    pub(crate) fn wait_answered(&self, count: usize, started: Instant) -> Result<()> {
        while self.answered.load(Ordering::SeqCst) < count {
            ensure!(
                started.elapsed() < RUN_LIMIT,
                "the run never reached {count} answers"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        Ok(())
    }

    /// The instances that answered calls answered in `from..to`, with how many.
    pub(crate) fn answered_by(&self, from: Duration, to: Duration) -> Vec<(String, usize)> {
        let answers = self.answers.lock().map(|a| a.clone()).unwrap_or_default();
        let mut by: Vec<(String, usize)> = Vec::new();
        for (at, instance) in answers {
            if at < from || at >= to {
                continue;
            }
            match by.iter_mut().find(|(name, _)| *name == instance) {
                Some((_, count)) => *count += 1,
                None => by.push((instance, 1)),
            }
        }
        by.sort();
        by
    }

    pub(crate) fn get(count: &AtomicUsize) -> usize {
        count.load(Ordering::SeqCst)
    }
}

pub(crate) fn run(options: &Options) -> Result<()> {
    let demo = build_framex()?;
    in_work_dir(|dir| {
        let mut failed = Vec::new();
        for &fault in &options.faults {
            println!("\n== fault `{}`", fault.name());
            let result = match fault {
                Fault::Restart => load(&demo, dir, options),
                fault => crate::replicas::run(fault, &demo, dir, options),
            };
            if let Err(error) = result {
                eprintln!("fault `{}` failed: {error:#}", fault.name());
                failed.push(fault.name());
            }
        }
        ensure!(failed.is_empty(), "failed: {}", failed.join(", "));
        Ok(())
    })
}

/// Where the remote serves, the same address after its restart: a loopback
/// address of this process alone (`127.A.B.C` from the process id, never
/// `127.0.0.1`, where everything else binds), with a port below the range
/// the system hands out for port 0. A port found free and released could be
/// taken by another program before the remote binds it, or while it is down.
fn remote_address() -> String {
    let pid = std::process::id();
    // Process ids are below 2^22: the second byte is 1 to 64.
    format!(
        "127.{}.{}.{}:18081",
        1 + (pid >> 16) % 254,
        (pid >> 8) & 0xff,
        pid & 0xff
    )
}

fn load(demo: &Path, dir: &Path, options: &Options) -> Result<()> {
    // A fixed address, so the remote comes back where the local instance calls it.
    let address = remote_address();
    let remote_config = remote_config(dir, "remote", &address)?;
    let remote = Arc::new(Mutex::new(Some(start(demo, &remote_config, "remote")?)));
    let remote_url = format!("http://{address}");
    let local_config = local_config(dir, &remote_url, "")?;
    let local = start(demo, &local_config, "local")?;
    println!(
        "sending {} calls from {} threads to {} (remote {remote_url}, killed and restarted after a third)",
        options.calls, options.concurrency, local.url
    );
    let (demo, remote_config, calls) = (demo.to_owned(), remote_config.clone(), options.calls);
    // The closure's own handle: the remote it started must outlive it.
    let fault_remote = remote.clone();
    let run = drive(&local.url, options, None, move |counts, started| {
        counts.wait_answered(calls / 3, started)?;
        let mut guard = fault_remote.lock().map_err(|_| anyhow::anyhow!("lock"))?;
        let killed_at = started.elapsed();
        if let Some(instance) = guard.as_mut() {
            instance.kill()?;
        }
        *guard = None;
        let instance: Instance = start(&demo, &remote_config, "remote")?;
        let back_at = started.elapsed();
        *guard = Some(instance);

        Ok(format!(
            "remote killed at {:.2} s, serving again at {:.2} s",
            killed_at.as_secs_f64(),
            back_at.as_secs_f64()
        ))
    })?;
    print_endpoints(&local.url);
    drop(local);
    drop(remote);
    run.report(options)?;
    ensure!(
        Counts::get(&run.counts.succeeded_after_fault) > 0,
        "no call succeeded after the remote came back"
    );
    Ok(())
}

/// The remote's configuration: on `address`, the proxy endpoint behind the
/// key the local instance sends.
pub(crate) fn remote_config(dir: &Path, name: &str, address: &str) -> Result<std::path::PathBuf> {
    let (host, port) = address.rsplit_once(':').context("host:port")?;
    write(
        dir,
        &format!("{name}.toml"),
        &format!(
            "[server]\nhost = \"{host}\"\nport = {port}\nshutdown_grace = 10\n\n\
             [auth]\nrules = {{ \"/api/v1/proxy/remote\" = [\"{KEY}\"] }}\n"
        ),
    )
}

/// The local instance's configuration: the seed's, pointed at `remote_url`,
/// with the run's timeout and `extra` keys of `[plugins.proxy]`.
pub(crate) fn local_config(
    dir: &Path,
    remote_url: &str,
    extra: &str,
) -> Result<std::path::PathBuf> {
    write(
        dir,
        "local.toml",
        &include_str!("../../examples/seed.toml")
            .replace("http://remote-framex:8080", remote_url)
            .replace(
                "[plugins.proxy]\n",
                &format!("[plugins.proxy]\ntimeout = {TIMEOUT_SECS}\n{extra}"),
            )
            .replace(
                "[server]\nenable_proxy = true\n",
                "[server]\nenable_proxy = true\nhost = \"127.0.0.1\"\nport = 0\n",
            ),
    )
}

/// The local instance's endpoints as its `/health` shows them at the end of
/// a run.
pub(crate) fn print_endpoints(local: &str) {
    let Ok(health) = crate::instances::get(local, "/health") else {
        println!("  (the local instance's /health did not answer)");
        return;
    };
    let Some(upstreams) = health["endpoints"].as_object() else {
        return;
    };
    for (url, upstream) in upstreams {
        println!("  endpoints of {url} at the end:");
        for endpoint in upstream["endpoints"].as_array().into_iter().flatten() {
            println!(
                "    {:<22} {:<8} requests {:>6}  failures {:>5}  ejections {:>3}{}",
                endpoint["address"].as_str().unwrap_or("?"),
                endpoint["state"].as_str().unwrap_or("?"),
                endpoint["requests"],
                endpoint["failures"],
                endpoint["ejections"],
                endpoint["last_error"]
                    .as_str()
                    .map(|e| format!("  last error: {e}"))
                    .unwrap_or_default()
            );
        }
    }
}

/// A finished run: how its calls ended, and what its fault did.
pub(crate) struct Run {
    pub(crate) counts: Arc<Counts>,
    sent: usize,
    elapsed: Duration,
    fault: String,
    /// A load without a fault: nothing is counted as after one.
    faultless: bool,
}

/// [`drive`] with no fault; `what` says what the calls cross.
#[cfg_attr(not(feature = "containers"), allow(dead_code))]
pub(crate) fn drive_without_fault(url: &str, options: &Options, what: &str) -> Result<Run> {
    let what = format!("no fault: {what}");
    let mut run = drive(url, options, None, move |_, _| Ok(what))?;
    run.faultless = true;
    Ok(run)
}

/// Sends the calls to `url` while `fault` runs on a thread of its own (it
/// returns what it did; calls that succeed after it returned count as
/// succeeded after the fault). With `spread`, call `n` is not sent before
/// `spread * n / calls` has passed, so that the run lasts about that long
/// (for faults that play out over DNS TTLs and timeouts).
pub(crate) fn drive(
    url: &str,
    options: &Options,
    spread: Option<Duration>,
    fault: impl FnOnce(Arc<Counts>, Instant) -> Result<String> + Send + 'static,
) -> Result<Run> {
    let counts = Arc::new(Counts::default());
    let next = Arc::new(AtomicUsize::new(0));
    let after_fault = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let workers: Vec<_> = (0..options.concurrency)
        .map(|_| {
            let (counts, next, after_fault) = (counts.clone(), next.clone(), after_fault.clone());
            let (url, calls) = (url.to_owned(), options.calls);
            std::thread::spawn(move || {
                loop {
                    let n = next.fetch_add(1, Ordering::SeqCst);
                    if n >= calls || started.elapsed() > RUN_LIMIT {
                        break;
                    }
                    if let Some(spread) = spread {
                        let due = started + spread.mul_f64(n as f64 / calls as f64);
                        std::thread::sleep(due.saturating_duration_since(Instant::now()));
                    }
                    let after = after_fault.load(Ordering::SeqCst);
                    let began = counts.fault_began.load(Ordering::SeqCst);
                    let sent_at = Instant::now();
                    let answer = call(&url, n);
                    let took = sent_at.elapsed();
                    if classify(&counts, n, after, started, answer) && began {
                        let micros = u64::try_from(took.as_micros()).unwrap_or(u64::MAX);
                        counts
                            .slowest_after_fault_us
                            .fetch_max(micros, Ordering::SeqCst);
                    }
                }
            })
        })
        .collect();
    let fault = {
        let (counts, after_fault) = (counts.clone(), after_fault.clone());
        std::thread::spawn(move || -> Result<String> {
            let done = fault(counts, started);
            after_fault.store(true, Ordering::SeqCst);
            done
        })
    };
    for worker in workers {
        worker
            .join()
            .map_err(|_| anyhow::anyhow!("a load thread panicked"))?;
    }
    let elapsed = started.elapsed();
    let fault = fault
        .join()
        .map_err(|_| anyhow::anyhow!("the fault thread panicked"))??;
    let sent = next.load(Ordering::SeqCst).min(options.calls);
    Ok(Run {
        counts,
        sent,
        elapsed,
        fault,
        faultless: false,
    })
}

impl Run {
    /// Prints how the calls ended and checks what every fault promises: no
    /// call hung, was lost, or failed without a clear error.
    pub(crate) fn report(&self, options: &Options) -> Result<()> {
        let counts = &self.counts;
        let get = Counts::get;
        let counted = get(&counts.succeeded)
            + get(&counts.failed_clear)
            + get(&counts.failed_unclear)
            + get(&counts.hung);
        let (sent, elapsed) = (self.sent, self.elapsed);
        let lost = sent.saturating_sub(counted);
        println!("{}", self.fault);
        println!("  calls sent                      {sent:>7}");
        if self.faultless {
            println!(
                "  succeeded                       {:>7}",
                get(&counts.succeeded)
            );
        } else {
            println!(
                "  succeeded                       {:>7}   ({} after the fault)",
                get(&counts.succeeded),
                get(&counts.succeeded_after_fault)
            );
        }
        println!(
            "  failed with a clear error       {:>7}",
            get(&counts.failed_clear)
        );
        for example in counts
            .examples
            .lock()
            .map(|e| e.clone())
            .unwrap_or_default()
        {
            println!("      for example: {example}");
        }
        println!(
            "  failed without a clear error    {:>7}   (must be 0)",
            get(&counts.failed_unclear)
        );
        println!(
            "  hung                            {:>7}   (must be 0)",
            get(&counts.hung)
        );
        println!("  lost                            {lost:>7}   (must be 0)");
        let by: Vec<String> = counts
            .answered_by(Duration::ZERO, Duration::MAX)
            .into_iter()
            .map(|(instance, count)| format!("{instance} {count}"))
            .collect();
        println!("  answered by                     {}", by.join(", "));
        println!(
            "  in {:.2} s, {:.0} calls/s",
            elapsed.as_secs_f64(),
            counted as f64 / elapsed.as_secs_f64().max(0.001)
        );
        ensure!(
            sent == options.calls,
            "the run hit its time limit after {sent} calls"
        );
        ensure!(get(&counts.hung) == 0, "calls hung");
        ensure!(lost == 0, "calls were lost");
        ensure!(
            get(&counts.failed_unclear) == 0,
            "calls failed without a clear error"
        );
        Ok(())
    }
}

/// How one call ended, as the caller sees it.
enum Answer {
    /// Status and body.
    Http(u16, String),
    /// No answer within [`PATIENCE`].
    TimedOut,
    /// The local instance could not be reached or broke the connection.
    Broken(String),
}

fn call(url: &str, n: usize) -> Answer {
    let address = url.trim_start_matches("http://");
    let mut stream = match TcpStream::connect(address) {
        Ok(stream) => stream,
        Err(error) => return Answer::Broken(error.to_string()),
    };
    let _ = stream.set_read_timeout(Some(PATIENCE));
    let request = format!(
        "GET /api/v1/report?job_id=load-{n} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n"
    );
    if let Err(error) = stream.write_all(request.as_bytes()) {
        return Answer::Broken(error.to_string());
    }
    let mut response = String::new();
    match stream.read_to_string(&mut response) {
        Ok(_) => {}
        Err(error)
            if matches!(
                error.kind(),
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
            ) =>
        {
            return Answer::TimedOut;
        }
        Err(error) => return Answer::Broken(error.to_string()),
    }
    let Some((head, body)) = response.split_once("\r\n\r\n") else {
        return Answer::Broken(format!("no HTTP head in {response:?}"));
    };
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    Answer::Http(status, body.to_owned())
}

/// Counts how the call ended; whether it succeeded.
fn classify(
    counts: &Counts,
    n: usize,
    after_fault: bool,
    started: Instant,
    answer: Answer,
) -> bool {
    let count = match answer {
        Answer::Http(200, body) => {
            let body: Value = serde_json::from_str(&body).unwrap_or_default();
            if body["result"]["job_id"] == format!("load-{n}").as_str() {
                if after_fault {
                    counts.succeeded_after_fault.fetch_add(1, Ordering::SeqCst);
                }
                let instance = body["result"]["made_by"]["instance"]
                    .as_str()
                    .unwrap_or("?")
                    .to_owned();
                if let Ok(mut answers) = counts.answers.lock() {
                    answers.push((started.elapsed(), instance));
                }
                &counts.succeeded
            } else {
                eprintln!("call {n}: another call's answer: {body}");
                &counts.failed_unclear
            }
        }
        Answer::Http(502 | 504, body) => {
            let body: Value = serde_json::from_str(&body).unwrap_or_default();
            match body["error"].as_str() {
                Some(message) if message.contains("`your_module.build_report`") => {
                    if let Ok(mut examples) = counts.examples.lock() {
                        let shape = message.replace(|c: char| c.is_ascii_digit(), "");
                        if examples.len() < 3
                            && !examples
                                .iter()
                                .any(|e| e.replace(|c: char| c.is_ascii_digit(), "") == shape)
                        {
                            examples.push(message.to_owned());
                        }
                    }
                    &counts.failed_clear
                }
                _ => {
                    eprintln!("call {n}: an error that does not say what failed: {body}");
                    &counts.failed_unclear
                }
            }
        }
        Answer::Http(status, body) => {
            eprintln!("call {n}: unexpected status {status}: {body}");
            &counts.failed_unclear
        }
        Answer::TimedOut => &counts.hung,
        Answer::Broken(error) => {
            eprintln!("call {n}: the local instance broke the call: {error}");
            &counts.failed_unclear
        }
    };
    count.fetch_add(1, Ordering::SeqCst);
    counts.answered.fetch_add(1, Ordering::SeqCst);
    std::ptr::eq(count, &counts.succeeded)
}
