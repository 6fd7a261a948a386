//! The sink circuit breaker: when sink writes keep failing, the pipeline stops pulling and
//! probes with one batch at a time, with backoff, instead of pulling and nacking in a loop
//! (a nack storm that hammers the broker and the logs while the sink is down).
//!
//! Closed: pull as usual; `failures` consecutive failed writes (any sink, the dead-letter sink
//! too) open it. Open: pull nothing until the probe time. Probing: one batch was let through;
//! a confirmed write closes the breaker, a failed one opens it again with a longer delay. A
//! probe whose batch writes nothing (all filtered) lets another through after the same delay.

use std::collections::HashMap;
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
    /// Consecutive failed writes, per sink.
    Closed { failures: HashMap<String, u32> },
    /// `sink` kept failing; the next probe is let through at `until`.
    Open {
        sink: String,
        until: Instant,
        trips: u32,
    },
    /// One probe batch is in flight; another is let through only when it settled without
    /// writing to `sink`, or at `until`, a fallback past every deadline of its writes.
    Probing {
        sink: String,
        until: Instant,
        trips: u32,
    },
}

pub(crate) struct Breaker {
    name: Arc<str>,
    /// Consecutive failed writes to one sink that open the breaker.
    threshold: u32,
    retry: RetryPolicy,
    /// Longest a probe batch's writes can take: each write's deadline, for every attempt.
    probe_limit: Duration,
    state: Mutex<State>,
    changed: Notify,
    stats: Arc<PipelineStats>,
}

/// Held by the probe batch's task: when it is dropped (the batch settled, or was dropped at
/// shutdown) without its write deciding the breaker, the next probe may go.
pub(crate) struct Probe {
    breaker: Arc<Breaker>,
}

impl Drop for Probe {
    fn drop(&mut self) {
        self.breaker.probe_settled(Instant::now());
    }
}

/// Shortest wait between probes, whatever the retry policy says (its delays may be 0).
const MIN_PROBE_DELAY: Duration = Duration::from_millis(50);

impl Breaker {
    pub fn new(
        name: Arc<str>,
        threshold: u32,
        retry: RetryPolicy,
        sink_timeout: Duration,
        stats: Arc<PipelineStats>,
    ) -> Self {
        let probe_limit = sink_timeout.saturating_mul(retry.max_attempts.max(1));
        Breaker {
            name,
            threshold: threshold.max(1),
            retry,
            probe_limit,
            state: Mutex::new(State::Closed {
                failures: HashMap::new(),
            }),
            changed: Notify::new(),
            stats,
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The wait before probe number `trips`.
    fn delay(&self, trips: u32) -> Duration {
        backoff(&self.retry, trips.saturating_add(1)).max(MIN_PROBE_DELAY)
    }

    /// A write to `sink` was confirmed (`ok`: a rejection is an answer too), or failed and will
    /// be retried or nacked.
    pub fn record(&self, sink: &str, ok: bool) {
        self.record_at(sink, ok, Instant::now());
    }

    fn record_at(&self, sink: &str, ok: bool, now: Instant) {
        let mut state = self.state();
        let next = match &mut *state {
            State::Closed { failures } => {
                if ok {
                    failures.remove(sink);
                    return;
                }
                let n = failures.entry(sink.to_owned()).or_default();
                *n += 1;
                if *n < self.threshold {
                    return;
                }
                let delay = self.delay(1);
                warn!(pipeline = %self.name, sink, failures = self.threshold, probe_in_ms = delay.as_millis() as u64, "the sink keeps failing: the pipeline stops pulling and probes it with one batch at a time");
                self.stats.record_error(format!(
                    "sink `{sink}`: {} writes failed in a row; pulling stopped, probing with backoff",
                    self.threshold
                ));
                self.stats.set_breaker_open(true);
                State::Open {
                    sink: sink.to_owned(),
                    until: now + delay,
                    trips: 1,
                }
            }
            // Only the sink that tripped it decides; the others' answers say nothing about it.
            State::Open { sink: down, .. } | State::Probing { sink: down, .. } if down != sink => {
                return;
            }
            State::Open { trips, .. } | State::Probing { trips, .. } if ok => {
                info!(pipeline = %self.name, sink, probes = *trips, "the sink answers again; pulling resumes");
                self.stats.set_breaker_open(false);
                State::Closed {
                    failures: HashMap::new(),
                }
            }
            State::Probing { trips, .. } => {
                let trips = trips.saturating_add(1);
                State::Open {
                    sink: sink.to_owned(),
                    until: now + self.delay(trips),
                    trips,
                }
            }
            // Writes of batches pulled before it opened still fail meanwhile.
            State::Open { .. } => return,
        };
        *state = next;
        drop(state);
        self.changed.notify_waiters();
    }

    /// The probe batch settled: if its writes did not decide (it wrote nothing to the sink
    /// that is down), the next probe goes after the usual delay.
    fn probe_settled(&self, now: Instant) {
        let mut state = self.state();
        if let State::Probing { sink, trips, .. } = &*state {
            *state = State::Open {
                sink: sink.clone(),
                until: now + self.delay(*trips),
                trips: *trips,
            };
            drop(state);
            self.changed.notify_waiters();
        }
    }

    /// Wait until a pull is allowed: at once while closed (`None`); while open, until the next
    /// probe, which is let through with a [`Probe`] for its batch to hold until it settles.
    /// Cancel-safe: nothing changes until it returns.
    pub async fn admit(self: &Arc<Self>) -> Option<Probe> {
        loop {
            let notified = self.changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let until = match self.try_admit(Instant::now()) {
                Ok(probe) => return probe,
                Err(until) => until,
            };
            tokio::select! {
                () = tokio::time::sleep_until(until) => {}
                () = &mut notified => {}
            }
        }
    }

    /// [`Breaker::admit`] at `now`, without waiting: `Err(until)` when no pull is allowed yet.
    fn try_admit(self: &Arc<Self>, now: Instant) -> Result<Option<Probe>, Instant> {
        let mut state = self.state();
        let (sink, until, trips) = match &*state {
            State::Closed { .. } => return Ok(None),
            State::Open { sink, until, trips } | State::Probing { sink, until, trips } => {
                (sink.clone(), *until, *trips)
            }
        };
        if now < until {
            return Err(until);
        }
        PipelineStats::add(&self.stats.breaker_probes, 1);
        *state = State::Probing {
            sink,
            until: now + self.delay(trips) + self.probe_limit,
            trips,
        };
        Ok(Some(Probe {
            breaker: self.clone(),
        }))
    }

    /// The pipeline stopped: nothing is being held back any more.
    pub fn stopped(&self) {
        self.stats.set_breaker_open(false);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn breaker() -> Arc<Breaker> {
        let retry = RetryPolicy {
            max_attempts: 3,
            base_delay_ms: 100,
            max_delay_ms: 400,
            jitter: 0.0,
        };
        Arc::new(Breaker::new(
            "t".into(),
            3,
            retry,
            Duration::from_secs(1),
            Arc::new(PipelineStats::default()),
        ))
    }

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    /// The state machine on explicit instants (no clock, no sleeping).
    #[test]
    fn opens_per_sink_probes_one_batch_at_a_time_and_closes_on_that_sinks_success() {
        let b = breaker();
        let t0 = Instant::now();
        b.record_at("out", false, t0);
        b.record_at("out", false, t0);
        b.record_at("other", true, t0);
        assert!(
            matches!(b.try_admit(t0), Ok(None)),
            "closed below the threshold"
        );
        b.record_at("out", true, t0);
        b.record_at("out", false, t0);
        b.record_at("out", false, t0);
        b.record_at("audit", false, t0);
        assert!(!b.stats.breaker_open(), "counts are per sink");
        b.record_at("out", false, t0);
        assert!(b.stats.breaker_open());
        assert_eq!(
            b.try_admit(t0).err(),
            Some(t0 + ms(100)),
            "open: no pull for 100 ms"
        );
        b.record_at("other", true, t0);
        assert!(
            b.try_admit(t0).is_err(),
            "another sink's success does not close it"
        );
        let probe = b
            .try_admit(t0 + ms(110))
            .unwrap()
            .expect("the probe is let through");
        assert!(
            b.try_admit(t0 + ms(600)).is_err(),
            "one probe at a time, until it settles"
        );
        b.record_at("out", false, t0 + ms(600));
        drop(probe);
        assert_eq!(
            b.try_admit(t0 + ms(600)).err(),
            Some(t0 + ms(800)),
            "a failed probe doubles the wait (100 ms, then 200)"
        );
        let probe = b
            .try_admit(t0 + ms(810))
            .unwrap()
            .expect("the second probe");
        b.probe_settled(t0 + ms(900));
        drop(probe);
        assert_eq!(
            b.try_admit(t0 + ms(900)).err(),
            Some(t0 + ms(1100)),
            "a probe that wrote nothing waits the delay again"
        );
        let _probe = b
            .try_admit(t0 + ms(1100))
            .unwrap()
            .expect("the third probe");
        b.record_at("out", true, t0 + ms(1150));
        assert!(
            matches!(b.try_admit(t0 + ms(1150)), Ok(None)),
            "closed again"
        );
        assert!(!b.stats.breaker_open());
        assert_eq!(PipelineStats::get(&b.stats.breaker_probes), 3);
    }
}
