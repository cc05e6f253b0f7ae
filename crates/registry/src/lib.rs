//! The FrameX function registry: maps proxy-function names to local handlers and,
//! from the validated configuration, decides whether a call runs here or on a remote
//! FrameX instance through `framex-transport`.
//!
//! Not built yet: this crate holds its place in the workspace so that the dependency
//! direction is fixed from the start (see ARCHITECTURE.md).
