//! The human log line, written without `core::fmt` where it can be.
//!
//! `tracing_subscriber`'s `Full` format writes every piece of a line (the
//! time, the level, each span's name and braces, every field's name and
//! value) through `core::fmt` and `nu_ansi_term`, painting with an empty
//! style when colours are off: measured with callgrind on a two-hop request
//! of `framex serve`, about 35k instructions a request at `info` against
//! `error`, most of them formatting. [`HumanLine`] and [`HumanFields`] write
//! the same bytes (a test compares them with `Full`'s) with plain copies
//! and `itoa` for what requests log (text, integers, booleans), and hand
//! every other value to `tracing_subscriber`'s own visitor, so that
//! escaping and error sources stay exactly as it writes them.

use std::fmt;

use tracing::field::{Field, Visit};
use tracing_subscriber::field::{RecordFields, VisitOutput};
use tracing_subscriber::fmt::format::{DefaultVisitor, Writer};
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields, FormattedFields};
use tracing_subscriber::registry::LookupSpan;

/// Formats fields as `tracing_subscriber`'s `DefaultFields` does.
#[derive(Debug, Default, Clone, Copy)]
pub(super) struct HumanFields;

impl<'writer> FormatFields<'writer> for HumanFields {
    fn format_fields<R: RecordFields>(
        &self,
        mut writer: Writer<'writer>,
        fields: R,
    ) -> fmt::Result {
        // A span's fields go into a `String` of their own: written there piece
        // by piece, it grew (and was reallocated) about five times per span.
        // Gathered in this thread's scratch first, they take one allocation of
        // their length.
        let gathered = in_scratch(|scratch| {
            write_fields(Writer::new(scratch), &fields)?;
            writer.write_str(scratch)
        });
        gathered.unwrap_or_else(|| write_fields(writer, &fields))
    }

    fn add_fields(
        &self,
        current: &'writer mut FormattedFields<Self>,
        fields: &tracing::span::Record<'_>,
    ) -> fmt::Result {
        // As `FormatFields::add_fields` does (a space, then the fields), into
        // a new `String` of the length of both. Growing the span's own would
        // be a `realloc`, which glibc's allocator serves under its arena's
        // lock every time (a `malloc` or `free` of this size goes through the
        // thread's cache without it): with fields recorded into a request's
        // spans on every call, the two workers met on that lock about once
        // every three requests, each meeting a futex wait and a wake-up.
        let gathered = in_scratch(|scratch| {
            write_fields(Writer::new(scratch), fields)?;
            let current = &mut current.fields;
            let space = if current.is_empty() { "" } else { " " };
            let mut joined = String::with_capacity(current.len() + space.len() + scratch.len());
            joined.push_str(current);
            joined.push_str(space);
            joined.push_str(scratch);
            *current = joined;
            Ok(())
        });
        gathered.unwrap_or_else(|| {
            if !current.fields.is_empty() {
                current.fields.push(' ');
            }
            write_fields(current.as_writer(), fields)
        })
    }
}

/// Writes `fields` one after the other.
fn write_fields<R: RecordFields>(writer: Writer<'_>, fields: R) -> fmt::Result {
    let mut visitor = FieldWriter {
        writer,
        is_empty: true,
        result: Ok(()),
    };
    fields.record(&mut visitor);
    visitor.result
}

/// Calls `with` with this thread's scratch `String`, emptied; `None` when it
/// is in use already (formatting a value logged).
fn in_scratch(with: impl FnOnce(&mut String) -> fmt::Result) -> Option<fmt::Result> {
    thread_local! {
        static SCRATCH: std::cell::RefCell<String> = const { std::cell::RefCell::new(String::new()) };
    }
    /// A scratch grown past this by one odd span is not kept.
    const KEPT: usize = 4096;
    SCRATCH.with(|scratch| {
        let mut scratch = scratch.try_borrow_mut().ok()?;
        scratch.clear();
        let result = with(&mut scratch);
        if scratch.capacity() > KEPT {
            *scratch = String::new();
        }
        Some(result)
    })
}

/// Writes fields one after the other, space-separated.
struct FieldWriter<'a> {
    writer: Writer<'a>,
    is_empty: bool,
    result: fmt::Result,
}

impl FieldWriter<'_> {
    /// The separating space, and `name=` (without a raw identifier's `r#`).
    fn start(&mut self, field: &Field) -> fmt::Result {
        if !std::mem::take(&mut self.is_empty) {
            self.writer.write_char(' ')?;
        }
        let name = field.name();
        self.writer
            .write_str(name.strip_prefix("r#").unwrap_or(name))?;
        self.writer.write_char('=')
    }

    /// `name=value` for a value written as `digits`.
    fn plain(&mut self, field: &Field, digits: &str) {
        if self.result.is_ok() {
            self.result = self
                .start(field)
                .and_then(|()| self.writer.write_str(digits));
        }
    }

    /// Any other value, as `tracing_subscriber`'s visitor writes it.
    fn fallback(&mut self, record: impl FnOnce(&mut DefaultVisitor<'_>)) {
        if self.result.is_err() {
            return;
        }
        let mut visitor = DefaultVisitor::new(self.writer.by_ref(), self.is_empty);
        record(&mut visitor);
        self.result = visitor.finish();
        self.is_empty = false;
    }
}

/// Whether `{:?}` of `text` is `text` in quotes: printable ASCII without a
/// quote or a backslash, which neither `Debug` nor the ANSI escaping of
/// `tracing_subscriber` changes.
fn quotes_as_is(text: &str) -> bool {
    text.bytes()
        .all(|byte| (0x20..0x7f).contains(&byte) && byte != b'"' && byte != b'\\')
}

impl Visit for FieldWriter<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" || !quotes_as_is(value) {
            return self.fallback(|visitor| visitor.record_str(field, value));
        }
        if self.result.is_ok() {
            self.result = self.start(field).and_then(|()| {
                self.writer.write_char('"')?;
                self.writer.write_str(value)?;
                self.writer.write_char('"')
            });
        }
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.plain(field, itoa::Buffer::new().format(value));
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.plain(field, itoa::Buffer::new().format(value));
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.plain(field, if value { "true" } else { "false" });
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        // `{:?}`, as the visitor writes it, without its styling machinery;
        // milliseconds to the microsecond (every request's `latency_ms`)
        // without `core::fmt`'s shortest-digits search either.
        if self.result.is_ok() {
            self.result = self
                .start(field)
                .and_then(|()| write_f64(&mut self.writer, value));
        }
    }

    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.fallback(|visitor| visitor.record_error(field, value));
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.fallback(|visitor| visitor.record_debug(field, value));
    }
}

/// `value` as `{:?}` writes it.
fn write_f64(writer: &mut Writer<'_>, value: f64) -> fmt::Result {
    match thousandths(value) {
        Some(thousandths) => write_thousandths(writer, thousandths),
        None => write!(writer, "{value:?}"),
    }
}

/// `value` as a whole number of thousandths, when it is exactly the `f64`
/// nearest to one and small enough that no shorter decimal is: then `{:?}`
/// writes those thousandths' decimal, trailing zeros trimmed (what
/// `framex_transport::trace::milliseconds` makes of a duration).
fn thousandths(value: f64) -> Option<u64> {
    // Below 2^40, an `f64`'s spacing is under a ten-thousandth, so no other
    // decimal of at most three places is as near to it.
    const BOUND: f64 = (1u64 << 40) as f64;
    if !(value.is_sign_positive() && value < BOUND) {
        return None;
    }
    let scaled = (value * 1000.0).round();
    // Exact: `scaled` is an integer below 2^50.
    let thousandths = scaled as u64;
    (thousandths as f64 / 1000.0 == value).then_some(thousandths)
}

/// `thousandths / 1000` as `{:?}` writes it: `0.0`, `1.0`, `0.005`, `1.17`.
fn write_thousandths(writer: &mut Writer<'_>, thousandths: u64) -> fmt::Result {
    let mut integer = itoa::Buffer::new();
    writer.write_str(integer.format(thousandths / 1000))?;
    writer.write_char('.')?;
    let fraction = thousandths % 1000;
    let digits = [
        b'0' + (fraction / 100) as u8,
        b'0' + (fraction / 10 % 10) as u8,
        b'0' + (fraction % 10) as u8,
    ];
    let kept = match digits {
        [_, b'0', b'0'] => 1,
        [_, _, b'0'] => 2,
        _ => 3,
    };
    // ASCII digits.
    writer.write_str(std::str::from_utf8(&digits[..kept]).map_err(|_| fmt::Error)?)
}

/// A line as `tracing_subscriber`'s `Full` format writes it without
/// colours: the UTC time to the microsecond, the level, the spans from the
/// root with their fields, the target, the message and the fields.
#[derive(Debug, Default, Clone, Copy)]
pub(super) struct HumanLine;

impl<S> FormatEvent<S, HumanFields> for HumanLine
where
    S: tracing::Subscriber + for<'span> LookupSpan<'span>,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, HumanFields>,
        mut writer: Writer<'_>,
        event: &tracing::Event<'_>,
    ) -> fmt::Result {
        write_time(&mut writer, std::time::SystemTime::now())?;
        let metadata = event.metadata();
        writer.write_str(match *metadata.level() {
            tracing::Level::TRACE => "TRACE ",
            tracing::Level::DEBUG => "DEBUG ",
            tracing::Level::INFO => " INFO ",
            tracing::Level::WARN => " WARN ",
            tracing::Level::ERROR => "ERROR ",
        })?;
        let mut spans = false;
        for span in ctx
            .event_scope()
            .into_iter()
            .flat_map(|scope| scope.from_root())
        {
            spans = true;
            writer.write_str(span.name())?;
            let extensions = span.extensions();
            if let Some(fields) = extensions.get::<FormattedFields<HumanFields>>()
                && !fields.is_empty()
            {
                writer.write_char('{')?;
                writer.write_str(fields)?;
                writer.write_char('}')?;
            }
            writer.write_char(':')?;
        }
        if spans {
            writer.write_char(' ')?;
        }
        writer.write_str(metadata.target())?;
        writer.write_str(": ")?;
        // Into the line itself: no scratch needed.
        write_fields(writer.by_ref(), event)?;
        writer.write_char('\n')
    }
}

/// `2026-12-03T01:56:54.254285Z ` (with its trailing space), as
/// `tracing_subscriber`'s `SystemTime` timer writes it.
fn write_time(writer: &mut Writer<'_>, now: std::time::SystemTime) -> fmt::Result {
    let Ok(since_epoch) = now.duration_since(std::time::UNIX_EPOCH) else {
        return writer.write_str("<unknown time> ");
    };
    let seconds = since_epoch.as_secs();
    let (year, month, day) = civil_from_days((seconds / 86_400) as i64);
    let of_day = seconds % 86_400;
    let mut line = *b"0000-00-00T00:00:00.000000Z ";
    let mut put = |at: usize, width: usize, mut value: u64| {
        for index in (at..at + width).rev() {
            line[index] = b'0' + (value % 10) as u8;
            value /= 10;
        }
    };
    put(0, 4, year.clamp(0, 9999) as u64);
    put(5, 2, month);
    put(8, 2, day);
    put(11, 2, of_day / 3600);
    put(14, 2, of_day / 60 % 60);
    put(17, 2, of_day % 60);
    put(20, 6, u64::from(since_epoch.subsec_micros()));
    // Only ASCII digits and punctuation were written.
    writer.write_str(std::str::from_utf8(&line).map_err(|_| fmt::Error)?)
}

/// The proleptic Gregorian date of a day counted from 1970-01-01 (Howard
/// Hinnant's `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, u64, u64) {
    let days = days + 719_468;
    let era = days.div_euclid(146_097);
    let of_era = days.rem_euclid(146_097);
    let year_of_era = (of_era - of_era / 1460 + of_era / 36_524 - of_era / 146_096) / 365;
    let day_of_year = of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let shifted_month = (5 * day_of_year + 2) / 153;
    let day = (day_of_year - (153 * shifted_month + 2) / 5 + 1) as u64;
    let month = if shifted_month < 10 {
        shifted_month + 3
    } else {
        shifted_month - 9
    } as u64;
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
pub(super) mod tests {
    use std::sync::{Arc, Mutex};
    use std::time::{Duration, UNIX_EPOCH};

    use tracing_subscriber::fmt::MakeWriter;

    use super::*;

    /// Lines written into a shared buffer.
    #[derive(Clone, Default)]
    pub(in crate::logging) struct Captured(pub(in crate::logging) Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Captured {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl<'a> MakeWriter<'a> for Captured {
        type Writer = Captured;
        fn make_writer(&'a self) -> Captured {
            self.clone()
        }
    }

    impl Captured {
        /// The lines, each without its time (the first 27 bytes).
        fn lines_without_time(&self) -> Vec<String> {
            String::from_utf8(self.0.lock().unwrap().clone())
                .unwrap()
                .lines()
                .map(|line| line.get(27..).unwrap_or(line).to_owned())
                .collect()
        }
    }

    #[derive(Debug)]
    struct Failure(Option<Box<Failure>>);

    impl fmt::Display for Failure {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            write!(f, "failed \x1b[31m\"badly\"")
        }
    }

    impl std::error::Error for Failure {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            self.0.as_deref().map(|source| source as _)
        }
    }

    /// Events and spans of every kind of value, including what an attacker
    /// puts in a path or a header: quotes, backslashes, control characters,
    /// ANSI escapes, C1 controls and other Unicode.
    fn log_everything() {
        let texts = [
            "/api/v1/report",
            "",
            "with \"quotes\"",
            "back\\slash",
            "new\nline\ttab",
            "\x1b[2J\x07",
            "c1 \u{9b}31m",
            "é ünïcode 🎉",
            "\u{7f}del",
        ];
        for text in texts {
            let request = tracing::info_span!(
                "request",
                method = %http::Method::GET,
                path = text,
                trace_id = tracing::field::Empty,
            );
            request.record("trace_id", "4582cb3f0073d9002134363c850138ab");
            let _request = request.enter();
            let call = tracing::info_span!(
                "proxy_call",
                function = "your_module.build_report",
                r#type = text,
                outcome = tracing::field::Empty,
            );
            call.record("outcome", "ok");
            let _call = call.enter();
            tracing::info!(status = 200u16, latency_ms = 0.473348, "answered");
            tracing::warn!(
                count = -3i64,
                big = u64::MAX,
                yes = true,
                nan = f64::NAN,
                huge = 1e300,
                small = 1e-9,
                ms = 0.005,
                whole = 1.0,
                zero = 0.0,
                negative_zero = -0.0,
                negative = -1.5,
                rounded = 1.17,
                long = 123_456_789.123,
                past_thousandths = 0.0005,
                debug = ?Some(text),
                display = %text,
                error = &Failure(Some(Box::new(Failure(None)))) as &(dyn std::error::Error + 'static),
                "a message with {text:?} and {}", text
            );
            tracing::error!(text, "{}", text);
        }
        tracing::info!("no span, no fields");
        let empty = tracing::info_span!("empty");
        let _empty = empty.enter();
        tracing::debug!(parent: None, x = 1u64, "an explicit root");
        tracing::info!(x = 1u64);
    }

    #[test]
    fn lines_are_those_of_tracing_subscribers_full_format() {
        let ours = Captured::default();
        let theirs = Captured::default();
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::TRACE)
            .with_ansi(false)
            .fmt_fields(HumanFields)
            .event_format(HumanLine)
            .with_writer(ours.clone())
            .finish();
        tracing::subscriber::with_default(subscriber, log_everything);
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::TRACE)
            .with_ansi(false)
            .with_writer(theirs.clone())
            .finish();
        tracing::subscriber::with_default(subscriber, log_everything);
        let (ours, theirs) = (ours.lines_without_time(), theirs.lines_without_time());
        assert!(theirs.len() > 30, "{theirs:#?}");
        assert_eq!(ours, theirs);
    }

    fn written_f64(value: f64) -> String {
        let mut text = String::new();
        write_f64(&mut Writer::new(&mut text), value).unwrap();
        text
    }

    #[test]
    fn milliseconds_are_written_as_debug_writes_them() {
        // Every microsecond of the first two seconds, then durations up to the
        // bound of the short path and past it, and values that are not
        // thousandths at all.
        let mut values: Vec<f64> = (0..2_000_000u64).map(|n| n as f64 / 1000.0).collect();
        let mut n: u64 = 1;
        while n < 1 << 62 {
            values.extend([n as f64 / 1000.0, (n - 1) as f64 / 1000.0, n as f64]);
            n = n * 3 + 1;
        }
        values.extend([
            0.1 + 0.2,
            1.1704160000000001,
            1e-7,
            f64::NAN,
            f64::INFINITY,
            -0.0,
            -2.5,
            (1u64 << 40) as f64,
            f64::MAX,
        ]);
        for value in values {
            assert_eq!(written_f64(value), format!("{value:?}"), "{value:e}");
        }
    }

    fn time(seconds: u64, micros: u32) -> String {
        let mut text = String::new();
        write_time(
            &mut Writer::new(&mut text),
            UNIX_EPOCH + Duration::new(seconds, micros * 1000 + 999),
        )
        .unwrap();
        text
    }

    #[test]
    fn times_are_utc_to_the_microsecond() {
        assert_eq!(time(0, 0), "1970-01-01T00:00:00.000000Z ");
        assert_eq!(time(1_700_000_000, 42), "2023-11-14T22:13:20.000042Z ");
        // A leap day, the last second of a year, and a century not leap.
        assert_eq!(time(951_782_400, 999_999), "2000-02-29T00:00:00.999999Z ");
        assert_eq!(time(1_735_689_599, 0), "2024-12-31T23:59:59.000000Z ");
        assert_eq!(time(4_107_542_400, 0), "2100-03-01T00:00:00.000000Z ");
        assert_eq!(time(253_402_300_799, 0), "9999-12-31T23:59:59.000000Z ");
    }
}
