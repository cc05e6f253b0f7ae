//! `cargo xtask memory`: what one call with large arguments costs an instance
//! in memory, for the shapes that cost the most per byte.
//!
//! For each shape it starts a fresh release `framex serve`, sends one call of
//! `demo.echo` whose arguments inflate to about 30 MiB (within the default
//! limits, a few hundred KiB on the wire), then a few small calls, and reads
//! the instance's peak resident memory (`VmHWM`) and what it holds after. It
//! fails when the peak passes what a call may take (16 times its arguments'
//! JSON, see the README's security section) plus what an idle instance holds,
//! or when the memory is not given back. Traffic goes to 127.0.0.1 only.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result, ensure};

use crate::instances::{Instance, build_release, in_work_dir, start, write};

/// What an instance may hold beyond a call's own bound: the runtime, the
/// buffers of the answer, the body as it arrived.
const OVERHEAD: u64 = 128 * 1024 * 1024;
/// What an instance may keep once the call is over.
const KEPT: u64 = 64 * 1024 * 1024;

pub(crate) fn run() -> Result<()> {
    let root = build_release(
        "the framex command",
        &["-p", "framex-cli", "--bin", "framex"],
    )?;
    in_work_dir(|dir| measure(&root.join("target/release/framex"), dir))
}

/// The shapes: a name and the JSON of `demo.echo`'s arguments.
fn shapes() -> Vec<(&'static str, Vec<u8>)> {
    const SIZE: usize = 30 * 1024 * 1024;
    let array = |item: &[u8]| {
        let mut json = b"{\"value\":[".to_vec();
        let count = SIZE / (item.len() + 1);
        for i in 0..count {
            if i > 0 {
                json.push(b',');
            }
            json.extend_from_slice(item);
        }
        json.extend_from_slice(b"]}");
        json
    };
    let deep = {
        // 999 levels (the kwargs object is the thousandth), then zeros.
        let mut json = b"{\"value\":".to_vec();
        json.extend(std::iter::repeat_n(b'[', 999));
        json.extend(array(b"0")[10..].iter().take(SIZE - 2000));
        json.extend_from_slice(b"0");
        json.extend(std::iter::repeat_n(b']', 999));
        json.push(b'}');
        json
    };
    let mut text = b"{\"value\":\"".to_vec();
    text.extend(std::iter::repeat_n(b'a', SIZE));
    text.extend_from_slice(b"\"}");
    vec![
        ("array of zeros", array(b"0")),
        ("array of empty objects", array(b"{}")),
        ("array of empty strings", array(b"\"\"")),
        (
            "array of records",
            array(br#"{"id":12345,"name":"record of the report","ok":true}"#),
        ),
        ("one long string", text),
        ("999 levels, then zeros", deep),
    ]
}

fn measure(framex: &Path, dir: &Path) -> Result<()> {
    let config = write(
        dir,
        "memory.toml",
        "[server]\nhost = \"127.0.0.1\"\nport = 0\n",
    )?;
    println!();
    println!(
        "{:<24} {:>9} {:>8} {:>6} {:>10} {:>9} {:>10}",
        "arguments", "JSON", "wire", "status", "peak RSS", "x JSON", "after"
    );
    let mut failures = Vec::new();
    for (name, json) in shapes() {
        let instance = start(framex, &config, "memory")?;
        let idle = instance.rss()?;
        let body = framex_transport::wire::CallBody::encode_json("demo.echo", &json)?.to_json();
        let status = post(&instance, &body)?;
        for _ in 0..20 {
            post(
                &instance,
                &framex_transport::wire::CallBody::encode_json("demo.echo", br#"{"value":1}"#)?
                    .to_json(),
            )?;
        }
        // The command gives freed memory back within a few seconds: watched
        // until it has, for up to 10 s.
        let given_back = std::time::Instant::now();
        let mut after = instance.rss()?;
        while after > idle + KEPT && given_back.elapsed() < Duration::from_secs(10) {
            std::thread::sleep(Duration::from_millis(100));
            after = instance.rss()?;
        }
        let peak = instance.peak_rss()?;
        let mib = |bytes: u64| bytes as f64 / (1024.0 * 1024.0);
        println!(
            "{name:<24} {:>6.1} MiB {:>5} KiB {status:>6} {:>6.0} MiB {:>8.1}x {:>6.0} MiB",
            mib(json.len() as u64),
            body.len() / 1024,
            mib(peak),
            (peak - idle) as f64 / json.len() as f64,
            mib(after),
        );
        let bound = 16 * json.len() as u64 + idle + OVERHEAD;
        if peak > bound {
            failures.push(format!(
                "{name}: peak {:.0} MiB, more than {:.0} MiB",
                mib(peak),
                mib(bound)
            ));
        }
        if after > idle + KEPT {
            failures.push(format!(
                "{name}: {:.0} MiB kept after the call",
                mib(after - idle)
            ));
        }
        drop::<Instance>(instance);
    }
    ensure!(
        failures.is_empty(),
        "memory bound broken: {}",
        failures.join("; ")
    );
    println!(
        "\nevery peak within 16 times the arguments' JSON plus {} MiB; memory given back",
        OVERHEAD / (1024 * 1024)
    );
    Ok(())
}

/// Posts a call body to the instance's proxy endpoint; the status.
fn post(instance: &Instance, body: &[u8]) -> Result<u16> {
    let address = instance.url.strip_prefix("http://").context("http URL")?;
    let mut stream = TcpStream::connect(address)?;
    stream.set_read_timeout(Some(Duration::from_secs(120)))?;
    write!(
        stream,
        "POST /api/v1/proxy/remote HTTP/1.1\r\nHost: {address}\r\nx-framex-errors: http-status\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )?;
    stream.write_all(body)?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response)?;
    let head = String::from_utf8_lossy(&response[..response.len().min(64)]).into_owned();
    head.split(' ')
        .nth(1)
        .and_then(|status| status.parse().ok())
        .with_context(|| format!("no HTTP status in {head:?}"))
}
