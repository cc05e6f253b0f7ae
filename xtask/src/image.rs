//! `cargo xtask image [--python]`: container images built on this machine,
//! with nothing pulled from a registry.
//!
//! - `framex:latest` (and `framex:VERSION`): the `framex` command, release
//!   build, stripped, `FROM scratch` with the shared libraries it loads copied
//!   from this machine at their paths, and the machine's CA certificates;
//!   health-checked by `framex health` (`deploy/images/framex.Dockerfile`).
//! - `framex-reports:latest`: the example axum service that embeds FrameX,
//!   the same way (`deploy/images/reports-service.Dockerfile`).
//! - with `--python`, `framex-python:0.4.2`: Python FrameX (framex-kit 0.4.2)
//!   with the plugins of `deploy/images/python/`, on `framex-debian:CODENAME`,
//!   a minimal Debian that debootstrap makes from the mirror this machine's apt
//!   uses (root only) and `docker import` takes in; the wheels come from PyPI
//!   through this machine's pip (`deploy/images/python-framex.Dockerfile`).
//!
//! Docker caches each step, so building again after a change takes seconds
//! for what did not change; the Debian base is made once per machine.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context, Result, bail, ensure};

pub(crate) const FRAMEX: &str = "framex:latest";
pub(crate) const REPORTS: &str = "framex-reports:latest";
pub(crate) const PYTHON: &str = "framex-python:0.4.2";

pub(crate) fn run(args: impl Iterator<Item = String>) -> Result<()> {
    let mut python = false;
    for arg in args {
        match arg.as_str() {
            "--python" => python = true,
            other => bail!("unknown option `{other}`: cargo xtask image [--python]"),
        }
    }
    build(python)
}

/// Checks that a Docker engine answers, and says plainly what to do when none
/// does.
pub(crate) fn docker_engine() -> Result<String> {
    let output = Command::new("docker")
        .args([
            "version",
            "--format",
            "{{.Server.Version}} {{.Server.APIVersion}}",
        ])
        .output();
    let output = match output {
        Ok(output) => output,
        Err(error) => bail!(
            "this task needs Docker: the `docker` command cannot be run ({error}); install Docker \
             Engine (Debian's docker.io) and start it"
        ),
    };
    ensure!(
        output.status.success(),
        "this task needs a running Docker engine, and `docker version` says: {}",
        String::from_utf8_lossy(&output.stderr).trim()
    );
    Ok(String::from_utf8_lossy(&output.stdout).trim().to_owned())
}

/// Builds the images; with `python`, the Python FrameX image too, failing
/// when it cannot be built here.
pub(crate) fn build(python: bool) -> Result<()> {
    let engine = docker_engine()?;
    println!("Docker engine {engine}");
    // One build each, as `cargo xtask memory` and `bench` build the framex
    // command: built together, cargo would unify their dependencies'
    // features and build the framex command anew.
    let root = crate::instances::build_release(
        "the framex command",
        &["-p", "framex-cli", "--bin", "framex"],
    )?;
    crate::instances::build_release(
        "the reports service",
        &["-p", "framex-example-reports", "--bin", "reports-service"],
    )?;
    let version = env!("CARGO_PKG_VERSION");
    for (binary, image, dockerfile) in [
        ("framex", FRAMEX, "framex.Dockerfile"),
        ("reports-service", REPORTS, "reports-service.Dockerfile"),
    ] {
        let context = root.join("target/image").join(binary);
        scratch_rootfs(&root.join("target/release").join(binary), &context)?;
        let versioned = format!("{}:{version}", image.split(':').next().unwrap_or(image));
        docker_build(&root, dockerfile, &context, &[image, &versioned], &[])?;
        println!("built {image} ({versioned}): {}", size_of(image)?);
    }
    prune();
    if python {
        python_image(&root).context("the Python FrameX image cannot be built here")?;
    }
    Ok(())
}

/// Lays out `context/rootfs`: the stripped binary at `/NAME`, each shared
/// library `ldd` says it loads at the path it names, and the machine's CA
/// bundle (for `https://` upstreams).
fn scratch_rootfs(binary: &Path, context: &Path) -> Result<()> {
    let rootfs = context.join("rootfs");
    if rootfs.exists() {
        std::fs::remove_dir_all(&rootfs)
            .with_context(|| format!("cannot empty {}", rootfs.display()))?;
    }
    std::fs::create_dir_all(&rootfs)?;
    let name = binary.file_name().context("a binary has a name")?;
    let target = rootfs.join(name);
    std::fs::copy(binary, &target).with_context(|| format!("cannot copy {}", binary.display()))?;
    // Debug symbols are half the size; panics still name their location.
    let stripped = Command::new("strip")
        .arg("--strip-debug")
        .arg(&target)
        .status();
    if !matches!(stripped, Ok(status) if status.success()) {
        println!("  (`strip` is not available: the binary keeps its symbols)");
    }
    for library in shared_libraries(binary)? {
        let inside = rootfs.join(library.strip_prefix("/").unwrap_or(&library));
        std::fs::create_dir_all(inside.parent().context("a library is in a folder")?)?;
        // `copy` follows symbolic links: the file lands under the name the
        // binary asks for.
        std::fs::copy(&library, &inside)
            .with_context(|| format!("cannot copy {}", library.display()))?;
    }
    let certificates = Path::new("/etc/ssl/certs/ca-certificates.crt");
    if certificates.exists() {
        let inside = rootfs.join("etc/ssl/certs");
        std::fs::create_dir_all(&inside)?;
        std::fs::copy(certificates, inside.join("ca-certificates.crt"))?;
    }
    Ok(())
}

/// The absolute paths of the libraries `ldd` resolves for `binary`, its
/// program interpreter included.
fn shared_libraries(binary: &Path) -> Result<Vec<PathBuf>> {
    let output = Command::new("ldd")
        .arg(binary)
        .output()
        .context("cannot run ldd, which lists the libraries the image needs")?;
    ensure!(
        output.status.success(),
        "ldd {}: {}",
        binary.display(),
        String::from_utf8_lossy(&output.stderr).trim()
    );
    let mut libraries = Vec::new();
    for line in String::from_utf8_lossy(&output.stdout).lines() {
        // `libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x…)` or
        // `/lib64/ld-linux-x86-64.so.2 (0x…)`; the vDSO has no file.
        let path = match line.split_once("=>") {
            Some((_, resolved)) => resolved.split_whitespace().next(),
            None => line.split_whitespace().next(),
        };
        match path {
            Some(path) if path.starts_with('/') => libraries.push(PathBuf::from(path)),
            Some("not") => bail!("{}: a library is missing: {line}", binary.display()),
            _ => {}
        }
    }
    ensure!(
        !libraries.is_empty(),
        "ldd found no libraries for {}",
        binary.display()
    );
    Ok(libraries)
}

fn docker_build(
    root: &Path,
    dockerfile: &str,
    context: &Path,
    tags: &[&str],
    build_args: &[(&str, &str)],
) -> Result<()> {
    let mut command = Command::new("docker");
    command
        .arg("build")
        .arg("--quiet")
        .arg("-f")
        .arg(root.join("deploy/images").join(dockerfile));
    for tag in tags {
        command.args(["-t", tag]);
    }
    for (name, value) in build_args {
        command.arg("--build-arg").arg(format!("{name}={value}"));
    }
    let output = command
        .arg(context)
        // The classic builder: `FROM scratch` and a local base need nothing
        // else, and BuildKit is not on every engine.
        .env("DOCKER_BUILDKIT", "0")
        .stdin(Stdio::null())
        .output()
        .context("cannot run docker build")?;
    ensure!(
        output.status.success(),
        "docker build of {} failed:\n{}{}",
        tags[0],
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    Ok(())
}

/// Removes the images of earlier builds that a newer one took the tag of, so
/// that building again and again does not fill the disk.
fn prune() {
    let _ = Command::new("docker")
        .args([
            "image",
            "prune",
            "--force",
            "--filter",
            "label=org.framex.built-by=cargo xtask image",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

fn size_of(image: &str) -> Result<String> {
    let output = Command::new("docker")
        .args(["image", "inspect", "--format", "{{.Size}}", image])
        .output()?;
    let bytes: f64 = String::from_utf8_lossy(&output.stdout)
        .trim()
        .parse()
        .with_context(|| format!("the size of {image}"))?;
    Ok(format!("{:.1} MiB", bytes / 1024.0 / 1024.0))
}

fn image_exists(image: &str) -> bool {
    Command::new("docker")
        .args(["image", "inspect", image])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success())
}

fn python_image(root: &Path) -> Result<()> {
    let base = debian_base(root)?;
    let context = root.join("target/image/python-framex");
    let wheels = context.join("wheels");
    if wheels.exists() {
        std::fs::remove_dir_all(&wheels)?;
    }
    let plugins = context.join("plugins");
    if plugins.exists() {
        std::fs::remove_dir_all(&plugins)?;
    }
    std::fs::create_dir_all(&plugins)?;
    for plugin in ["your_module.py", "demo.py"] {
        std::fs::copy(
            root.join("deploy/images/python").join(plugin),
            plugins.join(plugin),
        )?;
    }
    println!("downloading framex-kit 0.4.2 and what it needs from PyPI…");
    // Wheels for the base's CPython 3.11 on x86-64 Linux, whatever Python runs
    // here; pip's own configuration (index, certificates) applies.
    let python = std::env::var("FRAMEX_TEST_PYTHON").unwrap_or_else(|_| "python3".into());
    let output = Command::new(&python)
        .args([
            "-m",
            "pip",
            "download",
            "--quiet",
            "--disable-pip-version-check",
        ])
        .arg("--dest")
        .arg(&wheels)
        .args([
            "--only-binary=:all:",
            "--implementation",
            "cp",
            "--python-version",
            "3.11",
            "--abi",
            "cp311",
            "--platform",
            "manylinux_2_28_x86_64",
            "--platform",
            "manylinux_2_17_x86_64",
            "--platform",
            "manylinux2014_x86_64",
            "--platform",
            "linux_x86_64",
            "framex-kit==0.4.2",
            // framex-kit 0.4.2 imports `yaml` at start-up without declaring
            // PyYAML among its dependencies.
            "pyyaml",
        ])
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("cannot run {python} -m pip"))?;
    ensure!(
        output.status.success(),
        "pip download framex-kit==0.4.2 failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    docker_build(
        root,
        "python-framex.Dockerfile",
        &context,
        &[PYTHON],
        &[("BASE", &base)],
    )?;
    prune();
    println!("built {PYTHON} on {base}: {}", size_of(PYTHON)?);
    Ok(())
}

/// `framex-debian:CODENAME`: made once with debootstrap (minbase, with
/// python3, python3-venv and ca-certificates) from the mirror this machine's
/// apt uses, and imported.
fn debian_base(root: &Path) -> Result<String> {
    let os_release = std::fs::read_to_string("/etc/os-release").context(
        "the Python image's base is made from Debian's packages; /etc/os-release is missing",
    )?;
    let field = |name: &str| {
        os_release.lines().find_map(|line| {
            line.strip_prefix(name)
                .and_then(|rest| rest.strip_prefix('='))
                .map(|value| value.trim_matches('"').to_owned())
        })
    };
    ensure!(
        field("ID").as_deref() == Some("debian"),
        "the Python image's base is made from Debian's packages, on Debian (this is {})",
        field("ID").unwrap_or_default()
    );
    let codename = field("VERSION_CODENAME").context("VERSION_CODENAME in /etc/os-release")?;
    let base = format!("framex-debian:{codename}");
    if image_exists(&base) {
        return Ok(base);
    }
    ensure!(
        rustix::process::geteuid().is_root(),
        "making {base} with debootstrap needs root"
    );
    let mirror = apt_mirror()?;
    let rootfs = root.join("target/image/debian-rootfs");
    if rootfs.exists() {
        std::fs::remove_dir_all(&rootfs)?;
    }
    println!("making {base} with debootstrap from {mirror} (once per machine)…");
    let output = Command::new("debootstrap")
        .args([
            "--variant=minbase",
            "--include=python3,python3-venv,ca-certificates",
            &codename,
        ])
        .arg(&rootfs)
        .arg(&mirror)
        .stdin(Stdio::null())
        .output()
        .context("cannot run debootstrap (Debian's package debootstrap)")?;
    ensure!(
        output.status.success(),
        "debootstrap failed:\n{}",
        String::from_utf8_lossy(&output.stdout)
            .lines()
            .rev()
            .take(20)
            .collect::<Vec<_>>()
            .join("\n")
    );
    // What an image does not need: downloaded packages, package lists, docs.
    for unneeded in [
        "var/cache/apt/archives",
        "var/lib/apt/lists",
        "usr/share/doc",
        "usr/share/man",
        "usr/share/locale",
    ] {
        let path = rootfs.join(unneeded);
        if path.exists() {
            std::fs::remove_dir_all(&path)?;
            std::fs::create_dir_all(&path)?;
        }
    }
    let tar = Command::new("tar")
        .arg("-C")
        .arg(&rootfs)
        .args(["-c", "."])
        .stdout(Stdio::piped())
        .spawn()
        .context("cannot run tar")?;
    let imported = Command::new("docker")
        .args(["import", "-", &base])
        .stdin(tar.stdout.context("tar's output")?)
        .stdout(Stdio::null())
        .status()
        .context("cannot run docker import")?;
    ensure!(imported.success(), "docker import of {base} failed");
    std::fs::remove_dir_all(&rootfs)?;
    Ok(base)
}

/// The Debian mirror in this machine's apt sources (deb822 `.sources` files or
/// `sources.list`), so the base comes from where the machine's packages do.
fn apt_mirror() -> Result<String> {
    let mut texts = Vec::new();
    if let Ok(entries) = std::fs::read_dir("/etc/apt/sources.list.d") {
        for entry in entries.flatten() {
            if entry.path().extension().is_some_and(|e| e == "sources") {
                texts.push(std::fs::read_to_string(entry.path()).unwrap_or_default());
            }
        }
    }
    texts.push(std::fs::read_to_string("/etc/apt/sources.list").unwrap_or_default());
    for text in &texts {
        for line in text.lines() {
            let line = line.trim();
            if let Some(uris) = line.strip_prefix("URIs:")
                && let Some(uri) = uris.split_whitespace().find(|u| !u.contains("security"))
            {
                return Ok(uri.to_owned());
            }
            if let Some(rest) = line.strip_prefix("deb ")
                && let Some(uri) = rest
                    .split_whitespace()
                    .find(|word| word.starts_with("http") && !word.contains("security"))
            {
                return Ok(uri.to_owned());
            }
        }
    }
    bail!("no Debian mirror in /etc/apt/sources.list.d/*.sources or /etc/apt/sources.list")
}
