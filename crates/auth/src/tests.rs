//! Table-driven tests for rule precedence, both sides of a call, and header parsing.

use super::{Decision, DenyReason, Error, Rules};

fn rules() -> Rules {
    Rules::new([
        ("/api/v1/proxy/remote", vec!["proxy-key", "second-key"]),
        ("/api/*", vec!["api-key"]),
        ("/api/v1/*", vec!["v1-key"]),
        ("/api/v1/admin/*", vec!["admin-key"]),
        ("/exact", vec!["exact-key"]),
    ])
    .unwrap()
}

/// Checks which rule governs `path` and which key a client sends for it.
#[track_caller]
fn check_rule(path: &str, rule: Option<&str>, key: Option<&str>) {
    let rules = rules();
    assert_eq!(
        rules.rule_for(path).map(|r| r.path()),
        rule,
        "rule for {path:?}"
    );
    assert_eq!(
        rules.key_for(path).map(|k| k.expose()),
        key,
        "key for {path:?}"
    );
}

#[test]
fn precedence() {
    check_rule(
        "/api/v1/proxy/remote",
        Some("/api/v1/proxy/remote"),
        Some("proxy-key"),
    );
    check_rule(
        "/api/v1/admin/users",
        Some("/api/v1/admin/*"),
        Some("admin-key"),
    );
    check_rule(
        "/api/v1/admin/a/b/c",
        Some("/api/v1/admin/*"),
        Some("admin-key"),
    );
    check_rule("/api/v1/jobs", Some("/api/v1/*"), Some("v1-key"));
    check_rule("/api/v1/", Some("/api/v1/*"), Some("v1-key"));
    check_rule("/api/v2/jobs", Some("/api/*"), Some("api-key"));
    check_rule("/exact", Some("/exact"), Some("exact-key"));
}

#[test]
fn unprotected_paths() {
    check_rule("/health", None, None);
    check_rule("/exact/more", None, None);
    check_rule("/api", None, None);
    check_rule("/apix/v1", None, None);
    check_rule("", None, None);
}

#[test]
fn root_wildcard_protects_everything() {
    let rules = Rules::new([("/*", ["k"])]).unwrap();
    assert_eq!(
        rules.rule_for("/anything/at/all").map(|r| r.path()),
        Some("/*")
    );
}

/// Checks the server-side decision for a request to `path` with `header`.
#[track_caller]
fn check(path: &str, header: Option<&str>, expect: &str) {
    let rules = rules();
    let decision = rules.check(path, header.map(str::as_bytes));
    let actual = match decision {
        Decision::Public => "public".to_owned(),
        Decision::Allowed { rule } => format!("allowed {}", rule.path()),
        Decision::Denied { rule, reason } => format!("denied {} {reason:?}", rule.path()),
    };
    assert_eq!(actual, expect, "path {path:?} header {header:?}");
}

#[test]
fn server_side_checks() {
    let remote = "/api/v1/proxy/remote";
    check(remote, Some("proxy-key"), "allowed /api/v1/proxy/remote");
    check(remote, Some("second-key"), "allowed /api/v1/proxy/remote");
    check(
        remote,
        Some("Bearer proxy-key"),
        "allowed /api/v1/proxy/remote",
    );
    check(
        remote,
        Some("bearer  proxy-key "),
        "allowed /api/v1/proxy/remote",
    );
    check(remote, Some(" proxy-key"), "allowed /api/v1/proxy/remote");
    check(
        remote,
        Some("v1-key"),
        "denied /api/v1/proxy/remote WrongKey",
    );
    check(
        remote,
        Some("proxy-key2"),
        "denied /api/v1/proxy/remote WrongKey",
    );
    check(
        remote,
        Some("proxy-ke"),
        "denied /api/v1/proxy/remote WrongKey",
    );
    check(
        remote,
        Some("Bearerproxy-key"),
        "denied /api/v1/proxy/remote WrongKey",
    );
    check(
        remote,
        Some("Basic proxy-key"),
        "denied /api/v1/proxy/remote WrongKey",
    );
    check(remote, None, "denied /api/v1/proxy/remote MissingHeader");
    check(remote, Some(""), "denied /api/v1/proxy/remote EmptyKey");
    check(remote, Some("   "), "denied /api/v1/proxy/remote EmptyKey");
    check(
        remote,
        Some("Bearer"),
        "denied /api/v1/proxy/remote EmptyKey",
    );
    check(
        remote,
        Some("Bearer   "),
        "denied /api/v1/proxy/remote EmptyKey",
    );
    check(
        "/api/v1/admin/x",
        Some("v1-key"),
        "denied /api/v1/admin/* WrongKey",
    );
    check(
        "/api/v1/admin/x",
        Some("admin-key"),
        "allowed /api/v1/admin/*",
    );
    check("/health", None, "public");
    check("/health", Some("anything"), "public");
}

#[test]
fn non_utf8_headers_are_refused_not_panicked_on() {
    let rules = rules();
    let decision = rules.check("/exact", Some(&[0xff, 0xfe, b'k']));
    assert!(matches!(
        decision,
        Decision::Denied {
            reason: DenyReason::WrongKey,
            ..
        }
    ));
}

#[test]
fn a_raw_key_that_looks_like_bearer_still_matches() {
    let rules = Rules::new([("/p", ["Bearer abc"])]).unwrap();
    assert!(rules.check("/p", Some(b"Bearer abc")).is_allowed());
}

#[test]
fn check_headers_reads_authorization() {
    let rules = rules();
    let mut headers = http::HeaderMap::new();
    assert!(!rules.check_headers("/exact", &headers).is_allowed());
    headers.insert(http::header::AUTHORIZATION, "exact-key".parse().unwrap());
    assert!(rules.check_headers("/exact", &headers).is_allowed());
}

#[test]
fn messages_never_show_keys() {
    let rules = rules();
    let denied = rules.check("/exact", Some(b"secret-guess"));
    let shown = format!("{denied} {denied:?} {:?}", rules);
    for key in ["exact-key", "proxy-key", "secret-guess"] {
        assert!(!shown.contains(key), "{key} shown in {shown}");
    }
    assert_eq!(
        denied.to_string(),
        "denied by auth rule `/exact`: wrong key"
    );
}

#[test]
fn invalid_rules() {
    let no_keys: Vec<&str> = Vec::new();
    assert_eq!(Rules::new([("", vec!["k"])]).unwrap_err(), Error::EmptyPath);
    assert_eq!(
        Rules::new([("api/*", vec!["k"])]).unwrap_err(),
        Error::RelativePath {
            path: "api/*".into()
        }
    );
    assert_eq!(
        Rules::new([("/a", no_keys)]).unwrap_err().to_string(),
        "auth rule `/a` lists no key; remove the rule to make the path public"
    );
    for (path, keys, message) in [
        (
            "/a",
            vec!["k", ""],
            "auth rule `/a`: the key at position 1 is empty",
        ),
        (
            "/a",
            vec![" k"],
            "auth rule `/a`: the key at position 0 starts or ends with a space, which the server trims from the header",
        ),
        (
            "/a",
            vec!["k\n"],
            "auth rule `/a`: the key at position 0 holds a character that is not printable ASCII, which an Authorization header cannot carry",
        ),
        (
            "/a",
            vec!["cl\u{e9}"],
            "auth rule `/a`: the key at position 0 holds a character that is not printable ASCII, which an Authorization header cannot carry",
        ),
        (
            "/api/*/remote",
            vec!["k"],
            "auth rule path `/api/*/remote`: `*` may only be a rule's whole last segment (`/api/v1/*` covers every path under `/api/v1/`); any other rule is an exact path",
        ),
        (
            "/api/v1/admin*",
            vec!["k"],
            "auth rule path `/api/v1/admin*`: `*` may only be a rule's whole last segment (`/api/v1/*` covers every path under `/api/v1/`); any other rule is an exact path",
        ),
    ] {
        assert_eq!(
            Rules::new([(path, keys)]).unwrap_err().to_string(),
            message,
            "{path}"
        );
    }
    // Keys are never in the message, only their position.
    let error = Rules::new([("/a", vec!["secret\n"])]).unwrap_err();
    assert!(!format!("{error} {error:?}").contains("secret"));
    // A key with spaces inside is a valid header value.
    assert!(Rules::new([("/a", vec!["two words"]), ("/*", vec!["k"])]).is_ok());
}

#[test]
fn keys_of_any_length_are_compared_through_their_digests() {
    let rules = Rules::new([("/p", vec!["abc"])]).unwrap();
    for presented in ["ab", "abcd", "abd", "", "x".repeat(10_000).as_str()] {
        assert!(
            !rules.check("/p", Some(presented.as_bytes())).is_allowed(),
            "{presented}"
        );
    }
    assert!(rules.check("/p", Some(b"abc")).is_allowed());
}

#[test]
fn two_authorization_headers_on_a_protected_path_are_refused() {
    let rules = rules();
    let mut headers = http::HeaderMap::new();
    headers.append("authorization", "proxy-key".parse().unwrap());
    headers.append("authorization", "wrong".parse().unwrap());
    assert!(matches!(
        rules.check_headers("/api/v1/proxy/remote", &headers),
        Decision::Denied {
            reason: DenyReason::DuplicateHeader,
            ..
        }
    ));
    // A public path does not read the header.
    assert!(matches!(
        rules.check_headers("/health", &headers),
        Decision::Public
    ));
}

#[test]
fn no_rules_means_public() {
    let rules = Rules::default();
    assert!(rules.is_empty());
    assert!(matches!(
        rules.check("/api/v1/proxy/remote", None),
        Decision::Public
    ));
}

#[test]
fn iter_lists_every_rule() {
    let paths: Vec<_> = rules().iter().map(|r| r.path().to_owned()).collect();
    assert_eq!(
        paths,
        [
            "/api/v1/proxy/remote",
            "/exact",
            "/api/v1/admin/*",
            "/api/v1/*",
            "/api/*"
        ]
    );
}

/// Runs one request through the layer in front of a service that counts its
/// calls; returns the status and the body.
fn through_layer(path: &str, authorization: Option<&str>) -> (u16, String, usize) {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tower::{Layer, ServiceExt, service_fn};

    let calls = Arc::new(AtomicUsize::new(0));
    let counter = calls.clone();
    let inner = service_fn(move |request: http::Request<()>| {
        counter.fetch_add(1, Ordering::SeqCst);
        let body = format!("inner saw {}", request.uri().path());
        async move { Ok::<_, std::convert::Infallible>(http::Response::new(body)) }
    });
    let layer = crate::RequireProxyKeyLayer::new(rules(), |denial: crate::Denial<'_>| {
        let mut response = http::Response::new(format!(
            "{} refused by {}: {}",
            denial.path, denial.rule, denial.reason
        ));
        *response.status_mut() = http::StatusCode::UNAUTHORIZED;
        response
    });
    let mut request = http::Request::get(path);
    if let Some(value) = authorization {
        request = request.header("authorization", value);
    }
    let response = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap()
        .block_on(layer.layer(inner).oneshot(request.body(()).unwrap()))
        .unwrap();
    (
        response.status().as_u16(),
        response.into_body(),
        calls.load(Ordering::SeqCst),
    )
}

#[test]
fn the_layer_lets_allowed_and_public_requests_through_and_stops_the_rest() {
    // (path, Authorization header, (status, body, calls of the inner service))
    type Case<'a> = (&'a str, Option<&'a str>, (u16, &'a str, usize));
    let cases: &[Case<'_>] = &[
        (
            "/api/v1/proxy/remote",
            Some("proxy-key"),
            (200, "inner saw /api/v1/proxy/remote", 1),
        ),
        (
            "/api/v1/jobs",
            Some("Bearer v1-key"),
            (200, "inner saw /api/v1/jobs", 1),
        ),
        ("/health", None, (200, "inner saw /health", 1)),
        (
            "/api/v1/proxy/remote",
            None,
            (
                401,
                "/api/v1/proxy/remote refused by auth rule `/api/v1/proxy/remote`: missing Authorization header",
                0,
            ),
        ),
        (
            "/api/v1/jobs",
            Some("api-key"),
            (
                401,
                "/api/v1/jobs refused by auth rule `/api/v1/*`: wrong key",
                0,
            ),
        ),
        // Decided on the decoded path: no encoding escapes the rule.
        (
            "/%65xact",
            None,
            (
                401,
                "/exact refused by auth rule `/exact`: missing Authorization header",
                0,
            ),
        ),
        (
            "/api/v1/proxy%2Fremote",
            Some("v1-key"),
            (
                401,
                "/api/v1/proxy/remote refused by auth rule `/api/v1/proxy/remote`: wrong key",
                0,
            ),
        ),
    ];
    for (path, authorization, (status, body, calls)) in cases {
        let got = through_layer(path, *authorization);
        assert_eq!(
            (got.0, got.1.as_str(), got.2),
            (*status, *body, *calls),
            "{path} with {authorization:?}"
        );
    }
}
