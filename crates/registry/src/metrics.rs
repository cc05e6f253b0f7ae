//! Call metrics of an instance, in a prometheus-client registry that the
//! application can add its own metrics to.
//!
//! Every call that goes through the registry or an instance's proxy endpoint is
//! counted by function, where it ran (`local` or the remote's URL) and outcome,
//! with its duration in a histogram; calls in flight are a gauge, and failed
//! connections to each upstream (calls that end with
//! [`Outcome::ConnectError`]) a counter. An `#[on_proxy]` function called in
//! process and run locally is a plain function call and is not counted.
//! [`Metrics::render`] writes the whole registry, FrameX's metrics and the
//! application's, in the OpenMetrics text format that `GET /metrics` serves.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock};
use std::time::{Duration, Instant};

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};

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

/// The content type of [`Metrics::render`]'s text.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// How a call ended, the `outcome` label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
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

impl EncodeLabelValue for Outcome {
    fn encode(&self, encoder: &mut LabelValueEncoder<'_>) -> Result<(), std::fmt::Error> {
        EncodeLabelValue::encode(&self.as_str(), encoder)
    }
}

/// The labels of a call: its series and how it ended.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CallLabels {
    function: Arc<str>,
    location: Arc<str>,
    outcome: Outcome,
}

/// The labels of a series: a function and where it ran.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SeriesLabels {
    function: Arc<str>,
    location: Arc<str>,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct UrlLabels {
    url: Arc<str>,
}

/// A series' labels and its metrics, taken from their families once: a call
/// of a known series counts itself without hashing its labels again.
#[derive(Debug)]
struct Series {
    labels: SeriesLabels,
    duration: Histogram,
    /// The `framex_calls` counter of each outcome seen (a few at most).
    calls: Vec<(Outcome, Counter)>,
}

/// Label values' maps, keyed by text that callers send: foldhash rather
/// than SipHash, since the keys are bounded ([`MAX_SERIES`]) and only
/// registered or routed names and [`UNREGISTERED`](crate::UNREGISTERED)
/// become keys, so no input can make a key's lookup slow.
type Map<V> = HashMap<String, V, foldhash::fast::RandomState>;

/// The label values seen so far, each kept once: a call of a known series
/// looks its labels up by `&str` and copies nothing.
#[derive(Debug, Default)]
struct Names {
    /// By function, then location.
    series: Map<Map<Series>>,
    count: usize,
    /// Upstream URLs with connect errors.
    urls: Map<UrlLabels>,
}

impl Names {
    /// The series of (`function`, `location`), if it was seen before.
    fn known(&self, function: &str, location: &str) -> Option<&Series> {
        self.series.get(function)?.get(location)
    }

    /// The series of (`function`, `location`), made on first sight with its
    /// metrics taken from `durations`, or of [`OTHER_FUNCTIONS`] at
    /// `location` past [`MAX_SERIES`]. A known series is found without
    /// copying its names.
    fn series(
        &mut self,
        function: &str,
        location: &str,
        durations: &Family<SeriesLabels, Histogram, fn() -> Histogram>,
    ) -> Option<&mut Series> {
        let known = |names: &Names, function: &str| names.known(function, location).is_some();
        let function = match known(self, function) || self.count < MAX_SERIES {
            true => function,
            false => OTHER_FUNCTIONS,
        };
        if !known(self, function) {
            self.count += 1;
            let labels = SeriesLabels {
                function: Arc::from(function),
                location: Arc::from(location),
            };
            let series = Series {
                duration: durations.get_or_create(&labels).clone(),
                labels,
                calls: Vec::new(),
            };
            self.series
                .entry(function.to_owned())
                .or_default()
                .insert(location.to_owned(), series);
        }
        self.series.get_mut(function)?.get_mut(location)
    }

    /// The labels of upstream `url`, or `None` past [`MAX_SERIES`] URLs.
    fn url(&mut self, url: &str) -> Option<UrlLabels> {
        if let Some(labels) = self.urls.get(url) {
            return Some(labels.clone());
        }
        if self.urls.len() >= MAX_SERIES {
            return None;
        }
        let labels = UrlLabels {
            url: Arc::from(url),
        };
        self.urls.insert(url.to_owned(), labels.clone());
        Some(labels)
    }
}

/// The metrics of one instance. Shared by reference count; see the module
/// documentation for what is counted.
#[derive(Debug)]
pub struct Metrics {
    registry: Mutex<Registry>,
    names: RwLock<Names>,
    calls: Family<CallLabels, Counter>,
    durations: Family<SeriesLabels, Histogram, fn() -> Histogram>,
    in_flight: Gauge,
    connect_errors: Family<UrlLabels, Counter>,
}

impl Default for Metrics {
    fn default() -> Metrics {
        fn histogram() -> Histogram {
            Histogram::new(BUCKETS)
        }
        let metrics = Metrics {
            registry: Mutex::new(Registry::default()),
            names: RwLock::new(Names::default()),
            calls: Family::default(),
            durations: Family::new_with_constructor(histogram),
            in_flight: Gauge::default(),
            connect_errors: Family::default(),
        };
        {
            let mut registry = metrics.registry();
            registry.register(
                "framex_calls",
                "Proxy-function calls by function, where they ran and outcome",
                metrics.calls.clone(),
            );
            registry.register_with_unit(
                "framex_call_duration",
                "How long proxy-function calls took, by function and where they ran",
                Unit::Seconds,
                metrics.durations.clone(),
            );
            registry.register(
                "framex_calls_in_flight",
                "Proxy-function calls started and not yet ended",
                metrics.in_flight.clone(),
            );
            registry.register(
                "framex_upstream_connect_errors",
                "Failed connections to each upstream FrameX instance",
                metrics.connect_errors.clone(),
            );
        }
        metrics
    }
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
        self.metrics.in_flight.dec();
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
        self.in_flight.inc();
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
        self.in_flight.get()
    }

    /// The registry that [`Metrics::render`] writes: register the
    /// application's own metrics here to have `GET /metrics` serve them beside
    /// FrameX's (names starting `framex_` are FrameX's).
    ///
    /// ```
    /// use framex_registry::Metrics;
    /// use framex_registry::prometheus_client::metrics::counter::Counter;
    ///
    /// let metrics = Metrics::default();
    /// let reports: Counter = Counter::default();
    /// metrics
    ///     .registry()
    ///     .register("reports_built", "Reports built.", reports.clone());
    /// reports.inc();
    /// assert!(metrics.render().contains("reports_built_total 1"));
    /// ```
    pub fn registry(&self) -> MutexGuard<'_, Registry> {
        self.registry.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn record(&self, function: &str, location: &str, outcome: Outcome, took: Duration) {
        // A call of a series and outcome seen before (nearly every call) takes
        // the names' lock shared: both workers count their calls at once
        // without waiting on each other.
        if outcome != Outcome::ConnectError {
            let names = self.names.read().unwrap_or_else(PoisonError::into_inner);
            if let Some(series) = names.known(function, location)
                && let Some((_, calls)) = series.calls.iter().find(|(seen, _)| *seen == outcome)
            {
                series.duration.observe(took.as_secs_f64());
                calls.inc();
                return;
            }
        }
        let mut names = self.names.write().unwrap_or_else(PoisonError::into_inner);
        // A connect error is a call that could not reach its location.
        if outcome == Outcome::ConnectError
            && let Some(url) = names.url(location)
        {
            self.connect_errors.get_or_create(&url).inc();
        }
        let Some(series) = names.series(function, location, &self.durations) else {
            return;
        };
        series.duration.observe(took.as_secs_f64());
        match series.calls.iter().find(|(seen, _)| *seen == outcome) {
            Some((_, calls)) => {
                calls.inc();
            }
            None => {
                let calls = self
                    .calls
                    .get_or_create(&CallLabels {
                        function: series.labels.function.clone(),
                        location: series.labels.location.clone(),
                        outcome,
                    })
                    .clone();
                calls.inc();
                series.calls.push((outcome, calls));
            }
        }
    }

    /// Every metric of the registry, FrameX's and the application's, in the
    /// OpenMetrics text format ([`CONTENT_TYPE`]).
    pub fn render(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry())
            .expect("writing to a String does not fail");
        out
    }
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
                &format!("framex_call_duration_seconds_bucket{{le=\"{le}\",function=\"f\",location=\"local\"}}"),
            )
            .and_then(|line| line.rsplit(' ').next())
            .map(str::to_owned)
        };
        assert_eq!(bucket("0.0025").as_deref(), Some("0"));
        assert_eq!(bucket("0.005").as_deref(), Some("1"));
        assert_eq!(bucket("10.0").as_deref(), Some("1"));
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
        let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let _counting = metrics.start("f", "local");
            panic!("the function panicked");
        }));
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
