//! `xtask-containers`: the container scenarios, started by `cargo xtask
//! containers` (which builds the images first and sets `DOCKER_HOST`); see
//! `xtask/src/containers/scenarios.rs`.

fn main() -> std::process::ExitCode {
    xtask::containers_main()
}
