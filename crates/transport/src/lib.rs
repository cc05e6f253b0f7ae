//! The FrameX HTTP transport and wire format: the client side of
//! `POST /api/v1/proxy/remote`, compatible with Python FrameX.
//!
//! Not built yet. It will depend on no other workspace crate, so that any Rust
//! service can embed it alone to call FrameX functions.
