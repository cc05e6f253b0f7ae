//! Spans exported over OTLP/HTTP: a collector on loopback receives FrameX's
//! spans from the provider that `framex::otel::otlp_provider` builds.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::mpsc;
use std::time::Duration;

use tracing_subscriber::layer::SubscriberExt as _;

/// What the collector received: the request line, the content type and the
/// body.
struct Export {
    request_line: String,
    content_type: String,
    body: Vec<u8>,
}

/// A collector that answers every export with 200 and hands each on.
fn collector() -> (String, mpsc::Receiver<Export>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/v1/traces", listener.local_addr().unwrap());
    let (sender, receiver) = mpsc::channel();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut request_line = String::new();
            reader.read_line(&mut request_line).unwrap();
            let (mut length, mut content_type) = (0, String::new());
            loop {
                let mut line = String::new();
                reader.read_line(&mut line).unwrap();
                let line = line.trim_end();
                if line.is_empty() {
                    break;
                }
                let (name, value) = line.split_once(':').unwrap();
                match name.to_ascii_lowercase().as_str() {
                    "content-length" => length = value.trim().parse().unwrap(),
                    "content-type" => content_type = value.trim().to_owned(),
                    _ => {}
                }
            }
            let mut body = vec![0; length];
            reader.read_exact(&mut body).unwrap();
            stream
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n")
                .unwrap();
            let export = Export {
                request_line: request_line.trim_end().to_owned(),
                content_type,
                body,
            };
            if sender.send(export).is_err() {
                return;
            }
        }
    });
    (url, receiver)
}

#[test]
fn spans_reach_a_collector_over_otlp_http() {
    let (url, exports) = collector();
    let provider = framex::otel::otlp_provider(Some(&url), "otlp-test").unwrap();
    let subscriber = tracing_subscriber::registry().with(framex::otel::layer(&provider));
    tracing::subscriber::with_default(subscriber, || {
        let span = tracing::info_span!("proxy_call", function = "otlp.test_function");
        span.in_scope(|| tracing::info!("inside"));
    });
    provider.force_flush().unwrap();
    let export = exports
        .recv_timeout(Duration::from_secs(10))
        .expect("the collector received the spans");
    assert_eq!(export.request_line, "POST /v1/traces HTTP/1.1");
    assert_eq!(export.content_type, "application/x-protobuf");
    // The protobuf carries the span's name, its attribute and the service.
    for text in ["proxy_call", "otlp.test_function", "otlp-test"] {
        assert!(
            export
                .body
                .windows(text.len())
                .any(|window| window == text.as_bytes()),
            "{text} is not in the export"
        );
    }
    provider.shutdown().unwrap();
}
