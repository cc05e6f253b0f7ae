//! Calls a proxy function on a FrameX instance (Rust or Python) from a plain Tokio
//! program, with only `framex-transport`.
//!
//! `cargo run -p framex-transport --example call -- URL FUNCTION '{"kwarg": "value"}' [KEY]`
//!
//! For example, against the remote of the two-instance demo:
//! `cargo run -p framex-transport --example call -- http://127.0.0.1:8080 your_module.build_report '{"job_id": "j-1"}' proxy-key`

use std::process::ExitCode;

use framex_transport::{Client, ClientSettings};
use serde_json::Value;

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (url, function, kwargs, key) = match args.as_slice() {
        [url, function, kwargs] => (url, function, kwargs, None),
        [url, function, kwargs, key] => (url, function, kwargs, Some(key.as_str())),
        _ => {
            eprintln!("usage: call URL FUNCTION KWARGS_JSON [KEY]");
            return ExitCode::from(2);
        }
    };
    let kwargs = match serde_json::from_str::<Value>(kwargs) {
        Ok(Value::Object(kwargs)) => kwargs,
        Ok(other) => {
            eprintln!("keyword arguments must be a JSON object, not {other}");
            return ExitCode::from(2);
        }
        Err(error) => {
            eprintln!("keyword arguments are not JSON: {error}");
            return ExitCode::from(2);
        }
    };
    let client = Client::new(ClientSettings::default());
    match client.call(url, key, function, &kwargs).await {
        Ok(result) => {
            println!("{result}");
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::FAILURE
        }
    }
}
