//! `cargo xtask e2e`: two real FrameX instances on loopback, checked from outside.
//!
//! The remote protects `/api/v1/proxy/remote` with `proxy-key`. The local instance
//! loads the seed configuration pointed at the remote, with the key, and lists
//! `your_module.build_report` (and a function the remote lacks) for it. Every
//! check prints a row; any failure makes the task fail. Both processes are killed
//! on every exit path: their guards kill them on return and on panic, and Ctrl-C
//! (or SIGTERM) to this task kills every started instance before it exits.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use framex_transport::{Client, ClientSettings};
use serde_json::{Value, json};

const KEY: &str = "proxy-key";

/// A started instance; killed when dropped.
struct Instance {
    name: &'static str,
    child: Child,
    url: String,
}

impl Drop for Instance {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        forget_started(self.child.id());
    }
}

impl Instance {
    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends SIGTERM and waits up to `within` for the process to exit.
    fn terminate(&mut self, within: Duration) -> Result<std::process::ExitStatus> {
        rustix::process::kill_process(
            rustix::process::Pid::from_child(&self.child),
            rustix::process::Signal::TERM,
        )
        .with_context(|| format!("cannot send SIGTERM to the {} instance", self.name))?;
        let started = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait()? {
                return Ok(status);
            }
            ensure!(
                started.elapsed() < within,
                "the {} instance did not exit within {within:?} of SIGTERM",
                self.name
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// Where this run writes the instances' configurations.
fn work_dir() -> PathBuf {
    std::env::temp_dir().join(format!("framex-e2e-{}", std::process::id()))
}

/// Every instance started and not yet dropped, for the Ctrl-C handler.
static STARTED: std::sync::Mutex<Vec<u32>> = std::sync::Mutex::new(Vec::new());

fn forget_started(pid: u32) {
    if let Ok(mut started) = STARTED.lock() {
        started.retain(|&p| p != pid);
    }
}

/// On Ctrl-C or SIGTERM, kills every started instance and exits, so no instance
/// outlives the task.
fn kill_started_on_interrupt() -> Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let mut terminate = runtime.block_on(async {
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
    })?;
    std::thread::spawn(move || {
        runtime.block_on(async {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = terminate.recv() => {}
            }
        });
        let pids = STARTED.lock().map(|p| p.clone()).unwrap_or_default();
        for pid in pids {
            if let Some(pid) = rustix::process::Pid::from_raw(pid as i32) {
                let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
            }
        }
        let _ = std::fs::remove_dir_all(work_dir());
        eprintln!("interrupted: stopped every started instance");
        std::process::exit(130);
    });
    Ok(())
}

pub(crate) fn run() -> Result<()> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .context("xtask lives in the workspace")?;
    println!("building the demo instance…");
    let status = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .current_dir(root)
        .args(["build", "--quiet", "-p", "framex", "--example", "demo"])
        .status()
        .context("cannot run cargo build")?;
    ensure!(status.success(), "building the demo failed");
    let demo = root.join("target/debug/examples/demo");

    kill_started_on_interrupt()?;
    let dir = work_dir();
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let result = checks(&demo, &dir);
    let _ = std::fs::remove_dir_all(&dir);
    result
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
        // Let the call reach the remote before it is told to stop.
        std::thread::sleep(Duration::from_millis(500));
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

fn write(dir: &Path, name: &str, text: &str) -> Result<PathBuf> {
    let path = dir.join(name);
    std::fs::write(&path, text).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(path)
}

/// Starts the demo and waits for its `listening on` line.
fn start(demo: &Path, config: &Path, name: &'static str) -> Result<Instance> {
    let mut child = Command::new(demo)
        .arg(config)
        .args(["--name", name])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        // The checks provoke refusals and failures on purpose; their warnings
        // would drown the table. RUST_LOG set by the user wins.
        .env(
            "RUST_LOG",
            std::env::var("RUST_LOG").unwrap_or_else(|_| "error".to_owned()),
        )
        .spawn()
        .with_context(|| format!("cannot start {}", demo.display()))?;
    let stdout = child.stdout.take().context("no stdout")?;
    let (sender, receiver) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Some(url) = line.strip_prefix("listening on ") {
                let _ = sender.send(url.to_owned());
            }
        }
    });
    if let Ok(mut started) = STARTED.lock() {
        started.push(child.id());
    }
    let mut instance = Instance {
        name,
        child,
        url: String::new(),
    };
    match receiver.recv_timeout(Duration::from_secs(30)) {
        Ok(url) => instance.url = url,
        Err(_) => bail!(
            "the {} instance did not start listening within 30 s",
            instance.name
        ),
    }
    let started = Instant::now();
    while get(&instance.url, "/health").is_err() {
        ensure!(
            started.elapsed() < Duration::from_secs(10),
            "{} never became healthy",
            instance.name
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    println!(
        "started {name} instance at {} (pid {})",
        instance.url,
        instance.pid()
    );
    Ok(instance)
}

fn get(url: &str, path: &str) -> Result<Value> {
    get_status(url, path, 200)
}

/// A plain HTTP/1.1 GET over loopback, expecting `status`.
fn get_status(url: &str, path: &str, status: u16) -> Result<Value> {
    let address = url.strip_prefix("http://").context("http URL")?;
    let mut stream =
        TcpStream::connect(address).with_context(|| format!("cannot connect to {url}"))?;
    stream.set_read_timeout(Some(Duration::from_secs(15)))?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n"
    )?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    let (head, body) = response.split_once("\r\n\r\n").context("no HTTP head")?;
    let got: u16 = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .context("no status")?;
    ensure!(
        got == status,
        "GET {path} answered {got}, expected {status}: {body}"
    );
    serde_json::from_str(body).with_context(|| format!("GET {path} answered no JSON: {body}"))
}
