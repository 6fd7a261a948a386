//! A call's timeout, counted in the time the call itself takes: while guest code runs, and while
//! it waits on the host (a WASI clock it sleeps on), but not while it waits for a thread after
//! yielding at an epoch tick.
//!
//! Why not wall-clock time: calls that share a thread (several isolation calls in one task, or
//! many tasks on a busy 2-core machine) would each count the others' time, so a slow but good
//! message could time out beside a looping one. Counted this way, a call's `timeout_ms` is its
//! own, whoever else runs; and calls can run side by side to find the culprits of a failed batch.
//!
//! The epoch callback ([`CallClock::at_tick`]) enforces the budget while guest code runs; the
//! [`timed`] wrapper counts each poll of the call's future and, while the call waits on the host,
//! arms a timer for what is left of the budget.

use std::future::Future;
use std::pin::pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Wake, Waker};
use std::time::{Duration, Instant};

use wasmtime::Trap;

/// What the epoch callback should do at a tick.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Tick {
    /// The call used its budget: interrupt it.
    Over,
    /// The call has had its share of the thread: yield to the runtime.
    Yield,
    /// The call was resumed less than half a tick ago: run on. Every call resumed after a tick
    /// finds its deadline already passed; yielding at once each time would leave the thread to
    /// whichever call the runtime polls first after each tick.
    Continue,
}

/// The time one call has used, shared by the store's epoch callback and the call's future.
#[derive(Debug)]
pub(crate) struct CallClock {
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    budget: Duration,
    used: Duration,
    /// The thread's CPU time when the current poll of the call's future began, if one is under
    /// way: a poll runs on one thread, and what it takes is that thread's CPU time, so a busy
    /// machine (the OS giving the thread to others) does not eat into the budget.
    polled_since: Option<Duration>,
    /// When the call last returned `Pending` without yielding: it waits on the host since.
    waiting_since: Option<Instant>,
    /// The current poll yielded at an epoch tick (so its `Pending` is a wait for a thread).
    yielded: bool,
}

impl CallClock {
    pub(crate) fn new() -> Self {
        Self {
            state: Mutex::new(State {
                budget: Duration::ZERO,
                used: Duration::ZERO,
                polled_since: None,
                waiting_since: None,
                yielded: false,
            }),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Start a call that may take `budget`.
    pub(crate) fn arm(&self, budget: Duration) {
        let mut s = self.state();
        s.budget = budget;
        s.used = Duration::ZERO;
        s.polled_since = None;
        s.waiting_since = None;
        s.yielded = false;
    }

    /// Called at an epoch tick while guest code runs (inside a poll).
    /// `cpu`: the thread's CPU time now ([`thread_cpu`]).
    pub(crate) fn at_tick(&self, cpu: Duration, tick: Duration) -> Tick {
        let mut s = self.state();
        // Outside a poll (a call driven with no `timed` around it), the time from the first
        // tick counts.
        let since = s.polled_since.get_or_insert(cpu);
        let this_poll = cpu.saturating_sub(*since);
        if s.used + this_poll >= s.budget {
            Tick::Over
        } else if this_poll < tick / 2 {
            Tick::Continue
        } else {
            s.yielded = true;
            Tick::Yield
        }
    }

    /// A poll begins: a wait on the host since the last poll counts, up to when the host woke
    /// the call (`woken_at`; after that it waited for a thread), or up to now.
    fn poll_begins(
        &self,
        now: Instant,
        cpu: Duration,
        woken_at: Option<Instant>,
    ) -> Result<(), Trap> {
        let mut s = self.state();
        if let Some(since) = s.waiting_since.take() {
            s.used += woken_at
                .unwrap_or(now)
                .min(now)
                .saturating_duration_since(since);
        }
        if s.used >= s.budget {
            return Err(Trap::Interrupt);
        }
        s.polled_since = Some(cpu);
        s.yielded = false;
        Ok(())
    }

    /// A poll ended; `pending` if the call is not done, `ready_again` if it was woken during the
    /// poll (it yielded: it waits for a thread, not for the host). Returns how much of the budget
    /// is left when the call now waits on the host.
    fn poll_ends(
        &self,
        now: Instant,
        cpu: Duration,
        pending: bool,
        ready_again: bool,
    ) -> Option<Duration> {
        let mut s = self.state();
        if let Some(since) = s.polled_since.take() {
            s.used += cpu.saturating_sub(since);
        }
        if !pending || s.yielded || ready_again {
            return None;
        }
        s.waiting_since = Some(now);
        Some(s.budget.saturating_sub(s.used))
    }
}

/// Drive `call` (one call into the guest, its clock armed) so that its time is counted by
/// `clock`: a call that waits on the host past its budget ends with [`Trap::Interrupt`], as one
/// that runs past it does at the next epoch tick. The call's future is then dropped, which
/// cancels the guest; the instance must not be used again.
pub(crate) async fn timed<T>(
    clock: &CallClock,
    call: impl Future<Output = wasmtime::Result<T>>,
) -> wasmtime::Result<T> {
    let mut call = pin!(call);
    let mut timer: Option<std::pin::Pin<Box<tokio::time::Sleep>>> = None;
    let wakes = Arc::new(WakeTime::default());
    let waker = Waker::from(wakes.clone());
    std::future::poll_fn(|cx| {
        if let Err(trap) = clock.poll_begins(Instant::now(), thread_cpu(), wakes.take()) {
            return Poll::Ready(Err(trap.into()));
        }
        wakes.forward_to(cx.waker());
        let polled = call.as_mut().poll(&mut Context::from_waker(&waker));
        let ready_again = wakes.take().is_some();
        let waiting = clock.poll_ends(
            Instant::now(),
            thread_cpu(),
            polled.is_pending(),
            ready_again,
        );
        if polled.is_ready() {
            return polled;
        }
        if let Some(left) = waiting {
            // Waiting on the host: wake up when the budget is spent, to end the call then.
            let deadline = tokio::time::Instant::now() + left;
            match &mut timer {
                Some(sleep) => sleep.as_mut().reset(deadline),
                None => {
                    timer = Some(Box::pin(
                        wasmtime_wasi::runtime::with_ambient_tokio_runtime(|| {
                            tokio::time::sleep_until(deadline)
                        }),
                    ));
                }
            }
            if let Some(sleep) = &mut timer
                && sleep.as_mut().poll(cx).is_ready()
            {
                return Poll::Ready(Err(Trap::Interrupt.into()));
            }
        }
        Poll::Pending
    })
    .await
}

/// The CPU time the calling thread has used (on Unix; elsewhere the time since the process
/// started, which counts the OS's preemptions too).
pub(crate) fn thread_cpu() -> Duration {
    #[cfg(unix)]
    {
        let mut ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: `ts` is a valid, writable timespec for the call to fill.
        #[allow(unsafe_code)]
        let ok = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &raw mut ts) } == 0;
        if ok {
            return Duration::new(
                u64::try_from(ts.tv_sec).unwrap_or(0),
                u32::try_from(ts.tv_nsec).unwrap_or(0),
            );
        }
    }
    static START: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    START.get_or_init(Instant::now).elapsed()
}

/// The call's waker: it notes when the call was first woken since it was last polled, and
/// passes the wake on to the task.
#[derive(Default)]
struct WakeTime {
    woken_at: Mutex<Option<Instant>>,
    task: Mutex<Option<Waker>>,
}

impl WakeTime {
    /// When the call was woken since the last `take`, if it was.
    fn take(&self) -> Option<Instant> {
        self.woken_at
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
    }

    fn forward_to(&self, task: &Waker) {
        let mut current = self.task.lock().unwrap_or_else(|e| e.into_inner());
        if !current.as_ref().is_some_and(|w| w.will_wake(task)) {
            *current = Some(task.clone());
        }
    }
}

impl Wake for WakeTime {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.woken_at
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get_or_insert_with(Instant::now);
        let task = self.task.lock().unwrap_or_else(|e| e.into_inner()).clone();
        if let Some(task) = task {
            task.wake();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TICK: Duration = Duration::from_millis(1);
    const C0: Duration = Duration::from_secs(5);

    #[test]
    fn time_spent_waiting_for_a_thread_after_a_yield_is_not_counted() {
        let clock = CallClock::new();
        clock.arm(Duration::from_millis(10));
        let t0 = Instant::now();
        clock.poll_begins(t0, C0, None).unwrap();
        assert_eq!(clock.at_tick(C0 + 2 * TICK, TICK), Tick::Yield);
        assert_eq!(
            clock.poll_ends(t0 + 2 * TICK, C0 + 2 * TICK, true, true),
            None,
            "a yield"
        );
        // A second later (other calls had the thread), the call resumes with 8 ms left.
        let t1 = t0 + Duration::from_secs(1);
        let c1 = C0 + 2 * TICK;
        clock.poll_begins(t1, c1, None).unwrap();
        assert_eq!(clock.at_tick(c1, TICK), Tick::Continue, "just resumed");
        assert_eq!(clock.at_tick(c1 + 7 * TICK, TICK), Tick::Yield);
        assert_eq!(clock.at_tick(c1 + 8 * TICK, TICK), Tick::Over);
    }

    #[test]
    fn a_poll_counts_the_threads_cpu_time_not_the_clock() {
        let clock = CallClock::new();
        clock.arm(Duration::from_millis(10));
        let t0 = Instant::now();
        clock.poll_begins(t0, C0, None).unwrap();
        // The OS gave the thread away for a second; the guest ran 3 ms of it.
        assert_eq!(clock.at_tick(C0 + 3 * TICK, TICK), Tick::Yield);
        clock.poll_ends(t0 + Duration::from_secs(1), C0 + 3 * TICK, true, true);
        clock
            .poll_begins(t0 + Duration::from_secs(1), C0 + 3 * TICK, None)
            .unwrap();
        assert_eq!(clock.at_tick(C0 + 9 * TICK, TICK), Tick::Yield);
        assert_eq!(clock.at_tick(C0 + 10 * TICK, TICK), Tick::Over);
    }

    #[test]
    fn time_spent_waiting_on_the_host_is_counted() {
        let clock = CallClock::new();
        clock.arm(Duration::from_millis(10));
        let t0 = Instant::now();
        clock.poll_begins(t0, C0, None).unwrap();
        assert_eq!(
            clock.poll_ends(t0 + 3 * TICK, C0 + 3 * TICK, true, false),
            Some(Duration::from_millis(7)),
            "pending without a yield: a wait on the host, with 7 ms left"
        );
        // The host answered at +4 ms; the call got its thread back at +50 ms: 1 ms counted.
        let c1 = C0 + 3 * TICK;
        assert!(
            clock
                .poll_begins(t0 + 50 * TICK, c1, Some(t0 + 4 * TICK))
                .is_ok()
        );
        assert_eq!(
            clock.poll_ends(t0 + 50 * TICK, c1, true, false),
            Some(6 * TICK)
        );
        assert!(
            matches!(
                clock.poll_begins(t0 + 70 * TICK, c1, None),
                Err(Trap::Interrupt)
            ),
            "not woken by the host within the budget"
        );
    }

    #[test]
    fn a_call_outside_a_poll_counts_from_its_first_tick() {
        let clock = CallClock::new();
        clock.arm(Duration::from_millis(10));
        assert_eq!(clock.at_tick(C0, TICK), Tick::Continue);
        assert_eq!(clock.at_tick(C0 + 11 * TICK, TICK), Tick::Over);
    }

    #[test]
    fn the_threads_cpu_time_grows_with_work_only() {
        let before = thread_cpu();
        std::thread::sleep(Duration::from_millis(50));
        let slept = thread_cpu() - before;
        let mut x = 0u64;
        let spin = Instant::now();
        while spin.elapsed() < Duration::from_millis(50) {
            x = std::hint::black_box(x.wrapping_add(1));
        }
        let spun = thread_cpu() - before - slept;
        assert!(spun > slept, "spinning {spun:?}, sleeping {slept:?}");
    }
}
