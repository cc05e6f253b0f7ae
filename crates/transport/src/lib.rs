//! The FrameX HTTP transport and wire format: call proxy functions on any FrameX
//! instance, Rust or Python, from any Rust program.
//!
//! This crate depends on no other FrameX crate, so a service can embed it alone.
//! The wire format is what both sides agree on:
//!
//! ```
//! use framex_transport::wire::{self, CallBody};
//! use framex_transport::Value;
//! use serde::Serialize;
//!
//! #[derive(Serialize)]
//! struct BuildReport<'a> { job_id: &'a str }
//!
//! // What goes over the wire for `your_module.build_report(job_id="j-1")`.
//! let body = CallBody::encode("your_module.build_report", &BuildReport { job_id: "j-1" })?;
//! let name: String = wire::decode(&body.func_name)?;
//! let decoded: Value = wire::decode(&body.data)?;
//! assert_eq!(name, "your_module.build_report");
//! assert_eq!(decoded.to_string(), r#"{"job_id":"j-1"}"#);
//! # Ok::<(), wire::WireError>(())
//! ```
//!
//! A call to another instance:
//!
//! ```no_run
//! # async fn example() -> Result<(), framex_transport::Error> {
//! use framex_transport::{Client, ClientSettings};
//! use serde_json::json;
//!
//! let client = Client::new(ClientSettings::default());
//! // Any `Serialize` that is a JSON object: a struct, a map, `json!({…})`.
//! let kwargs = json!({ "job_id": "j-1" });
//! let report = client
//!     .call("http://remote-framex:8080", Some("proxy-key"), "your_module.build_report", &kwargs)
//!     .await?;
//! println!("{report}");
//! # Ok(())
//! # }
//! ```
//!
//! [`wire`] holds the encoding both sides use; [`Client`] is the pooled client,
//! for `http://` and `https://` URLs ([`tls`]: the system's CA certificates plus
//! any given in [`ClientSettings::with_root_certificates`]); [`trace`] carries
//! the W3C trace context from call to call.
//! [`repoll`] is how a task that drives a hyper connection and what waits on it
//! (the client's calls, a server's connection and its handler) keeps their
//! hand-offs out of Tokio's scheduler.

mod client;
pub mod deadline;
mod error;
mod pool;
pub mod repoll;
pub mod tls;
pub mod trace;
mod upstream;
pub mod wire;

#[cfg(test)]
mod tests;

pub use client::{
    CallRequest, Client, ClientSettings, ERRORS_BY_STATUS, ERRORS_HEADER, HOPS_HEADER,
    UpstreamSettings,
};
pub use error::{Error, ErrorKind};
pub use framex_json::{self as json, Value};
pub use pool::StreamedBody;
pub use rustls_pki_types::{CertificateDer, PrivateKeyDer};
pub use upstream::{DRAINING_HEADER, EndpointStatus, Upstream, UpstreamStatus};
