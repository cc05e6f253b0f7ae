//! The `compose` scenario: `deploy/compose.yaml` as the README runs it, on a
//! free port of this machine and under a project name of this run's. It is
//! brought up, called through its local instance until each of the three
//! replicas has answered, scaled to five (`up --scale remote=5`) and called
//! until all five have, then taken down, on every exit path.
//!
//! It runs `docker compose` (Compose v2) where that works, else
//! `docker-compose` (v1, as Debian 12 packages it).

use std::collections::BTreeMap;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};

/// The most calls spent waiting for every replica to answer.
const CALLS: usize = 400;

/// A project that is taken down when dropped.
struct Project {
    compose: Vec<String>,
    name: String,
    port: u16,
}

impl Project {
    fn command(&self) -> Command {
        let root = crate::instances::workspace().unwrap_or_default();
        let mut command = Command::new(&self.compose[0]);
        command
            .args(&self.compose[1..])
            .arg("-f")
            .arg(root.join("deploy/compose.yaml"))
            .args(["-p", &self.name])
            .env("FRAMEX_PORT", self.port.to_string())
            .stdin(Stdio::null());
        command
    }

    fn run(&self, args: &[&str]) -> Result<()> {
        let shown = format!("{} {}", self.compose.join(" "), args.join(" "));
        println!("  $ {shown}");
        let output = self
            .command()
            .args(args)
            .output()
            .with_context(|| format!("cannot run {shown}"))?;
        ensure!(
            output.status.success(),
            "{shown} failed:\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
        Ok(())
    }
}

impl Drop for Project {
    fn drop(&mut self) {
        let _ = self
            .command()
            .args(["down", "--volumes", "--timeout", "15"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

/// `docker compose` when the Compose v2 plugin answers, else `docker-compose`.
fn compose_command() -> Result<Vec<String>> {
    let works = |program: &str, args: &[&str]| {
        Command::new(program)
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|status| status.success())
    };
    if works("docker", &["compose", "version"]) {
        Ok(vec!["docker".into(), "compose".into()])
    } else if works("docker-compose", &["version"]) {
        Ok(vec!["docker-compose".into()])
    } else {
        anyhow::bail!(
            "neither `docker compose` nor `docker-compose` runs: install Compose (Debian's docker-compose)"
        )
    }
}

/// Takes down the projects of earlier runs that were stopped before they
/// could (`framex-compose-PID` whose process is gone).
fn sweep(compose: &[String]) {
    let Ok(output) = Command::new("docker")
        .args([
            "ps",
            "--all",
            "--filter",
            "label=com.docker.compose.project",
            "--format",
            "{{.Label \"com.docker.compose.project\"}}",
        ])
        .output()
    else {
        return;
    };
    let mut projects: Vec<String> = String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter(|name| {
            name.strip_prefix("framex-compose-")
                .and_then(|pid| pid.parse::<u32>().ok())
                .is_some_and(|pid| !std::path::Path::new(&format!("/proc/{pid}")).exists())
        })
        .map(str::to_owned)
        .collect();
    projects.sort();
    projects.dedup();
    for name in projects {
        drop(Project {
            compose: compose.to_vec(),
            name: name.clone(),
            port: 0,
        });
        println!("  took down {name}, left by an earlier run");
    }
}

pub(crate) fn run() -> Result<()> {
    let compose = compose_command()?;
    sweep(&compose);
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let project = Project {
        compose,
        name: format!("framex-compose-{}", std::process::id()),
        port,
    };
    project.run(&["up", "-d"])?;
    let url = format!("http://127.0.0.1:{port}");
    println!("  calling {url}/api/v1/report?job_id=… until every replica has answered");
    spread_over(&url, 3)?;
    project.run(&["up", "-d", "--scale", "remote=5"])?;
    spread_over(&url, 5)?;
    Ok(())
}

/// Calls the local instance until `replicas` distinct hosts have made
/// reports, within [`CALLS`] calls and a minute; prints who answered.
fn spread_over(url: &str, replicas: usize) -> Result<()> {
    let started = Instant::now();
    let mut by: BTreeMap<String, usize> = BTreeMap::new();
    let mut sent = 0;
    let mut failed = Vec::new();
    let mut waited = 0;
    while sent < CALLS && started.elapsed() < Duration::from_secs(60) {
        sent += 1;
        let path = format!("/api/v1/report?job_id=compose-{sent}");
        match crate::instances::get(url, &path) {
            Ok(body) if body["result"]["job_id"] == format!("compose-{sent}").as_str() => {
                let host = body["result"]["made_by"]["host"]
                    .as_str()
                    .unwrap_or("?")
                    .to_owned();
                *by.entry(host).or_default() += 1;
            }
            Ok(body) => failed.push(body.to_string()),
            // Before the local instance serves: waited for.
            Err(_) if by.is_empty() => {
                waited += 1;
                std::thread::sleep(Duration::from_millis(200));
            }
            Err(error) => failed.push(format!("{error:#}")),
        }
        if by.len() >= replicas && sent >= 20 * replicas {
            break;
        }
    }
    let answered: Vec<String> = by.iter().map(|(host, n)| format!("{host} {n}")).collect();
    println!(
        "  {sent} calls ({waited} before the local instance served), {} failed, answered by {} replicas: {}",
        failed.len(),
        by.len(),
        answered.join(", ")
    );
    ensure!(
        failed.is_empty(),
        "{} calls failed once the local instance served, the first: {}",
        failed.len(),
        failed[0]
    );
    ensure!(
        by.len() == replicas,
        "the calls were answered by {} replicas, not {replicas}",
        by.len()
    );
    Ok(())
}
