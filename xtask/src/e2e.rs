//! `cargo xtask e2e`: two real FrameX instances on loopback, checked from outside.
//!
//! The remote protects `/api/v1/proxy/remote` with `proxy-key`. The local instance
//! loads the seed configuration pointed at the remote, with the key, and lists
//! `your_module.build_report` (and a function the remote lacks) for it. Every
//! check prints a row; any failure makes the task fail. Both processes are killed
//! on every exit path: their guards kill them on return and on panic, and Ctrl-C
//! (or SIGTERM) to this task kills every started instance before it exits.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use framex_transport::{Client, ClientSettings};
use serde_json::json;

use crate::instances::{
    Instance, build_framex, get, get_status, get_text, in_work_dir, start, write,
};

const KEY: &str = "proxy-key";

pub(crate) fn run() -> Result<()> {
    let demo = build_framex()?;
    in_work_dir(|dir| checks(&demo, dir))
}

fn checks(demo: &Path, dir: &Path) -> Result<()> {
    let remote_config = write(
        dir,
        "remote.toml",
        &format!(
            "[server]\nhost = \"127.0.0.1\"\nport = 0\n\n[auth]\nrules = {{ \"/api/v1/proxy/remote\" = [\"{KEY}\"] }}\n"
        ),
    )?;
    let mut remote = Some(start(demo, &remote_config, "remote")?);
    let remote_url = remote.as_ref().map(|r| r.url.clone()).unwrap_or_default();

    let seed = include_str!("../../examples/seed.toml")
        .replace("http://remote-framex:8080", &remote_url)
        .replace(
            "[\"your_module.build_report\"]",
            "[\"your_module.build_report\", \"demo.slow\", \"demo.not_on_remote\"]",
        )
        .replace(
            "[server]\nenable_proxy = true\n",
            "[server]\nenable_proxy = true\nhost = \"127.0.0.1\"\nport = 0\n",
        );
    let local_config = write(dir, "local.toml", &seed)?;
    let local = start(demo, &local_config, "local")?;

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let client = Client::new(ClientSettings::default().with_timeout(Duration::from_secs(10)));
    let mut table = Table::default();

    let remote_pid = remote.as_ref().map(Instance::pid).unwrap_or_default();
    table.check("listed function runs on the remote", || {
        let body = get(&local.url, "/api/v1/report?job_id=j-1")?;
        ensure!(
            body["result"]["job_id"] == "j-1",
            "unexpected report {body}"
        );
        let pid = body["result"]["made_by"]["pid"].as_u64();
        ensure!(
            pid == Some(u64::from(remote_pid)),
            "ran in pid {pid:?}, remote is {remote_pid}: {body}"
        );
        Ok(format!("made by the remote, pid {remote_pid}"))
    });
    table.check("unlisted function runs locally", || {
        let body = get(&local.url, "/api/v1/whoami")?;
        let pid = body["result"]["pid"].as_u64();
        ensure!(
            pid == Some(u64::from(local.pid())),
            "ran in pid {pid:?}, local is {}: {body}",
            local.pid()
        );
        Ok(format!("ran in the local instance, pid {}", local.pid()))
    });
    table.check("the remote answers a direct call with the key", || {
        let kwargs = json!({"job_id": "j-2"});
        let result = runtime.block_on(client.call(
            &remote_url,
            Some(KEY),
            "your_module.build_report",
            kwargs.as_object().unwrap(),
        ))?;
        ensure!(result["job_id"] == "j-2", "unexpected result {result}");
        Ok("decoded result".into())
    });
    table.check("a wrong key is refused with a clear error", || {
        let kwargs = json!({"job_id": "j-3"});
        match runtime.block_on(client.call(
            &remote_url,
            Some("wrong-key"),
            "your_module.build_report",
            kwargs.as_object().unwrap(),
        )) {
            Err(error) if error.is_unauthorized() => Ok(error.to_string()),
            other => bail!("expected an auth error, got {other:?}"),
        }
    });
    table.check("a function the remote lacks gives a clear error", || {
        let body = get_status(&local.url, "/api/v1/missing", 502)?;
        let message = body["error"].as_str().unwrap_or_default();
        ensure!(
            message.contains("not registered"),
            "unexpected error {body}"
        );
        Ok(message.to_owned())
    });
    table.check("a route of the remote is forwarded by the local", || {
        let started = Instant::now();
        loop {
            let health = get(&local.url, "/health")?;
            if health["upstreams"][0]["state"] == "ready" {
                break;
            }
            ensure!(
                started.elapsed() < Duration::from_secs(10),
                "the local instance never loaded the remote's routes: {health}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        let body = get(&local.url, "/api/v1/remote/hello")?;
        let pid = body["result"]["pid"].as_u64();
        ensure!(
            pid == Some(u64::from(remote_pid)),
            "answered by pid {pid:?}, remote is {remote_pid}: {body}"
        );
        Ok(format!(
            "GET /api/v1/remote/hello answered by the remote, pid {remote_pid}"
        ))
    });
    table.check("SIGTERM lets a call in flight finish", || {
        let remote = remote.as_mut().context("the remote is running")?;
        let local_url = local.url.clone();
        let in_flight = std::thread::spawn(move || get(&local_url, "/api/v1/slow?ms=1500"));
        // The remote is told to stop once the call runs there.
        let started = Instant::now();
        while !get_text(&remote.url, "/metrics", 200)?
            .lines()
            .any(|line| line == "framex_calls_in_flight 1")
        {
            ensure!(
                started.elapsed() < Duration::from_secs(10),
                "the slow call never reached the remote"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        let status = remote.terminate(Duration::from_secs(10))?;
        let body = in_flight
            .join()
            .map_err(|_| anyhow::anyhow!("the calling thread panicked"))??;
        let pid = body["result"]["pid"].as_u64();
        ensure!(
            pid == Some(u64::from(remote_pid)),
            "ran in pid {pid:?}, remote is {remote_pid}: {body}"
        );
        ensure!(status.success(), "the remote exited with {status}");
        Ok(format!(
            "the call finished on the remote, which then exited ({status})"
        ))
    });
    drop(remote.take());
    table.check(
        "the remote stopped gives a connect error at the caller",
        || {
            let body = get_status(&local.url, "/api/v1/report?job_id=j-4", 502)?;
            let message = body["error"].as_str().unwrap_or_default();
            ensure!(
                message.contains("cannot connect"),
                "unexpected error {body}"
            );
            Ok(message.to_owned())
        },
    );
    table.check("the local instance keeps serving local functions", || {
        let body = get(&local.url, "/api/v1/whoami")?;
        ensure!(
            body["result"]["instance"] == "local",
            "unexpected answer {body}"
        );
        Ok("still answering".into())
    });
    table.finish()
}

#[derive(Default)]
struct Table {
    failed: usize,
    total: usize,
}

impl Table {
    fn check(&mut self, name: &str, check: impl FnOnce() -> Result<String>) {
        self.total += 1;
        match check() {
            Ok(detail) => println!("  ok    {name:<52} {detail}"),
            Err(error) => {
                self.failed += 1;
                println!("  FAIL  {name:<52} {error:#}");
            }
        }
    }

    fn finish(self) -> Result<()> {
        println!(
            "{} passed, {} failed",
            self.total - self.failed,
            self.failed
        );
        ensure!(
            self.failed == 0,
            "{} of {} checks failed",
            self.failed,
            self.total
        );
        Ok(())
    }
}
