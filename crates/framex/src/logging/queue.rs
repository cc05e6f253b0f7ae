//! The log thread: lines join one buffer, and a thread of their own writes
//! them in batches, so that a request's task never makes a system call to log.
//!
//! tracing-appender's non-blocking writer (what this replaces) sends each
//! line through a channel as a `Vec` of its own and wakes its thread for each
//! one: under load that was a futex wake, a context switch, a `sched_yield`
//! spin and a `write` per line or two, on the request's own CPU (2,052
//! `sched_yield`, 1,498 `futex` and 2,256 `write` calls for 4,422 two-hop
//! requests, `strace -c` of the local instance). Here the thread is woken only
//! by the first line of a batch, gathers for [`GATHER`], and writes the batch
//! in one go: a line reaches standard error at most about that late.
//!
//! No line is dropped and memory stays bounded: past [`LIMIT`] bytes queued (a
//! reader of standard error that does not keep up), a logging task waits for
//! the thread to take the batch. After [`Writing`] is dropped, lines are
//! written straight to the sink.

use std::io::Write;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;

use tracing_subscriber::fmt::MakeWriter;

/// How long the thread, woken by a batch's first line, waits for more lines
/// to join it before writing.
const GATHER: Duration = Duration::from_millis(10);

/// A batch this large is written at once, without waiting for [`GATHER`].
const WRITE_AT: usize = 64 * 1024;

/// Past this many bytes queued, a logging task waits for room.
const LIMIT: usize = 1024 * 1024;

/// Where lines go: a `MakeWriter` for tracing-subscriber's fmt layer.
#[derive(Clone)]
pub(crate) struct LogQueue {
    shared: Arc<Shared>,
}

/// The thread writing a [`LogQueue`]'s lines; dropping it writes what is
/// queued and stops the thread.
pub(crate) struct Writing {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

struct Shared {
    state: Mutex<State>,
    /// Signalled by a batch's first line, by a batch reaching [`WRITE_AT`] and
    /// by closing.
    wake: Condvar,
    /// Signalled when the thread takes a batch.
    room: Condvar,
    sink: Mutex<Box<dyn Write + Send>>,
}

#[derive(Default)]
struct State {
    queued: Vec<u8>,
    /// The thread waits for a first line (and is to be woken by it).
    idle: bool,
    /// [`Writing`] was dropped: the thread writes what is left, without
    /// gathering, and stops.
    closing: bool,
    /// The thread has stopped: lines go straight to the sink.
    closed: bool,
}

impl Shared {
    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Writes `bytes` to the sink; a sink that fails (standard error closed)
    /// has no one left to tell.
    fn write_out(&self, bytes: &[u8]) {
        let mut sink = self.sink.lock().unwrap_or_else(PoisonError::into_inner);
        let _ = sink.write_all(bytes);
        let _ = sink.flush();
    }
}

/// A queue writing to `sink` from a thread named `framex-log`.
pub(crate) fn start(sink: impl Write + Send + 'static) -> std::io::Result<(LogQueue, Writing)> {
    let shared = Arc::new(Shared {
        state: Mutex::new(State::default()),
        wake: Condvar::new(),
        room: Condvar::new(),
        sink: Mutex::new(Box::new(sink)),
    });
    let thread = std::thread::Builder::new()
        .name("framex-log".to_owned())
        .spawn({
            let shared = Arc::clone(&shared);
            move || write_batches(&shared)
        })?;
    Ok((
        LogQueue {
            shared: Arc::clone(&shared),
        },
        Writing {
            shared,
            thread: Some(thread),
        },
    ))
}

/// The thread's loop: wait for a first line, gather, take the batch, write it.
fn write_batches(shared: &Shared) {
    let mut batch = Vec::new();
    loop {
        let mut state = shared.state();
        while state.queued.is_empty() && !state.closing {
            state.idle = true;
            state = shared
                .wake
                .wait(state)
                .unwrap_or_else(PoisonError::into_inner);
        }
        state.idle = false;
        if !state.closing {
            state = shared
                .wake
                .wait_timeout_while(state, GATHER, |state| {
                    !state.closing && state.queued.len() < WRITE_AT
                })
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
        std::mem::swap(&mut state.queued, &mut batch);
        if batch.is_empty() {
            // Closing, and nothing left.
            state.closed = true;
            return;
        }
        shared.room.notify_all();
        drop(state);
        shared.write_out(&batch);
        batch.clear();
        // A burst behind a slow reader grew the batch towards `LIMIT`; an
        // instance back to its usual pace keeps no more than it needs.
        if batch.capacity() > 4 * WRITE_AT {
            batch.shrink_to(WRITE_AT);
        }
    }
}

impl Drop for Writing {
    fn drop(&mut self) {
        self.shared.state().closing = true;
        self.shared.wake.notify_one();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
        // The thread may have stopped without taking the last lines (it
        // panicked): nothing queued is left behind, and no logging task is
        // left waiting for room.
        let mut state = self.shared.state();
        state.closed = true;
        let left = std::mem::take(&mut state.queued);
        drop(state);
        self.shared.room.notify_all();
        if !left.is_empty() {
            self.shared.write_out(&left);
        }
    }
}

/// One line's writer (tracing-subscriber writes each formatted line with one
/// `write_all`).
pub(crate) struct LineWriter<'queue> {
    shared: &'queue Shared,
}

impl Write for LineWriter<'_> {
    fn write(&mut self, line: &[u8]) -> std::io::Result<usize> {
        let shared = self.shared;
        let mut state = shared.state();
        // While closing, the thread still takes batches, so a line waits its
        // turn rather than overtaking those queued.
        while state.queued.len() >= LIMIT && !state.closed {
            state = shared
                .room
                .wait(state)
                .unwrap_or_else(PoisonError::into_inner);
        }
        if state.closed {
            drop(state);
            shared.write_out(line);
            return Ok(line.len());
        }
        let before = state.queued.len();
        state.queued.extend_from_slice(line);
        // Wake the thread only for a batch's first line, or for a batch that
        // is now large enough to write at once: every other line is a copy.
        if state.idle {
            state.idle = false;
            shared.wake.notify_one();
        } else if before < WRITE_AT && state.queued.len() >= WRITE_AT {
            shared.wake.notify_one();
        }
        Ok(line.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'queue> MakeWriter<'queue> for LogQueue {
    type Writer = LineWriter<'queue>;

    fn make_writer(&'queue self) -> LineWriter<'queue> {
        LineWriter {
            shared: &self.shared,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write as _;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::{Arc, Mutex};
    use std::time::{Duration, Instant};

    use tracing_subscriber::fmt::MakeWriter as _;

    /// A sink the test reads, which can be held shut like a reader of
    /// standard error that does not keep up.
    #[derive(Clone, Default)]
    struct Sink {
        written: Arc<Mutex<Vec<u8>>>,
        shut: Arc<AtomicBool>,
    }

    impl std::io::Write for Sink {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            while self.shut.load(Ordering::Acquire) {
                std::thread::sleep(Duration::from_millis(1));
            }
            self.written.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    /// Opens a shut [`Sink`] when dropped, so that a failing test unwinds
    /// (the log thread stuck on the sink is joined) rather than hangs.
    struct Opens(Arc<AtomicBool>);

    impl Drop for Opens {
        fn drop(&mut self) {
            self.0.store(false, Ordering::Release);
        }
    }

    impl Sink {
        fn text(&self) -> String {
            String::from_utf8(self.written.lock().unwrap().clone()).unwrap()
        }
    }

    fn log(queue: &super::LogQueue, line: &str) {
        queue.make_writer().write_all(line.as_bytes()).unwrap();
    }

    #[test]
    fn every_line_of_every_thread_arrives_whole_and_in_its_order() {
        let sink = Sink::default();
        let (queue, writing) = super::start(sink.clone()).unwrap();
        let threads: Vec<_> = (0..4)
            .map(|thread| {
                let queue = queue.clone();
                std::thread::spawn(move || {
                    for line in 0..5_000 {
                        log(
                            &queue,
                            &format!("thread {thread} line {line} {}\n", "x".repeat(line % 300)),
                        );
                    }
                })
            })
            .collect();
        for thread in threads {
            thread.join().unwrap();
        }
        drop(writing);
        let text = sink.text();
        let mut next = [0usize; 4];
        for line in text.lines() {
            let mut words = line.split(' ');
            assert_eq!(words.next(), Some("thread"), "{line}");
            let thread: usize = words.next().unwrap().parse().unwrap();
            assert_eq!(words.next(), Some("line"), "{line}");
            let number: usize = words.next().unwrap().parse().unwrap();
            assert_eq!(number, next[thread], "thread {thread}'s lines out of order");
            assert_eq!(words.next().unwrap(), "x".repeat(number % 300), "{line}");
            next[thread] += 1;
        }
        assert_eq!(next, [5_000; 4]);
    }

    #[test]
    fn a_line_is_written_without_waiting_for_more_or_for_shutdown() {
        let sink = Sink::default();
        let (queue, _writing) = super::start(sink.clone()).unwrap();
        log(&queue, "alone\n");
        let asked = Instant::now();
        while sink.text().is_empty() {
            assert!(
                asked.elapsed() < Duration::from_secs(10),
                "the line was never written"
            );
            std::thread::sleep(Duration::from_millis(1));
        }
        assert_eq!(sink.text(), "alone\n");
        log(&queue, "after a pause\n");
        while sink.text() == "alone\n" {
            assert!(
                asked.elapsed() < Duration::from_secs(10),
                "the second line was never written"
            );
            std::thread::sleep(Duration::from_millis(1));
        }
        assert_eq!(sink.text(), "alone\nafter a pause\n");
    }

    #[test]
    fn behind_a_stuck_reader_the_queue_stays_bounded_and_loses_nothing() {
        let sink = Sink::default();
        sink.shut.store(true, Ordering::Release);
        let (queue, writing) = super::start(sink.clone()).unwrap();
        let opens = Opens(Arc::clone(&sink.shut));
        let line = format!("{}\n", "y".repeat(999));
        let lines = 3 * super::LIMIT / line.len();
        let logger = std::thread::spawn({
            let queue = queue.clone();
            let line = line.clone();
            move || {
                for _ in 0..lines {
                    log(&queue, &line);
                }
            }
        });
        // The logger fills the queue and the batch the thread is stuck
        // writing, and then waits for room rather than growing the queue.
        let asked = Instant::now();
        while queue.shared.state().queued.len() < super::LIMIT {
            assert!(
                asked.elapsed() < Duration::from_secs(10),
                "the queue never filled"
            );
            std::thread::sleep(Duration::from_millis(1));
        }
        std::thread::sleep(Duration::from_millis(50));
        assert!(!logger.is_finished(), "the logger did not wait for room");
        assert!(queue.shared.state().queued.len() < super::LIMIT + line.len());
        drop(opens);
        logger.join().unwrap();
        drop(writing);
        assert_eq!(sink.text().len(), lines * line.len());
        // After the thread has stopped, a line goes straight to the sink.
        log(&queue, "late\n");
        assert!(sink.text().ends_with("late\n"));
    }
}
