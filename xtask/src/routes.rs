//! `cargo xtask routes [CONFIG]`: what each upstream's enable/disable rules make
//! of the routes it publishes, without starting an instance.
//!
//! It loads the configuration as an instance would (`CONFIG`, else
//! `./config.toml`, then `FRAMEX__…` variables), fetches the OpenAPI document of
//! every table-form `proxy_urls` entry and prints each route: enabled or
//! disabled, and the rule that decided it.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};

pub(crate) fn run(config: Option<PathBuf>) -> Result<()> {
    let config = framex::config::Config::load(config.as_deref())
        .map_err(|error| anyhow::anyhow!("{error}"))?;
    for warning in config.warnings() {
        eprintln!("{warning}");
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start a Tokio runtime")?;
    let resolutions = runtime
        .block_on(framex::resolve_routes(&config))
        .map_err(|error| anyhow::anyhow!("{error}"))?;
    if resolutions.is_empty() {
        println!(
            "no upstream forwards routes: it takes the proxy plugin on and a table-form \
             [plugins.proxy.proxy_urls.\"URL\"] entry"
        );
        return Ok(());
    }
    let mut unreachable = 0;
    for resolution in &resolutions {
        print!("{resolution}");
        unreachable += usize::from(resolution.decisions().is_err());
    }
    if unreachable > 0 {
        bail!("{unreachable} upstream document(s) could not be loaded");
    }
    Ok(())
}
