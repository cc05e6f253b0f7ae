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

/// `GET path` on `address` over a fresh connection: the body.
fn get(address: &str, path: &str) -> String {
    use std::io::{Read as _, Write as _};
    let mut stream = std::net::TcpStream::connect(address).unwrap();
    stream
        .set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let (head, body) = response.split_once("\r\n\r\n").unwrap();
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    body.to_owned()
}

/// The demo's OpenAPI document (`framex serve`) validates as OpenAPI 3 with
/// `openapi-spec-validator`, and describes the demo's routes with their
/// query, path and body parameters and their schemas.
#[test]
fn the_demo_document_validates_as_openapi_3_with_its_parameters_and_schemas() {
    use std::io::BufRead as _;
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("cli-openapi");
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join(format!("{}.toml", std::process::id()));
    std::fs::write(&config, "[server]\nhost = \"127.0.0.1\"\nport = 0\n").unwrap();
    let mut served = Command::new(env!("CARGO_BIN_EXE_framex"))
        .arg("serve")
        .arg(&config)
        .env("RUST_LOG", "error")
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufReader::new(served.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let address = line
        .trim()
        .trim_start_matches("listening on http://")
        .to_owned();
    let document = get(&address, "/api/v1/openapi.json");
    let _ = served.kill();
    let _ = served.wait();

    python_framex::validate_openapi(Path::new(env!("CARGO_TARGET_TMPDIR")), document.as_bytes())
        .unwrap_or_else(|e| panic!("{e}\n{document}"));
    let document: serde_json::Value = serde_json::from_str(&document).unwrap();
    let paths = &document["paths"];
    let parameter = |path: &str, index: usize| {
        let parameter = &paths[path]["get"]["parameters"][index];
        (
            parameter["name"].as_str().unwrap_or_default().to_owned(),
            parameter["in"].as_str().unwrap_or_default().to_owned(),
            parameter["schema"]["type"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
        )
    };
    let owned = |(a, b, c): (&str, &str, &str)| (a.to_owned(), b.to_owned(), c.to_owned());
    assert_eq!(
        parameter("/api/v1/report", 0),
        owned(("job_id", "query", "string"))
    );
    assert_eq!(
        parameter("/api/v1/reports/{job_id}", 0),
        owned(("job_id", "path", "string"))
    );
    assert_eq!(
        parameter("/api/v1/slow", 0),
        owned(("ms", "query", "integer"))
    );
    let body = &paths["/api/v1/reports"]["post"]["requestBody"]["content"]["application/json"];
    assert_eq!(body["schema"]["$ref"], "#/components/schemas/ReportRequest");
    let schemas = &document["components"]["schemas"];
    assert_eq!(
        schemas["ReportRequest"]["required"],
        serde_json::json!(["job_id"])
    );
    assert_eq!(
        schemas["Report"]["properties"]["job_id"]["type"], "string",
        "{schemas:#}"
    );
    let answer = &paths["/api/v1/report"]["get"]["responses"]["200"]["content"]["application/json"];
    assert!(answer["schema"]["$ref"].is_string(), "{answer:#}");
}
