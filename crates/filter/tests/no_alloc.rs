//! Checks that deciding a path allocates nothing once the rules are compiled:
//! route decisions run per request, so they must stay off the heap.
//!
//! This binary holds one test, so the global allocation count is this test's own.

use std::alloc::System;

use framex_filter::Rules;
use stats_alloc::{INSTRUMENTED_SYSTEM, Region, StatsAlloc};

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

#[test]
fn deciding_allocates_nothing() {
    let rules = Rules::new(
        ["/api/v1/*", "/api/**/users", "/api/{v1,v2}/x", "/health"],
        ["/api/v1/internal/*", "/api/v?/debug"],
    )
    .unwrap();
    let paths = [
        "/api/v1/a/b",
        "/api/v3/x/users",
        "/api/v2/x",
        "/api/v1/internal/x",
        "/api/v2/debug",
        "/health",
        "/nothing",
    ];
    // The first match on a thread fills the regex engine's per-thread cache.
    let warm = paths
        .iter()
        .filter(|p| rules.decide(p).is_enabled())
        .count();
    assert_eq!(warm, 4);

    let region = Region::new(GLOBAL);
    let mut enabled = 0;
    for _ in 0..1_000 {
        enabled += paths
            .iter()
            .filter(|p| rules.decide(p).is_enabled())
            .count();
    }
    let change = region.change();

    assert_eq!(enabled, warm * 1_000);
    assert_eq!(
        change.allocations, 0,
        "deciding paths allocated: {change:?}"
    );
    assert_eq!(
        change.reallocations, 0,
        "deciding paths reallocated: {change:?}"
    );
}
