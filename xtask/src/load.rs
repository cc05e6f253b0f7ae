//! `cargo xtask load [--calls N] [--concurrency C]`: a bounded load run with a
//! fault, on loopback only.
//!
//! It starts a remote and a local demo instance (the local one lists
//! `your_module.build_report` for the remote, with a 5 s timeout) and sends `N`
//! calls (default 3000) from `C` threads (default 32) to the local instance's
//! `GET /api/v1/report`. When a third of the calls have answered it kills the
//! remote (SIGKILL, as a crash) and starts it again on the same address.
//!
//! Each call ends in one of: succeeded (its own report came back), failed with a
//! clear error (502 or 504 naming the problem), failed without one (anything
//! else), hung (no answer within the timeout plus 5 s), or lost (sent and never
//! counted). It fails unless hung, lost and unclear failures are 0 and calls
//! succeeded again after the restart. The whole run stops by itself after at
//! most two minutes.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
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

/// What the command line asks for.
pub(crate) struct Options {
    calls: usize,
    concurrency: usize,
}

impl Options {
    pub(crate) fn parse(args: impl Iterator<Item = String>) -> Result<Options> {
        let mut options = Options {
            calls: 3000,
            concurrency: 32,
        };
        let mut args = args;
        while let Some(arg) = args.next() {
            let value = |name: &str, value: Option<String>| -> Result<usize> {
                let value = value.with_context(|| format!("{name} needs a number"))?;
                let number: usize = value
                    .parse()
                    .with_context(|| format!("{name} needs a number, not `{value}`"))?;
                ensure!(number > 0, "{name} must be above 0");
                Ok(number)
            };
            match arg.as_str() {
                "--calls" => options.calls = value("--calls", args.next())?.min(100_000),
                "--concurrency" => {
                    options.concurrency = value("--concurrency", args.next())?.min(256);
                }
                other => bail!("unknown option `{other}`: use --calls N and --concurrency C"),
            }
        }
        Ok(options)
    }
}

/// How the calls ended, counted as they end.
#[derive(Default)]
struct Counts {
    succeeded: AtomicUsize,
    succeeded_after_restart: AtomicUsize,
    failed_clear: AtomicUsize,
    failed_unclear: AtomicUsize,
    hung: AtomicUsize,
    answered: AtomicUsize,
    /// The first few distinct clear errors, to show what callers read.
    examples: Mutex<Vec<String>>,
}

pub(crate) fn run(options: &Options) -> Result<()> {
    let demo = build_framex()?;
    in_work_dir(|dir| load(&demo, dir, options))
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
    let (host, port) = address.rsplit_once(':').context("host:port")?;
    let remote_config = write(
        dir,
        "remote.toml",
        &format!(
            "[server]\nhost = \"{host}\"\nport = {port}\n\n[auth]\nrules = {{ \"/api/v1/proxy/remote\" = [\"{KEY}\"] }}\n"
        ),
    )?;
    let remote = Arc::new(Mutex::new(Some(start(demo, &remote_config, "remote")?)));
    let remote_url = format!("http://{address}");
    let local_config = write(
        dir,
        "local.toml",
        &include_str!("../../examples/seed.toml")
            .replace("http://remote-framex:8080", &remote_url)
            .replace(
                "[plugins.proxy]\n",
                &format!("[plugins.proxy]\ntimeout = {TIMEOUT_SECS}\n"),
            )
            .replace(
                "[server]\nenable_proxy = true\n",
                "[server]\nenable_proxy = true\nhost = \"127.0.0.1\"\nport = 0\n",
            ),
    )?;
    let local = start(demo, &local_config, "local")?;

    println!(
        "sending {} calls from {} threads to {} (remote {remote_url}, killed and restarted after a third)",
        options.calls, options.concurrency, local.url
    );
    let counts = Arc::new(Counts::default());
    let next = Arc::new(AtomicUsize::new(0));
    let restarted = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let workers: Vec<_> = (0..options.concurrency)
        .map(|_| {
            let (counts, next, restarted) = (counts.clone(), next.clone(), restarted.clone());
            let (url, calls) = (local.url.clone(), options.calls);
            std::thread::spawn(move || {
                loop {
                    let n = next.fetch_add(1, Ordering::SeqCst);
                    if n >= calls || started.elapsed() > RUN_LIMIT {
                        break;
                    }
                    let after_restart = restarted.load(Ordering::SeqCst);
                    classify(&counts, n, after_restart, call(&url, n));
                }
            })
        })
        .collect();

    let fault = {
        let (counts, restarted, remote) = (counts.clone(), restarted.clone(), remote.clone());
        let (demo, remote_config, calls) = (demo.to_owned(), remote_config.clone(), options.calls);
        std::thread::spawn(move || -> Result<String> {
            while counts.answered.load(Ordering::SeqCst) < calls / 3 {
                ensure!(
                    started.elapsed() < RUN_LIMIT,
                    "the run never reached a third"
                );
                std::thread::sleep(Duration::from_millis(5));
            }
            let mut guard = remote.lock().map_err(|_| anyhow::anyhow!("lock"))?;
            let killed_at = started.elapsed();
            if let Some(instance) = guard.as_mut() {
                instance.kill()?;
            }
            *guard = None;
            let instance: Instance = start(&demo, &remote_config, "remote")?;
            restarted.store(true, Ordering::SeqCst);
            let back_at = started.elapsed();
            *guard = Some(instance);
            Ok(format!(
                "remote killed at {:.2} s, serving again at {:.2} s",
                killed_at.as_secs_f64(),
                back_at.as_secs_f64()
            ))
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
    drop(local);

    let get = |count: &AtomicUsize| count.load(Ordering::SeqCst);
    let sent = next.load(Ordering::SeqCst).min(options.calls);
    let counted = get(&counts.succeeded)
        + get(&counts.failed_clear)
        + get(&counts.failed_unclear)
        + get(&counts.hung);
    let lost = sent.saturating_sub(counted);
    println!("{fault}");
    println!("  calls sent                      {sent:>7}");
    println!(
        "  succeeded                       {:>7}   ({} after the restart)",
        get(&counts.succeeded),
        get(&counts.succeeded_after_restart)
    );
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
    ensure!(
        get(&counts.succeeded_after_restart) > 0,
        "no call succeeded after the remote came back"
    );
    Ok(())
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

fn classify(counts: &Counts, n: usize, after_restart: bool, answer: Answer) {
    let count = match answer {
        Answer::Http(200, body) => {
            let body: Value = serde_json::from_str(&body).unwrap_or_default();
            if body["result"]["job_id"] == format!("load-{n}").as_str() {
                if after_restart {
                    counts
                        .succeeded_after_restart
                        .fetch_add(1, Ordering::SeqCst);
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
}
