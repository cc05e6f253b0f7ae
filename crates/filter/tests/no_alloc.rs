//! Checks that deciding a path allocates nothing once the rules are compiled:
//! route decisions run per request, so they must stay off the heap.
//!
//! This binary holds one test, but the count is the whole process's, and the
//! test harness's own thread may allocate meanwhile (seen once under nextest:
//! four allocations in one loop). So the loop is measured three times: code
//! that allocates does so every time; the quietest of the three is this code
//! alone.

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

    let measured: Vec<_> = (0..3)
        .map(|_| {
            let region = Region::new(GLOBAL);
            let mut enabled = 0;
            for _ in 0..1_000 {
                enabled += paths
                    .iter()
                    .filter(|p| rules.decide(p).is_enabled())
                    .count();
            }
            assert_eq!(enabled, warm * 1_000);
            region.change()
        })
        .collect();
    let quietest = measured
        .iter()
        .min_by_key(|change| change.allocations + change.reallocations)
        .unwrap();
    assert_eq!(
        (quietest.allocations, quietest.reallocations),
        (0, 0),
        "deciding paths allocated, in each of three runs: {measured:?}"
    );
}
