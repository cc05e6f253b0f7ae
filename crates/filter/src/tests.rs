//! Unit tests for the route rules: table-driven cases, then property tests that
//! compare the Python-compatible subset against a plain reference of FrameX's rule.

use proptest::prelude::*;

use super::{Decision, ErrorKind, Rules};

/// Checks the decision for `path` under `enable` and `disable`; `expect` is
/// `"unmatched"`, or `"enabled <pattern>"` / `"disabled <pattern>"`.
#[track_caller]
fn check(enable: &[&str], disable: &[&str], path: &str, expect: &str) {
    let rules = Rules::new(enable, disable).unwrap();
    let actual = match rules.decide(path) {
        Decision::Unmatched => "unmatched".to_owned(),
        Decision::Enabled(rule) => format!("enabled {}", rule.pattern()),
        Decision::Disabled(rule) => format!("disabled {}", rule.pattern()),
    };
    assert_eq!(
        actual, expect,
        "path {path:?} under enable {enable:?} disable {disable:?}"
    );
}

#[test]
fn everything_rules() {
    check(&["*"], &[], "/api/v1/a", "enabled *");
    check(&["/*"], &[], "/api/v1/a", "enabled /*");
    check(&["/*"], &[], "/", "enabled /*");
    check(&["*"], &[], "", "enabled *");
}

#[test]
fn prefix_rules_match_nested_segments() {
    check(&["/api/v1/*"], &[], "/api/v1/a", "enabled /api/v1/*");
    check(&["/api/v1/*"], &[], "/api/v1/a/b/c", "enabled /api/v1/*");
    check(&["/api/v1/*"], &[], "/api/v1/", "enabled /api/v1/*");
    check(&["/api/v1/*"], &[], "/api/v1", "unmatched");
    check(&["/api/v1/*"], &[], "/api/v10/a", "unmatched");
    check(&["/api/v1/*"], &[], "/api/v2/a", "unmatched");
}

#[test]
fn exact_rules_match_only_that_path() {
    check(&["/health"], &[], "/health", "enabled /health");
    check(&["/health"], &[], "/health/", "unmatched");
    check(&["/health"], &[], "/healthz", "unmatched");
    check(&["/users/{id}"], &[], "/users/{id}", "enabled /users/{id}");
    check(
        &["/users/{id}/*"],
        &[],
        "/users/{id}/posts",
        "enabled /users/{id}/*",
    );
}

#[test]
fn disable_wins_over_enable() {
    check(
        &["/api/v1/*"],
        &["/api/v1/internal/*"],
        "/api/v1/internal/x",
        "disabled /api/v1/internal/*",
    );
    check(
        &["/api/v1/internal/x"],
        &["/api/v1/*"],
        "/api/v1/internal/x",
        "disabled /api/v1/*",
    );
    check(
        &["*"],
        &["/api/v1/secret"],
        "/api/v1/secret",
        "disabled /api/v1/secret",
    );
    check(&["*"], &["/api/v1/secret"], "/api/v1/public", "enabled *");
    check(&[], &["*"], "/a", "disabled *");
}

#[test]
fn nested_prefixes() {
    let enable = ["/api/*", "/api/v1/*"];
    let disable = ["/api/v1/admin/*"];
    check(
        &enable,
        &disable,
        "/api/v1/admin/users/1",
        "disabled /api/v1/admin/*",
    );
    check(&enable, &disable, "/api/v1/users/1", "enabled /api/*");
    check(&enable, &disable, "/api/v1/admin", "enabled /api/*");
}

#[test]
fn first_matching_rule_decides() {
    check(
        &["/api/v1/a", "/api/*"],
        &[],
        "/api/v1/a",
        "enabled /api/v1/a",
    );
    check(&["/api/*", "/api/v1/a"], &[], "/api/v1/a", "enabled /api/*");
}

#[test]
fn no_rules_enable_nothing() {
    check(&[], &[], "/api/v1/a", "unmatched");
}

#[test]
fn globs_beyond_the_original() {
    check(
        &["/api/*/users"],
        &[],
        "/api/v1/users",
        "enabled /api/*/users",
    );
    check(&["/api/*/users"], &[], "/api/v1/x/users", "unmatched");
    check(
        &["/api/**/users"],
        &[],
        "/api/v1/x/users",
        "enabled /api/**/users",
    );
    check(
        &["/api/v?/users"],
        &[],
        "/api/v2/users",
        "enabled /api/v?/users",
    );
    check(&["/api/v?/users"], &[], "/api/v10/users", "unmatched");
    check(
        &["/api/{v1,v2}/*"],
        &[],
        "/api/v2/a/b",
        "enabled /api/{v1,v2}/*",
    );
    check(&["/api/{v1,v2}/*"], &[], "/api/v3/a", "unmatched");
    check(&["/api/v[12]/x"], &[], "/api/v1/x", "enabled /api/v[12]/x");
    check(&["/api/v[12]/x"], &[], "/api/v3/x", "unmatched");
    check(
        &["/api/*"],
        &["/api/**/debug"],
        "/api/a/b/debug",
        "disabled /api/**/debug",
    );
    check(&["/files/\\*"], &[], "/files/*", "enabled /files/\\*");
    check(&["/files/\\*"], &[], "/files/a", "unmatched");
}

#[test]
fn decision_reports_the_rule() {
    let rules = Rules::new(["/api/*"], ["/api/internal/*"]).unwrap();
    assert_eq!(
        rules.decide("/api/internal/a").to_string(),
        "disabled by disable rule `/api/internal/*`"
    );
    assert_eq!(
        rules.decide("/api/a").to_string(),
        "enabled by enable rule `/api/*`"
    );
    assert_eq!(
        rules.decide("/other").to_string(),
        "disabled: no enable rule matches"
    );
    assert!(rules.decide("/other").rule().is_none());
}

#[test]
fn invalid_rules_name_the_pattern() {
    let error = Rules::new(["/api/{v1"], [] as [&str; 0]).unwrap_err();
    assert_eq!(error.kind(), &ErrorKind::InvalidGlob);
    assert_eq!(error.pattern(), "/api/{v1");
    assert!(error.to_string().contains("`/api/{v1`"), "{error}");

    let error = Rules::new(["/ok/*"], [""]).unwrap_err();
    assert_eq!(error.kind(), &ErrorKind::Empty);

    let errors = Rules::compile_all(["/a/[", "/ok"], ["", "/b/{"]).unwrap_err();
    let patterns: Vec<_> = errors.iter().map(|e| e.pattern()).collect();
    assert_eq!(patterns, ["/a/[", "", "/b/{"]);
}

#[test]
fn allow_all_enables_everything() {
    assert!(Rules::allow_all().decide("/anything/at/all").is_enabled());
}

/// FrameX's own rule, written plainly: the reference for the property tests.
fn reference_matches(rules: &[String], path: &str) -> bool {
    rules.iter().any(|rule| {
        rule == "/*"
            || rule == "*"
            || rule == path
            || (rule.ends_with("/*") && path.starts_with(&rule[..rule.len() - 1]))
    })
}

fn reference_allowed(enable: &[String], disable: &[String], path: &str) -> bool {
    !reference_matches(disable, path) && reference_matches(enable, path)
}

fn segment() -> impl Strategy<Value = String> {
    prop::sample::select(&["a", "b", "v1", "api", "users", "a-b_c.d"][..]).prop_map(str::to_owned)
}

fn path() -> impl Strategy<Value = String> {
    let segment = prop_oneof![segment(), Just("{id}".to_owned()), Just(String::new())];
    prop::collection::vec(segment, 0..5).prop_map(|s| format!("/{}", s.join("/")))
}

/// Rules in the forms FrameX documents, built from segments with no glob syntax.
fn plain_rule() -> impl Strategy<Value = String> {
    let segments =
        || prop::collection::vec(segment(), 0..4).prop_map(|s| format!("/{}", s.join("/")));
    prop_oneof![
        1 => Just("*".to_owned()),
        1 => Just("/*".to_owned()),
        4 => segments(),
        4 => segments().prop_map(|p| if p == "/" { "/*".to_owned() } else { format!("{p}/*") }),
    ]
}

/// Rules that may hold OpenAPI templates, which are glob syntax too.
fn templated_rule() -> impl Strategy<Value = String> {
    (plain_rule(), any::<bool>()).prop_map(|(rule, templated)| {
        if templated && rule.len() > 2 {
            rule.replacen("/a", "/{id}", 1)
        } else {
            rule
        }
    })
}

proptest! {
    #[test]
    fn plain_rules_decide_as_the_original(
        enable in prop::collection::vec(plain_rule(), 0..4),
        disable in prop::collection::vec(plain_rule(), 0..3),
        path in path(),
    ) {
        let rules = Rules::new(&enable, &disable).unwrap();
        prop_assert_eq!(rules.decide(&path).is_enabled(), reference_allowed(&enable, &disable, &path));
    }

    #[test]
    fn every_path_the_original_matches_is_matched(
        rules in prop::collection::vec(templated_rule(), 1..4),
        path in path(),
    ) {
        let compiled = Rules::new(&rules, [] as [&str; 0]).unwrap();
        if reference_matches(&rules, &path) {
            prop_assert!(compiled.decide(&path).is_enabled());
        }
    }

    #[test]
    fn a_matching_disable_rule_always_wins(
        enable in prop::collection::vec(templated_rule(), 0..4),
        disable in prop::collection::vec(templated_rule(), 1..3),
        path in path(),
    ) {
        let rules = Rules::new(&enable, &disable).unwrap();
        if rules.disable().iter().any(|rule| rule.matches(&path)) {
            prop_assert!(matches!(rules.decide(&path), Decision::Disabled(_)), "path {}", path);
        }
    }
}

#[test]
fn a_final_slash_star_in_a_glob_is_nested_too() {
    check(
        &["/api/{v1,v2}/*"],
        &[],
        "/api/v2/",
        "enabled /api/{v1,v2}/*",
    );
    check(&["/api/{v1,v2}/*"], &[], "/api/v2", "unmatched");
    check(
        &["/api/*/jobs/*"],
        &[],
        "/api/v1/jobs/a/b",
        "enabled /api/*/jobs/*",
    );
    check(&["/api/*/jobs/*"], &[], "/api/v1/x/jobs/a", "unmatched");
}
