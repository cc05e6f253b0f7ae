//! The parts of `cargo xtask bench` past the load runs: latency at a fixed
//! rate (hey), and many connections at once (wrk, and idle connections held
//! open), all on 127.0.0.1.

use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result, ensure};

use super::{Figures, median, mib, wrk_run_threads};
use crate::instances::Instance;

/// Calls per second of the fixed-rate runs, and hey's workers sending them.
const RATE: u32 = 1_000;
const WORKERS: u32 = 10;

/// Latency percentiles of one fixed-rate run, in milliseconds.
#[derive(Debug, Clone, Copy)]
pub(super) struct Latencies {
    p50: f64,
    p99: f64,
    p999: f64,
    errors: u64,
}

/// What a fixed-rate run sends where.
pub(super) struct Target<'a> {
    pub(super) name: &'a str,
    pub(super) url: String,
    /// A JSON body to POST, or none for a GET.
    pub(super) body: Option<&'a Path>,
}

/// `RATE` calls a second for `seconds` to each target, `rounds` times in
/// turn; prints the median percentiles of each, and what the hop from (a) to
/// (b) adds, against the targets of 0.3 ms at the median and 1 ms at p99.
pub(super) fn fixed_rate(
    hey: &Path,
    targets: &[Target<'_>],
    seconds: u64,
    rounds: usize,
) -> Result<()> {
    let mut runs: Vec<Vec<Latencies>> = vec![Vec::new(); targets.len()];
    for _ in 0..rounds {
        for (target, runs) in targets.iter().zip(&mut runs) {
            runs.push(hey_run(hey, target, seconds)?);
        }
    }
    let medians: Vec<Latencies> = runs
        .iter()
        .map(|runs| Latencies {
            p50: median(runs.iter().map(|run| run.p50)),
            p99: median(runs.iter().map(|run| run.p99)),
            p999: median(runs.iter().map(|run| run.p999)),
            errors: runs.iter().map(|run| run.errors).sum(),
        })
        .collect();
    println!();
    println!(
        "{RATE} calls/s ({WORKERS} workers of hey) for {seconds} s, {rounds} rounds, medians:"
    );
    println!("{:>34}  {:>9}  {:>9}  {:>9}", "", "p50", "p99", "p99.9");
    for (target, latencies) in targets.iter().zip(&medians) {
        println!(
            "{:>34}  {:>7.3}ms  {:>7.3}ms  {:>7.3}ms{}",
            target.name,
            latencies.p50,
            latencies.p99,
            latencies.p999,
            if latencies.errors > 0 {
                format!("  ({} failed)", latencies.errors)
            } else {
                String::new()
            }
        );
    }
    // Targets 1 and 2 are (a) and (b): one FrameX hop between them.
    if let [_, direct, two_hops, ..] = medians.as_slice() {
        let (p50, p99, p999) = (
            two_hops.p50 - direct.p50,
            two_hops.p99 - direct.p99,
            two_hops.p999 - direct.p999,
        );
        println!(
            "{:>34}  {p50:>7.3}ms  {p99:>7.3}ms  {p999:>7.3}ms",
            "one FrameX hop adds ((b) - (a))"
        );
        // To the microsecond: hey's times differ by steps of 0.1 ms, and
        // 0.4 - 0.1 is a hair above 0.3 in floating point.
        let microseconds = |ms: f64| (ms * 1000.0).round();
        if microseconds(p50) > 300.0 || microseconds(p99) > 1000.0 {
            println!(
                "short of the target: one hop adds {p50:.3} ms at the median and {p99:.3} ms at p99, not at most 0.3 and 1 ms"
            );
        }
    }
    Ok(())
}

/// One hey run at `RATE` calls a second; its percentiles from every call's
/// time (hey's CSV), the calls that failed or answered other than 200 counted.
fn hey_run(hey: &Path, target: &Target<'_>, seconds: u64) -> Result<Latencies> {
    ensure!(
        target.url.starts_with("http://127.0.0.1:"),
        "load goes to 127.0.0.1 only, not {}",
        target.url
    );
    let mut command = Command::new(hey);
    command.args([
        "-z",
        &format!("{seconds}s"),
        "-c",
        &WORKERS.to_string(),
        "-q",
        &(RATE / WORKERS).to_string(),
        "-t",
        "10",
        "-o",
        "csv",
    ]);
    if let Some(body) = target.body {
        command
            .args(["-m", "POST", "-T", "application/json", "-D"])
            .arg(body);
    }
    let output = command
        .arg(&target.url)
        .output()
        .context("cannot run hey")?;
    ensure!(
        output.status.success(),
        "hey failed on {}: {}",
        target.url,
        String::from_utf8_lossy(&output.stderr)
    );
    let text = String::from_utf8_lossy(&output.stdout);
    let mut times = Vec::new();
    let mut errors = 0;
    // response-time,DNS+dialup,DNS,Request-write,Response-delay,Response-read,status-code,offset
    for line in text.lines().skip(1) {
        let fields: Vec<&str> = line.split(',').collect();
        let (Some(time), Some(status)) = (fields.first(), fields.get(6)) else {
            continue;
        };
        match (time.parse::<f64>(), *status) {
            (Ok(time), "200") => times.push(time * 1000.0),
            _ => errors += 1,
        }
    }
    ensure!(
        !times.is_empty(),
        "hey answered no call of {}: {}",
        target.url,
        String::from_utf8_lossy(&output.stderr)
    );
    times.sort_by(f64::total_cmp);
    let at = |quantile: f64| {
        let index = ((times.len() as f64 * quantile).ceil() as usize).clamp(1, times.len()) - 1;
        times[index]
    };
    Ok(Latencies {
        p50: at(0.50),
        p99: at(0.99),
        p999: at(0.999),
        errors,
    })
}

/// Raises this process's soft limit on open files to its hard one, for wrk
/// and the idle connections (wrk inherits it); the instances raise their own.
pub(super) fn raise_open_file_limit() -> Result<u64> {
    use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
    let limit = getrlimit(Resource::Nofile);
    let raised = Rlimit {
        current: limit.maximum,
        maximum: limit.maximum,
    };
    setrlimit(Resource::Nofile, raised).context("cannot raise the open file limit")?;
    Ok(limit.maximum.unwrap_or(u64::MAX))
}

/// 1,024 and 8,192 idle connections held open to the remote, each after one
/// request, and what each costs it in memory; then wrk at as many
/// connections on (a) and (b), with the instances' most resident memory
/// meanwhile.
pub(super) fn many_connections(
    wrk: &Path,
    post: &Path,
    get: &Path,
    remote: &Instance,
    local: &Instance,
    seconds: u64,
) -> Result<()> {
    let limit = raise_open_file_limit()?;
    println!();
    println!(
        "idle connections held open to the remote (after the load runs above, before those of many connections):"
    );
    for connections in [1_024usize, 8_192] {
        if (connections as u64) + 64 > limit {
            continue;
        }
        let before = remote.rss()?;
        let held = hold_idle(&remote.url, connections)?;
        std::thread::sleep(Duration::from_millis(300));
        let after = remote.rss()?;
        drop(held);
        println!(
            "  {connections} idle kept-alive connections to the remote: RSS {:.1} MiB -> {:.1} MiB, {:.1} KiB per connection",
            mib(before),
            mib(after),
            (after.saturating_sub(before)) as f64 / 1024.0 / connections as f64
        );
        // Let the remote close them before the next count.
        std::thread::sleep(Duration::from_millis(500));
    }
    println!();
    println!("many connections ({seconds} s each; RSS: the most sampled during the run):");
    for connections in [1_024usize, 8_192] {
        if (connections as u64) + 64 > limit {
            println!("  c={connections}: skipped, the open file limit is {limit}");
            continue;
        }
        let direct = format!("{}/api/v1/proxy/remote", remote.url);
        let two_hops = format!("{}/api/v1/report?job_id=bench", local.url);
        let (a, a_rss) = sampled(&[remote], || {
            wrk_run_threads(wrk, post, &direct, connections, seconds, 2)
        })?;
        let (b, b_rss) = sampled(&[local, remote], || {
            wrk_run_threads(wrk, get, &two_hops, connections, seconds, 2)
        })?;
        let line = |name: &str, figures: &Figures, rss: &[u64]| {
            let rss: Vec<String> = rss
                .iter()
                .map(|bytes| format!("{:.1} MiB", mib(*bytes)))
                .collect();
            println!(
                "  c={connections:>5} {name}: {:>8.0} rps, p99 {:>7.2} ms, {} failed, RSS {}",
                figures.requests_per_second,
                figures.p99_ms,
                figures.errors,
                rss.join(" (local), ")
            );
        };
        line("(a)", &a, &a_rss);
        line("(b)", &b, &b_rss);
        if connections == 8_192 && a.errors > 0 {
            println!(
                "short of the target: (a) at 8,192 connections had {} failed requests, not 0",
                a.errors
            );
        }
    }
    Ok(())
}

/// Runs `load` while sampling the instances' resident memory every 100 ms;
/// the load's figures and each instance's most resident memory.
fn sampled(
    instances: &[&Instance],
    load: impl FnOnce() -> Result<Figures> + Send,
) -> Result<(Figures, Vec<u64>)> {
    let done = std::sync::atomic::AtomicBool::new(false);
    let mut most = vec![0u64; instances.len()];
    let figures = std::thread::scope(|scope| {
        let running = scope.spawn(|| {
            let figures = load();
            done.store(true, std::sync::atomic::Ordering::Release);
            figures
        });
        while !done.load(std::sync::atomic::Ordering::Acquire) {
            for (most, instance) in most.iter_mut().zip(instances) {
                *most = (*most).max(instance.rss().unwrap_or(0));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        running
            .join()
            .unwrap_or_else(|_| Err(anyhow::anyhow!("the load run panicked")))
    })?;
    Ok((figures, most))
}

/// `count` connections to `url`, each having had one `GET /health` answered
/// and kept alive.
fn hold_idle(url: &str, count: usize) -> Result<Vec<TcpStream>> {
    let address = url.strip_prefix("http://").context("an http URL")?;
    let request = format!("GET /health HTTP/1.1\r\nHost: {address}\r\n\r\n");
    let mut held = Vec::with_capacity(count);
    for _ in 0..count {
        let mut stream = TcpStream::connect(address).with_context(|| {
            format!(
                "cannot connect to {url} with {} connections open",
                held.len()
            )
        })?;
        stream.set_read_timeout(Some(Duration::from_secs(10)))?;
        stream.write_all(request.as_bytes())?;
        held.push(stream);
    }
    // Read each answer's head after sending every request, so that the
    // connections are opened at the rate the remote accepts them.
    let mut buffer = [0u8; 1024];
    for stream in &mut held {
        let read = stream.read(&mut buffer)?;
        ensure!(
            buffer[..read].starts_with(b"HTTP/1.1 200"),
            "an idle connection's request was not answered 200"
        );
    }
    Ok(held)
}
