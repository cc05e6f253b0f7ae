//! W3C trace context (`traceparent` and `tracestate`) carried across FrameX
//! calls, so that a call can be followed from instance to instance in logs and
//! tracing systems.
//!
//! What a call sends is [`TraceContext::outgoing`]: when the application
//! records its `tracing` spans as OpenTelemetry spans (a
//! `tracing_opentelemetry` layer, such as `framex::otel::layer`), the context
//! of the current span, so the remote's spans are children of the span that
//! made the call (FrameX's `proxy_call` span, or the route's request span for
//! a forwarded route), with the `tracestate` that came with the trace. An
//! instance sets the incoming context as the parent of each request's
//! `request` span. A future moved to a task of its own keeps the span, and so
//! the trace, with `tracing::Instrument::in_current_span`.
//!
//! Without such a layer spans carry no ids. An instance then still runs each
//! request inside [`TraceContext::scope`], a child of the incoming context
//! (or a new trace), and calls made inside it send the same trace id with a
//! new parent id and the incoming `tracestate`; calls made outside any scope
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
use std::str::FromStr as _;
use std::sync::atomic::{AtomicU64, Ordering};

use http::{HeaderMap, HeaderName, HeaderValue};
use opentelemetry::trace::{
    SpanContext, SpanId, TraceContextExt as _, TraceFlags, TraceId, TraceState,
};
use tracing_opentelemetry::OpenTelemetrySpanExt as _;

/// The header that carries the trace context.
pub const TRACEPARENT: &str = "traceparent";

/// The header that carries vendors' trace state along with it.
pub const TRACESTATE: &str = "tracestate";

/// One position in a trace: the trace id shared by every call in it, the id of
/// the caller's span, the flags (bit 0: sampled) and the vendors' trace state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceContext {
    trace_id: u128,
    parent_id: u64,
    flags: u8,
    state: TraceState,
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
            state: TraceState::NONE,
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
            state: TraceState::NONE,
        };
        (context.trace_id != 0 && context.parent_id != 0).then_some(context)
    }

    /// The context a request carries: its `traceparent`, with its
    /// `tracestate` when that is valid (an invalid one is dropped, as the
    /// specification says).
    pub fn from_headers(headers: &HeaderMap) -> Option<TraceContext> {
        // Names made once: a name given as text is parsed on every lookup.
        const TRACEPARENT_NAME: HeaderName = HeaderName::from_static(TRACEPARENT);
        const TRACESTATE_NAME: HeaderName = HeaderName::from_static(TRACESTATE);
        let mut context = headers
            .get(TRACEPARENT_NAME)
            .and_then(|value| value.to_str().ok())
            .and_then(TraceContext::parse)?;
        if let Some(state) = headers
            .get(TRACESTATE_NAME)
            .and_then(|value| value.to_str().ok())
        {
            context.state = TraceState::from_str(state).unwrap_or(TraceState::NONE);
        }
        Some(context)
    }

    /// The context of `span` when an OpenTelemetry layer records it: its
    /// trace, its own id as the parent id, its flags and trace state.
    pub fn of_span(span: &tracing::Span) -> Option<TraceContext> {
        if span.is_disabled() {
            return None;
        }
        let context = span.context();
        let span = context.span();
        let span_context = span.span_context();
        span_context.is_valid().then(|| TraceContext {
            trace_id: u128::from_be_bytes(span_context.trace_id().to_bytes()),
            parent_id: u64::from_be_bytes(span_context.span_id().to_bytes()),
            flags: span_context.trace_flags().to_u8(),
            state: span_context.trace_state().clone(),
        })
    }

    /// What a call made now sends: the current span's context when an
    /// OpenTelemetry layer records it, else a child of the task's
    /// [`TraceContext::scope`], else a new trace.
    pub fn outgoing() -> TraceContext {
        TraceContext::of_span(&tracing::Span::current()).unwrap_or_else(|| {
            TraceContext::current().map_or_else(TraceContext::new_root, |current| current.child())
        })
    }

    /// Makes this the parent of `span`, for an OpenTelemetry layer that records
    /// it: its trace id and the remote caller's span id. Without such a layer
    /// this does nothing.
    pub fn set_parent_of(&self, span: &tracing::Span) {
        if span.is_disabled() {
            return;
        }
        let span_context = SpanContext::new(
            TraceId::from(self.trace_id),
            SpanId::from(self.parent_id),
            TraceFlags::new(self.flags),
            true,
            self.state.clone(),
        );
        let parent = opentelemetry::Context::new().with_remote_span_context(span_context);
        // An error only says that no OpenTelemetry layer records the span.
        let _ = span.set_parent(parent);
    }

    /// The same trace with a new parent id: what a call made from this position
    /// sends on.
    pub fn child(&self) -> TraceContext {
        TraceContext {
            parent_id: random_nonzero(),
            ..self.clone()
        }
    }

    /// The trace id, 32 lowercase hex digits.
    pub fn trace_id(&self) -> String {
        self.display_trace_id().to_string()
    }

    /// The trace id, 32 lowercase hex digits, without making a `String` of it:
    /// for a log field written once per request.
    pub fn display_trace_id(&self) -> impl std::fmt::Display + std::fmt::Debug + use<> {
        struct Hex(u128);
        impl std::fmt::Display for Hex {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                // Written into place, as the `traceparent` header's digits are.
                let mut digits = [0; 32];
                write_hex(&mut digits, self.0);
                f.write_str(std::str::from_utf8(&digits).map_err(|_| std::fmt::Error)?)
            }
        }
        impl std::fmt::Debug for Hex {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                std::fmt::Display::fmt(self, f)
            }
        }
        Hex(self.trace_id)
    }

    /// The parent (span) id, 16 lowercase hex digits.
    pub fn parent_id(&self) -> String {
        format!("{:016x}", self.parent_id)
    }

    /// The `traceparent` header value.
    pub fn header(&self) -> String {
        String::from_utf8_lossy(&self.header_bytes()).into_owned()
    }

    /// [`TraceContext::header`] as bytes: every call sends one, written into
    /// place digit by digit rather than through `format!` or a `String`
    /// grown character by character, which cost several times as much.
    fn header_bytes(&self) -> [u8; 55] {
        let mut header = *b"00-00000000000000000000000000000000-0000000000000000-00";
        write_hex(&mut header[3..35], self.trace_id);
        write_hex(&mut header[36..52], u128::from(self.parent_id));
        write_hex(&mut header[53..55], u128::from(self.flags));
        header
    }

    /// The `tracestate` header value, empty when there is none.
    pub fn state(&self) -> String {
        self.state.header()
    }

    /// Sets `traceparent`, and `tracestate` when there is one, in `headers`,
    /// replacing what they held.
    pub fn insert_into(&self, headers: &mut HeaderMap) {
        // Names made once: every call sends them.
        const TRACEPARENT_NAME: HeaderName = HeaderName::from_static(TRACEPARENT);
        const TRACESTATE_NAME: HeaderName = HeaderName::from_static(TRACESTATE);
        let traceparent = HeaderValue::from_bytes(&self.header_bytes())
            .expect("a traceparent is printable ASCII");
        headers.insert(TRACEPARENT_NAME, traceparent);
        // Validated when it was read: keys and values of printable ASCII.
        let state = (self.state != TraceState::NONE)
            .then(|| HeaderValue::from_str(&self.state.header()).ok())
            .flatten();
        match state {
            Some(state) => {
                headers.insert(TRACESTATE_NAME, state);
            }
            None => {
                headers.remove(TRACESTATE_NAME);
            }
        }
    }

    /// The context of the task running now, if it runs inside [`TraceContext::scope`].
    pub fn current() -> Option<TraceContext> {
        CURRENT.try_with(TraceContext::clone).ok()
    }

    /// Runs `future` with this as the current context.
    pub fn scope<F: Future>(
        self,
        future: F,
    ) -> tokio::task::futures::TaskLocalFuture<TraceContext, F> {
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

/// Writes the low hex digits of `value` into `out`, lowercase, zero-padded
/// to its length.
fn write_hex(out: &mut [u8], mut value: u128) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    for digit in out.iter_mut().rev() {
        *digit = HEX[(value & 0xf) as usize];
        value >>= 4;
    }
}

/// A random, non-zero 64-bit id. Not for secrets: it only has to be unique.
fn random_nonzero() -> u64 {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    thread_local! {
        // A SplitMix64 state per thread, seeded once from the operating
        // system's randomness (through `RandomState`'s keys) and the
        // process-wide counter, so no two threads share a sequence; ids are
        // made for every request without a trace, so each is a few
        // instructions rather than a SipHash.
        static STATE: std::cell::Cell<u64> = std::cell::Cell::new({
            let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
            hasher.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
            hasher.finish()
        });
    }
    loop {
        let id = STATE.with(|state| {
            let next = state.get().wrapping_add(0x9e37_79b9_7f4a_7c15);
            state.set(next);
            let mut z = next;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^ (z >> 31)
        });
        if id != 0 {
            return id;
        }
    }
}

/// Sets `key` to `value` on `span` for an OpenTelemetry layer that records
/// it, as a field recorded on the span would be, without recording the field
/// in the log lines' copy of the span's fields: for what a span learns when
/// it ends, which no line inside it can show. Without such a layer this does
/// nothing.
pub fn set_exported_attribute(
    span: &tracing::Span,
    key: &'static str,
    value: impl Into<opentelemetry::Value>,
) {
    span.set_attribute(key, value);
}

/// A duration in milliseconds for a log field or a span's (`latency_ms`,
/// `duration_ms`), rounded to the microsecond: 1,170,416 ns is written
/// `1.17`, not `1.1704160000000001` (what `as_secs_f64() * 1000.0` makes of
/// it), and 3,756 ns `0.004`.
pub fn milliseconds(duration: std::time::Duration) -> f64 {
    let micros = duration.as_nanos().saturating_add(500) / 1000;
    // Exact up to 2^53 µs (285 years); dividing once keeps the shortest
    // decimal the nearest.
    micros as f64 / 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn milliseconds_are_written_to_the_microsecond() {
        use std::time::Duration;
        let written = |nanos: u64| format!("{:?}", milliseconds(Duration::from_nanos(nanos)));
        assert_eq!(written(1_170_416_000), "1170.416");
        assert_eq!(written(1_170_416), "1.17");
        assert_eq!(written(1_170_516), "1.171");
        assert_eq!(written(3_756), "0.004");
        assert_eq!(written(3_499), "0.003");
        assert_eq!(written(0), "0.0");
        assert_eq!(written(2_000_000_000), "2000.0");
    }

    #[test]
    fn headers_round_trip_and_children_keep_the_trace() {
        let root = TraceContext::new_root();
        assert_eq!(TraceContext::parse(&root.header()).as_ref(), Some(&root));
        let child = root.child();
        assert_eq!(child.trace_id(), root.trace_id());
        assert_ne!(child.parent_id(), root.parent_id());
        assert_eq!(root.header().len(), 55);
    }

    #[test]
    fn the_displayed_trace_id_is_the_trace_id_leading_zeros_and_all() {
        let small = TraceContext::parse("00-0000000000000000000000000000002a-00f067aa0ba902b7-01")
            .expect("a valid header");
        assert_eq!(
            small.display_trace_id().to_string(),
            "0000000000000000000000000000002a"
        );
        let root = TraceContext::new_root();
        assert_eq!(root.display_trace_id().to_string(), root.trace_id());
        assert_eq!(format!("{:?}", root.display_trace_id()), root.trace_id());
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

    #[test]
    fn a_valid_tracestate_is_kept_and_an_invalid_one_dropped() {
        let headers = |state: &str| {
            let mut headers = HeaderMap::new();
            headers.insert(
                TRACEPARENT,
                HeaderValue::from_static("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"),
            );
            headers.insert(TRACESTATE, HeaderValue::from_str(state).unwrap());
            headers
        };
        let kept = TraceContext::from_headers(&headers("congo=t61rcWkgMzE,rojo=00f067aa0ba902b7"))
            .unwrap();
        assert_eq!(kept.state(), "congo=t61rcWkgMzE,rojo=00f067aa0ba902b7");
        let mut sent = HeaderMap::new();
        kept.child().insert_into(&mut sent);
        assert_eq!(sent[TRACESTATE], "congo=t61rcWkgMzE,rojo=00f067aa0ba902b7");
        let dropped = TraceContext::from_headers(&headers("not a tracestate")).unwrap();
        assert_eq!(dropped.state(), "");
        let mut sent = headers("stale=1");
        dropped.insert_into(&mut sent);
        assert!(sent.get(TRACESTATE).is_none());
    }

    #[tokio::test]
    async fn the_scope_is_the_current_context() {
        assert_eq!(TraceContext::current(), None);
        let root = TraceContext::new_root();
        let seen = root.clone().scope(async { TraceContext::current() }).await;
        assert_eq!(seen, Some(root));
    }
}
