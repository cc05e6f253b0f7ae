//! The FrameX HTTP server: serves `POST /api/v1/proxy/remote`, health and the
//! instance's own routes, enforcing the `[auth]` rules.
//!
//! Not built yet. It will never read TOML or the environment: the facade hands it
//! its settings.
