//! Call metrics of an instance, rendered in the Prometheus text format.
//!
//! Every call that goes through the registry or an instance's proxy endpoint is
//! counted by function, where it ran (`local` or the remote's URL) and outcome,
//! with its duration in a histogram; calls in flight are a gauge, and failed
//! connections to each upstream (calls that end with
//! [`Outcome::ConnectError`]) a counter. An `#[on_proxy]` function called in
//! process and run locally is a plain function call and is not counted.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

/// Upper bounds of the duration histogram's buckets, in seconds.
const BUCKETS: [f64; 13] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// At most this many (function, location) series are kept apart; calls of
/// further names (a client sending made-up function names, say) are counted
/// under the function name [`OTHER_FUNCTIONS`].
pub const MAX_SERIES: usize = 1000;

/// The function label of calls past [`MAX_SERIES`].
pub const OTHER_FUNCTIONS: &str = "(other)";

/// How a call ended, the `outcome` label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
#[non_exhaustive]
pub enum Outcome {
    /// It returned a result.
    Ok,
    /// The function ran and failed.
    Failed,
    /// The arguments did not fit the function.
    InvalidArguments,
    /// The arguments would take more memory to read than a call may.
    TooLarge,
    /// No instance along the way knew the function.
    NotRegistered,
    /// The remote refused the key.
    Unauthorized,
    /// No connection to the remote could be made.
    ConnectError,
    /// The remote did not answer within the timeout.
    Timeout,
    /// Anything else on the way to or from the remote.
    TransportError,
    /// The caller stopped waiting before the call ended.
    Cancelled,
}

impl Outcome {
    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::Failed => "failed",
            Outcome::InvalidArguments => "invalid_arguments",
            Outcome::TooLarge => "too_large",
            Outcome::NotRegistered => "not_registered",
            Outcome::Unauthorized => "unauthorized",
            Outcome::ConnectError => "connect_error",
            Outcome::Timeout => "timeout",
            Outcome::TransportError => "transport_error",
            Outcome::Cancelled => "cancelled",
        }
    }

    /// The outcome of a failed remote call.
    pub fn of_transport_error(error: &framex_transport::Error) -> Outcome {
        use framex_transport::ErrorKind;
        match error.kind() {
            ErrorKind::Connect => Outcome::ConnectError,
            ErrorKind::Timeout { .. } => Outcome::Timeout,
            ErrorKind::Unauthorized { .. } => Outcome::Unauthorized,
            ErrorKind::NotRegistered => Outcome::NotRegistered,
            ErrorKind::Remote { status: 422, .. } => Outcome::InvalidArguments,
            ErrorKind::Remote { status: 413, .. } => Outcome::TooLarge,
            ErrorKind::Remote { .. } => Outcome::Failed,
            _ => Outcome::TransportError,
        }
    }
}

#[derive(Debug, Default)]
struct Series {
    outcomes: BTreeMap<Outcome, u64>,
    buckets: [u64; BUCKETS.len()],
    count: u64,
    sum_seconds: f64,
}

#[derive(Debug, Default)]
struct Recorded {
    /// By function, then location.
    calls: BTreeMap<String, BTreeMap<String, Series>>,
    series: usize,
    connect_errors: BTreeMap<String, u64>,
}

/// The metrics of one instance. Shared by reference count; see the module
/// documentation for what is counted.
#[derive(Debug, Default)]
pub struct Metrics {
    recorded: Mutex<Recorded>,
    in_flight: AtomicI64,
}

/// A call being counted: in flight until [`InFlight::finish`], or counted as
/// [`Outcome::Cancelled`] when dropped before.
#[derive(Debug)]
#[must_use = "a call is counted when it is finished"]
pub struct InFlight<'a> {
    metrics: &'a Metrics,
    function: &'a str,
    location: &'a str,
    started: Instant,
    finished: bool,
}

impl InFlight<'_> {
    /// Counts the call as ended with `outcome`, and returns how long it took.
    pub fn finish(mut self, outcome: Outcome) -> Duration {
        self.finished = true;
        let took = self.started.elapsed();
        self.metrics
            .record(self.function, self.location, outcome, took);
        took
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.metrics.in_flight.fetch_sub(1, Ordering::Relaxed);
        if !self.finished {
            // Dropped while unwinding: the function panicked.
            let outcome = match std::thread::panicking() {
                true => Outcome::Failed,
                false => Outcome::Cancelled,
            };
            self.metrics.record(
                self.function,
                self.location,
                outcome,
                self.started.elapsed(),
            );
        }
    }
}

impl Metrics {
    /// Starts counting a call of `function` running at `location` (`local` or a
    /// URL).
    pub fn start<'a>(&'a self, function: &'a str, location: &'a str) -> InFlight<'a> {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        InFlight {
            metrics: self,
            function,
            location,
            started: Instant::now(),
            finished: false,
        }
    }

    /// Calls in flight now.
    pub fn in_flight(&self) -> i64 {
        self.in_flight.load(Ordering::Relaxed)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Recorded> {
        self.recorded.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn record(&self, function: &str, location: &str, outcome: Outcome, took: Duration) {
        let mut recorded = self.lock();
        let recorded = &mut *recorded;
        // A connect error is a call that could not reach its location.
        if outcome == Outcome::ConnectError {
            if let Some(count) = recorded.connect_errors.get_mut(location) {
                *count += 1;
            } else if recorded.connect_errors.len() < MAX_SERIES {
                recorded.connect_errors.insert(location.to_owned(), 1);
            }
        }
        let known = recorded
            .calls
            .get(function)
            .is_some_and(|locations| locations.contains_key(location));
        let function = if known || recorded.series < MAX_SERIES {
            function
        } else {
            OTHER_FUNCTIONS
        };
        if !known {
            // Names are copied only for a series not seen before.
            let locations = match recorded.calls.get_mut(function) {
                Some(locations) => locations,
                None => recorded.calls.entry(function.to_owned()).or_default(),
            };
            if !locations.contains_key(location) {
                locations.insert(location.to_owned(), Series::default());
                recorded.series += 1;
            }
        }
        let series = recorded
            .calls
            .get_mut(function)
            .and_then(|locations| locations.get_mut(location))
            .expect("the series exists or was just added");
        *series.outcomes.entry(outcome).or_default() += 1;
        let seconds = took.as_secs_f64();
        for (bucket, bound) in series.buckets.iter_mut().zip(BUCKETS) {
            if seconds <= bound {
                *bucket += 1;
            }
        }
        series.count += 1;
        series.sum_seconds += seconds;
    }

    /// The metrics in the Prometheus text exposition format (version 0.0.4).
    pub fn render(&self) -> String {
        let recorded = self.lock();
        let mut out = String::new();
        out.push_str(
            "# HELP framex_calls_total Proxy-function calls by function, where they ran and outcome.\n\
             # TYPE framex_calls_total counter\n",
        );
        for (function, locations) in &recorded.calls {
            for (location, series) in locations {
                for (outcome, count) in &series.outcomes {
                    let _ = writeln!(
                        out,
                        "framex_calls_total{{function=\"{}\",location=\"{}\",outcome=\"{}\"}} {count}",
                        escape(function),
                        escape(location),
                        outcome.as_str()
                    );
                }
            }
        }
        out.push_str(
            "# HELP framex_call_duration_seconds How long proxy-function calls took, by function and where they ran.\n\
             # TYPE framex_call_duration_seconds histogram\n",
        );
        for (function, locations) in &recorded.calls {
            for (location, series) in locations {
                let labels = format!(
                    "function=\"{}\",location=\"{}\"",
                    escape(function),
                    escape(location)
                );
                for (count, bound) in series.buckets.iter().zip(BUCKETS) {
                    let _ = writeln!(
                        out,
                        "framex_call_duration_seconds_bucket{{{labels},le=\"{bound}\"}} {count}"
                    );
                }
                let _ = writeln!(
                    out,
                    "framex_call_duration_seconds_bucket{{{labels},le=\"+Inf\"}} {}\n\
                     framex_call_duration_seconds_sum{{{labels}}} {}\n\
                     framex_call_duration_seconds_count{{{labels}}} {}",
                    series.count, series.sum_seconds, series.count
                );
            }
        }
        let _ = writeln!(
            out,
            "# HELP framex_calls_in_flight Proxy-function calls started and not yet ended.\n\
             # TYPE framex_calls_in_flight gauge\n\
             framex_calls_in_flight {}",
            self.in_flight()
        );
        out.push_str(
            "# HELP framex_upstream_connect_errors_total Failed connections to each upstream FrameX instance.\n\
             # TYPE framex_upstream_connect_errors_total counter\n",
        );
        for (url, count) in &recorded.connect_errors {
            let _ = writeln!(
                out,
                "framex_upstream_connect_errors_total{{url=\"{}\"}} {count}",
                escape(url)
            );
        }
        out
    }
}

/// A label value as the text format wants it: backslash, quote and newline
/// escaped.
fn escape(value: &str) -> std::borrow::Cow<'_, str> {
    if !value.contains(['\\', '"', '\n']) {
        return std::borrow::Cow::Borrowed(value);
    }
    std::borrow::Cow::Owned(
        value
            .replace('\\', "\\\\")
            .replace('"', "\\\"")
            .replace('\n', "\\n"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line<'a>(rendered: &'a str, prefix: &str) -> Option<&'a str> {
        rendered.lines().find(|line| line.starts_with(prefix))
    }

    #[test]
    fn durations_fall_in_every_bucket_at_or_above_them() {
        let metrics = Metrics::default();
        metrics.record("f", "local", Outcome::Ok, Duration::from_millis(3));
        let rendered = metrics.render();
        let bucket = |le: &str| {
            line(
                &rendered,
                &format!("framex_call_duration_seconds_bucket{{function=\"f\",location=\"local\",le=\"{le}\"}}"),
            )
            .and_then(|line| line.rsplit(' ').next())
            .map(str::to_owned)
        };
        assert_eq!(bucket("0.0025").as_deref(), Some("0"));
        assert_eq!(bucket("0.005").as_deref(), Some("1"));
        assert_eq!(bucket("10").as_deref(), Some("1"));
        assert_eq!(bucket("+Inf").as_deref(), Some("1"));
    }

    #[test]
    fn a_call_dropped_unfinished_counts_as_cancelled_and_leaves_flight() {
        let metrics = Metrics::default();
        let counting = metrics.start("f", "http://remote:8080");
        assert_eq!(metrics.in_flight(), 1);
        drop(counting);
        assert_eq!(metrics.in_flight(), 0);
        assert!(metrics.render().contains(
            "framex_calls_total{function=\"f\",location=\"http://remote:8080\",outcome=\"cancelled\"} 1"
        ));
    }

    #[test]
    fn a_call_unwound_by_a_panic_counts_as_failed() {
        let metrics = Metrics::default();
        let _ = std::panic::catch_unwind(|| {
            let _counting = metrics.start("f", "local");
            panic!("the function panicked");
        });
        assert_eq!(metrics.in_flight(), 0);
        assert!(metrics.render().contains(
            "framex_calls_total{function=\"f\",location=\"local\",outcome=\"failed\"} 1"
        ));
    }

    #[test]
    fn made_up_names_past_the_limit_share_one_series() {
        let metrics = Metrics::default();
        for n in 0..MAX_SERIES + 50 {
            metrics
                .start(&format!("junk.{n}"), "local")
                .finish(Outcome::NotRegistered);
        }
        let rendered = metrics.render();
        assert!(rendered.contains(&format!(
            "framex_calls_total{{function=\"{OTHER_FUNCTIONS}\",location=\"local\",outcome=\"not_registered\"}} 50"
        )));
        let series = rendered
            .lines()
            .filter(|line| line.starts_with("framex_calls_total{"))
            .count();
        assert_eq!(series, MAX_SERIES + 1);
    }

    #[test]
    fn label_values_are_escaped() {
        let metrics = Metrics::default();
        metrics
            .start("odd\"name\\with\nbreaks", "local")
            .finish(Outcome::Ok);
        assert!(metrics.render().contains(
            "framex_calls_total{function=\"odd\\\"name\\\\with\\nbreaks\",location=\"local\",outcome=\"ok\"} 1"
        ));
    }
}
