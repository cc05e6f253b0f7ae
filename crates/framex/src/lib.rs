//! FrameX for Rust: the facade that users depend on.
//!
//! It re-exports the workspace crates under short names. The registry, transport and
//! server, and the calls that compose them from a configuration, join it as they are
//! built.

pub use framex_auth as auth;
pub use framex_config as config;
pub use framex_filter as filter;
