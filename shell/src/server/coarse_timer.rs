//! hyper's timer for the server's HTTP connections, which use it for one deadline: a client
//! has `--header-timeout` seconds to send a request's head (SPEC.md, "TCP").
//!
//! hyper sets that deadline afresh for every request. With async-io's timers each one costs
//! the reactor a wake-up: registering a timer writes the reactor's eventfd so that its
//! sleeping thread recomputes its timeout, which here is this thread, and its next
//! `epoll_pwait` then returns at once (BENCHMARKS.md, session 9). A [`CoarseTimer`] keeps its
//! deadlines in a table instead, which one task sweeps every [`TICK`]: a deadline costs a table
//! entry, and fires up to one tick late.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

/// How often the deadlines are checked.
pub const TICK: Duration = Duration::from_secs(1);

/// Deadlines for hyper, swept by [`CoarseTimer::sweep`].
#[derive(Clone, Default)]
pub struct CoarseTimer {
    waiting: Arc<Mutex<Waiting>>,
}

/// The sleeps that have been polled and not yet finished or dropped: id → deadline and the
/// task to wake.
type Waiting = HashMap<u64, (Instant, Waker)>;

impl CoarseTimer {
    /// A timer with nothing waiting; it fires nothing until [`sweep`](Self::sweep) runs.
    pub fn new() -> Self {
        Self::default()
    }

    /// Every `tick`, wakes the tasks whose deadline has passed. Runs for as long as the
    /// task that awaits it (the server's executor, for the server's life).
    pub async fn sweep(self, tick: Duration) {
        let mut ticks = async_io::Timer::interval(tick);
        loop {
            futures::StreamExt::next(&mut ticks).await;
            let now = Instant::now();
            for (deadline, waker) in lock(&self.waiting).values() {
                if *deadline <= now {
                    waker.wake_by_ref();
                }
            }
        }
    }

    /// Sleeps registered and not finished.
    #[cfg(test)]
    fn waiting(&self) -> usize {
        lock(&self.waiting).len()
    }
}

fn lock(waiting: &Mutex<Waiting>) -> std::sync::MutexGuard<'_, Waiting> {
    // A panic while holding the lock leaves the table as consistent as before it.
    waiting.lock().unwrap_or_else(|e| e.into_inner())
}

/// One deadline.
struct CoarseSleep {
    id: u64,
    deadline: Instant,
    waiting: Arc<Mutex<Waiting>>,
}

impl Future for CoarseSleep {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let mut waiting = lock(&self.waiting);
        if Instant::now() >= self.deadline {
            waiting.remove(&self.id);
            return Poll::Ready(());
        }
        match waiting.get_mut(&self.id) {
            Some((deadline, waker)) => {
                *deadline = self.deadline;
                if !waker.will_wake(cx.waker()) {
                    *waker = cx.waker().clone();
                }
            }
            None => {
                waiting.insert(self.id, (self.deadline, cx.waker().clone()));
            }
        }
        Poll::Pending
    }
}

impl Drop for CoarseSleep {
    fn drop(&mut self) {
        lock(&self.waiting).remove(&self.id);
    }
}

impl hyper::rt::Sleep for CoarseSleep {}

impl hyper::rt::Timer for CoarseTimer {
    fn sleep(&self, duration: Duration) -> Pin<Box<dyn hyper::rt::Sleep>> {
        self.sleep_until(Instant::now() + duration)
    }

    fn sleep_until(&self, deadline: Instant) -> Pin<Box<dyn hyper::rt::Sleep>> {
        static NEXT_ID: AtomicU64 = AtomicU64::new(0);
        Box::pin(CoarseSleep { id: NEXT_ID.fetch_add(1, Ordering::Relaxed), deadline, waiting: self.waiting.clone() })
    }

    fn reset(&self, sleep: &mut Pin<Box<dyn hyper::rt::Sleep>>, new_deadline: Instant) {
        match sleep.as_mut().downcast_mut_pin::<CoarseSleep>() {
            Some(mut s) => {
                s.deadline = new_deadline;
                if let Some((deadline, _)) = lock(&s.waiting).get_mut(&s.id) {
                    *deadline = new_deadline;
                }
            }
            None => *sleep = self.sleep_until(new_deadline),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::rc::Rc;
    use std::time::{Duration, Instant};

    use async_executor::LocalExecutor;
    use hyper::rt::Timer;

    use super::CoarseTimer;

    /// Runs `f` with a timer swept every 10 ms.
    fn with_timer<T>(f: impl AsyncFnOnce(CoarseTimer) -> T) -> T {
        let ex = Rc::new(LocalExecutor::new());
        let timer = CoarseTimer::new();
        ex.spawn(timer.clone().sweep(Duration::from_millis(10))).detach();
        async_io::block_on(ex.run(f(timer)))
    }

    #[test]
    fn a_sleep_ends_after_its_deadline_within_a_tick_or_so() {
        with_timer(async |timer| {
            let start = Instant::now();
            timer.sleep(Duration::from_millis(50)).await;
            let took = start.elapsed();
            assert!(took >= Duration::from_millis(50), "ended early, after {took:?}");
            assert!(took < Duration::from_millis(500), "ended far too late, after {took:?}");
            assert_eq!(timer.waiting(), 0, "a finished sleep leaves the table");
        });
    }

    #[test]
    fn a_dropped_sleep_leaves_the_table_and_a_reset_moves_the_deadline() {
        with_timer(async |timer| {
            let mut sleep = timer.sleep(Duration::from_secs(3600));
            assert!(futures::poll!(sleep.as_mut()).is_pending());
            assert_eq!(timer.waiting(), 1);
            drop(sleep);
            assert_eq!(timer.waiting(), 0);

            // hyper resets its header-read deadline on a kept-alive connection.
            let mut sleep = timer.sleep(Duration::from_secs(3600));
            assert!(futures::poll!(sleep.as_mut()).is_pending());
            let start = Instant::now();
            timer.reset(&mut sleep, Instant::now() + Duration::from_millis(30));
            sleep.await;
            let took = start.elapsed();
            assert!(took >= Duration::from_millis(30) && took < Duration::from_millis(500), "took {took:?}");
        });
    }
}
