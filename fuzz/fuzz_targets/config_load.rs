//! Loads arbitrary text as a FrameX configuration: any input gets a
//! configuration or errors that render, never a crash.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match framex_config::Config::from_toml_str(text) {
        Ok(config) => {
            let _ = config.summary().to_string();
            for (name, url) in config.proxy().functions() {
                assert_eq!(config.function_url(name), Some(url));
            }
        }
        Err(error) => {
            assert!(!error.to_string().is_empty());
        }
    }
});
