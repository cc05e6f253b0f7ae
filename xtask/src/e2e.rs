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
use serde_json::{Value, json};

use crate::instances::{
    Instance, build_framex, get, get_status, get_text, in_work_dir, start, write,
};

const KEY: &str = "proxy-key";

pub(crate) fn run() -> Result<()> {
    let demo = build_framex()?;
    in_work_dir(|dir| checks(&mut processes(&demo, dir)?))
}

/// A remote and a local instance, however they run: processes on loopback
/// here, containers on a private network in `cargo xtask containers`.
pub(crate) trait Pair {
    /// The local instance's base URL, from here.
    fn local_url(&self) -> &str;
    /// The remote's base URL, from here.
    fn remote_url(&self) -> &str;
    /// How the demo functions' `made_by` names the remote and the local
    /// instance (`{"pid": …}` of a process, `{"host": …}` of a container).
    fn remote_mark(&self) -> (&'static str, Value);
    fn local_mark(&self) -> (&'static str, Value);
    /// Asks the remote to stop (SIGTERM) and waits up to `within` for it to
    /// exit; says how it exited, failing unless it exited cleanly.
    fn terminate_remote(&mut self, within: Duration) -> Result<String>;
    /// Stops the remote for good, if it is still there.
    fn drop_remote(&mut self);
}

/// The pair `cargo xtask e2e` runs: two `framex serve` processes.
struct Processes {
    local: Instance,
    remote: Option<Instance>,
    remote_url: String,
    remote_pid: u32,
}

impl Pair for Processes {
    fn local_url(&self) -> &str {
        &self.local.url
    }

    fn remote_url(&self) -> &str {
        &self.remote_url
    }

    fn remote_mark(&self) -> (&'static str, Value) {
        ("pid", json!(self.remote_pid))
    }

    fn local_mark(&self) -> (&'static str, Value) {
        ("pid", json!(self.local.pid()))
    }

    fn terminate_remote(&mut self, within: Duration) -> Result<String> {
        let remote = self.remote.as_mut().context("the remote is running")?;
        let status = remote.terminate(within)?;
        ensure!(status.success(), "the remote exited with {status}");
        Ok(status.to_string())
    }

    fn drop_remote(&mut self) {
        self.remote = None;
    }
}

fn processes(demo: &Path, dir: &Path) -> Result<Processes> {
    let remote_config = write(
        dir,
        "remote.toml",
        &format!(
            "[server]\nhost = \"127.0.0.1\"\nport = 0\n\n[auth]\nrules = {{ \"/api/v1/proxy/remote\" = [\"{KEY}\"] }}\n"
        ),
    )?;
    let remote = start(demo, &remote_config, "remote")?;
    let remote_url = remote.url.clone();
    let local_config = write(
        dir,
        "local.toml",
        &local_seed(&remote_url).replace(
            "[server]\nenable_proxy = true\n",
            "[server]\nenable_proxy = true\nhost = \"127.0.0.1\"\nport = 0\n",
        ),
    )?;
    let local = start(demo, &local_config, "local")?;
    Ok(Processes {
        local,
        remote_pid: remote.pid(),
        remote: Some(remote),
        remote_url,
    })
}

/// The seed configuration pointed at `remote_url`, listing two more functions
/// for it: a slow one and one the remote lacks.
pub(crate) fn local_seed(remote_url: &str) -> String {
    include_str!("../../examples/seed.toml")
        .replace("http://remote-framex:8080", remote_url)
        .replace(
            "[\"your_module.build_report\"]",
            "[\"your_module.build_report\", \"demo.slow\", \"demo.not_on_remote\"]",
        )
}

fn is(made_by: &Value, (field, mark): &(&'static str, Value)) -> bool {
    made_by.get(*field) == Some(mark)
}

/// The checks of `cargo xtask e2e`, one row each, on any pair.
pub(crate) fn checks(pair: &mut impl Pair) -> Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let client = Client::new(ClientSettings::default().with_timeout(Duration::from_secs(10)));
    let mut table = Table::default();
    let (local_url, remote_url) = (pair.local_url().to_owned(), pair.remote_url().to_owned());
    let (remote_mark, local_mark) = (pair.remote_mark(), pair.local_mark());
    let remote_is = format!("{} {}", remote_mark.0, remote_mark.1);

    table.check("listed function runs on the remote", || {
        let body = get(&local_url, "/api/v1/report?job_id=j-1")?;
        ensure!(
            body["result"]["job_id"] == "j-1",
            "unexpected report {body}"
        );
        let made_by = &body["result"]["made_by"];
        ensure!(
            is(made_by, &remote_mark),
            "made by {made_by}, the remote is {remote_is}: {body}"
        );
        Ok(format!("made by the remote, {remote_is}"))
    });
    table.check("unlisted function runs locally", || {
        let body = get(&local_url, "/api/v1/whoami")?;
        let made_by = &body["result"];
        ensure!(
            is(made_by, &local_mark),
            "ran in {made_by}, local is {} {}: {body}",
            local_mark.0,
            local_mark.1
        );
        Ok(format!(
            "ran in the local instance, {} {}",
            local_mark.0, local_mark.1
        ))
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
        let body = get_status(&local_url, "/api/v1/missing", 502)?;
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
            let health = get(&local_url, "/health")?;
            if health["upstreams"][0]["state"] == "ready" {
                break;
            }
            ensure!(
                started.elapsed() < Duration::from_secs(10),
                "the local instance never loaded the remote's routes: {health}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        let body = get(&local_url, "/api/v1/remote/hello")?;
        let made_by = &body["result"];
        ensure!(
            is(made_by, &remote_mark),
            "answered by {made_by}, the remote is {remote_is}: {body}"
        );
        Ok(format!(
            "GET /api/v1/remote/hello answered by the remote, {remote_is}"
        ))
    });
    table.check("SIGTERM lets a call in flight finish", || {
        let in_flight = {
            let local_url = local_url.clone();
            std::thread::spawn(move || get(&local_url, "/api/v1/slow?ms=1500"))
        };
        // The remote is told to stop once the call runs there.
        let started = Instant::now();
        while !get_text(&remote_url, "/metrics", 200)?
            .lines()
            .any(|line| line == "framex_calls_in_flight 1")
        {
            ensure!(
                started.elapsed() < Duration::from_secs(10),
                "the slow call never reached the remote"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        let exited = pair.terminate_remote(Duration::from_secs(10))?;
        let body = in_flight
            .join()
            .map_err(|_| anyhow::anyhow!("the calling thread panicked"))??;
        let made_by = &body["result"];
        ensure!(
            is(made_by, &remote_mark),
            "ran in {made_by}, the remote is {remote_is}: {body}"
        );
        Ok(format!(
            "the call finished on the remote, which then exited ({exited})"
        ))
    });
    pair.drop_remote();
    table.check(
        "the remote stopped gives a connect error at the caller",
        || {
            let body = get_status(&local_url, "/api/v1/report?job_id=j-4", 502)?;
            let message = body["error"].as_str().unwrap_or_default();
            ensure!(
                message.contains("cannot connect") || message.contains("cannot resolve"),
                "unexpected error {body}"
            );
            Ok(message.to_owned())
        },
    );
    table.check("the local instance keeps serving local functions", || {
        let body = get(&local_url, "/api/v1/whoami")?;
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
