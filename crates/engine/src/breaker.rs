//! The sink circuit breaker: when sink writes keep failing, the pipeline stops pulling and
//! probes with one batch at a time, with backoff, instead of pulling and nacking in a loop
//! (a nack storm that hammers the broker and the logs while the sink is down).
//!
//! Closed: pull as usual; `failures` consecutive failed writes (any sink, the dead-letter sink
//! too) open it. Open: pull nothing until the probe time. Probing: one batch was let through;
//! a confirmed write closes the breaker, a failed one opens it again with a longer delay. A
//! probe whose batch writes nothing (all filtered) lets another through after the same delay.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;
use tracing::{info, warn};

use crate::retry::backoff;
use crate::settings::RetryPolicy;
use crate::stats::PipelineStats;

#[derive(Debug)]
enum State {
    Closed { failures: u32 },
    Open { until: Instant, trips: u32 },
    Probing { until: Instant, trips: u32 },
}

pub(crate) struct Breaker {
    name: Arc<str>,
    /// Consecutive failed writes that open the breaker.
    threshold: u32,
    retry: RetryPolicy,
    state: Mutex<State>,
    changed: Notify,
    stats: Arc<PipelineStats>,
}

impl Breaker {
    pub fn new(
        name: Arc<str>,
        threshold: u32,
        retry: RetryPolicy,
        stats: Arc<PipelineStats>,
    ) -> Self {
        Breaker {
            name,
            threshold: threshold.max(1),
            retry,
            state: Mutex::new(State::Closed { failures: 0 }),
            changed: Notify::new(),
            stats,
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The wait before probe number `trips`.
    fn delay(&self, trips: u32) -> Duration {
        backoff(&self.retry, trips.saturating_add(1))
    }

    /// A write to `sink` was confirmed (`ok`), or failed and will be retried or nacked.
    pub fn record(&self, sink: &str, ok: bool) {
        let mut state = self.state();
        let next = match (&*state, ok) {
            (State::Closed { failures: 0 }, true) => return,
            (State::Closed { .. }, true) => State::Closed { failures: 0 },
            (State::Open { trips, .. } | State::Probing { trips, .. }, true) => {
                info!(pipeline = %self.name, sink, probes = trips, "the sink answers again; pulling resumes");
                self.stats.set_breaker_open(false);
                State::Closed { failures: 0 }
            }
            (State::Closed { failures }, false) if failures + 1 < self.threshold => State::Closed {
                failures: failures + 1,
            },
            (State::Closed { .. }, false) => {
                let delay = self.delay(1);
                warn!(pipeline = %self.name, sink, failures = self.threshold, probe_in_ms = delay.as_millis() as u64, "the sink keeps failing: the pipeline stops pulling and probes it with one batch at a time");
                self.stats.record_error(format!(
                    "sink `{sink}`: {} writes failed in a row; pulling stopped, probing with backoff",
                    self.threshold
                ));
                self.stats.set_breaker_open(true);
                State::Open {
                    until: Instant::now() + delay,
                    trips: 1,
                }
            }
            (State::Probing { trips, .. }, false) => {
                let trips = trips.saturating_add(1);
                State::Open {
                    until: Instant::now() + self.delay(trips),
                    trips,
                }
            }
            // Writes of batches pulled before it opened still fail meanwhile.
            (State::Open { .. }, false) => return,
        };
        *state = next;
        drop(state);
        self.changed.notify_waiters();
    }

    /// Wait until a pull is allowed: at once while closed; while open, until the next probe
    /// (then one pull is let through).
    pub async fn admit(&self) {
        loop {
            let notified = self.changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let until = {
                let mut state = self.state();
                match *state {
                    State::Closed { .. } => return,
                    State::Open { until, trips } | State::Probing { until, trips }
                        if Instant::now() >= until =>
                    {
                        PipelineStats::add(&self.stats.breaker_probes, 1);
                        *state = State::Probing {
                            until: Instant::now() + self.delay(trips),
                            trips,
                        };
                        return;
                    }
                    State::Open { until, .. } | State::Probing { until, .. } => until,
                }
            };
            tokio::select! {
                () = tokio::time::sleep_until(until) => {}
                () = &mut notified => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn breaker() -> Breaker {
        let retry = RetryPolicy {
            max_attempts: 3,
            base_delay_ms: 10,
            max_delay_ms: 40,
            jitter: 0.0,
        };
        Breaker::new("t".into(), 3, retry, Arc::new(PipelineStats::default()))
    }

    async fn admitted(b: &Breaker) -> bool {
        tokio::time::timeout(Duration::from_millis(1), b.admit())
            .await
            .is_ok()
    }

    #[tokio::test(start_paused = true)]
    async fn opens_after_the_threshold_probes_with_backoff_and_closes_on_success() {
        let b = breaker();
        b.record("out", false);
        b.record("out", false);
        assert!(admitted(&b).await, "still closed below the threshold");
        b.record("out", true);
        for _ in 0..3 {
            b.record("out", false);
        }
        assert!(b.stats.breaker_open());
        assert!(!admitted(&b).await, "open: no pull");
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(admitted(&b).await, "the probe is let through");
        assert!(!admitted(&b).await, "one probe at a time");
        b.record("out", false);
        tokio::time::sleep(Duration::from_millis(15)).await;
        assert!(
            !admitted(&b).await,
            "a failed probe doubles the wait (10 ms, then 20)"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
        assert!(admitted(&b).await);
        b.record("out", true);
        assert!(admitted(&b).await, "closed again");
        assert!(!b.stats.breaker_open());
        assert_eq!(PipelineStats::get(&b.stats.breaker_probes), 2);
    }
}
