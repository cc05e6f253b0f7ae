//! The payload-size rows of `cargo xtask bench`: (a) with about 1 KiB,
//! 64 KiB and 1 MiB of JSON arguments, as Python FrameX sends them (zlib at
//! its default level, XOR, base64), beside the bare echo moving the same
//! bytes and beside the floor of the payload work done plainly in one
//! process (`crates/transport/examples/payload_floor.rs`), all in the same
//! rounds.

use std::path::Path;
use std::process::Command;

use anyhow::{Context, Result, ensure};

use super::{Figures, cpu_seconds, median, script_with, wrk_run};
use crate::instances::{Instance, write};

/// The sizes measured, and how many calls the floor times of each.
const SIZES: [(&str, usize, u32); 3] = [
    ("1 KiB", 1024, 4000),
    ("64 KiB", 64 * 1024, 400),
    ("1 MiB", 1024 * 1024, 25),
];

/// Connections of wrk on each row.
const CONCURRENCY: usize = 16;

/// One round's figures of one size.
struct Row {
    bare: Figures,
    call: Figures,
    /// The remote's CPU time per call of (a), in microseconds.
    cpu_us: f64,
    /// The floor's CPU time per call, in microseconds.
    floor_us: f64,
}

pub(super) fn payload_rows(
    wrk: &Path,
    bin: &Path,
    dir: &Path,
    remote: &Instance,
    bare: &Instance,
    seconds: u64,
    rounds: usize,
) -> Result<()> {
    let mut rows: Vec<Vec<Row>> = SIZES.iter().map(|_| Vec::new()).collect();
    for _ in 0..rounds {
        for (&(_, bytes, calls), rows) in SIZES.iter().zip(&mut rows) {
            let body = dir.join(format!("payload-{bytes}.json"));
            let floor_us = floor(bin, bytes, calls, &body)?;
            let script = write(
                dir,
                &format!("payload-{bytes}.lua"),
                &script_with(&format!(
                    "wrk.method = \"POST\"\n\
                     local file = assert(io.open({}, \"rb\"))\n\
                     wrk.body = file:read(\"*a\")\n\
                     file:close()\n\
                     wrk.headers[\"Content-Type\"] = \"application/json\"\n",
                    serde_json::to_string(&body.display().to_string())?
                )),
            )?;
            let bare_figures = wrk_run(
                wrk,
                &script,
                &format!("{}/", bare.url),
                CONCURRENCY,
                seconds,
            )?;
            let before = cpu_seconds(remote)?;
            let call = wrk_run(
                wrk,
                &script,
                &format!("{}/api/v1/proxy/remote", remote.url),
                CONCURRENCY,
                seconds,
            )?;
            let answered = (call.requests_per_second * seconds as f64).max(1.0);
            let cpu_us = (cpu_seconds(remote)? - before) * 1e6 / answered;
            rows.push(Row {
                bare: bare_figures,
                call,
                cpu_us,
                floor_us,
            });
        }
    }
    println!();
    println!(
        "payload sizes at c={CONCURRENCY} ({rounds} rounds of {seconds} s, medians): (a) echoing records sent as Python FrameX sends them, beside (c) moving the same body and the floor of the payload work"
    );
    println!(
        "{:>7}  {:>10}  {:>10}  {:>16}  {:>12}  {:>10}  {:>16}",
        "JSON", "(c) rps", "(a) rps", "(a)/(c)", "remote CPU", "floor", "CPU/floor"
    );
    for (&(name, _, _), rows) in SIZES.iter().zip(&rows) {
        let spread = |ratios: Vec<f64>| {
            (
                median(ratios.iter().copied()),
                ratios.iter().copied().fold(f64::INFINITY, f64::min),
                ratios.iter().copied().fold(0.0, f64::max),
            )
        };
        let throughput = spread(
            rows.iter()
                .map(|row| 100.0 * row.call.requests_per_second / row.bare.requests_per_second)
                .collect(),
        );
        let cost = spread(rows.iter().map(|row| row.cpu_us / row.floor_us).collect());
        let errors: u64 = rows
            .iter()
            .map(|row| row.call.errors + row.bare.errors)
            .sum();
        println!(
            "{name:>7}  {:>10.0}  {:>10.0}  {:>5.1}% [{:>3.0}-{:>3.0}%]  {:>9.0} us  {:>7.0} us  {:>5.2}x [{:.2}-{:.2}]{}",
            median(rows.iter().map(|row| row.bare.requests_per_second)),
            median(rows.iter().map(|row| row.call.requests_per_second)),
            throughput.0,
            throughput.1,
            throughput.2,
            median(rows.iter().map(|row| row.cpu_us)),
            median(rows.iter().map(|row| row.floor_us)),
            cost.0,
            cost.1,
            cost.2,
            if errors > 0 {
                format!("  ({errors} failed)")
            } else {
                String::new()
            }
        );
        if name != "1 KiB" && cost.0 > 1.15 {
            println!(
                "short of the target: serving {name} costs {:.2}x its floor, not at most 1.15x",
                cost.0
            );
        }
    }
    Ok(())
}

/// Runs the floor for `bytes` of JSON, `calls` times; writes the call body
/// to `body` and returns the floor's CPU time per call in microseconds.
fn floor(bin: &Path, bytes: usize, calls: u32, body: &Path) -> Result<f64> {
    let output = Command::new(bin.join("examples/payload_floor"))
        .args([bytes.to_string(), calls.to_string()])
        .arg(body)
        .output()
        .context("cannot run payload_floor")?;
    ensure!(
        output.status.success(),
        "payload_floor failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout)
        .trim()
        .parse()
        .context("payload_floor printed no figure")
}
