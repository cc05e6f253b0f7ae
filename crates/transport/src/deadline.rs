//! Deadlines: how long the caller of a call still waits, carried from instance
//! to instance in [`TIMEOUT_HEADER`], and readable by the handler that runs it.
//!
//! A FrameX for Rust client sends, with every call, the time left before the
//! call's timeout (or before the deadline of the call it is made from, if that
//! is sooner). A FrameX for Rust server refuses a call that arrives with no time
//! left, runs the handler inside [`scope`] so that [`current`] answers, and stops
//! waiting for it at the deadline; a relaying instance passes on what is left.
//! Python FrameX neither sends nor reads the header: its calls have no deadline
//! beyond their own timeouts.

use std::time::{Duration, Instant};

/// The header of a call that says how long its caller still waits, in whole
/// milliseconds.
pub const TIMEOUT_HEADER: &str = "x-framex-timeout-ms";

tokio::task_local! {
    static DEADLINE: Instant;
}

/// The deadline of the call the current task is running, when its caller sent
/// one; `None` outside a call, or for a caller (such as Python FrameX) that
/// sends none.
pub fn current() -> Option<Instant> {
    DEADLINE.try_with(|deadline| *deadline).ok()
}

/// The time left before [`current`], zero once it has passed.
pub fn remaining() -> Option<Duration> {
    current().map(|deadline| deadline.saturating_duration_since(Instant::now()))
}

/// Runs `future` with `deadline` as its [`current`] one: the calls it makes
/// end by then, and say so to the instances they call.
pub async fn scope<F: Future>(deadline: Instant, future: F) -> F::Output {
    DEADLINE.scope(deadline, future).await
}

/// Reads [`TIMEOUT_HEADER`]: the deadline it sets from `now`, or why it is not
/// one (the message names the header and the value).
pub fn parse(value: &http::HeaderValue, now: Instant) -> Result<Instant, String> {
    let millis = value
        .to_str()
        .ok()
        .and_then(|text| text.parse::<u64>().ok())
        .ok_or_else(|| {
            format!(
                "header `{TIMEOUT_HEADER}` must be a whole number of milliseconds, not {:?}",
                String::from_utf8_lossy(value.as_bytes())
            )
        })?;
    // A deadline past what `Instant` holds is no deadline at all.
    Ok(now
        .checked_add(Duration::from_millis(millis))
        .unwrap_or_else(|| now + Duration::from_secs(86_400 * 365)))
}

/// The value of [`TIMEOUT_HEADER`] for `left`: whole milliseconds, rounded
/// down, so that the callee never believes it has more time than it has.
pub(crate) fn header_value(left: Duration) -> http::HeaderValue {
    http::HeaderValue::from(u64::try_from(left.as_millis()).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_header_reads_as_milliseconds_from_now() {
        let now = Instant::now();
        let parse = |text: &str| parse(&http::HeaderValue::from_str(text).unwrap(), now);
        assert_eq!(parse("1500"), Ok(now + Duration::from_millis(1500)));
        assert_eq!(parse("0"), Ok(now));
        assert!(parse("18446744073709551615").unwrap() > now);
        for bad in ["-1", "1.5", "", "soon", "1e3"] {
            let error = parse(bad).unwrap_err();
            assert!(error.contains(TIMEOUT_HEADER), "{error}");
            assert!(error.contains(&format!("{bad:?}")), "{error}");
        }
        assert_eq!(header_value(Duration::from_micros(2_999_999)), "2999");
    }

    #[tokio::test]
    async fn the_deadline_is_the_scope_s() {
        assert_eq!(current(), None);
        let deadline = Instant::now() + Duration::from_secs(5);
        let seen = scope(deadline, async { (current(), remaining()) }).await;
        assert_eq!(seen.0, Some(deadline));
        assert!(seen.1.unwrap() <= Duration::from_secs(5));
        assert_eq!(current(), None);
    }
}
