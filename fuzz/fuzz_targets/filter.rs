//! Builds route rules from arbitrary patterns and decides arbitrary paths: any
//! input gets rules or an error, and a decision, never a crash; a matching
//! disable rule always wins.
#![no_main]

use framex_filter::{Decision, Rules};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    // Line 1: enable rules, line 2: disable rules (separated by spaces), the
    // rest: paths.
    let mut lines = text.lines();
    let enable: Vec<&str> = lines.next().unwrap_or_default().split(' ').collect();
    let disable: Vec<&str> = lines
        .next()
        .unwrap_or_default()
        .split(' ')
        .filter(|rule| !rule.is_empty())
        .collect();
    let Ok(rules) = Rules::new(&enable, &disable) else {
        return;
    };
    for path in lines {
        let decision = rules.decide(path);
        if rules.disable().iter().any(|rule| rule.matches(path)) {
            assert!(matches!(decision, Decision::Disabled(_)), "{path}");
        }
    }
});
