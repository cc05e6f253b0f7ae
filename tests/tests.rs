//! FrameX for Rust integration tests: one binary of modules that exercise the
//! workspace crates together through the `framex` facade.

mod bad_input;
mod deadlines;
mod embed;
mod faults;
mod forward;
mod http2;
mod logs;
mod metrics;
mod on_proxy;
mod python_interop;
mod reload;
mod replicas;
mod seed_config;
mod support;
mod tls;
mod trace;
mod two_instances;
