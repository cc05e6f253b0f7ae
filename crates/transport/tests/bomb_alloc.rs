//! Checks that decoding a decompression bomb stops at the limit: the memory it
//! takes follows the limit, not the size the payload would inflate to.
//!
//! This binary holds one test, so the global allocation count is this test's own.

use std::alloc::System;

use framex_transport::wire::{self, WireError};
use stats_alloc::{INSTRUMENTED_SYSTEM, Region, StatsAlloc};

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

#[test]
fn a_bomb_is_refused_after_at_most_a_few_times_the_limit() {
    let inflated = 64 * 1024 * 1024;
    let limit = 1024 * 1024;
    let bomb = wire::encode_json(&vec![b'0'; inflated]);

    let region = Region::new(GLOBAL);
    let error = wire::decode_json(&bomb, limit).unwrap_err();
    let allocated = region.change().bytes_allocated;

    assert!(
        matches!(error, WireError::TooLarge { limit: 1_048_576 }),
        "{error}"
    );
    // The buffer grows by doubling up to the limit, plus the decoded base64 and
    // the inflater's state: a few times the limit at most, never the 64 MiB.
    assert!(
        allocated < 8 * limit,
        "decoding the bomb allocated {allocated} bytes for a limit of {limit}"
    );
}
