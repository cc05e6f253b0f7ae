//! Compile-time checks of `#[on_proxy]`: the forms it accepts compile, and each
//! form it rejects fails with a message that says why.

#[test]
fn on_proxy_accepts_and_rejects_signatures() {
    let cases = trybuild::TestCases::new();
    cases.pass("tests/ui/accepted.rs");
    for case in [
        "not_async",
        "takes_self",
        "generic",
        "pattern_parameter",
        "borrowed_parameter",
        "no_return_type",
        "not_a_result",
        "result_with_wrong_error",
        "argument_not_serde",
        "unknown_argument",
        "empty_name",
    ] {
        cases.compile_fail(format!("tests/ui/{case}.rs"));
    }
}
