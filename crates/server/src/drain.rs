//! Draining: how an instance that is shutting down lets its callers move on
//! without losing a call.
//!
//! Once shutdown begins the instance accepts no connection, and on the ones
//! it has it answers each FrameX for Rust caller's call with 503 and
//! [`framex_transport::DRAINING_HEADER`] without running it: that caller
//! sends the call to another endpoint at once and sends this one nothing
//! more. Callers that would not move on (Python FrameX's client, which sends
//! no [`framex_transport::ERRORS_HEADER`]) are still served. Every answer
//! while draining closes its connection. The connections still open are
//! closed once none has carried a request for [`QUIET`] (or all have closed,
//! or the grace period is over): closing a kept-alive connection at the very
//! moment a caller sends on it would leave the caller unable to tell whether
//! the call ran, and a caller that has been told to move on sends no more.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// How long the connections of a draining instance must carry no request
/// before they are closed.
pub(crate) const QUIET: Duration = Duration::from_secs(1);

/// Whether the instance is draining, and when it last saw a request.
#[derive(Debug)]
pub(crate) struct Drain {
    draining: AtomicBool,
    epoch: Instant,
    /// Nanoseconds after `epoch` of the last request seen while draining.
    last_request: AtomicU64,
}

impl Default for Drain {
    fn default() -> Drain {
        Drain {
            draining: AtomicBool::new(false),
            epoch: Instant::now(),
            last_request: AtomicU64::new(0),
        }
    }
}

impl Drain {
    /// Starts draining.
    pub(crate) fn start(&self) {
        self.seen();
        self.draining.store(true, Ordering::Release);
    }

    /// Whether the instance is draining; if it is, the request being served
    /// counts as the last one seen.
    pub(crate) fn draining(&self) -> bool {
        let draining = self.draining.load(Ordering::Acquire);
        if draining {
            self.seen();
        }
        draining
    }

    fn seen(&self) {
        let nanos = u64::try_from(self.epoch.elapsed().as_nanos()).unwrap_or(u64::MAX);
        self.last_request.store(nanos, Ordering::Release);
    }

    /// How long since the last request was seen.
    pub(crate) fn quiet_for(&self) -> Duration {
        let last = Duration::from_nanos(self.last_request.load(Ordering::Acquire));
        self.epoch.elapsed().saturating_sub(last)
    }
}
