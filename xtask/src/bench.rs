//! `cargo xtask bench [--duration SECS] [--rounds N] [--soak SECS]`: load runs
//! over loopback against the limit of the machine, measured in one run.
//! `cargo xtask bench --against FRAMEX [--duration SECS] [--rounds N]
//! [--concurrency N]` compares this build with another build's `framex`
//! command on (a) and (b).
//!
//! It builds the `framex` command and a bare hyper echo server in release mode, starts a
//! remote and a local demo instance (the local one lists `your_module.build_report`
//! for the remote) and the bare server, and runs wrk (installed from Debian's
//! packages when missing) at concurrency 1, 16 and 64 against:
//!
//! - (a) `POST /api/v1/proxy/remote` on the remote, calling `demo.echo` with a
//!   small JSON object;
//! - (b) `GET /api/v1/report` on the local instance, whose function runs on the
//!   remote: a client, two instances, two hops;
//! - (c) the bare echo server with the body of (a): the limit of this machine;
//! - (d) and (e) the shape of (b) built by hand (`bench/peers`): an axum route
//!   calling a back service with reqwest (JSON over HTTP/1) and with tonic
//!   (gRPC over HTTP/2), with (b)'s request and answer;
//! - (b2) (b) with the local instance calling the remote over HTTP/2
//!   (`proxy_urls."URL".http2 = true`), beside (d) and (e).
//!
//! The FrameX instances log as `framex serve` does by default (`info`, one
//! line per request), each into a file of the work directory; `RUST_LOG`
//! set by the user wins.
//!
//! Each concurrency runs (c), (a), (b), (b2), (d) and (e) in turn, `--rounds` times (default 3)
//! for `--duration` seconds each (default 5), so that the machine's noise falls
//! on all three alike; each figure is the median of its rounds, and each ratio
//! the median of the rounds' ratios, with their spread.
//!
//! It prints requests/s, p50 and p99 for each, (a)/(c) and (b)/(c), how long
//! each instance took from spawn to answering `/health`, and each instance's
//! memory (RSS) idle, at its peak, and over a steady run of (a) at concurrency 64
//! (`--soak`, default 60 s), and what encoding plus decoding 1 KiB of keyword
//! arguments costs against the remote's CPU time per call in (a) at
//! concurrency 64, and (b)'s and (b2)'s ratios to the faster of (d) and (e).
//! Then (`bench/sizes.rs`) (a) with about 1 KiB, 64 KiB and 1 MiB of JSON
//! arguments sent as Python FrameX sends them, beside (c) moving the same
//! bodies and the floor of the payload work
//! (`crates/transport/examples/payload_floor.rs`), with the remote's CPU
//! time per call against that floor's.
//! Then (`bench/scale.rs`) p50, p99 and p99.9 of (c), (a), (b), (d) and (e)
//! at 1,000 calls a second (hey, installed from Debian's packages when
//! missing), and what one FrameX hop adds ((b) less (a)); the remote's
//! memory per idle kept-alive connection, 1,024 and 8,192 of them; and wrk
//! at 1,024 and 8,192 connections on (a) and (b), with failures, p99 and
//! RSS. Whatever falls short of a target of `BENCHMARKS.md` is printed as
//! such. All traffic goes to 127.0.0.1.
//!
//! With `--against`, it starts a remote and a local instance of each build and
//! runs, in every round, (c), then (a) and (b) at concurrency 64 (or
//! `--concurrency`) on this build and on the other: each build's (a)/(c) and (b)/(c), and its instances' CPU
//! time per request, measured side by side, so that a change is judged against
//! the noise it met.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail, ensure};
use serde_json::{Value, json};

use crate::instances::{Instance, build_release, in_work_dir, spawn, start_logging, write};

mod scale;
mod sizes;

const CONCURRENCY: [usize; 3] = [1, 16, 64];

#[derive(Debug)]
pub(crate) struct Options {
    duration: u64,
    rounds: usize,
    soak: u64,
    /// Another build's `framex` command, to compare (b) with this build's.
    against: Option<PathBuf>,
    /// The concurrency of the comparison with `against`.
    concurrency: Option<usize>,
}

impl Options {
    pub(crate) fn parse(args: impl Iterator<Item = String>) -> Result<Options> {
        let mut options = Options {
            duration: 5,
            rounds: 3,
            soak: 60,
            against: None,
            concurrency: None,
        };
        let mut args = args;
        while let Some(arg) = args.next() {
            match arg.as_str() {
                "--duration" => options.duration = within(&arg, args.next(), 1..=600, "seconds")?,
                "--soak" => options.soak = within(&arg, args.next(), 1..=600, "seconds")?,
                "--rounds" => options.rounds = within(&arg, args.next(), 1..=20, "rounds")?,
                "--concurrency" => {
                    options.concurrency = Some(within(&arg, args.next(), 1..=1024, "connections")?);
                }
                "--against" => {
                    let path = args
                        .next()
                        .context("--against needs the path of another build's framex command")?;
                    options.against = Some(PathBuf::from(path));
                }
                other => bail!(
                    "unknown option `{other}`: use --duration SECS, --rounds N, --soak SECS, --against FRAMEX and --concurrency N"
                ),
            }
        }
        ensure!(
            options.concurrency.is_none() || options.against.is_some(),
            "--concurrency sets the concurrency of a comparison: it goes with --against FRAMEX (the full run measures at 1, 16 and 64)"
        );
        Ok(options)
    }
}

/// The value of option `name`, a number in `range` of `unit`.
fn within<T>(
    name: &str,
    value: Option<String>,
    range: std::ops::RangeInclusive<T>,
    unit: &str,
) -> Result<T>
where
    T: std::str::FromStr + PartialOrd + std::fmt::Display,
{
    let value = value.with_context(|| format!("{name} needs a number of {unit}"))?;
    value
        .parse()
        .ok()
        .filter(|number| range.contains(number))
        .with_context(|| {
            format!(
                "{name} takes {} to {} {unit}, not `{value}`",
                range.start(),
                range.end()
            )
        })
}

/// One wrk run's figures.
#[derive(Debug, Clone, Copy)]
struct Figures {
    requests_per_second: f64,
    p50_ms: f64,
    p99_ms: f64,
    errors: u64,
}

pub(crate) fn run(options: &Options) -> Result<()> {
    let wrk = ensure_wrk()?;
    let root = build_release(
        "the framex command and the bare echo server",
        &[
            "-p",
            "framex-cli",
            "--bin",
            "framex",
            "-p",
            "framex-server",
            "--example",
            "bare_echo",
            "-p",
            "framex-transport",
            "--example",
            "codec_cost",
            "--example",
            "payload_floor",
            "-p",
            "framex-bench-peers",
            "--bin",
            "peers",
        ],
    )?;
    let bin = root.join("target/release");
    in_work_dir(|dir| match &options.against {
        Some(other) => compare(&wrk, &bin, other, dir, options),
        None => measure(&wrk, &bin, dir, options),
    })
}

fn ensure_wrk() -> Result<PathBuf> {
    ensure_installed("wrk", "wrk")
}

/// The path of `binary`, installed from Debian's package `package` when it
/// is missing.
fn ensure_installed(binary: &str, package: &str) -> Result<PathBuf> {
    let found = |dir: &str| {
        let path = Path::new(dir).join(binary);
        path.exists().then_some(path)
    };
    if let Some(path) = found("/usr/bin").or_else(|| found("/usr/local/bin")) {
        return Ok(path);
    }
    println!("installing {binary} from Debian's packages…");
    let apt_get = |args: &[&str]| {
        let mut command = if rustix::process::geteuid().is_root() {
            Command::new("apt-get")
        } else {
            let mut sudo = Command::new("sudo");
            sudo.arg("apt-get");
            sudo
        };
        command
            .args(args)
            .status()
            .with_context(|| format!("cannot run apt-get to install {package}"))
    };
    let install = ["install", "-y", "-qq", package];
    // A new machine may not have read the package lists yet.
    if !apt_get(&install)?.success() {
        ensure!(
            apt_get(&["update", "-qq"])?.success() && apt_get(&install)?.success(),
            "installing {package} failed"
        );
    }
    found("/usr/bin")
        .with_context(|| format!("{binary} is still missing after installing {package}"))
}

/// A remote instance and a local one whose `your_module.build_report` runs on
/// it (the seed configuration), both started from `framex`; `against` names the
/// pair of the other build in a comparison.
fn two_instances(framex: &Path, dir: &Path, against: bool) -> Result<(Instance, Instance)> {
    let (tag, remote_name, local_name) = if against {
        ("-against", "remote (against)", "local (against)")
    } else {
        ("", "remote", "local")
    };
    let remote_config = write(
        dir,
        &format!("remote{tag}.toml"),
        "[server]\nhost = \"127.0.0.1\"\nport = 0\n",
    )?;
    // Each logs as `framex serve` does by default (info, one line per
    // request), into a file of the work directory.
    let log = |name: &str| dir.join(format!("{name}{tag}.log"));
    let remote = start_logging(framex, &remote_config, remote_name, Some(&log("remote")))?;
    let local = local_instance(
        framex,
        dir,
        &remote.url,
        &format!("local{tag}"),
        local_name,
        false,
    )?;
    Ok((remote, local))
}

/// A local instance of the seed configuration whose `build_report` runs on
/// `remote`, its configuration and log named after `file`; over HTTP/2 when
/// `http2` (`proxy_urls."URL".http2`).
fn local_instance(
    framex: &Path,
    dir: &Path,
    remote: &str,
    file: &str,
    name: &'static str,
    http2: bool,
) -> Result<Instance> {
    let upstream = "[plugins.proxy.proxy_urls.\"http://remote-framex:8080\"]\n";
    let seed = include_str!("../../examples/seed.toml");
    ensure!(
        seed.contains(upstream),
        "examples/seed.toml no longer has {upstream}"
    );
    let config = write(
        dir,
        &format!("{file}.toml"),
        &seed
            .replace(upstream, &format!("{upstream}http2 = {http2}\n"))
            .replace("http://remote-framex:8080", remote)
            .replace(
                "[server]\nenable_proxy = true\n",
                "[server]\nenable_proxy = true\nhost = \"127.0.0.1\"\nport = 0\n",
            ),
    )?;
    start_logging(
        framex,
        &config,
        name,
        Some(&dir.join(format!("{file}.log"))),
    )
}

/// The two-hop shape built by hand (`bench/peers`): a back service and a
/// front whose route calls it, as axum + reqwest with JSON and as axum +
/// tonic with gRPC. Each pair is its back and its front; (b)'s request goes
/// to the front.
fn peers(bin: &Path) -> Result<[(Instance, Instance); 2]> {
    let peers = bin.join("peers");
    let pair =
        |back_mode: &str, front_mode: &str, back_name: &'static str, front_name: &'static str| {
            let back = spawn(Command::new(&peers).arg(back_mode), back_name, false)?;
            let front = spawn(
                Command::new(&peers)
                    .arg(front_mode)
                    .args(["--upstream", &back.url]),
                front_name,
                false,
            )?;
            anyhow::Ok((back, front))
        };
    Ok([
        pair(
            "json-back",
            "json-front",
            "axum + reqwest back",
            "axum + reqwest front",
        )?,
        pair(
            "grpc-back",
            "grpc-front",
            "axum + tonic back",
            "axum + tonic front",
        )?,
    ])
}

/// The bare echo server, and the wrk scripts of (a) and (c) (`post.lua`) and of
/// (b) (`get.lua`).
fn bare_and_scripts(bin: &Path, dir: &Path) -> Result<(Instance, PathBuf, PathBuf, PathBuf)> {
    let bare = spawn(
        &mut Command::new(bin.join("examples/bare_echo")),
        "bare echo",
        false,
    )?;
    let body = serde_json::to_string(&framex_transport::wire::CallBody::encode(
        "demo.echo",
        &json!({"value": {"job_id": "j-1", "count": 3, "tags": ["a", "b"], "ok": true}}),
    )?)?;
    let post = write(dir, "post.lua", &script(Some(&body)))?;
    let get = write(dir, "get.lua", &script(None))?;
    let body = write(dir, "body.json", &body)?;
    Ok((bare, post, get, body))
}

/// `--against FRAMEX`: (a) and (b) at concurrency 64 (or `--concurrency`) for
/// this build and for the other, and (c), in turn in every round (the builds' order alternating), with
/// each build's CPU time per request on the instances that served it. Both
/// builds meet the same noise.
fn compare(wrk: &Path, bin: &Path, other: &Path, dir: &Path, options: &Options) -> Result<()> {
    let other = crate::instances::other_build(other)?;
    let builds = [
        (
            "this build",
            two_instances(&bin.join("framex"), dir, false)?,
        ),
        ("against", two_instances(&other, dir, true)?),
    ];
    let (bare, post, get, _) = bare_and_scripts(bin, dir)?;
    let seconds = options.duration;
    let concurrency = options.concurrency.unwrap_or(64);
    // Per build: (a)/(c) in %, the remote's CPU per (a) request in us, (b)/(c)
    // in %, then CPU per (b) request of the local and the remote in us, and
    // of their log threads.
    let mut figures: [Vec<[f64; 7]>; 2] = [Vec::new(), Vec::new()];
    println!();
    println!(
        "(a) and (b) at c={concurrency} against (c), {} rounds of {seconds} s",
        options.rounds
    );
    for round in 1..=options.rounds {
        let bare_figures = wrk_run(wrk, &post, &format!("{}/", bare.url), concurrency, seconds)?;
        let line = format!(
            "round {round:>2}: (c) {:>8.0} rps",
            bare_figures.requests_per_second
        );
        // Which build goes first alternates, so that neither always meets
        // the machine just after (c) or just after the other.
        let order: [usize; 2] = if round % 2 == 1 { [0, 1] } else { [1, 0] };
        let mut cells = [String::new(), String::new()];
        for i in order {
            let (name, (remote, local)) = &builds[i];
            let direct_url = format!("{}/api/v1/proxy/remote", remote.url);
            let (direct, [direct_remote]) =
                measured(wrk, &post, &direct_url, concurrency, seconds, [remote])?;
            let two_hops_url = format!("{}/api/v1/report?job_id=bench", local.url);
            let (two_hops, [two_hops_local, two_hops_remote]) = measured(
                wrk,
                &get,
                &two_hops_url,
                concurrency,
                seconds,
                [local, remote],
            )?;
            let row = [
                100.0 * direct.requests_per_second / bare_figures.requests_per_second,
                direct_remote[0],
                100.0 * two_hops.requests_per_second / bare_figures.requests_per_second,
                two_hops_local[0],
                two_hops_remote[0],
                two_hops_local[1],
                two_hops_remote[1],
            ];
            cells[i] = format!(
                "  | {name}: (a)/(c) {:>5.1}%, (b)/(c) {:>5.1}%",
                row[0], row[2]
            );
            let failed = direct.errors + two_hops.errors;
            if failed > 0 {
                cells[i].push_str(&format!(" ({failed} failed)"));
            }
            figures[i].push(row);
        }
        println!("{line}{}{}", cells[0], cells[1]);
    }
    println!();
    for (i, (name, _)) in builds.iter().enumerate() {
        let column = |k: usize| figures[i].iter().map(move |row| row[k]);
        let spread = |k: usize| {
            format!(
                "[{:>3.0}-{:>3.0}%]",
                column(k).fold(f64::INFINITY, f64::min),
                column(k).fold(0.0, f64::max)
            )
        };
        println!(
            "{name:>10}: (a)/(c) {:>5.1}% {}, remote {:.1} us per call; (b)/(c) {:>5.1}% {}, local {:.1} us (log thread {:.1}), remote {:.1} us (log thread {:.1}) per request (medians)",
            median(column(0)),
            spread(0),
            median(column(1)),
            median(column(2)),
            spread(2),
            median(column(3)),
            median(column(5)),
            median(column(4)),
            median(column(6)),
        );
    }
    drop((builds, bare));
    Ok(())
}

/// A wrk run of `script` on `url` at `concurrency`, and the CPU time each of
/// `instances` spent per request meanwhile, in microseconds: the whole
/// process's, and its log thread's.
fn measured<const N: usize>(
    wrk: &Path,
    script: &Path,
    url: &str,
    concurrency: usize,
    seconds: u64,
    instances: [&Instance; N],
) -> Result<(Figures, [[f64; 2]; N])> {
    let cpu = |instance: &Instance| -> Result<[f64; 2]> {
        Ok([cpu_seconds(instance)?, log_thread_cpu_seconds(instance)?])
    };
    let mut before = [[0.0; 2]; N];
    for (cpu_before, instance) in before.iter_mut().zip(instances) {
        *cpu_before = cpu(instance)?;
    }
    let figures = wrk_run(wrk, script, url, concurrency, seconds)?;
    let requests = (figures.requests_per_second * seconds as f64).max(1.0);
    let mut per_request = [[0.0; 2]; N];
    for ((spent, instance), before) in per_request.iter_mut().zip(instances).zip(before) {
        let after = cpu(instance)?;
        for k in 0..2 {
            spent[k] = (after[k] - before[k]) * 1e6 / requests;
        }
    }
    Ok((figures, per_request))
}

fn measure(wrk: &Path, bin: &Path, dir: &Path, options: &Options) -> Result<()> {
    let (remote, local) = two_instances(&bin.join("framex"), dir, false)?;
    let local_http2 = local_instance(
        &bin.join("framex"),
        dir,
        &remote.url,
        "local-http2",
        "local (http2)",
        true,
    )?;
    let (bare, post, get, body) = bare_and_scripts(bin, dir)?;
    let peers = peers(bin)?;
    let idle = [remote.rss()?, local.rss()?];

    let seconds = options.duration;
    let mut rows = Vec::new();
    let mut cpu_per_call_us = Vec::new();
    for concurrency in CONCURRENCY {
        let mut rounds = Vec::new();
        for _ in 0..options.rounds {
            let bare_figures =
                wrk_run(wrk, &post, &format!("{}/", bare.url), concurrency, seconds)?;
            let cpu_before = cpu_seconds(&remote)?;
            let proxy_figures = wrk_run(
                wrk,
                &post,
                &format!("{}/api/v1/proxy/remote", remote.url),
                concurrency,
                seconds,
            )?;
            if concurrency == 64 {
                let calls = proxy_figures.requests_per_second * seconds as f64;
                cpu_per_call_us.push((cpu_seconds(&remote)? - cpu_before) * 1e6 / calls.max(1.0));
            }
            // (b)'s request to the front of a two-hop pair.
            let report = |front: &Instance| {
                let url = format!("{}/api/v1/report?job_id=bench", front.url);
                wrk_run(wrk, &get, &url, concurrency, seconds)
            };
            let two_hops = report(&local)?;
            let two_hops_http2 = report(&local_http2)?;
            let [json, grpc] = [0, 1].map(|i| report(&peers[i].1));
            rounds.push([
                proxy_figures,
                two_hops,
                bare_figures,
                json?,
                grpc?,
                two_hops_http2,
            ]);
        }
        rows.push((concurrency, rounds));
    }
    let peak = [remote.peak_rss()?, local.peak_rss()?];

    println!();
    println!(
        "medians of {} rounds of {seconds} s; ratios: median of the rounds' ratios [lowest-highest]",
        options.rounds
    );
    println!(
        "{:>4}  {:>30}  {:>30}  {:>30}  {:>18}  {:>18}  {:>9}",
        "c",
        "(a) proxy call rps p50 p99",
        "(b) two hops rps p50 p99",
        "(c) bare echo rps p50 p99",
        "(a)/(c)",
        "(b)/(c)",
        "p99 a/c"
    );
    let mut peer_rows = Vec::new();
    for (concurrency, rounds) in &rows {
        let figures = |i: usize| Figures {
            requests_per_second: median(rounds.iter().map(|r| r[i].requests_per_second)),
            p50_ms: median(rounds.iter().map(|r| r[i].p50_ms)),
            p99_ms: median(rounds.iter().map(|r| r[i].p99_ms)),
            errors: rounds.iter().map(|r| r[i].errors).sum(),
        };
        let ratio = |f: &dyn Fn(&[Figures; 6]) -> f64| {
            let ratios: Vec<f64> = rounds.iter().map(f).collect();
            (
                median(ratios.iter().copied()),
                ratios.iter().copied().fold(f64::INFINITY, f64::min),
                ratios.iter().copied().fold(0.0, f64::max),
            )
        };
        let a_c = ratio(&|r| 100.0 * r[0].requests_per_second / r[2].requests_per_second);
        let b_c = ratio(&|r| 100.0 * r[1].requests_per_second / r[2].requests_per_second);
        let p99 = ratio(&|r| r[0].p99_ms / r[2].p99_ms);
        let (a, b, c) = (figures(0), figures(1), figures(2));
        println!(
            "{concurrency:>4}  {}  {}  {}  {:>5.1}% [{:>3.0}-{:>3.0}%]  {:>5.1}% [{:>3.0}-{:>3.0}%]  {:>8.2}x",
            cell(&a),
            cell(&b),
            cell(&c),
            a_c.0,
            a_c.1,
            a_c.2,
            b_c.0,
            b_c.1,
            b_c.2,
            p99.0
        );
        let errors = a.errors + b.errors + c.errors;
        if errors > 0 {
            println!("      {errors} requests failed at concurrency {concurrency}");
        }
        peer_rows.push((
            *concurrency,
            figures(3),
            figures(4),
            ratio(&|r| {
                r[1].requests_per_second / r[3].requests_per_second.max(r[4].requests_per_second)
            }),
            figures(5),
            ratio(&|r| {
                r[5].requests_per_second / r[3].requests_per_second.max(r[4].requests_per_second)
            }),
        ));
    }
    println!();
    println!(
        "{:>4}  {:>30}  {:>30}  {:>24}  {:>30}  {:>24}",
        "c",
        "(d) axum + reqwest rps p50 p99",
        "(e) axum + tonic rps p50 p99",
        "(b)/faster of (d), (e)",
        "(b2) two hops, http2 rps p50 p99",
        "(b2)/faster of (d), (e)"
    );
    for (concurrency, json, grpc, ratio, http2, http2_ratio) in &peer_rows {
        println!(
            "{concurrency:>4}  {}  {}  {:>8.2}x [{:.2}-{:.2}]  {}  {:>8.2}x [{:.2}-{:.2}]",
            cell(json),
            cell(grpc),
            ratio.0,
            ratio.1,
            ratio.2,
            cell(http2),
            http2_ratio.0,
            http2_ratio.1,
            http2_ratio.2
        );
        let errors = json.errors + grpc.errors + http2.errors;
        if errors > 0 {
            println!(
                "      {errors} requests to the peers or (b2) failed at concurrency {concurrency}"
            );
        }
    }
    if let Some((_, _, _, ratio, _, _)) = peer_rows.iter().find(|row| row.0 == 64)
        && ratio.0 < 1.3
    {
        println!(
            "short of the target: (b) at c=64 is {:.2}x the faster peer, not at least 1.3x",
            ratio.0
        );
    }
    println!();
    println!(
        "start-up (spawn to answering /health): remote {:.0} ms, local {:.0} ms",
        remote.started_in.as_secs_f64() * 1000.0,
        local.started_in.as_secs_f64() * 1000.0
    );
    let cpu_per_call_us = median(cpu_per_call_us.iter().copied());
    println!(
        "CPU of the remote per call in (a) at c=64: {cpu_per_call_us:.1} us (user + system, median of the rounds)"
    );
    let codec_us = codec_cost(bin)?;
    println!(
        "codec: encode + decode of 1 KiB kwargs {codec_us:.2} us = {:.1}% of that call's CPU",
        100.0 * codec_us / cpu_per_call_us.max(f64::MIN_POSITIVE)
    );
    println!(
        "memory (RSS): remote idle {:.1} MiB, peak {:.1} MiB; local idle {:.1} MiB, peak {:.1} MiB",
        mib(idle[0]),
        mib(peak[0]),
        mib(idle[1]),
        mib(peak[1])
    );

    sizes::payload_rows(wrk, bin, dir, &remote, &bare, seconds, options.rounds)?;
    let hey = ensure_installed("hey", "hey")?;
    let report = "/api/v1/report?job_id=bench";
    scale::fixed_rate(
        &hey,
        &[
            scale::Target {
                name: "(c) bare echo",
                url: format!("{}/", bare.url),
                body: Some(&body),
            },
            scale::Target {
                name: "(a) direct call",
                url: format!("{}/api/v1/proxy/remote", remote.url),
                body: Some(&body),
            },
            scale::Target {
                name: "(b) two hops",
                url: format!("{}{report}", local.url),
                body: None,
            },
            scale::Target {
                name: "(d) two hops, axum + reqwest",
                url: format!("{}{report}", peers[0].1.url),
                body: None,
            },
            scale::Target {
                name: "(e) two hops, axum + tonic",
                url: format!("{}{report}", peers[1].1.url),
                body: None,
            },
        ],
        seconds.max(3),
        options.rounds,
    )?;
    scale::many_connections(wrk, &post, &get, &remote, &local, seconds)?;

    if options.soak > 0 {
        // A steady load on (a): memory at a quarter of the run, once warm, and at
        // its end.
        let url = format!("{}/api/v1/proxy/remote", remote.url);
        let quarter = (options.soak / 4).max(1);
        let _ = wrk_run(wrk, &post, &url, 64, quarter)?;
        let warm = remote.rss()?;
        let _ = wrk_run(wrk, &post, &url, 64, (options.soak - quarter).max(1))?;
        let end = remote.rss()?;
        println!(
            "steady load on (a) at c=64 for {} s: remote RSS {:.1} MiB after {quarter} s, {:.1} MiB at the end ({:+.1}%)",
            options.soak,
            mib(warm),
            mib(end),
            100.0 * (end as f64 - warm as f64) / warm as f64
        );
    }
    drop((remote, local, bare, peers));
    Ok(())
}

fn cell(figures: &Figures) -> String {
    format!(
        "{:>9.0} {:>8.2}ms {:>8.2}ms",
        figures.requests_per_second, figures.p50_ms, figures.p99_ms
    )
}

/// The codec's cost for 1 KiB keyword arguments, in microseconds, timed by
/// the release example `codec_cost` now, on the machine as it is.
fn codec_cost(bin: &Path) -> Result<f64> {
    let output = Command::new(bin.join("examples/codec_cost"))
        .output()
        .context("cannot run the codec_cost example")?;
    ensure!(output.status.success(), "the codec_cost example failed");
    let figures: Value =
        serde_json::from_slice(&output.stdout).context("the codec_cost example printed no JSON")?;
    let nanos = figures["median_ns"]
        .as_f64()
        .context("the codec_cost example printed no median")?;
    Ok(nanos / 1000.0)
}

/// The median of some figures (the mean of the middle two for an even count).
pub(crate) fn median(values: impl Iterator<Item = f64>) -> f64 {
    let mut values: Vec<f64> = values.collect();
    values.sort_by(f64::total_cmp);
    match values.len() {
        0 => 0.0,
        n if n % 2 == 1 => values[n / 2],
        n => (values[n / 2 - 1] + values[n / 2]) / 2.0,
    }
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

/// A wrk script: the method and body of each request, and a summary line of
/// JSON at the end.
fn script(body: Option<&str>) -> String {
    let request = match body {
        Some(body) => format!(
            "wrk.method = \"POST\"\nwrk.body = {}\nwrk.headers[\"Content-Type\"] = \"application/json\"\n",
            serde_json::to_string(body).unwrap_or_default()
        ),
        None => String::new(),
    };
    script_with(&request)
}

/// A wrk script: `request` (Lua that sets up each request), and a summary
/// line of JSON at the end.
fn script_with(request: &str) -> String {
    format!(
        "{request}\
         done = function(summary, latency, requests)\n\
         \x20 local errors = summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.status + summary.errors.timeout\n\
         \x20 io.write(string.format('FRAMEX {{\"requests\": %d, \"duration_us\": %d, \"p50_us\": %d, \"p99_us\": %d, \"errors\": %d}}\\n',\n\
         \x20   summary.requests, summary.duration, latency:percentile(50), latency:percentile(99), errors))\n\
         end\n"
    )
}

fn wrk_run(
    wrk: &Path,
    script: &Path,
    url: &str,
    concurrency: usize,
    seconds: u64,
) -> Result<Figures> {
    wrk_run_threads(wrk, script, url, concurrency, seconds, concurrency.min(2))
}

/// [`wrk_run`] with this many threads of wrk.
fn wrk_run_threads(
    wrk: &Path,
    script: &Path,
    url: &str,
    concurrency: usize,
    seconds: u64,
    threads: usize,
) -> Result<Figures> {
    ensure!(
        url.starts_with("http://127.0.0.1:"),
        "load goes to 127.0.0.1 only, not {url}"
    );
    let output = Command::new(wrk)
        .args([
            "-t",
            &threads.to_string(),
            "-c",
            &concurrency.to_string(),
            "-d",
            &format!("{seconds}s"),
            "--timeout",
            "10s",
            "-s",
        ])
        .arg(script)
        .arg(url)
        .output()
        .context("cannot run wrk")?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    let line = stdout
        .lines()
        .find_map(|line| line.strip_prefix("FRAMEX "))
        .with_context(|| format!("wrk printed no summary for {url}: {stdout}"))?;
    let summary: Value = serde_json::from_str(line)?;
    let number = |key: &str| summary[key].as_f64().unwrap_or_default();
    Ok(Figures {
        requests_per_second: number("requests") / (number("duration_us") / 1e6).max(1e-6),
        p50_ms: number("p50_us") / 1000.0,
        p99_ms: number("p99_us") / 1000.0,
        errors: summary["errors"].as_u64().unwrap_or_default(),
    })
}

/// User plus system CPU time of an instance so far, in seconds.
pub(crate) fn cpu_seconds(instance: &Instance) -> Result<f64> {
    stat_cpu_seconds(&format!("/proc/{}/stat", instance.pid()))
}

/// The CPU time so far of an instance's log thread (`framex-log`), in
/// seconds; part of [`cpu_seconds`].
fn log_thread_cpu_seconds(instance: &Instance) -> Result<f64> {
    let tasks = format!("/proc/{}/task", instance.pid());
    let mut seconds = 0.0;
    for task in std::fs::read_dir(&tasks).with_context(|| format!("cannot read {tasks}"))? {
        let task = task.with_context(|| format!("cannot read {tasks}"))?.path();
        // A thread that ended meanwhile has no files left to read.
        let Ok(name) = std::fs::read_to_string(task.join("comm")) else {
            continue;
        };
        if name.trim_end() == "framex-log" {
            seconds += stat_cpu_seconds(&task.join("stat").to_string_lossy())?;
        }
    }
    Ok(seconds)
}

/// utime plus stime of a `/proc/…/stat` file, in seconds.
fn stat_cpu_seconds(path: &str) -> Result<f64> {
    let stat = std::fs::read_to_string(path).with_context(|| format!("cannot read {path}"))?;
    // Fields after the command name, which ends with the last ')'.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after ')'.
    let ticks = |index: usize| -> Result<f64> {
        fields
            .get(index)
            .and_then(|field| field.parse::<f64>().ok())
            .with_context(|| format!("{path} has no field {}", index + 3))
    };
    let per_second = rustix::param::clock_ticks_per_second() as f64;
    Ok((ticks(11)? + ticks(12)?) / per_second)
}

#[cfg(test)]
mod tests {
    use super::{Options, median};

    fn parsed(args: &[&str]) -> anyhow::Result<Options> {
        Options::parse(args.iter().map(|arg| arg.to_string()))
    }

    #[test]
    fn a_comparison_runs_at_the_concurrency_asked_for() {
        let options = parsed(&["--against", "/other/framex", "--concurrency", "1"]).unwrap();
        assert_eq!(options.concurrency, Some(1));
        let error = parsed(&["--concurrency", "1"]).unwrap_err().to_string();
        assert!(error.contains("--against"), "{error}");
        let error = parsed(&["--against", "x", "--concurrency", "0"])
            .unwrap_err()
            .to_string();
        assert!(error.contains("--concurrency takes 1 to 1024"), "{error}");
    }

    #[test]
    fn medians_of_odd_and_even_counts() {
        assert_eq!(median([3.0, 1.0, 2.0].into_iter()), 2.0);
        assert_eq!(median([4.0, 1.0, 3.0, 2.0].into_iter()), 2.5);
        assert_eq!(median([7.5].into_iter()), 7.5);
        assert_eq!(median(std::iter::empty()), 0.0);
    }
}
