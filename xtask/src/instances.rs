//! Starting and stopping demo instances as real processes, for `cargo xtask`
//! tasks: each is killed when its guard drops, and Ctrl-C or SIGTERM to the task
//! kills every instance started before the task exits.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use serde_json::Value;

/// A started instance; killed when dropped.
pub(crate) struct Instance {
    pub(crate) name: &'static str,
    child: Child,
    pub(crate) url: String,
    /// From spawning to listening (and answering `/health` when checked).
    pub(crate) started_in: Duration,
}

impl Drop for Instance {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        forget_started(self.child.id());
    }
}

impl Instance {
    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// A field of the process's `/proc/PID/status` that counts KiB, in bytes.
    fn status_bytes(&self, field: &str) -> Result<u64> {
        let path = format!("/proc/{}/status", self.pid());
        let status =
            std::fs::read_to_string(&path).with_context(|| format!("cannot read {path}"))?;
        let kib: u64 = status
            .lines()
            .find_map(|line| line.strip_prefix(field))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|kib| kib.parse().ok())
            .with_context(|| format!("{path} has no {field}"))?;
        Ok(kib * 1024)
    }

    /// Its resident memory now, in bytes.
    pub(crate) fn rss(&self) -> Result<u64> {
        self.status_bytes("VmRSS:")
    }

    /// The most resident memory it has had, in bytes.
    pub(crate) fn peak_rss(&self) -> Result<u64> {
        self.status_bytes("VmHWM:")
    }

    /// Kills the process at once (SIGKILL), as a crash would.
    pub(crate) fn kill(&mut self) -> Result<()> {
        self.child
            .kill()
            .with_context(|| format!("cannot kill the {} instance", self.name))?;
        self.child.wait()?;
        Ok(())
    }

    /// Sends SIGTERM and waits up to `within` for the process to exit.
    pub(crate) fn terminate(&mut self, within: Duration) -> Result<std::process::ExitStatus> {
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
pub(crate) fn work_dir() -> PathBuf {
    std::env::temp_dir().join(format!("framex-e2e-{}", std::process::id()))
}

/// Runs `task` with this run's work directory, made for it and removed after
/// it, and with every instance it starts killed on Ctrl-C or SIGTERM.
pub(crate) fn in_work_dir<T>(task: impl FnOnce(&Path) -> Result<T>) -> Result<T> {
    kill_started_on_interrupt()?;
    let dir = work_dir();
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let result = task(&dir);
    let _ = std::fs::remove_dir_all(&dir);
    result
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
pub(crate) fn kill_started_on_interrupt() -> Result<()> {
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

/// The workspace's root, where xtask's own folder is.
pub(crate) fn workspace() -> Result<PathBuf> {
    Ok(Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .context("xtask lives in the workspace")?
        .to_owned())
}

/// Builds `targets` (cargo's `-p`/`--bin`/`--example` arguments) with the
/// release profile, saying `what` is being built, and returns the workspace
/// root.
pub(crate) fn build_release(what: &str, targets: &[&str]) -> Result<PathBuf> {
    let root = workspace()?;
    println!("building {what} (release)…");
    let status = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .current_dir(&root)
        .args(["build", "--quiet", "--release"])
        .args(targets)
        .status()
        .context("cannot run cargo build")?;
    ensure!(status.success(), "the release build failed");
    Ok(root)
}

/// Builds the `framex` command once and returns its path.
pub(crate) fn build_framex() -> Result<PathBuf> {
    let root = workspace()?;
    println!("building the framex command…");
    let status = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .current_dir(&root)
        .args(["build", "--quiet", "-p", "framex-cli", "--bin", "framex"])
        .status()
        .context("cannot run cargo build")?;
    ensure!(status.success(), "building the framex command failed");
    Ok(root.join("target/debug/framex"))
}

pub(crate) fn write(dir: &Path, name: &str, text: &str) -> Result<PathBuf> {
    let path = dir.join(name);
    std::fs::write(&path, text).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(path)
}

/// The `framex` command of another build, given with `--against`: refused
/// unless it is a file, and made absolute, since instances run in the work
/// directory.
pub(crate) fn other_build(path: &Path) -> Result<PathBuf> {
    ensure!(
        path.is_file(),
        "--against takes the path of another build's framex command; {} is not a file",
        path.display()
    );
    path.canonicalize()
        .with_context(|| format!("cannot resolve {}", path.display()))
}

/// Starts `framex serve` (the demo functions) and waits for its `listening on`
/// line.
pub(crate) fn start(framex: &Path, config: &Path, name: &'static str) -> Result<Instance> {
    start_logging(framex, config, name, None)
}

/// [`start`], the instance logging into the file `log` when given (see
/// [`spawn_logging`]).
pub(crate) fn start_logging(
    framex: &Path,
    config: &Path,
    name: &'static str,
    log: Option<&Path>,
) -> Result<Instance> {
    let mut command = Command::new(framex);
    command.arg("serve").arg(config).args(["--name", name]);
    spawn_logging(&mut command, name, true, log)
}

/// Starts `command`, waits for its `listening on URL` line and, when `health`,
/// for `GET /health` to answer. The instance records how long that took.
pub(crate) fn spawn(command: &mut Command, name: &'static str, health: bool) -> Result<Instance> {
    spawn_logging(command, name, health, None)
}

/// [`spawn`]; with `log`, the process logs into that file at `RUST_LOG` or,
/// when that is unset, at `info`, as `framex serve` does by default (what a
/// benchmark of the default settings measures); without it, errors only, on
/// this task's standard error.
pub(crate) fn spawn_logging(
    command: &mut Command,
    name: &'static str,
    health: bool,
    log: Option<&Path>,
) -> Result<Instance> {
    let spawned = Instant::now();
    let (stderr, default_level) = match log {
        Some(path) => (
            Stdio::from(
                std::fs::File::create(path)
                    .with_context(|| format!("cannot create {}", path.display()))?,
            ),
            "info",
        ),
        // The checks provoke refusals and failures on purpose; their warnings
        // would drown the table.
        None => (Stdio::inherit(), "error"),
    };
    let mut child = command
        .stdout(Stdio::piped())
        .stderr(stderr)
        // RUST_LOG set by the user wins.
        .env(
            "RUST_LOG",
            std::env::var("RUST_LOG").unwrap_or_else(|_| default_level.to_owned()),
        )
        .spawn()
        .with_context(|| format!("cannot start {:?}", command.get_program()))?;
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
        started_in: Duration::ZERO,
    };
    match receiver.recv_timeout(Duration::from_secs(30)) {
        Ok(url) => instance.url = url,
        Err(_) => bail!(
            "the {} instance did not start listening within 30 s",
            instance.name
        ),
    }
    let listening = Instant::now();
    while health && get(&instance.url, "/health").is_err() {
        ensure!(
            listening.elapsed() < Duration::from_secs(10),
            "{} never became healthy",
            instance.name
        );
        std::thread::sleep(Duration::from_millis(2));
    }
    instance.started_in = spawned.elapsed();
    println!(
        "started {name} instance at {} (pid {}) in {:.0} ms",
        instance.url,
        instance.pid(),
        instance.started_in.as_secs_f64() * 1000.0
    );
    Ok(instance)
}

pub(crate) fn get(url: &str, path: &str) -> Result<Value> {
    get_status(url, path, 200)
}

/// A plain HTTP/1.1 GET over loopback, expecting `status`; the JSON body.
pub(crate) fn get_status(url: &str, path: &str, status: u16) -> Result<Value> {
    let body = get_text(url, path, status)?;
    serde_json::from_str(&body).with_context(|| format!("GET {path} answered no JSON: {body}"))
}

/// A plain HTTP/1.1 GET over loopback, expecting `status`; the body as text.
pub(crate) fn get_text(url: &str, path: &str, status: u16) -> Result<String> {
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
    Ok(body.to_owned())
}
