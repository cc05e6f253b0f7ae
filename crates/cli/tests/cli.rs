//! The `framex` command as a user runs it: `--help` for each command, `check`
//! on good and bad files, and `call` against a running `framex serve` instance.

use std::io::{BufRead as _, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};

use serde_json::{Value, json};

fn framex() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_framex"));
    command
        .env_remove("FRAMEX_PROXY_KEY")
        .env("RUST_LOG", "error");
    command
}

fn run(args: &[&str]) -> Output {
    framex().args(args).output().unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// A configuration file of this test's own.
fn config_file(name: &str, toml: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("cli");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, toml).unwrap();
    path
}

/// A `framex serve` instance, killed when dropped.
struct Served {
    child: Child,
    url: String,
    /// The instance's log, line by line, as it writes it.
    log: std::sync::mpsc::Receiver<String>,
}

impl Served {
    /// Waits for a log line containing `text`, up to 10 s, and returns it.
    fn wait_for_log(&self, text: &str) -> String {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match self.log.recv_timeout(left) {
                Ok(line) if line.contains(text) => return line,
                Ok(_) => {}
                Err(error) => panic!("no log line with {text:?} within 10 s: {error}"),
            }
        }
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn serve(config: &PathBuf) -> Served {
    serve_named(config, "cli-test")
}

fn serve_named(config: &PathBuf, name: &str) -> Served {
    let mut child = framex()
        .args(["serve"])
        .arg(config)
        .args(["--name", name])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Read all along, so that the instance never blocks on a full pipe.
    let stderr = BufReader::new(child.stderr.take().unwrap());
    let (lines, log) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in stderr.lines().map_while(Result::ok) {
            if lines.send(line).is_err() {
                break;
            }
        }
    });
    let url = listening_url(&mut child);
    Served { child, url, log }
}

/// The URL of a `framex serve` child's first line, `listening on URL`.
fn listening_url(child: &mut Child) -> String {
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    line.trim()
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
        .to_owned()
}

#[test]
fn every_command_explains_itself() {
    let help = run(&["--help"]);
    assert!(help.status.success());
    for command in ["check", "call", "health", "serve"] {
        assert!(
            text(&help.stdout).contains(command),
            "{}",
            text(&help.stdout)
        );
    }
    for (command, words) in [
        ("check", &["[CONFIG]", "exit 1"][..]),
        (
            "call",
            &[
                "<URL>",
                "<FUNCTION>",
                "--kwargs",
                "--key",
                "FRAMEX_PROXY_KEY",
                "--timeout",
            ][..],
        ),
        ("health", &["[CONFIG]", "--address", "--timeout", "503"][..]),
        ("serve", &["[CONFIG]", "--name", "listening on"][..]),
    ] {
        let output = run(&[command, "--help"]);
        assert!(output.status.success(), "{command}");
        let help = text(&output.stdout);
        for word in words {
            assert!(
                help.contains(word),
                "`framex {command} --help` lacks {word}:\n{help}"
            );
        }
    }
    let wrong = run(&["cal"]);
    assert_eq!(wrong.status.code(), Some(2));
    assert!(
        text(&wrong.stderr).contains("call"),
        "{}",
        text(&wrong.stderr)
    );
}

#[test]
fn check_prints_where_functions_run_or_every_error() {
    let good = config_file(
        "good.toml",
        "load_builtin_plugins = [\"proxy\"]\n[server]\nenable_proxy = true\n\
         [plugins.proxy]\nproxy_urls = [\"http://remote-framex:8080\"]\n\
         proxy_functions = { \"http://remote-framex:8080\" = [\"your_module.build_report\"] }\n",
    );
    let output = framex().arg("check").arg(&good).output().unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    let summary = text(&output.stdout);
    assert!(
        summary.contains("your_module.build_report -> http://remote-framex:8080"),
        "{summary}"
    );
    assert!(summary.contains("http://remote-framex:8080\n"), "{summary}");

    let bad = config_file(
        "bad.toml",
        "[server]\nport = \"eighty\"\n[auth]\nrules = { \"api\" = [\"k\"] }\n",
    );
    let output = framex().arg("check").arg(&bad).output().unwrap();
    assert_eq!(output.status.code(), Some(1));
    let errors = text(&output.stderr);
    assert!(errors.contains("bad.toml:2:8: `server.port`"), "{errors}");
    assert!(errors.contains("`auth.rules"), "{errors}");
    assert_eq!(
        errors
            .lines()
            .filter(|line| line.starts_with("error:"))
            .count(),
        2,
        "{errors}"
    );
}

#[test]
fn call_prints_the_result_or_the_error_of_a_running_instance() {
    let config = config_file(
        "serve.toml",
        "[server]\nhost = \"127.0.0.1\"\nport = 0\n\
         [auth]\nrules = { \"/api/v1/proxy/remote\" = [\"cli-key\"] }\n",
    );
    let served = serve(&config);
    let url = served.url.as_str();

    let output = framex()
        .args([
            "call",
            url,
            "demo.echo",
            "--kwargs",
            r#"{"value": {"job_id": "j-1", "n": [1, 2]}}"#,
        ])
        .env("FRAMEX_PROXY_KEY", "cli-key")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    let result: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(result, json!({"job_id": "j-1", "n": [1, 2]}));

    let output = run(&["call", url, "demo.whoami", "--key", "cli-key"]);
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    let result: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(result["instance"], "cli-test");

    for (args, expected) in [
        (
            vec!["call", url, "demo.nothing", "--key", "cli-key"],
            format!("function `demo.nothing` is not registered on {url}"),
        ),
        (
            vec!["call", url, "demo.whoami"],
            format!("{url} refused the key for `demo.whoami`"),
        ),
        (
            vec![
                "call",
                url,
                "demo.echo",
                "--key",
                "cli-key",
                "--kwargs",
                "[1]",
            ],
            "--kwargs must be a JSON object of keyword arguments, not an array".to_owned(),
        ),
        (
            vec![
                "call",
                url,
                "demo.echo",
                "--key",
                "cli-key",
                "--kwargs",
                "{",
            ],
            "--kwargs is not JSON".to_owned(),
        ),
        (
            vec!["call", url, "demo.slow", "--key", "cli-key"],
            "missing keyword argument `millis`".to_owned(),
        ),
    ] {
        let output = run(&args);
        assert_eq!(output.status.code(), Some(1), "{args:?}");
        assert!(output.stdout.is_empty(), "{args:?}");
        let stderr = text(&output.stderr);
        assert!(
            stderr.contains(&expected),
            "{args:?}: expected {expected:?} in {stderr}"
        );
        assert!(!stderr.contains("cli-key"), "the key appears in {stderr}");
    }
}

#[test]
fn call_to_nothing_listening_is_a_connect_error() {
    // A port held by a socket that does not listen: connecting is refused,
    // and no other test can take the port meanwhile.
    let held = tokio::net::TcpSocket::new_v4().unwrap();
    held.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let closed = format!("http://{}", held.local_addr().unwrap());
    let output = run(&["call", &closed, "demo.whoami", "--timeout", "5"]);
    assert_eq!(output.status.code(), Some(1));
    assert!(
        text(&output.stderr).contains(&format!("cannot connect to {closed}")),
        "{}",
        text(&output.stderr)
    );
}

/// The container image's health check: `framex health` exits 0 printing the
/// instance's `/health` while it serves, and 1 naming the URL once it is gone;
/// without `--address`, the configuration says where to ask.
#[test]
fn health_answers_for_a_running_instance_and_names_the_url_of_one_gone() {
    let served = serve_named(
        &config_file("health.toml", "[server]\nhost = \"127.0.0.1\"\nport = 0\n"),
        "probed",
    );
    let address = served.url.trim_start_matches("http://").to_owned();
    let output = run(&["health", "--address", &address]);
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    let health: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(health["status"], "ok");
    assert_eq!(health["instance"], "probed");
    drop(served);
    let output = run(&["health", "--address", &address, "--timeout", "2"]);
    assert_eq!(output.status.code(), Some(1));
    assert!(
        text(&output.stderr).contains(&format!("http://{address}/health")),
        "{}",
        text(&output.stderr)
    );

    // The configuration's port, on loopback for an unspecified host.
    let held = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = held.local_addr().unwrap().port();
    drop(held);
    let config = config_file(
        "health-config.toml",
        &format!("[server]\nhost = \"0.0.0.0\"\nport = {port}\n"),
    );
    let output = run(&["health", config.to_str().unwrap(), "--timeout", "2"]);
    assert_eq!(output.status.code(), Some(1));
    assert!(
        text(&output.stderr).contains(&format!("http://127.0.0.1:{port}/health")),
        "{}",
        text(&output.stderr)
    );
}

/// Which instance ran `demo.whoami` when called through `url`.
fn whoami(url: &str) -> String {
    let output = run(&["call", url, "demo.whoami"]);
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    let result: Value = serde_json::from_slice(&output.stdout).unwrap();
    result["instance"].as_str().unwrap().to_owned()
}

#[cfg(unix)]
#[test]
fn sighup_moves_a_function_and_an_invalid_file_changes_nothing() {
    let there = serve_named(
        &config_file("there.toml", "[server]\nhost = \"127.0.0.1\"\nport = 0\n"),
        "there",
    );
    let listing = |functions: &str| {
        format!(
            "load_builtin_plugins = [\"proxy\"]\n[server]\nenable_proxy = true\nhost = \"127.0.0.1\"\nport = 0\n\
             [plugins.proxy]\nproxy_urls = [\"{}\"]\nproxy_functions = {{ \"{}\" = [{functions}] }}\n",
            there.url, there.url
        )
    };
    let path = config_file("here.toml", &listing(""));
    let here = serve_named(&path, "here");
    assert_eq!(whoami(&here.url), "here");

    let hangup = |served: &Served| {
        let status = Command::new("kill")
            .args(["-HUP", &served.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    };
    // Until the signal arrives and the file is read, the old place answers.
    let wait_for = |expected: &str| {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            let ran = whoami(&here.url);
            if ran == expected {
                return;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "still {ran}, not {expected}"
            );
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    };
    std::fs::write(&path, listing("\"demo.whoami\"")).unwrap();
    hangup(&here);
    wait_for("there");

    std::fs::write(
        &path,
        listing("\"demo.whoami\"").replace("port = 0", "port = \"zero\""),
    )
    .unwrap();
    hangup(&here);
    let refused = here.wait_for_log("configuration not reloaded");
    assert!(refused.contains("server.port"), "{refused}");
    assert_eq!(whoami(&here.url), "there", "an invalid file is refused");

    std::fs::write(&path, listing("")).unwrap();
    hangup(&here);
    wait_for("here");
}

/// `GET /health` on `url`: the status line's code, or `None` when nothing
/// answers.
fn health(url: &str) -> Option<u16> {
    use std::io::{Read as _, Write as _};
    let address = url.strip_prefix("http://")?;
    let mut stream = std::net::TcpStream::connect(address).ok()?;
    stream
        .set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .ok()?;
    write!(
        stream,
        "GET /health HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    response.split(' ').nth(1)?.parse().ok()
}

/// Whoever reads `listening on` may signal at once: a reload must not end
/// the process, and a stop must be the graceful one (exit 0), not the
/// default action of the signal. Twenty instances at once, as a deployment
/// tool starts and signals them.
#[cfg(unix)]
#[test]
fn signals_sent_as_soon_as_listening_is_printed_are_handled() {
    use rustix::process::{Pid, Signal, kill_process};
    let path = config_file(
        "signalled.toml",
        "[server]\nhost = \"127.0.0.1\"\nport = 0\nshutdown_grace = 5\n",
    );
    let signal = |served: &Served, signal: Signal| {
        let pid = Pid::from_raw(served.child.id() as i32).unwrap();
        kill_process(pid, signal).unwrap();
    };
    let mut reloaded = Vec::new();
    let mut stopped = Vec::new();
    for index in 0..20 {
        let served = serve_named(&path, &format!("signalled-{index}"));
        if index % 2 == 0 {
            signal(&served, Signal::HUP);
            reloaded.push(served);
        } else {
            signal(&served, Signal::TERM);
            stopped.push(served);
        }
    }
    for served in &reloaded {
        assert_eq!(
            health(&served.url),
            Some(200),
            "{} died of a SIGHUP sent right after it was listening",
            served.url
        );
    }
    for served in &mut stopped {
        let status = served.child.wait().unwrap();
        assert!(
            status.success(),
            "{} ended with {status} on a SIGTERM sent right after it was listening",
            served.url
        );
    }
}

/// Log lines are written by a thread of their own: every request's
/// `answered` line still reaches standard error, in full, when the instance
/// is stopped right after answering a burst of requests.
#[cfg(unix)]
#[test]
fn every_answered_line_is_written_before_the_instance_exits() {
    use rustix::process::{Pid, Signal, kill_process};
    let path = config_file(
        "logged.toml",
        "[server]\nhost = \"127.0.0.1\"\nport = 0\nshutdown_grace = 5\n",
    );
    let mut child = framex()
        .env("RUST_LOG", "info")
        .arg("serve")
        .arg(&path)
        .args(["--name", "logged"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let url = listening_url(&mut child);
    const REQUESTS: usize = 400;
    for _ in 0..REQUESTS {
        assert_eq!(health(&url), Some(200));
    }
    kill_process(Pid::from_raw(child.id() as i32).unwrap(), Signal::TERM).unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(output.status.success(), "{}", text(&output.stderr));
    let log = text(&output.stderr);
    let answered: Vec<&str> = log
        .lines()
        .filter(|line| line.contains("answered"))
        .collect();
    assert_eq!(answered.len(), REQUESTS, "{log}");
    for line in answered {
        assert!(
            line.contains("path=\"/health\"")
                && line.contains("status=200")
                && line.contains("latency_ms="),
            "{line}"
        );
    }
    assert!(
        log.lines()
            .last()
            .is_some_and(|last| last.contains("stopped")
                || last.contains("shut")
                || last.contains("finished")),
        "the last line is the instance's last word: {log}"
    );
}
