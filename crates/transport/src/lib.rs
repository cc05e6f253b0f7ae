//! The FrameX HTTP transport and wire format: call proxy functions on any FrameX
//! instance, Rust or Python, from any Rust program.
//!
//! This crate depends on no other FrameX crate, so a service can embed it alone.
//! The wire format is what both sides agree on:
//!
//! ```
//! use framex_transport::wire::{self, CallBody};
//! use serde_json::json;
//!
//! // What goes over the wire for `your_module.build_report(job_id="j-1")`.
//! let kwargs = json!({ "job_id": "j-1" });
//! let body = CallBody::encode("your_module.build_report", kwargs.as_object().unwrap())?;
//! let name: String = wire::decode(&body.func_name)?;
//! let decoded: serde_json::Value = wire::decode(&body.data)?;
//! assert_eq!((name.as_str(), decoded), ("your_module.build_report", kwargs));
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
//! let kwargs = json!({ "job_id": "j-1" });
//! let report = client
//!     .call("http://remote-framex:8080", Some("proxy-key"), "your_module.build_report", kwargs.as_object().unwrap())
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

mod client;
mod error;
mod pool;
pub mod tls;
pub mod trace;
pub mod wire;

#[cfg(test)]
mod tests;

pub use client::{CallRequest, Client, ClientSettings, HOPS_HEADER};
pub use error::{Error, ErrorKind};
pub use rustls_pki_types::{CertificateDer, PrivateKeyDer};
