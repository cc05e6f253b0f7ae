//! Registry tests: registration, where a name runs, and dispatch both ways.

use framex_transport::Value;
use serde_json::json;
use wiremock::matchers::{header, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use super::{
    CallError, HandlerError, Kwargs, Location, RegisterError, Registry, Remote, Routing, handler,
};

fn kwargs(value: serde_json::Value) -> Kwargs {
    Kwargs::new(&value).unwrap()
}

fn echo() -> super::Handler {
    handler(|kwargs: Kwargs| async move {
        let kwargs: Value = kwargs.parse()?;
        Ok(json!({"ran": "local", "kwargs": kwargs}))
    })
}

/// What a call returned, as a value.
fn value(output: super::Output) -> Value {
    output.parse().unwrap()
}

#[test]
fn registering_a_name_twice_is_an_error() {
    let mut registry = Registry::new(Routing::default(), framex_transport::Client::default());
    registry.register("m.f", echo()).unwrap();
    assert_eq!(
        registry.register("m.f", echo()).unwrap_err(),
        RegisterError::Duplicate("m.f".into())
    );
    assert_eq!(
        registry.register("", echo()).unwrap_err(),
        RegisterError::EmptyName
    );
    assert_eq!(
        RegisterError::Duplicate("m.f".into()).to_string(),
        "proxy function `m.f` is already registered"
    );
}

#[tokio::test]
async fn unlisted_names_run_locally() {
    let mut registry = Registry::new(Routing::default(), framex_transport::Client::default());
    registry.register("m.f", echo()).unwrap();
    assert_eq!(registry.location("m.f"), Location::Local);
    let result = registry.call("m.f", kwargs(json!({"a": 1}))).await.unwrap();
    assert_eq!(value(result), json!({"ran": "local", "kwargs": {"a": 1}}));
}

#[tokio::test]
async fn unknown_names_are_not_registered() {
    let registry = Registry::new(Routing::default(), framex_transport::Client::default());
    assert_eq!(registry.location("m.nope"), Location::Unknown);
    let error = registry
        .call("m.nope", kwargs(json!({})))
        .await
        .unwrap_err();
    assert!(matches!(error, CallError::NotRegistered(ref name) if name == "m.nope"));
    assert_eq!(
        error.to_string(),
        "proxy function `m.nope` is not registered"
    );
}

#[tokio::test]
async fn handler_failures_name_the_function() {
    let mut registry = Registry::new(Routing::default(), framex_transport::Client::default());
    registry
        .register(
            "m.fail",
            handler(|_| async { Err::<(), _>(HandlerError::Failed("disk full".into())) }),
        )
        .unwrap();
    registry
        .register(
            "m.args",
            handler(|_| async { Err::<(), _>(HandlerError::Arguments("missing `job_id`".into())) }),
        )
        .unwrap();
    let error = registry
        .call("m.fail", kwargs(json!({})))
        .await
        .unwrap_err();
    assert_eq!(error.to_string(), "`m.fail` failed: disk full");
    let error = registry
        .call("m.args", kwargs(json!({})))
        .await
        .unwrap_err();
    assert_eq!(
        error.to_string(),
        "invalid arguments for `m.args`: missing `job_id`"
    );
}

#[tokio::test]
async fn listed_names_run_remotely_even_when_registered_here() {
    let server = MockServer::start().await;
    let encoded = framex_transport::wire::encode(&json!({"ran": "remote"})).unwrap();
    Mock::given(method("POST"))
        .and(path("/api/v1/proxy/remote"))
        .and(header("authorization", "proxy-key"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(framex_transport::wire::Envelope::success(encoded)),
        )
        .expect(2)
        .mount(&server)
        .await;
    let routing =
        Routing::default().route("m.f", Remote::new(server.uri(), Some("proxy-key".into())));
    let mut registry = Registry::new(routing, framex_transport::Client::default());
    registry.register("m.f", echo()).unwrap();

    assert_eq!(registry.location("m.f"), Location::Remote(server.uri()));
    let result = registry.call("m.f", kwargs(json!({"a": 1}))).await.unwrap();
    assert_eq!(value(result), json!({"ran": "remote"}));
    // Decided once: the target runs where it was decided, after the routing
    // moved the name back here.
    let target = registry.target("m.f");
    assert_eq!(
        target.remote().map(Remote::url),
        Some(server.uri().as_str())
    );
    let previous = registry.set_routing(Routing::default());
    assert_eq!(
        previous.remote("m.f").map(Remote::url),
        Some(server.uri().as_str())
    );
    assert!(registry.target("m.f").is_local());
    let result = target.call(kwargs(json!({"a": 1}))).await.unwrap();
    assert_eq!(value(result), json!({"ran": "remote"}));
    let local = registry.call("m.f", kwargs(json!({}))).await.unwrap();
    assert_eq!(value(local)["ran"], Value::from("local"));
}

#[tokio::test]
async fn remote_failures_stay_errors() {
    // A port held by a socket that does not listen: connecting is refused,
    // and no other test can take the port meanwhile.
    let held = tokio::net::TcpSocket::new_v4().unwrap();
    held.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let url = format!("http://{}", held.local_addr().unwrap());
    let routing = Routing::default().route("m.f", Remote::new(url.clone(), None));
    let registry = Registry::new(routing, framex_transport::Client::default());
    let error = registry.call("m.f", kwargs(json!({}))).await.unwrap_err();
    match error {
        CallError::Remote(error) => assert!(error.is_connect(), "{error}"),
        other => panic!("expected a remote error, got {other:?}"),
    }
}

#[test]
fn remote_keys_do_not_show_in_debug() {
    let routing = Routing::default().route("m.f", Remote::new("http://a:1", Some("secret".into())));
    let registry = Registry::new(routing, framex_transport::Client::default());
    let shown = format!("{registry:?} {:?}", registry.target("m.f"));
    assert!(!shown.contains("secret"), "{shown}");
}

#[tokio::test]
async fn kwargs_are_read_one_by_one_naming_what_does_not_fit() {
    let read = |text: &str| {
        let kwargs = Kwargs::from_json(text.as_bytes().to_vec());
        let mut reader = kwargs.reader()?;
        let mut count: Option<u64> = None;
        let mut label: Option<Option<String>> = None;
        while let Some(name) = reader.next_name()? {
            match name.as_ref() {
                "count" => count = Some(reader.value("count")?),
                "label" => label = Some(reader.value("label")?),
                other => reader.unexpected(other)?,
            }
        }
        reader.finish()?;
        Ok::<_, HandlerError>((
            super::required(count, "count")?,
            super::required(label, "label")?,
        ))
    };
    assert_eq!(read(r#"{"count": 3}"#).unwrap(), (3, None));
    assert_eq!(
        read(r#"{"count": 3, "label": "x"}"#).unwrap(),
        (3, Some("x".into()))
    );
    for (text, message) in [
        ("{}", "missing keyword argument `count`"),
        (
            r#"{"count": 1180591620717411303424}"#,
            "keyword argument `count`: invalid value: integer 1180591620717411303424, expected u64",
        ),
        (
            r#"{"count": NaN}"#,
            "keyword argument `count`: invalid type: floating point `NaN`, expected u64",
        ),
        (
            r#"{"count": 1, "x": [1], "y": 2}"#,
            "unexpected keyword arguments `x`, `y`",
        ),
        (
            "[1]",
            "keyword arguments: expected a JSON object, found an array",
        ),
        (
            r#"{"count": 1,}"#,
            "keyword arguments: expected a string key, found '}' at byte 12",
        ),
    ] {
        assert_eq!(
            read(text).unwrap_err(),
            HandlerError::Arguments(message.into()),
            "{text}"
        );
    }
}

#[test]
fn kwargs_must_be_an_object() {
    assert_eq!(
        Kwargs::new(&json!([1, 2])).unwrap_err().to_string(),
        "keyword arguments must be a JSON object, not an array"
    );
    assert_eq!(Kwargs::empty().as_json(), b"{}");
}
