//! Starting a real Python FrameX (`framex-kit` 0.4.2 from PyPI) for tests:
//! shared by the workspace's interoperability tests (`tests/python_interop.rs`)
//! and the `framex` command's (`crates/cli/tests/python.rs`), which include
//! this file.
//!
//! The virtual environment is made once under Cargo's `target/tmp` and kept.
//! Each instance runs `framex run` in a working directory of its own with the
//! plugin `interop_plugin.py`, and exits when its standard input closes, that
//! is when the test process ends, however it ends. Python is required: without
//! it these tests fail, they do not skip. `FRAMEX_TEST_PYTHON` names the
//! interpreter (default `python3`).

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const FRAMEX_KIT: &str = "framex-kit==0.4.2";
/// The OpenAPI validator the tests check documents with, installed beside it.
const VALIDATOR: &str = "openapi-spec-validator==0.9.0";
/// The plugin every instance loads.
pub const PLUGIN: &str = include_str!("interop_plugin.py");

/// A running Python FrameX.
pub struct PythonFramex {
    /// Its base URL.
    pub url: String,
    /// Its process id, which its functions report.
    pub pid: u32,
    /// Kept so the pipe to its standard input stays open while tests run.
    _child: Child,
}

/// Starts a Python FrameX in `target/tmp/NAME/PID` with `config` (a
/// `config.toml` whose `[server]` has `host` and `port`, from
/// [`own_address`]) and waits until it answers `/health` and has registered
/// each of `functions`, for at most 90 seconds.
///
/// Python FrameX registers the functions it lists for other instances after
/// it starts serving, so `/health` alone does not say they can be called.
pub fn start(
    tmp: &Path,
    name: &str,
    (host, port): (&str, u16),
    config: &str,
    functions: &[&str],
) -> Result<PythonFramex, String> {
    let framex = python_framex(tmp)?;
    let runs = tmp.join(name);
    remove_finished_runs(&runs);
    let dir = runs.join(std::process::id().to_string());
    std::fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    write(&dir.join("config.toml"), config)?;
    write(&dir.join("interop_plugin.py"), PLUGIN)?;
    let log = dir.join("python.log");
    let log_file =
        std::fs::File::create(&log).map_err(|e| format!("cannot create {}: {e}", log.display()))?;
    let mut child = Command::new(&framex)
        .arg("run")
        .current_dir(&dir)
        .env("PYTHONPATH", &dir)
        .stdin(Stdio::piped())
        .stdout(log_file.try_clone().map_err(|e| e.to_string())?)
        .stderr(log_file)
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}", framex.display()))?;
    let pid = child.id();
    let address = format!("{host}:{port}");
    let started = Instant::now();
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return Err(format!(
                "Python FrameX exited with {status} before serving; its log:\n{}",
                std::fs::read_to_string(&log).unwrap_or_default()
            ));
        }
        if health_answers(&address) && registered(&log, functions) {
            break;
        }
        if started.elapsed() > Duration::from_secs(90) {
            let _ = child.kill();
            return Err(format!(
                "Python FrameX did not answer /health and register {functions:?} within 90 s; its log:\n{}",
                std::fs::read_to_string(&log).unwrap_or_default()
            ));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok(PythonFramex {
        url: format!("http://{address}"),
        pid,
        _child: child,
    })
}

/// Whether the log at `log` says that each of `functions` is registered.
fn registered(log: &Path, functions: &[&str]) -> bool {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    functions.iter().all(|function| {
        text.lines()
            .any(|line| line.ends_with(&format!("Registering proxy function: {function}")))
    })
}

/// Whether `GET /health` at `address` answers 200.
fn health_answers(address: &str) -> bool {
    use std::io::Read as _;
    let Ok(mut stream) = std::net::TcpStream::connect(address) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    let request = format!("GET /health HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n");
    let mut response = String::new();
    stream.write_all(request.as_bytes()).is_ok()
        && stream.read_to_string(&mut response).is_ok()
        && response.starts_with("HTTP/1.1 200")
}

/// `framex` of a virtual environment with `framex-kit` installed, made once and
/// kept under `tmp`.
fn python_framex(tmp: &Path) -> Result<PathBuf, String> {
    let venv = tmp.join("framex-kit-0.4.2-venv");
    let framex = venv.join("bin").join("framex");
    let ready = venv.join(".framex-tests-ready");
    // What the environment was made with: one made with other packages is
    // made again.
    let installed = format!("{FRAMEX_KIT} {VALIDATOR}");
    let is_ready = || std::fs::read_to_string(&ready).is_ok_and(|made| made == installed);
    if is_ready() && framex.exists() {
        return Ok(framex);
    }
    // Test processes may run side by side (cargo nextest, or two test
    // crates): one builds, the others wait on the lock and then find the
    // environment ready.
    std::fs::create_dir_all(tmp).map_err(|e| format!("cannot create {}: {e}", tmp.display()))?;
    let lock_path = venv.with_extension("lock");
    let lock = std::fs::File::create(&lock_path)
        .map_err(|e| format!("cannot create {}: {e}", lock_path.display()))?;
    lock.lock()
        .map_err(|e| format!("cannot lock {}: {e}", lock_path.display()))?;
    if is_ready() && framex.exists() {
        return Ok(framex);
    }
    let python = std::env::var("FRAMEX_TEST_PYTHON").unwrap_or_else(|_| "python3".to_owned());
    let _ = std::fs::remove_dir_all(&venv);
    run(Command::new(&python).args(["-m", "venv"]).arg(&venv))
        .map_err(|e| format!("cannot create a virtual environment with `{python}` (Python 3.11+ with venv is required; set FRAMEX_TEST_PYTHON to choose the interpreter): {e}"))?;
    // framex-kit 0.4.2 imports `yaml` without declaring it.
    run(Command::new(venv.join("bin").join("pip")).args([
        "install",
        "--quiet",
        "--disable-pip-version-check",
        FRAMEX_KIT,
        "pyyaml",
        VALIDATOR,
    ]))
    .map_err(|e| format!("cannot install {FRAMEX_KIT} and {VALIDATOR}: {e}"))?;
    // Written last: an environment without it is rebuilt.
    write(&ready, &installed)?;
    Ok(framex)
}

/// Validates `document` (JSON) as an OpenAPI 3.0 or 3.1 document with
/// `openapi-spec-validator` in the tests' virtual environment; the
/// validator's complaint when it is not one.
#[allow(dead_code)]
pub fn validate_openapi(tmp: &Path, document: &[u8]) -> Result<(), String> {
    let framex = python_framex(tmp)?;
    let python = framex.with_file_name("python");
    let file = tmp.join(format!("openapi-{}.json", std::process::id()));
    std::fs::write(&file, document).map_err(|e| format!("cannot write {}: {e}", file.display()))?;
    let checked = run(Command::new(python)
        .arg("-c")
        .arg(
            "import json, sys\n\
         from openapi_spec_validator import validate\n\
         validate(json.load(open(sys.argv[1])))\n",
        )
        .arg(&file));
    let _ = std::fs::remove_file(&file);
    checked
}

/// Removes the working directories (configuration, plugin, log) of earlier test
/// processes that have ended; a directory is named by its process id.
fn remove_finished_runs(runs: &Path) {
    if !cfg!(target_os = "linux") {
        return;
    }
    let Ok(entries) = std::fs::read_dir(runs) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let alive = Path::new("/proc").join(&name).exists();
        if !alive && name.to_str().is_some_and(|n| n.parse::<u32>().is_ok()) {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

fn run(command: &mut Command) -> Result<(), String> {
    let output = command.output().map_err(|e| e.to_string())?;
    if output.status.success() {
        return Ok(());
    }
    Err(format!(
        "{} failed: {}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    ))
}

fn write(path: &Path, text: &str) -> Result<(), String> {
    std::fs::File::create(path)
        .and_then(|mut file| file.write_all(text.as_bytes()))
        .map_err(|e| format!("cannot write {}: {e}", path.display()))
}

/// The address the Python instance of this test process serves on: a
/// loopback address of this process alone, `127.A.B.C` from the process id,
/// never `127.0.0.1`, where everything else binds, with a port below the range
/// the system hands out for port 0.
///
/// Python binds its own socket, so the address must be known before it
/// starts (the Rust instances list it): a port found free and released would
/// race with every other test binding ports meanwhile.
pub fn own_address() -> (String, u16) {
    let pid = std::process::id();
    // Process ids are below 2^22: the second byte is 1 to 64.
    let host = format!(
        "127.{}.{}.{}",
        1 + (pid >> 16) % 254,
        (pid >> 8) & 0xff,
        pid & 0xff
    );
    (host, 18_080)
}
