//! `cargo xtask payload`: what serving one large call costs an instance, beside
//! the floor of the same payload work done plainly in one process.
//!
//! For about 64 KiB, 1 MiB and 16 MiB of JSON it writes the call body of `demo.echo`
//! as Python FrameX sends it (`crates/transport/examples/payload_floor.rs`,
//! which also times the floor: base64 and XOR, inflate, parse into a
//! `serde_json::Value`, write it back, a stored zlib stream, XOR and base64),
//! posts it over one kept-alive connection to each of two release
//! `framex serve` on 127.0.0.1, one answering stored (the default) and one at
//! `server.compression = 1`, and reads each instance's CPU time (user plus
//! system, from `/proc`) over the calls. Each round times the floor and both
//! instances for every size, and the figures are the medians of the rounds:
//! the ratio of one run is what means something on a shared machine.
//!
//! `cargo xtask payload --against OTHER/framex` also serves the calls from an
//! instance of another build (with that build's defaults) in every round, so
//! that a change is measured beside the build before it. Each round starts
//! from another of the instances, so that none is always measured last.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};

use crate::bench::{cpu_seconds, median};
use crate::instances::{build_release, in_work_dir, other_build, start, write};

/// The sizes measured, and how many calls each round makes of each.
const SIZES: [(&str, usize, u32); 3] = [
    ("64 KiB", 64 * 1024, 1500),
    ("1 MiB", 1024 * 1024, 100),
    ("16 MiB", 16 * 1024 * 1024, 6),
];

/// Options of `cargo xtask payload`.
pub(crate) struct Options {
    rounds: usize,
    /// Another build's `framex` command, measured beside this one.
    against: Option<std::path::PathBuf>,
}

impl Options {
    pub(crate) fn parse(mut args: impl Iterator<Item = String>) -> Result<Options> {
        let mut options = Options {
            rounds: 5,
            against: None,
        };
        while let Some(arg) = args.next() {
            match arg.as_str() {
                "--rounds" => {
                    let value = args.next().context("--rounds needs a number")?;
                    options.rounds = value
                        .parse()
                        .ok()
                        .filter(|rounds| (1..=100).contains(rounds))
                        .with_context(|| format!("--rounds must be 1 to 100, not `{value}`"))?;
                }
                "--against" => {
                    let path = args
                        .next()
                        .context("--against needs the path of another build's framex command")?;
                    options.against = Some(std::path::PathBuf::from(path));
                }
                other => bail!(
                    "unknown option `{other}` of `cargo xtask payload`: use --rounds N and --against FRAMEX"
                ),
            }
        }
        Ok(options)
    }
}

pub(crate) fn run(options: &Options) -> Result<()> {
    // Checked before the build, and absolute: the instances run in the work
    // directory.
    let against = options.against.as_deref().map(other_build).transpose()?;
    let root = build_release(
        "the framex command and the payload floor",
        &[
            "-p",
            "framex-cli",
            "--bin",
            "framex",
            "-p",
            "framex-transport",
            "--example",
            "payload_floor",
        ],
    )?;
    in_work_dir(|dir| measure(&root.join("target/release"), dir, options, against))
}

/// The instances of this build measured side by side: answers stored (the
/// default), and at zlib level 1.
const ANSWERS: [(&str, &str); 2] = [("stored", ""), ("level 1", "compression = 1\n")];

fn measure(
    bin: &Path,
    dir: &Path,
    options: &Options,
    against: Option<std::path::PathBuf>,
) -> Result<()> {
    // What each instance is called in the table, its command and its
    // `[server]` settings; another build runs with its own defaults.
    let mut builds: Vec<(String, std::path::PathBuf, &str)> = ANSWERS
        .iter()
        .map(|&(name, setting)| (format!("answers {name}"), bin.join("framex"), setting))
        .collect();
    if let Some(against) = against {
        builds.push(("the other build".to_owned(), against, ""));
    }
    let mut instances = Vec::new();
    for (i, (_, framex, setting)) in builds.iter().enumerate() {
        let config = write(
            dir,
            &format!("payload-{i}.toml"),
            &format!("[server]\nhost = \"127.0.0.1\"\nport = 0\n{setting}"),
        )?;
        let instance = start(framex, &config, "payload")?;
        let address = instance
            .url
            .strip_prefix("http://")
            .context("an http URL")?
            .to_owned();
        instances.push((instance, address));
    }
    let mut floors = vec![Vec::new(); SIZES.len()];
    // By size, then by instance.
    let mut calls = vec![vec![Vec::new(); builds.len()]; SIZES.len()];
    for round in 0..options.rounds {
        for (i, &(name, bytes, count)) in SIZES.iter().enumerate() {
            let body_file = dir.join(format!("body-{bytes}.json"));
            let output = Command::new(bin.join("examples/payload_floor"))
                .args([bytes.to_string(), count.to_string()])
                .arg(&body_file)
                .output()
                .context("cannot run payload_floor")?;
            ensure!(
                output.status.success(),
                "payload_floor failed: {}",
                String::from_utf8_lossy(&output.stderr)
            );
            let floor: f64 = String::from_utf8_lossy(&output.stdout)
                .trim()
                .parse()
                .context("payload_floor printed no figure")?;
            let body = std::fs::read(&body_file)
                .with_context(|| format!("cannot read {}", body_file.display()))?;
            let mut line = format!("round {}: {name}: floor {floor:.0} µs", round + 1);
            // Each round starts from another instance: the one measured last
            // in a round came out up to a tenth behind an identical twin
            // measured first.
            for k in 0..instances.len() {
                let j = (k + round) % instances.len();
                let (instance, address) = &instances[j];
                let mut connection = Connection::open(address)?;
                if round == 0 {
                    check_echo(&connection.post(&body)?, bytes)?;
                }
                for _ in 0..count.div_ceil(10) {
                    connection.post(&body)?;
                }
                let before = cpu_seconds(instance)?;
                for _ in 0..count {
                    connection.post(&body)?;
                }
                let call = (cpu_seconds(instance)? - before) / f64::from(count) * 1e6;
                line.push_str(&format!(
                    ", {} {call:.0} µs ({:.2}x)",
                    builds[j].0,
                    call / floor
                ));
                calls[i][j].push(call);
            }
            println!("{line}");
            floors[i].push(floor);
        }
    }
    println!();
    let mut head = "| JSON | floor |".to_owned();
    let mut rule = "| --- | ---: |".to_owned();
    for (name, _, _) in &builds {
        head.push_str(&format!(" serving CPU, {name} | call / floor |"));
        rule.push_str(" ---: | ---: |");
    }
    println!("{head}");
    println!("{rule}");
    let mut short = Vec::new();
    for (i, &(name, _, _)) in SIZES.iter().enumerate() {
        let mut row = format!("| {name} | {:.0} µs |", median(floors[i].iter().copied()));
        for (j, per_instance) in calls[i].iter().enumerate() {
            let ratios: Vec<f64> = per_instance
                .iter()
                .zip(&floors[i])
                .map(|(call, floor)| call / floor)
                .collect();
            let low = ratios.iter().copied().fold(f64::INFINITY, f64::min);
            let high = ratios.iter().copied().fold(0.0, f64::max);
            let ratio = median(ratios.into_iter());
            row.push_str(&format!(
                " {:.0} µs | {ratio:.2}× [{low:.2}–{high:.2}] |",
                median(per_instance.iter().copied()),
            ));
            // The target is for the default, stored answers.
            if j == 0 && ratio > 1.15 {
                short.push(format!(
                    "short of the target: serving {name} costs {ratio:.2}x its floor, not at most 1.15x"
                ));
            }
        }
        println!("{row}");
    }
    for line in short {
        println!("{line}");
    }
    Ok(())
}

/// The answer to the first call is the arguments' `value`, unchanged.
fn check_echo(answer: &[u8], bytes: usize) -> Result<()> {
    let envelope: serde_json::Value =
        serde_json::from_slice(answer).context("the answer is not JSON")?;
    let data = envelope["data"]
        .as_str()
        .with_context(|| format!("the answer has no encoded data: {}", envelope["message"]))?;
    let json = framex_transport::wire::decode_json(data, 64 * bytes)?;
    let echoed: serde_json::Value = serde_json::from_slice(&json)?;
    let items = echoed.as_array().map_or(0, Vec::len);
    ensure!(
        items > 0 && echoed[0]["name"] == "record 0 of the nightly report",
        "the echo is not the records sent"
    );
    Ok(())
}

/// One kept-alive HTTP/1.1 connection to the instance.
struct Connection {
    address: String,
    reader: BufReader<TcpStream>,
}

impl Connection {
    fn open(address: &str) -> Result<Connection> {
        let stream =
            TcpStream::connect(address).with_context(|| format!("cannot connect to {address}"))?;
        stream.set_read_timeout(Some(Duration::from_secs(60)))?;
        stream.set_nodelay(true)?;
        Ok(Connection {
            address: address.to_owned(),
            reader: BufReader::new(stream),
        })
    }

    /// Posts `body` to the proxy endpoint; the answer's body, or an error
    /// for a status other than 200.
    fn post(&mut self, body: &[u8]) -> Result<Vec<u8>> {
        let stream = self.reader.get_mut();
        write!(
            stream,
            "POST /api/v1/proxy/remote HTTP/1.1\r\nHost: {}\r\nx-framex-errors: http-status\r\n\
             Content-Type: application/json\r\nContent-Length: {}\r\n\r\n",
            self.address,
            body.len()
        )?;
        stream.write_all(body)?;
        let mut status_line = String::new();
        self.reader.read_line(&mut status_line)?;
        let status = status_line.split(' ').nth(1).unwrap_or_default().to_owned();
        let mut length = None;
        loop {
            let mut line = String::new();
            self.reader.read_line(&mut line)?;
            let line = line.trim_end();
            if line.is_empty() {
                break;
            }
            if let Some((name, value)) = line.split_once(':')
                && name.eq_ignore_ascii_case("content-length")
            {
                length = value.trim().parse::<usize>().ok();
            }
        }
        let length = length.with_context(|| format!("no Content-Length in {status_line:?}"))?;
        let mut answer = vec![0; length];
        self.reader.read_exact(&mut answer)?;
        ensure!(
            status == "200",
            "status {status}: {}",
            String::from_utf8_lossy(&answer[..answer.len().min(300)])
        );
        Ok(answer)
    }
}
