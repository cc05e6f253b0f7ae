//! `GET /metrics` after calls that ran locally, on a remote, and that failed on
//! the way: each is counted by function, location and outcome, with its
//! duration in the histogram.

use crate::support::{config, get, start};
use framex::App;
use framex::registry::Kwargs;
use serde_json::{Value, json};

/// The value of the sample line that starts with `series` (a metric name with
/// its labels, exactly as rendered).
fn sample(metrics: &str, series: &str) -> Option<f64> {
    metrics.lines().find_map(|line| {
        let value = line.strip_prefix(series)?.strip_prefix(' ')?;
        value.parse().ok()
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_are_counted_by_function_location_and_outcome() {
    let mut remote = App::from_config(config("[server]\nport = 0\n")).unwrap();
    remote
        .register_handler(
            "m.echo",
            framex::registry::typed(|args: Value| async move { Ok::<_, String>(args) }),
        )
        .unwrap();
    let remote = start(remote, "remote").await;
    // A port held by a socket that does not listen: connecting is refused,
    // and no other test can take the port meanwhile.
    let held = tokio::net::TcpSocket::new_v4().unwrap();
    held.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let gone = format!("http://{}", held.local_addr().unwrap());
    let mut local = App::from_config(config(&format!(
        "load_builtin_plugins = [\"proxy\"]\n[server]\nenable_proxy = true\nport = 0\n\
         [plugins.proxy]\nproxy_urls = [\"{remote}\", \"{gone}\"]\nproxy_functions = {{ \"{remote}\" = [\"m.echo\", \"m.missing\"], \"{gone}\" = [\"m.gone\"] }}\n"
    )))
    .unwrap();
    local
        .register_handler(
            "m.fail",
            framex::registry::typed(|_: Value| async { Err::<Value, _>("disk full") }),
        )
        .unwrap();
    let calls = std::sync::Arc::new(local.registry().clone());
    let local = start(local, "local").await;

    for n in 0..3 {
        calls
            .call("m.echo", Kwargs::new(&json!({"n": n})).unwrap())
            .await
            .unwrap();
    }
    calls.call("m.fail", Default::default()).await.unwrap_err();
    calls
        .call("m.missing", Default::default())
        .await
        .unwrap_err();
    calls.call("m.gone", Default::default()).await.unwrap_err();
    calls.call("m.gone", Default::default()).await.unwrap_err();

    let (status, metrics) = get(&local, "/metrics").await;
    assert_eq!(status, 200);
    let counted = |function: &str, location: &str, outcome: &str| {
        sample(
            &metrics,
            &format!(
                "framex_calls_total{{function=\"{function}\",location=\"{location}\",outcome=\"{outcome}\"}}"
            ),
        )
    };
    assert_eq!(counted("m.echo", &remote, "ok"), Some(3.0), "{metrics}");
    assert_eq!(counted("m.fail", "local", "failed"), Some(1.0), "{metrics}");
    assert_eq!(
        counted("m.missing", &remote, "not_registered"),
        Some(1.0),
        "{metrics}"
    );
    assert_eq!(
        counted("m.gone", &gone, "connect_error"),
        Some(2.0),
        "{metrics}"
    );
    let histogram = format!("function=\"m.echo\",location=\"{remote}\"");
    assert_eq!(
        sample(
            &metrics,
            &format!("framex_call_duration_seconds_count{{{histogram}}}")
        ),
        Some(3.0)
    );
    assert_eq!(
        sample(
            &metrics,
            &format!("framex_call_duration_seconds_bucket{{le=\"+Inf\",{histogram}}}")
        ),
        Some(3.0)
    );
    assert_eq!(sample(&metrics, "framex_calls_in_flight"), Some(0.0));
    assert_eq!(
        sample(
            &metrics,
            &format!("framex_upstream_connect_errors_total{{url=\"{gone}\"}}")
        ),
        Some(2.0)
    );

    // The remote counted the three calls it ran for the local instance.
    let (_, remote_metrics) = get(&remote, "/metrics").await;
    assert_eq!(
        sample(
            &remote_metrics,
            "framex_calls_total{function=\"m.echo\",location=\"local\",outcome=\"ok\"}"
        ),
        Some(3.0),
        "{remote_metrics}"
    );
    assert_eq!(
        sample(
            &remote_metrics,
            "framex_calls_total{function=\"(unregistered)\",location=\"local\",outcome=\"not_registered\"}"
        ),
        Some(1.0),
        "{remote_metrics}"
    );
}

/// Posts a call of `name` to the proxy endpoint of `url`: the status and the
/// answer's body.
async fn call_named(url: &str, name: &str) -> (u16, Vec<u8>) {
    use framex::transport::wire::CallBody;
    let body = CallBody::encode(name, &json!({})).unwrap().to_json();
    crate::support::send(
        url,
        "POST",
        "/api/v1/proxy/remote",
        &[("x-framex-errors", "http-status")],
        &body,
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn names_from_callers_cannot_grow_the_metrics() {
    let mut app = App::from_config(config("[server]\nport = 0\n")).unwrap();
    app.register_handler(
        "m.echo",
        framex::registry::typed(|args: Value| async move { Ok::<_, String>(args) }),
    )
    .unwrap();
    let url = start(app, "names").await;
    let (_, before) = get(&url, "/metrics").await;

    // A name past the limit is refused before any lookup, quoted in part; a
    // mebibyte of one letter is a few kilobytes on the wire.
    for size in [257, 5_500, 1024 * 1024] {
        let (status, body) = call_named(&url, &"n".repeat(size)).await;
        let body = String::from_utf8(body).unwrap();
        assert_eq!(status, 400, "{body}");
        assert!(
            body.len() < 300,
            "the answer quotes only a prefix: {} bytes",
            body.len()
        );
        assert!(
            body.contains("the function name is longer than 256 bytes"),
            "{body}"
        );
    }
    // Names within the limit that nothing registered share one series.
    for n in 0..2_000 {
        let (status, _) = call_named(&url, &format!("m.made_up_{n}_{}", "x".repeat(200))).await;
        assert_eq!(status, 404);
    }
    let (_, after) = get(&url, "/metrics").await;
    assert!(!after.contains("made_up"), "no caller-made name is a label");
    assert_eq!(
        sample(
            &after,
            "framex_calls_total{function=\"(unregistered)\",location=\"local\",outcome=\"not_registered\"}"
        ),
        Some(2_000.0)
    );
    assert!(
        after.len() < before.len() + 4096,
        "/metrics grew from {} to {} bytes",
        before.len(),
        after.len()
    );
    // The name the limit allows is served.
    assert_eq!(call_named(&url, &"n".repeat(256)).await.0, 404);
}

/// An application's own metrics, registered on the app, are served by
/// `GET /metrics` beside FrameX's, in one OpenMetrics text.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_application_metric_is_served_beside_framex_metrics() {
    // The derive names the crate itself, so an application that labels its
    // metrics depends on prometheus-client (the version FrameX uses).
    use prometheus_client::encoding::EncodeLabelSet;
    use prometheus_client::metrics::counter::Counter;
    use prometheus_client::metrics::family::Family;

    #[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
    struct Kind {
        kind: String,
    }

    let mut app = App::from_config(config("[server]\nport = 0\n")).unwrap();
    let reports = Family::<Kind, Counter>::default();
    app.metrics()
        .register("reports_built", "Reports built, by kind", reports.clone());
    let counting = reports.clone();
    app.register_handler(
        "m.report",
        framex::registry::typed(move |args: Value| {
            let counting = counting.clone();
            async move {
                let kind = args["kind"].as_str().unwrap_or("plain").to_owned();
                counting.get_or_create(&Kind { kind }).inc();
                Ok::<_, String>("built")
            }
        }),
    )
    .unwrap();
    let url = start(app, "metrics").await;
    for _ in 0..2 {
        let (status, _) = crate::support::send(
            &url,
            "POST",
            "/api/v1/proxy/remote",
            &[("content-type", "application/json")],
            &framex::transport::wire::CallBody::encode_json("m.report", br#"{"kind":"pdf"}"#)
                .unwrap()
                .to_json(),
        )
        .await;
        assert_eq!(status, 200);
    }

    let (status, metrics) = get(&url, "/metrics").await;
    assert_eq!(status, 200);
    assert_eq!(
        sample(&metrics, "reports_built_total{kind=\"pdf\"}"),
        Some(2.0),
        "{metrics}"
    );
    assert!(
        metrics.contains("# HELP reports_built Reports built, by kind.\n"),
        "{metrics}"
    );
    assert_eq!(
        sample(
            &metrics,
            "framex_calls_total{function=\"m.report\",location=\"local\",outcome=\"ok\"}"
        ),
        Some(2.0),
        "{metrics}"
    );
    assert!(metrics.ends_with("# EOF\n"), "{metrics}");
}
