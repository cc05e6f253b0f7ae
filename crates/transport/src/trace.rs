//! W3C trace context (`traceparent`) carried across FrameX calls, so that a call
//! can be followed from instance to instance in logs and tracing systems.
//!
//! An instance continues the trace of a request that arrives with a
//! `traceparent` header, or starts one, and runs the request inside
//! [`TraceContext::scope`]. Calls the [`crate::Client`] makes inside that scope
//! send the same trace id with a new parent id; calls made outside any scope
//! start a trace of their own.
//!
//! ```
//! use framex_transport::trace::TraceContext;
//!
//! let incoming = TraceContext::parse("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01").unwrap();
//! let outgoing = incoming.child();
//! assert_eq!(outgoing.trace_id(), incoming.trace_id());
//! assert_ne!(outgoing.parent_id(), incoming.parent_id());
//! assert!(outgoing.header().starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-"));
//! ```

use std::future::Future;
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};

/// The header that carries the trace context.
pub const TRACEPARENT: &str = "traceparent";

/// One position in a trace: the trace id shared by every call in it, the id of
/// the caller's span, and the flags (bit 0: sampled).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TraceContext {
    trace_id: u128,
    parent_id: u64,
    flags: u8,
}

tokio::task_local! {
    static CURRENT: TraceContext;
}

impl TraceContext {
    /// A new trace, sampled.
    pub fn new_root() -> TraceContext {
        let high = random_nonzero();
        let low = random_nonzero();
        TraceContext {
            trace_id: u128::from(high) << 64 | u128::from(low),
            parent_id: random_nonzero(),
            flags: 1,
        }
    }

    /// Reads a `traceparent` header value of version `00`: `None` when it is
    /// malformed or carries an all-zero id, which the specification says to
    /// treat as absent. Later versions are read by their first four fields.
    pub fn parse(header: &str) -> Option<TraceContext> {
        let header = header.trim();
        let mut fields = header.split('-');
        let version = fields.next()?;
        let trace_id = fields.next()?;
        let parent_id = fields.next()?;
        let flags = fields.next()?;
        if lower_hex(version, 2).is_none()
            || version == "ff"
            || (version == "00" && fields.next().is_some())
        {
            return None;
        }
        let context = TraceContext {
            trace_id: lower_hex(trace_id, 32)?,
            parent_id: u64::try_from(lower_hex(parent_id, 16)?).ok()?,
            flags: u8::try_from(lower_hex(flags, 2)?).ok()?,
        };
        (context.trace_id != 0 && context.parent_id != 0).then_some(context)
    }

    /// The same trace with a new parent id: what a call made from this position
    /// sends on.
    pub fn child(&self) -> TraceContext {
        TraceContext {
            parent_id: random_nonzero(),
            ..*self
        }
    }

    /// The trace id, 32 lowercase hex digits.
    pub fn trace_id(&self) -> String {
        format!("{:032x}", self.trace_id)
    }

    /// The parent (span) id, 16 lowercase hex digits.
    pub fn parent_id(&self) -> String {
        format!("{:016x}", self.parent_id)
    }

    /// The `traceparent` header value.
    pub fn header(&self) -> String {
        // Every call sends one: written digit by digit rather than through
        // `format!`, which costs ten times as much here.
        let mut header = String::with_capacity(55);
        header.push_str("00-");
        push_hex(&mut header, self.trace_id, 32);
        header.push('-');
        push_hex(&mut header, u128::from(self.parent_id), 16);
        header.push('-');
        push_hex(&mut header, u128::from(self.flags), 2);
        header
    }

    /// The context of the task running now, if it runs inside [`TraceContext::scope`].
    pub fn current() -> Option<TraceContext> {
        CURRENT.try_with(|context| *context).ok()
    }

    /// Runs `future` with this as the current context.
    pub fn scope<F: Future>(self, future: F) -> impl Future<Output = F::Output> {
        CURRENT.scope(self, future)
    }
}

/// The value of `field` when it is exactly `digits` lowercase hex digits (at
/// most 32), as the header requires.
fn lower_hex(field: &str, digits: usize) -> Option<u128> {
    if field.len() != digits {
        return None;
    }
    field.bytes().try_fold(0u128, |value, byte| {
        let digit = match byte {
            b'0'..=b'9' => byte - b'0',
            b'a'..=b'f' => byte - b'a' + 10,
            _ => return None,
        };
        Some(value << 4 | u128::from(digit))
    })
}

/// Appends the low `digits` hex digits of `value`, lowercase, zero-padded.
fn push_hex(out: &mut String, value: u128, digits: u32) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    for shift in (0..digits).rev() {
        out.push(char::from(HEX[((value >> (shift * 4)) & 0xf) as usize]));
    }
}

/// A random, non-zero 64-bit id. Not for secrets: it only has to be unique.
fn random_nonzero() -> u64 {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    loop {
        // `RandomState` keys come from the operating system's randomness, once
        // per thread, and step for each new one; the process-wide counter makes
        // every id's input differ.
        let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
        hasher.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
        let id = hasher.finish();
        if id != 0 {
            return id;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_round_trip_and_children_keep_the_trace() {
        let root = TraceContext::new_root();
        assert_eq!(TraceContext::parse(&root.header()), Some(root));
        let child = root.child();
        assert_eq!(child.trace_id(), root.trace_id());
        assert_ne!(child.parent_id(), root.parent_id());
        assert_eq!(root.header().len(), 55);
    }

    #[test]
    fn malformed_headers_are_absent() {
        for header in [
            "",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
            "xx-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        ] {
            assert_eq!(TraceContext::parse(header), None, "{header:?}");
        }
        // A later version is read by its first four fields.
        assert!(
            TraceContext::parse("01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-more")
                .is_some()
        );
    }

    #[test]
    fn new_ids_differ() {
        let ids: std::collections::HashSet<u64> = (0..10_000).map(|_| random_nonzero()).collect();
        assert_eq!(ids.len(), 10_000);
    }

    #[tokio::test]
    async fn the_scope_is_the_current_context() {
        assert_eq!(TraceContext::current(), None);
        let root = TraceContext::new_root();
        let seen = root.scope(async { TraceContext::current() }).await;
        assert_eq!(seen, Some(root));
    }
}
