//! `framex call` against a real Python FrameX (`framex-kit` 0.4.2): Python's
//! values come out as Python wrote them, and values only Python's JSON has
//! (NaN, integers past 64 bits) go in from the command line.

use std::path::Path;
use std::process::Command;
use std::sync::OnceLock;

#[path = "../../../tests/python/python_framex.rs"]
mod python_framex;

const KEY: &str = "py-key";

/// One Python FrameX for the tests of this file.
fn python() -> &'static python_framex::PythonFramex {
    static PYTHON: OnceLock<Result<python_framex::PythonFramex, String>> = OnceLock::new();
    let started = PYTHON.get_or_init(|| {
        let (host, port) = python_framex::own_address();
        let config = format!(
            "load_builtin_plugins = [\"proxy\"]\nload_plugins = [\"interop_plugin\"]\n\n\
             [server]\nhost = \"{host}\"\nport = {port}\nenable_proxy = true\n\n\
             [auth]\nrules = {{ \"/api/v1/proxy/remote\" = [\"{KEY}\"] }}\n"
        );
        python_framex::start(
            Path::new(env!("CARGO_TARGET_TMPDIR")),
            "cli-python",
            (&host, port),
            &config,
            &[],
        )
    });
    match started {
        Ok(python) => python,
        Err(error) => panic!("Python FrameX did not start: {error}"),
    }
}

/// `framex call PYTHON FUNCTION --kwargs KWARGS [extra…]`: its exit status,
/// standard output and standard error.
fn call(function: &str, kwargs: &str, extra: &[&str]) -> (bool, String, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_framex"))
        .args(["call", &python().url, function, "--kwargs", kwargs])
        .args(extra)
        .env("FRAMEX_PROXY_KEY", KEY)
        .output()
        .unwrap();
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout)
            .trim_end()
            .to_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn python_values_are_printed_as_python_wrote_them() {
    for (case, printed) in [
        ("2^64", "18446744073709551616"),
        ("10^30", "1000000000000000000000000000000"),
        ("nan", "NaN"),
        ("-inf", "-Infinity"),
        (
            "key order",
            "{\n  \"zeta\": 1,\n  \"alpha\": 2,\n  \"mid\": {\n    \"b\": [],\n    \"a\": {}\n  },\n  \"\": null\n}",
        ),
    ] {
        let (ok, stdout, stderr) = call(
            "interop_plugin.make",
            &format!(r#"{{"case": "{case}"}}"#),
            &[],
        );
        assert!(ok, "{case}: {stderr}");
        assert_eq!(stdout, printed, "{case}");
    }
}

#[test]
fn a_python_model_is_printed_as_its_fields_or_raw_with_its_wrapper() {
    let kwargs = r#"{"case": "a pydantic model"}"#;
    let (ok, stdout, stderr) = call("interop_plugin.make", kwargs, &[]);
    assert!(ok, "{stderr}");
    assert_eq!(
        stdout,
        "{\n  \"name\": \"ada\",\n  \"age\": 36,\n  \"address\": {\n    \"city\": \"Paris\"\n  }\n}"
    );
    let (ok, stdout, stderr) = call("interop_plugin.make", kwargs, &["--raw"]);
    assert!(ok, "{stderr}");
    assert!(
        stdout.starts_with(r#"{"__type__":"dynamic_obj","__module__":"interop_plugin","__class__":"User","data":{"name":"ada""#),
        "{stdout}"
    );
}

#[test]
fn values_only_python_json_has_go_in_from_the_command_line() {
    for (value, python_repr) in [
        ("NaN", "nan"),
        ("-Infinity", "-inf"),
        ("18446744073709551616", "18446744073709551616"),
    ] {
        let (ok, stdout, stderr) = call(
            "interop_plugin.inspect",
            &format!(r#"{{"value": {value}}}"#),
            &["--raw"],
        );
        assert!(ok, "{value}: {stderr}");
        let seen: serde_json::Value = serde_json::from_str(&stdout).unwrap();
        assert_eq!(seen["repr"], python_repr, "{value}: {stdout}");
    }
}

#[test]
fn a_call_runs_in_the_python_process() {
    let (ok, stdout, stderr) = call(
        "interop_plugin.describe",
        r#"{"value": [1, "é"]}"#,
        &["--raw"],
    );
    assert!(ok, "{stderr}");
    let result: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(
        result,
        serde_json::json!({"echo": [1, "é"], "by": "python", "pid": python().pid})
    );
}

#[test]
fn a_python_failure_is_an_error_naming_the_function() {
    let (ok, stdout, stderr) = call("interop_plugin.fail", r#"{"message": "disk full"}"#, &[]);
    assert!(!ok);
    assert_eq!(stdout, "");
    assert_eq!(
        stderr.trim_end(),
        format!(
            "error: `interop_plugin.fail` failed on {} (status 500): disk full",
            python().url
        )
    );
}
