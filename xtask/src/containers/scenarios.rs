//! The container scenarios of `cargo xtask containers` (see `containers.rs`),
//! run as the binary `xtask-containers` with the `containers` feature.
//!
//! Every container comes from an image `cargo xtask image` built, through
//! testcontainers: started with its configuration copied in, waited for until
//! it prints `listening on` (Python FrameX: until it has registered the
//! functions it calls elsewhere), and removed when its scenario ends, however
//! it ends. Each scenario has a private network of its own, named after this
//! process, removed after its containers; a run that was killed before it
//! could clean up is swept by the next. What testcontainers does not do,
//! bollard (its own Docker client) does: the networks, a network alias shared
//! by several containers, disconnecting one, killing one.
//!
//! The loads are `cargo xtask load`'s (`load::drive`): blocking threads that
//! call the local instance's published port from here, while the fault runs on
//! a thread of its own.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use serde_json::{Value, json};
use testcontainers::core::{ContainerPort, WaitFor};
use testcontainers::runners::AsyncRunner;
use testcontainers::{ContainerAsync, GenericImage, ImageExt};
use tokio::runtime::Handle;

use crate::containers::Options;
use crate::load::{Counts, drive};
use crate::replicas::marks_at as at;

/// The name the local instance calls the remote by, as in the seed.
const ALIAS: &str = "remote-framex";
const KEY: &str = "proxy-key";
/// `plugins.proxy.timeout` of the local instances, in seconds.
const TIMEOUT_SECS: u64 = 5;
/// The remote replicas' names (`--name`, and their host names).
const REPLICAS: [&str; 3] = ["a", "b", "c"];

pub(crate) fn run(options: &Options) -> Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let docker = runtime
        .block_on(async { bollard::Docker::connect_with_defaults() })
        .context("cannot reach the Docker engine")?;
    let harness = Harness {
        handle: runtime.handle().clone(),
        docker,
        prefix: format!("framex-{}", std::process::id()),
    };
    harness.sweep()?;
    let mut failed = Vec::new();
    for scenario in &options.scenarios {
        println!("\n== scenario `{scenario}`");
        let result = match scenario.as_str() {
            "two-instances" => two_instances(&harness, options),
            "kill-one" | "cut-one" | "rolling-restart" => replicas(&harness, scenario, options),
            "python" => python(&harness, options),
            "reports" => reports(&harness),
            other => Err(anyhow::anyhow!("`{other}` is not a container scenario")),
        };
        if let Err(error) = result {
            eprintln!("scenario `{scenario}` failed: {error:#}");
            failed.push(scenario.as_str());
        }
    }
    ensure!(failed.is_empty(), "failed: {}", failed.join(", "));
    Ok(())
}

/// What every scenario uses: the runtime testcontainers and bollard run on,
/// and bollard's client.
#[derive(Clone)]
struct Harness {
    handle: Handle,
    docker: bollard::Docker,
    /// Names of this run's containers and networks start with it.
    prefix: String,
}

/// A container to start.
struct Spec<'a> {
    image: (&'a str, &'a str),
    /// Its name on the network (the container is `PREFIX-NAME`), its host name,
    /// and, for the framex image, its `--name`.
    name: &'a str,
    network: &'a str,
    /// A network alias it shares with others on `network`, if any.
    alias: Option<&'a str>,
    /// The configuration, and where in the container it goes.
    config: (&'a str, String),
    cmd: Vec<String>,
    wait: WaitFor,
    env: Vec<(&'a str, &'a str)>,
}

impl<'a> Spec<'a> {
    /// `framex serve` of the demo functions, named `name`, with `config`.
    fn framex(name: &'a str, network: &'a str, config: String) -> Spec<'a> {
        Spec {
            image: ("framex", "latest"),
            name,
            network,
            alias: None,
            config: ("/etc/framex/config.toml", config),
            cmd: ["serve", "/etc/framex/config.toml", "--name", name]
                .map(str::to_owned)
                .to_vec(),
            wait: WaitFor::message_on_stdout("listening on http://"),
            env: Vec::new(),
        }
    }

    /// The same, with the network alias `alias`.
    fn aliased(self, alias: &'a str) -> Spec<'a> {
        Spec {
            alias: Some(alias),
            ..self
        }
    }
}

/// A scenario's private network, made here (testcontainers then leaves it
/// alone) and removed when dropped, after the scenario's containers.
struct Network {
    name: String,
    handle: Handle,
    docker: bollard::Docker,
}

impl Drop for Network {
    fn drop(&mut self) {
        if let Err(error) = self.handle.block_on(self.docker.remove_network(&self.name)) {
            eprintln!("cannot remove the network {}: {error}", self.name);
        }
    }
}

/// A running container; removed when dropped.
struct Node {
    name: String,
    container: Option<ContainerAsync<GenericImage>>,
    handle: Handle,
    /// Its port 8080, published on loopback here.
    url: String,
}

impl Drop for Node {
    fn drop(&mut self) {
        if let Some(container) = self.container.take() {
            let name = self.name.clone();
            self.handle.block_on(async move {
                if let Err(error) = container.rm().await {
                    eprintln!("cannot remove the container of {name}: {error}");
                }
            });
        }
    }
}

impl Node {
    fn container(&self) -> Result<&ContainerAsync<GenericImage>> {
        self.container
            .as_ref()
            .with_context(|| format!("{} was removed", self.name))
    }

    fn id(&self) -> Result<String> {
        Ok(self.container()?.id().to_owned())
    }
}

impl Harness {
    /// Removes what earlier runs left when they were stopped before they
    /// could clean up (Ctrl-C, SIGKILL): containers and networks named
    /// `framex-PID-…` whose process is gone.
    fn sweep(&self) -> Result<()> {
        use bollard::query_parameters::{
            ListContainersOptions, ListNetworksOptions, RemoveContainerOptions,
        };
        let filters =
            std::collections::HashMap::from([("name".to_owned(), vec!["framex-".to_owned()])]);
        self.handle.block_on(async {
            let containers = self
                .docker
                .list_containers(Some(ListContainersOptions {
                    all: true,
                    filters: Some(filters.clone()),
                    ..Default::default()
                }))
                .await
                .context("cannot list containers")?;
            for container in containers {
                let (Some(id), Some(names)) = (container.id, container.names) else {
                    continue;
                };
                if let Some(name) = names.iter().find(|name| left_behind(name)) {
                    let options = RemoveContainerOptions {
                        force: true,
                        v: true,
                        ..Default::default()
                    };
                    self.docker
                        .remove_container(&id, Some(options))
                        .await
                        .with_context(|| format!("cannot remove {name}"))?;
                    println!("removed the container {name}, left by an earlier run");
                }
            }
            let networks = self
                .docker
                .list_networks(Some(ListNetworksOptions {
                    filters: Some(filters),
                }))
                .await
                .context("cannot list networks")?;
            for name in networks.into_iter().filter_map(|network| network.name) {
                if left_behind(&name) {
                    self.docker
                        .remove_network(&name)
                        .await
                        .with_context(|| format!("cannot remove the network {name}"))?;
                    println!("removed the network {name}, left by an earlier run");
                }
            }
            Ok(())
        })
    }

    /// Makes the scenario's network, `PREFIX-SCENARIO`.
    fn network(&self, scenario: &str) -> Result<Network> {
        let name = format!("{}-{scenario}", self.prefix);
        self.handle
            .block_on(
                self.docker
                    .create_network(bollard::models::NetworkCreateRequest {
                        name: name.clone(),
                        ..Default::default()
                    }),
            )
            .with_context(|| format!("cannot create the network {name}"))?;
        Ok(Network {
            name,
            handle: self.handle.clone(),
            docker: self.docker.clone(),
        })
    }

    fn start(&self, spec: Spec<'_>) -> Result<Node> {
        let container_name = format!("{}-{}", self.prefix, spec.name);
        let request = GenericImage::new(spec.image.0, spec.image.1)
            .with_exposed_port(ContainerPort::Tcp(8080))
            .with_wait_for(spec.wait);
        // A container with an alias starts on Docker's default bridge, which
        // publishes its port here, and joins the network with the alias
        // next: Docker sets aliases when a container joins a network, and
        // testcontainers sets none.
        let mut request = match spec.alias {
            Some(_) => request.with_network("bridge"),
            None => request.with_network(spec.network),
        }
        .with_container_name(&container_name)
        .with_hostname(spec.name)
        .with_copy_to(spec.config.0, spec.config.1.into_bytes())
        .with_startup_timeout(Duration::from_secs(90));
        // Without one, the image's own command.
        if !spec.cmd.is_empty() {
            request = request.with_cmd(spec.cmd);
        }
        for (name, value) in spec.env {
            request = request.with_env_var(name, value);
        }
        let started = Instant::now();
        let container = self.handle.block_on(request.start()).with_context(|| {
            format!(
                "cannot start {container_name} from {}:{}",
                spec.image.0, spec.image.1
            )
        })?;
        if let Some(alias) = spec.alias {
            use bollard::models::{EndpointSettings, NetworkConnectRequest};
            self.handle
                .block_on(self.docker.connect_network(
                    spec.network,
                    NetworkConnectRequest {
                        container: container.id().to_owned(),
                        endpoint_config: Some(EndpointSettings {
                            aliases: Some(vec![alias.to_owned(), spec.name.to_owned()]),
                            ..Default::default()
                        }),
                    },
                ))
                .with_context(|| {
                    format!(
                        "cannot join {container_name} to {} as {alias}",
                        spec.network
                    )
                })?;
        }
        let port = self
            .handle
            .block_on(container.get_host_port_ipv4(ContainerPort::Tcp(8080)))
            .with_context(|| format!("{container_name} publishes no port 8080"))?;
        println!(
            "  started {container_name} ({}:{}) in {:.1} s, published on 127.0.0.1:{port}",
            spec.image.0,
            spec.image.1,
            started.elapsed().as_secs_f64()
        );
        Ok(Node {
            name: spec.name.to_owned(),
            container: Some(container),
            handle: self.handle.clone(),
            url: format!("http://127.0.0.1:{port}"),
        })
    }

    fn disconnect(&self, node: &Node, network: &str) -> Result<()> {
        use bollard::models::NetworkDisconnectRequest;
        let id = node.id()?;
        self.handle
            .block_on(self.docker.disconnect_network(
                network,
                NetworkDisconnectRequest {
                    container: id,
                    force: Some(true),
                },
            ))
            .with_context(|| format!("cannot disconnect {} from {network}", node.name))
    }

    /// `docker kill`: SIGKILL, as a crash.
    fn kill(&self, node: &Node) -> Result<()> {
        let id = node.id()?;
        self.handle
            .block_on(self.docker.kill_container(&id, None))
            .with_context(|| format!("cannot kill {}", node.name))
    }

    /// `docker stop` with a grace of `grace` (SIGTERM, then SIGKILL), and the
    /// exit code the container stopped with.
    fn stop(&self, node: &Node, grace: Duration) -> Result<i64> {
        let container = node.container()?;
        let id = node.id()?;
        self.handle.block_on(async {
            container
                .stop_with_timeout(Some(grace.as_secs() as i32))
                .await?;
            let state = self
                .docker
                .inspect_container(&id, None)
                .await?
                .state
                .context("the container's state")?;
            Ok::<_, anyhow::Error>(state.exit_code.unwrap_or(-1))
        })
    }

    /// Starts a stopped container again and waits until Docker reports it
    /// healthy (the image's `framex health`).
    fn restart(&self, node: &Node) -> Result<()> {
        let container = node.container()?;
        let id = node.id()?;
        self.handle.block_on(async {
            container.start().await?;
            let started = Instant::now();
            loop {
                let health = self
                    .docker
                    .inspect_container(&id, None)
                    .await?
                    .state
                    .and_then(|state| state.health)
                    .and_then(|health| health.status);
                if health == Some(bollard::models::HealthStatusEnum::HEALTHY) {
                    return Ok(());
                }
                ensure!(
                    started.elapsed() < Duration::from_secs(60),
                    "{} was not healthy within a minute of starting again ({health:?})",
                    node.name
                );
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        })
    }
}

/// Whether `name` (a container's, `/framex-PID-…`, or a network's) is of a
/// run whose process is gone.
fn left_behind(name: &str) -> bool {
    let Some(rest) = name.trim_start_matches('/').strip_prefix("framex-") else {
        return false;
    };
    let Some(pid) = rest
        .split_once('-')
        .and_then(|(pid, _)| pid.parse::<u32>().ok())
    else {
        return false;
    };
    pid != std::process::id() && !std::path::Path::new(&format!("/proc/{pid}")).exists()
}

/// A remote's configuration: the proxy endpoint behind `KEY`, up to 10 s for
/// calls in flight when it stops.
fn remote_config() -> String {
    format!(
        "[server]\nport = 8080\nshutdown_grace = 10\n\n\
         [auth]\nrules = {{ \"/api/v1/proxy/remote\" = [\"{KEY}\"] }}\n"
    )
}

/// The seed's configuration as it is (it calls `http://remote-framex:8080`),
/// with the calls' timeout, and the client settings the replica scenarios
/// need: a short connect timeout, and Docker DNS's answers (TTL 600 s)
/// looked at again every second.
fn local_config(seed: &str) -> String {
    seed.replace(
        "[plugins.proxy]\n",
        &format!(
            "[plugins.proxy]\ntimeout = {TIMEOUT_SECS}\nconnect_timeout = 1\ndns_ttl_ceiling = 1\n"
        ),
    )
}

/// The `cargo xtask e2e` pair, in containers.
struct Containers<'a> {
    harness: &'a Harness,
    local: Node,
    remote: Option<Node>,
    remote_url: String,
}

impl crate::e2e::Pair for Containers<'_> {
    fn local_url(&self) -> &str {
        &self.local.url
    }

    fn remote_url(&self) -> &str {
        &self.remote_url
    }

    fn remote_mark(&self) -> (&'static str, Value) {
        ("host", json!("remote"))
    }

    fn local_mark(&self) -> (&'static str, Value) {
        ("host", json!("local"))
    }

    fn terminate_remote(&mut self, within: Duration) -> Result<String> {
        let remote = self.remote.as_ref().context("the remote is running")?;
        let code = self.harness.stop(remote, within)?;
        ensure!(code == 0, "the remote's container exited with {code}");
        Ok("docker stop, exit code 0".to_owned())
    }

    fn drop_remote(&mut self) {
        self.remote = None;
    }
}

fn two_instances(harness: &Harness, options: &Options) -> Result<()> {
    let network = harness.network("pair")?;
    let remote =
        harness.start(Spec::framex("remote", &network.name, remote_config()).aliased(ALIAS))?;
    let seed = crate::e2e::local_seed(&format!("http://{ALIAS}:8080"));
    let local = harness.start(Spec::framex("local", &network.name, local_config(&seed)))?;
    // Calls across the two hosts under load first, then the e2e checks
    // (which stop the remote).
    let load = crate::load::Options::new(options.calls, options.concurrency);
    println!(
        "sending {} calls from {} threads to {} (`your_module.build_report` runs on http://{ALIAS}:8080)",
        options.calls, options.concurrency, local.url
    );
    across(
        &local.url,
        &load,
        "every call crosses from the local container to the remote",
        "remote",
    )?;
    let remote_url = remote.url.clone();
    let mut pair = Containers {
        harness,
        local,
        remote: Some(remote),
        remote_url,
    };
    crate::e2e::checks(&mut pair)
}

/// A load without a fault through `url` (`what` it crosses): none may hang,
/// be lost or fail, and every report must be made by `instance`.
fn across(url: &str, load: &crate::load::Options, what: &str, instance: &str) -> Result<()> {
    let run = crate::load::drive_without_fault(url, load, what)?;
    run.report(load)?;
    let by = run.counts.answered_by(Duration::ZERO, Duration::MAX);
    ensure!(
        by.iter().all(|(name, _)| name == instance),
        "not every report was made by {instance}: {by:?}"
    );
    let failed = Counts::get(&run.counts.failed_clear);
    ensure!(failed == 0, "{failed} calls through {url} failed");
    Ok(())
}

/// The replicas as they run.
type Replicas = Arc<Mutex<Vec<Node>>>;

fn replicas(harness: &Harness, fault: &str, options: &Options) -> Result<()> {
    let network = harness.network(fault)?;
    let replicas: Vec<Node> = REPLICAS
        .iter()
        .map(|name| {
            harness.start(Spec::framex(name, &network.name, remote_config()).aliased(ALIAS))
        })
        .collect::<Result<_>>()?;
    let seed = include_str!("../../../examples/seed.toml");
    let local = harness.start(Spec::framex("local", &network.name, local_config(seed)))?;
    let network_name = network.name.clone();
    println!(
        "sending {} calls from {} threads to {} (remote http://{ALIAS}:8080: a, b and c on {network})",
        options.calls,
        options.concurrency,
        local.url,
        network = network_name
    );
    let replicas: Replicas = Arc::new(Mutex::new(replicas));
    let marks: Arc<Mutex<Vec<Duration>>> = Arc::default();
    let load = crate::load::Options::new(options.calls, options.concurrency);
    let calls = options.calls;
    // The calls are spread over as long as the fault plays out, so that some
    // are sent once it is over: for a killed replica, `docker kill` returning
    // (a few hundred ms, about as long as 2,000 calls take unspread); a
    // connect timeout and a DNS refresh for a cut-off replica; for a rolling
    // restart, three stops (each drains for a second), starts and health
    // checks.
    let spread = match fault {
        "rolling-restart" => Duration::from_secs(30),
        _ => Duration::from_secs(6),
    };
    let fault_harness = harness.clone();
    let run = {
        let (replicas, marks, network) = (replicas.clone(), marks.clone(), network_name.clone());
        let fault = fault.to_owned();
        drive(&local.url, &load, Some(spread), move |counts, started| {
            let harness = fault_harness;
            let mark = || {
                counts
                    .fault_began
                    .store(true, std::sync::atomic::Ordering::SeqCst);
                if let Ok(mut marks) = marks.lock() {
                    marks.push(started.elapsed());
                }
            };
            let replicas = replicas.lock().map_err(|_| anyhow::anyhow!("lock"))?;
            match fault.as_str() {
                "kill-one" => {
                    counts.wait_answered(calls / 3, started)?;
                    mark();
                    harness.kill(&replicas[1])?;
                    Ok(format!("b killed (docker kill) at {:.2} s", at(&marks, 0)))
                }
                "cut-one" => {
                    counts.wait_answered(calls / 3, started)?;
                    mark();
                    harness.disconnect(&replicas[2], &network)?;
                    Ok(format!(
                        "c disconnected from {network} at {:.2} s",
                        at(&marks, 0)
                    ))
                }
                _ => {
                    counts.wait_answered(calls / 4, started)?;
                    let mut codes = Vec::new();
                    for replica in replicas.iter() {
                        mark();
                        codes.push(harness.stop(replica, Duration::from_secs(15))?);
                        harness.restart(replica)?;
                        // Back in DNS (looked at every second) before the
                        // next one goes.
                        std::thread::sleep(Duration::from_millis(1500));
                    }
                    ensure!(
                        codes.iter().all(|&code| code == 0),
                        "a replica exited with {codes:?} on docker stop"
                    );
                    Ok(
                        "a, b and c stopped (docker stop: SIGTERM, exit 0) and started in turn"
                            .to_owned(),
                    )
                }
            }
        })?
    };
    crate::load::print_endpoints(&local.url);
    drop(local);
    drop(replicas);
    run.report(&load)?;

    let counts = &run.counts;
    let marks = marks.lock().map(|m| m.clone()).unwrap_or_default();
    let failed = Counts::get(&counts.failed_clear);
    let slowest = Duration::from_micros(
        counts
            .slowest_after_fault_us
            .load(std::sync::atomic::Ordering::SeqCst),
    );
    println!(
        "  the slowest call that succeeded once the fault began took {:.0} ms",
        slowest.as_secs_f64() * 1000.0
    );
    ensure!(
        Counts::get(&counts.succeeded_after_fault) > 0,
        "no call succeeded after the fault was over"
    );
    if fault == "cut-one" {
        // Calls sent to it on a connection it had may wait for the call's
        // timeout (and fail, counted above); one that had to connect to it
        // waits the connect timeout (1 s) once, and then goes elsewhere.
        ensure!(
            slowest <= Duration::from_millis(1500),
            "a call that got through took {slowest:?}: more than the connect timeout (1 s)"
        );
    }
    match fault {
        "kill-one" | "cut-one" => {
            let gone = if fault == "kill-one" { "b" } else { "c" };
            ensure!(
                failed <= options.concurrency,
                "{failed} calls failed, more than the {} that can be in flight",
                options.concurrency
            );
            let settled = marks[0] + Duration::from_secs(2);
            let after = counts
                .answered_by(settled, Duration::MAX)
                .into_iter()
                .find(|(name, _)| name == gone)
                .map_or(0, |(_, count)| count);
            ensure!(
                after == 0,
                "{gone} answered {after} calls after it was gone"
            );
        }
        _ => ensure!(
            failed == 0,
            "{failed} calls failed during the rolling restart"
        ),
    }
    Ok(())
}

/// A Rust and a Python FrameX calling each other: the Rust instance lists
/// `your_module.build_report` for the Python one, which lists `demo.whoami`
/// for the Rust one. Each side checks the other's key.
fn python(harness: &Harness, options: &Options) -> Result<()> {
    let network = harness.network("python")?;
    let (rust_url, python_url) = (
        format!("http://{}-rust:8080", harness.prefix),
        format!("http://{}-python:8080", harness.prefix),
    );
    let rust_config = include_str!("../../../examples/seed.toml")
        .replace("http://remote-framex:8080", &python_url)
        .replace("\"proxy-key\"", "\"python-key\"")
        + "\n[auth]\nrules = { \"/api/v1/proxy/remote\" = [\"rust-key\"] }\n";
    let rust = harness.start(Spec::framex(
        "rust",
        &network.name,
        local_config(&rust_config),
    ))?;
    let python_config = format!(
        "load_builtin_plugins = [\"proxy\"]\n\
         load_plugins = [\"your_module\", \"demo\"]\n\n\
         [server]\nhost = \"0.0.0.0\"\nport = 8080\nenable_proxy = true\n\n\
         [auth]\nrules = {{ \"/api/v1/proxy/remote\" = [\"python-key\"] }}\n\n\
         [plugins.proxy.proxy_urls.\"{rust_url}\"]\nenable = []\ndisable = []\n\n\
         [plugins.proxy]\ntimeout = {TIMEOUT_SECS}\nproxy_functions = {{ \"{rust_url}\" = [\"demo.whoami\"] }}\n\n\
         [plugins.proxy.auth]\nrules = {{ \"/api/v1/proxy/remote\" = [\"rust-key\"] }}\n"
    );
    let python = harness.start(Spec {
        image: ("framex-python", "0.4.2"),
        name: "python",
        network: &network.name,
        alias: None,
        config: ("/srv/framex/config.toml", python_config),
        cmd: Vec::new(),
        wait: WaitFor::message_on_either_std("Registering proxy function: demo.whoami"),
        env: vec![("FRAMEX_INSTANCE", "python")],
    })?;

    let calls = options.calls.min(500);
    let load = crate::load::Options::new(calls, options.concurrency.min(16));
    println!(
        "Rust calls Python: {calls} calls to {} (`your_module.build_report` runs on {python_url})",
        rust.url
    );
    across(
        &rust.url,
        &load,
        "every call crosses from the Rust container to the Python one",
        "python",
    )?;

    println!(
        "Python calls Rust: {calls} calls to {}/api/v1/python/whoami (`demo.whoami` runs on {rust_url})",
        python.url
    );
    // One call at a time: each ends before the next is sent, so none is
    // lost; one without an answer within the read timeout (15 s) hung.
    let (mut succeeded, mut hung, mut failed) = (0, 0, Vec::new());
    for _ in 0..calls {
        match crate::instances::get(&python.url, "/api/v1/python/whoami") {
            Ok(body) if body["data"]["ran_on"]["instance"] == "rust" => succeeded += 1,
            Ok(body) => failed.push(body.to_string()),
            Err(error)
                if error.chain().any(|cause| {
                    cause.downcast_ref::<std::io::Error>().is_some_and(|io| {
                        matches!(
                            io.kind(),
                            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                        )
                    })
                }) =>
            {
                hung += 1;
            }
            Err(error) => failed.push(format!("{error:#}")),
        }
    }
    println!("  calls sent                      {calls:>7}");
    println!("  succeeded (ran on rust)         {succeeded:>7}");
    println!("  failed                          {:>7}", failed.len());
    println!("  hung                            {hung:>7}   (must be 0)");
    println!(
        "  lost                            {:>7}   (must be 0)",
        calls - succeeded - hung - failed.len()
    );
    ensure!(hung == 0, "Python's calls to Rust hung");
    ensure!(
        failed.is_empty(),
        "Python's calls to Rust failed, for example: {}",
        failed[0]
    );
    Ok(())
}

/// The example service's image: healthy by its own health check
/// (`reports-service --health`), serving its routes and its functions.
fn reports(harness: &Harness) -> Result<()> {
    let network = harness.network("reports")?;
    let node = harness.start(Spec {
        image: ("framex-reports", "latest"),
        name: "reports",
        network: &network.name,
        alias: None,
        config: (
            "/etc/framex/config.toml",
            format!("[auth]\nrules = {{ \"/api/v1/proxy/remote\" = [\"{KEY}\"] }}\n"),
        ),
        cmd: Vec::new(),
        wait: WaitFor::healthcheck(),
        env: Vec::new(),
    })?;
    println!("  ok    healthy by its image's HEALTHCHECK (reports-service --health)");
    let body = crate::instances::get(&node.url, "/api/v1/reports/j-1?pages=3")?;
    ensure!(
        body["job_id"] == "j-1" && body["pages"] == 3,
        "GET /api/v1/reports/j-1?pages=3 answered {body}"
    );
    println!("  ok    GET /api/v1/reports/j-1?pages=3 answered {body}");
    let client = framex_transport::Client::new(
        framex_transport::ClientSettings::default().with_timeout(Duration::from_secs(10)),
    );
    let kwargs = json!({"job_id": "j-2", "pages": 2});
    let result = harness
        .handle
        .block_on(client.call(
            &node.url,
            Some(KEY),
            "reports.build_report",
            kwargs.as_object().context("an object")?,
        ))
        .context("calling reports.build_report")?;
    ensure!(
        result["pages"] == 2,
        "reports.build_report answered {result}"
    );
    println!("  ok    reports.build_report called from here with the key: {result}");
    let stats = crate::instances::get(&node.url, "/internal/stats")?;
    ensure!(stats["served"] == 1, "GET /internal/stats answered {stats}");
    println!("  ok    its own route and layer: {stats}");
    Ok(())
}
