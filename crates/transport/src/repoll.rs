//! Polling a future again, within the same poll, when it woke itself.
//!
//! hyper hands work between the halves of a connection through channels
//! that wake the other half: a request handed to its HTTP/1 connection, the
//! answer handed back, a server's request body asking its dispatcher for
//! more. When one task polls both halves (FrameX's client drives its
//! connection from the calling task; a server's connection task polls the
//! handler), that wake-up is the task waking itself, which Tokio's
//! multi-threaded scheduler takes for a yield: the task goes to the back of
//! the run queue and an idle worker thread is woken to steal it, a futex
//! call and a context switch or two per request, and the connection's data
//! moving to the other core. At one call in flight that was most of a hop's
//! added latency.
//!
//! [`Repoll`] and [`SelfWaker`] hand the future a waker of their own. While
//! the future is being polled, a wake-up through it is only noted, and the
//! future is polled again at once (at most [`MAX_REPOLLS`] times in a row,
//! then the task yields for real, so that a future that always wakes itself
//! still lets others run). Outside a poll it wakes the task as usual.
//!
//! No crate does this: `select!`, `join!` and their kin hand the future the
//! task's own waker, and `futures`' `FuturesUnordered`, which polls a
//! self-woken future again, yields to the scheduler after the second one.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::task::{Context, Poll, Wake, Waker};

use atomic_waker::AtomicWaker;

/// How many times in a row a future that woke itself is polled again
/// before its task yields. One request wakes its connection's task once or
/// twice; a future woken more often than this is left to the scheduler.
pub const MAX_REPOLLS: usize = 8;

/// Not being polled: a wake-up wakes the task.
const IDLE: u8 = 0;
/// Being polled: a wake-up is noted in [`WOKEN`].
const POLLING: u8 = 1;
const WOKEN: u8 = 2;

#[derive(Debug, Default)]
struct Signal {
    state: AtomicU8,
    task: AtomicWaker,
}

impl Wake for Signal {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        let noted = self
            .state
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |state| {
                (state != IDLE).then_some(state | WOKEN)
            })
            .is_ok();
        if !noted {
            self.task.wake();
        }
    }
}

/// A waker to poll futures with that turns their wake-ups during the poll
/// into another poll (see the [module](self)). Made once and used for every
/// poll, as a connection does for each of its calls. Not `Clone`: two
/// polls at once through one would each take the other's wake-ups for their
/// own.
#[derive(Debug)]
pub struct SelfWaker {
    signal: Arc<Signal>,
    waker: Waker,
}

impl Default for SelfWaker {
    fn default() -> Self {
        SelfWaker::new()
    }
}

impl SelfWaker {
    /// A waker of its own, not yet tied to a task.
    pub fn new() -> SelfWaker {
        let signal = Arc::new(Signal::default());
        let waker = Waker::from(signal.clone());
        SelfWaker { signal, waker }
    }

    /// Runs `poll` with this waker in place of `cx`'s, again while it wakes
    /// itself and is still pending (up to [`MAX_REPOLLS`] times); a wake-up
    /// after it returns wakes `cx`'s task.
    pub fn poll<T>(
        &self,
        cx: &mut Context<'_>,
        mut poll: impl FnMut(&mut Context<'_>) -> Poll<T>,
    ) -> Poll<T> {
        self.signal.task.register(cx.waker());
        let mut own = Context::from_waker(&self.waker);
        for _ in 0..MAX_REPOLLS {
            self.signal.state.store(POLLING, Ordering::Release);
            let polled = poll(&mut own);
            let state = self.signal.state.swap(IDLE, Ordering::AcqRel);
            if polled.is_ready() || state & WOKEN == 0 {
                return polled;
            }
        }
        // Woken every time: the scheduler decides when it goes on.
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}

pin_project_lite::pin_project! {
    /// `future`, polled through a [`SelfWaker`]: a task that polls several
    /// halves of one exchange (a connection and its handler) goes from one
    /// to the next without a trip through the scheduler.
    #[derive(Debug)]
    pub struct Repoll<F> {
        #[pin]
        future: F,
        waker: SelfWaker,
    }
}

impl<F> Repoll<F> {
    /// `future`, polled again at once when it wakes itself.
    pub fn new(future: F) -> Repoll<F> {
        Repoll {
            future,
            waker: SelfWaker::new(),
        }
    }
}

impl<F: Future> Future for Repoll<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let mut this = self.project();
        this.waker.poll(cx, |own| this.future.as_mut().poll(own))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    /// A waker that counts its wake-ups.
    #[derive(Default)]
    struct Counter(AtomicUsize);

    impl Wake for Counter {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    fn counting() -> (Arc<Counter>, Waker) {
        let counter = Arc::new(Counter::default());
        (counter.clone(), Waker::from(counter))
    }

    #[test]
    fn a_future_that_wakes_itself_is_polled_again_without_waking_the_task() {
        let (task, waker) = counting();
        let mut cx = Context::from_waker(&waker);
        // Wakes itself twice, as a request handed to its connection and
        // the answer handed back do, then is ready.
        let mut polls = 0;
        let polled = SelfWaker::new().poll(&mut cx, |own| {
            polls += 1;
            if polls < 3 {
                own.waker().wake_by_ref();
                Poll::Pending
            } else {
                Poll::Ready(polls)
            }
        });
        assert_eq!(polled, Poll::Ready(3));
        assert_eq!(task.0.load(Ordering::SeqCst), 0, "the task was woken");
    }

    #[test]
    fn a_wake_up_after_the_poll_wakes_the_task() {
        let (task, waker) = counting();
        let mut cx = Context::from_waker(&waker);
        let mut kept = None;
        let polled: Poll<()> = SelfWaker::new().poll(&mut cx, |own| {
            kept = Some(own.waker().clone());
            Poll::Pending
        });
        assert!(polled.is_pending());
        assert_eq!(task.0.load(Ordering::SeqCst), 0);
        // The socket became readable, on another thread perhaps.
        std::thread::spawn(move || kept.unwrap().wake())
            .join()
            .unwrap();
        assert_eq!(task.0.load(Ordering::SeqCst), 1, "the wake-up was lost");
    }

    #[test]
    fn the_task_that_polled_last_is_the_one_woken() {
        let self_waker = SelfWaker::new();
        let (first, first_waker) = counting();
        let (second, second_waker) = counting();
        let mut kept = None;
        for waker in [&first_waker, &second_waker] {
            let _ = self_waker.poll(&mut Context::from_waker(waker), |own| {
                kept = Some(own.waker().clone());
                Poll::<()>::Pending
            });
        }
        kept.unwrap().wake();
        assert_eq!(first.0.load(Ordering::SeqCst), 0);
        assert_eq!(second.0.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn a_future_that_always_wakes_itself_yields_to_the_scheduler() {
        let (task, waker) = counting();
        let mut cx = Context::from_waker(&waker);
        let mut polls = 0;
        let polled: Poll<()> = SelfWaker::new().poll(&mut cx, |own| {
            polls += 1;
            own.waker().wake_by_ref();
            Poll::Pending
        });
        assert!(polled.is_pending());
        assert_eq!(polls, MAX_REPOLLS);
        assert_eq!(
            task.0.load(Ordering::SeqCst),
            1,
            "the task must be woken to go on"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn repoll_runs_a_future_to_its_end_across_threads() {
        let (sender, receiver) = tokio::sync::oneshot::channel();
        let task = tokio::spawn(Repoll::new(async move {
            tokio::task::yield_now().await;
            receiver.await.unwrap()
        }));
        std::thread::spawn(move || {
            std::thread::sleep(std::time::Duration::from_millis(20));
            sender.send(7).unwrap();
        });
        assert_eq!(task.await.unwrap(), 7);
    }
}
