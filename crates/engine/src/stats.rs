//! What every pipeline keeps about itself while it runs: counters (tests count messages in and
//! out with them; the metrics endpoint reads them at scrape time), latency histograms, the
//! pipeline's state, the pause switch and its last errors.
//!
//! The counters are the single source of truth: `/metrics` and `/pipelines` read these atomics,
//! nothing counts twice.

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, SystemTime};

use tokio::sync::watch;

use sluice_core::connector::{ConnectedFlag, LagGauge};
use sluice_core::transform::ErrorClass;

/// How many recent errors a pipeline remembers for the admin API.
const LAST_ERRORS: usize = 10;

/// Add `message` (cut to about 2 KiB) to `recent`, dropping the oldest past [`LAST_ERRORS`].
fn push_recent(recent: &Mutex<VecDeque<RecordedError>>, message: String) {
    push_ring(
        recent,
        RecordedError {
            at: SystemTime::now(),
            message: cut_message(message),
        },
    );
}

/// An error's text as it is kept: at most about 2 KiB.
fn cut_message(message: String) -> String {
    crate::payload_log::cut(message, 2048)
}

/// Keep `item` as the newest of the last [`LAST_ERRORS`].
fn push_ring<T>(ring: &Mutex<VecDeque<T>>, item: T) {
    let mut ring = ring.lock().unwrap_or_else(|e| e.into_inner());
    if ring.len() == LAST_ERRORS {
        ring.pop_front();
    }
    ring.push_back(item);
}

/// Live counters and state of one pipeline.
#[derive(Debug)]
pub struct PipelineStats {
    /// Deliveries pulled from the source.
    pub received: AtomicU64,
    /// Outputs confirmed by their sinks.
    pub outputs: AtomicU64,
    /// Deliveries acked after all their outputs were confirmed.
    pub acked: AtomicU64,
    /// Deliveries for which the handlers produced no output.
    pub filtered: AtomicU64,
    /// Handler retries after transient errors.
    pub retries: AtomicU64,
    /// Deliveries confirmed in the dead-letter sink.
    pub dead_lettered: AtomicU64,
    /// `invalid` deliveries discarded by policy.
    pub discarded: AtomicU64,
    /// Deliveries handed back to the source for redelivery (a sink kept failing).
    pub nacked: AtomicU64,
    /// Sink writes that failed (each is retried).
    pub sink_errors: AtomicU64,
    /// Pulls from the source that failed (lost connection and the like; each is retried).
    pub source_errors: AtomicU64,
    /// Deliveries settled in any way.
    pub settled: AtomicU64,
    /// Deliveries pulled and not yet settled.
    pub in_flight: AtomicU64,
    /// Messages waiting in the broker for this pipeline, when the source reports it (set at start).
    pub consumer_lag: OnceLock<LagGauge>,
    /// The source's connection state, when it reports one (set at start).
    pub source_connected: OnceLock<ConnectedFlag>,
    /// Dead-lettered deliveries by error class (indexed by [`ErrorClass::index`]).
    pub dead_lettered_by_class: [AtomicU64; ErrorClass::COUNT],
    /// Time spent waiting for the rate limiter, in nanoseconds.
    pub rate_limit_wait_ns: AtomicU64,
    /// From pull to settlement, in seconds.
    pub end_to_end: Histogram,
    sinks: Mutex<BTreeMap<String, Arc<SinkStats>>>,
    handlers: Mutex<BTreeMap<String, Arc<HandlerStats>>>,
    state: AtomicU8,
    /// The last pull from the source failed (cleared by the next one that succeeds).
    source_failing: AtomicBool,
    /// The sink breaker is open: sink writes kept failing, so the pipeline pulls only probes.
    breaker_open: AtomicBool,
    /// Batches let through as probes while the sink breaker was open.
    pub breaker_probes: AtomicU64,
    pause: watch::Sender<bool>,
    last_errors: Mutex<VecDeque<RecordedError>>,
    /// The last dead letters and why, apart from `last_errors`: a steady trickle of poison
    /// messages must not push a refused reload or a sink error out of sight.
    last_dead_letters: Mutex<VecDeque<DeadLetterRecord>>,
}

impl Default for PipelineStats {
    fn default() -> Self {
        PipelineStats {
            received: AtomicU64::new(0),
            outputs: AtomicU64::new(0),
            acked: AtomicU64::new(0),
            filtered: AtomicU64::new(0),
            retries: AtomicU64::new(0),
            dead_lettered: AtomicU64::new(0),
            discarded: AtomicU64::new(0),
            nacked: AtomicU64::new(0),
            sink_errors: AtomicU64::new(0),
            source_errors: AtomicU64::new(0),
            settled: AtomicU64::new(0),
            in_flight: AtomicU64::new(0),
            consumer_lag: OnceLock::new(),
            source_connected: OnceLock::new(),
            dead_lettered_by_class: Default::default(),
            rate_limit_wait_ns: AtomicU64::new(0),
            end_to_end: Histogram::default(),
            sinks: Mutex::default(),
            handlers: Mutex::default(),
            state: AtomicU8::new(PipelineState::Starting as u8),
            source_failing: AtomicBool::new(false),
            breaker_open: AtomicBool::new(false),
            breaker_probes: AtomicU64::new(0),
            pause: watch::Sender::new(false),
            last_errors: Mutex::default(),
            last_dead_letters: Mutex::default(),
        }
    }
}

/// Latency buckets, in seconds: 100 µs to 30 s.
pub const LATENCY_BUCKETS: [f64; 16] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    10.0, 30.0,
];

/// A latency histogram with the fixed [`LATENCY_BUCKETS`]; lock-free, for the hot path.
#[derive(Debug, Default)]
pub struct Histogram {
    /// Observations per bucket (not cumulative); the last one is `+Inf`.
    buckets: [AtomicU64; LATENCY_BUCKETS.len() + 1],
    count: AtomicU64,
    sum_ns: AtomicU64,
}

/// A histogram read at one moment, in the exposition's shape.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct HistogramSnapshot {
    /// `(upper bound in seconds, observations at or below it)`, cumulative, without `+Inf`.
    pub buckets: Vec<(f64, u64)>,
    /// Observations above the last bound (the `+Inf` bucket's own).
    pub overflow: u64,
    pub count: u64,
    pub sum_seconds: f64,
}

impl Histogram {
    pub fn observe(&self, seconds: f64) {
        let i = LATENCY_BUCKETS.partition_point(|&upper| upper < seconds);
        self.buckets[i].fetch_add(1, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum_ns
            .fetch_add((seconds * 1e9) as u64, Ordering::Relaxed);
    }

    /// Add `previous`'s observations to these (a restarted pipeline's histogram goes on).
    fn carry_over(&self, previous: &Histogram) {
        for (to, from) in self.buckets.iter().zip(&previous.buckets) {
            to.fetch_add(from.load(Ordering::Relaxed), Ordering::Relaxed);
        }
        self.count
            .fetch_add(previous.count.load(Ordering::Relaxed), Ordering::Relaxed);
        self.sum_ns
            .fetch_add(previous.sum_ns.load(Ordering::Relaxed), Ordering::Relaxed);
    }

    pub fn snapshot(&self) -> HistogramSnapshot {
        let mut cumulative = 0;
        let buckets = LATENCY_BUCKETS
            .iter()
            .zip(&self.buckets)
            .map(|(&upper, n)| {
                cumulative += n.load(Ordering::Relaxed);
                (upper, cumulative)
            })
            .collect();
        let overflow = self.buckets[LATENCY_BUCKETS.len()].load(Ordering::Relaxed);
        HistogramSnapshot {
            buckets,
            overflow,
            // Never below the buckets' total, even when read mid-update.
            count: self
                .count
                .load(Ordering::Relaxed)
                .max(cumulative + overflow),
            sum_seconds: self.sum_ns.load(Ordering::Relaxed) as f64 / 1e9,
        }
    }
}

impl HistogramSnapshot {
    /// What was observed after `earlier`, a snapshot of the same histogram: the window between
    /// two reads.
    pub fn since(&self, earlier: &HistogramSnapshot) -> HistogramSnapshot {
        HistogramSnapshot {
            buckets: self
                .buckets
                .iter()
                .zip(&earlier.buckets)
                .map(|(&(upper, now), &(_, then))| (upper, now.saturating_sub(then)))
                .collect(),
            overflow: self.overflow.saturating_sub(earlier.overflow),
            count: self.count.saturating_sub(earlier.count),
            sum_seconds: (self.sum_seconds - earlier.sum_seconds).max(0.0),
        }
    }

    /// The `q` quantile (0 to 1) in seconds, interpolated linearly within its bucket as
    /// Prometheus's `histogram_quantile` does; `None` without observations. Past the last
    /// bucket it is that bucket's bound (30 s): "at least". The total is the buckets' own, not
    /// `count`, which is read apart from them and may be ahead of them by a few observations.
    pub fn quantile(&self, q: f64) -> Option<f64> {
        let total = self.buckets.last().map_or(0, |&(_, n)| n) + self.overflow;
        if total == 0 {
            return None;
        }
        let rank = q.clamp(0.0, 1.0) * total as f64;
        let mut lower = (0.0, 0u64);
        for &(upper, cumulative) in &self.buckets {
            if cumulative as f64 >= rank && cumulative > lower.1 {
                let within = (rank - lower.1 as f64) / (cumulative - lower.1) as f64;
                return Some(lower.0 + (upper - lower.0) * within.clamp(0.0, 1.0));
            }
            lower = (upper, cumulative);
        }
        Some(lower.0)
    }
}

/// Counters of one sink of a pipeline.
#[derive(Debug, Default)]
pub struct SinkStats {
    /// Outputs the sink confirmed.
    pub outputs: AtomicU64,
    /// Writes that failed (each is retried).
    pub errors: AtomicU64,
    /// Outputs the sink refused for good (their deliveries were dead-lettered).
    pub rejected: AtomicU64,
}

/// Counters of one handler of a pipeline.
#[derive(Debug, Default)]
pub struct HandlerStats {
    /// Failed messages by error class (indexed by [`ErrorClass::index`]).
    pub errors: [AtomicU64; ErrorClass::COUNT],
    /// One call (a batch), in seconds.
    pub duration: Histogram,
}

/// Where a pipeline is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum PipelineState {
    /// Built, not yet pulling.
    Starting = 0,
    Running = 1,
    /// Paused by an operator: nothing is pulled; in-flight work finishes.
    Paused = 2,
    /// Draining after a shutdown request or the end of its source.
    Stopping = 3,
    Stopped = 4,
    /// Ended with an error.
    Failed = 5,
}

impl PipelineState {
    pub fn as_str(self) -> &'static str {
        match self {
            PipelineState::Starting => "starting",
            PipelineState::Running => "running",
            PipelineState::Paused => "paused",
            PipelineState::Stopping => "stopping",
            PipelineState::Stopped => "stopped",
            PipelineState::Failed => "failed",
        }
    }

    fn from_u8(v: u8) -> Self {
        match v {
            0 => PipelineState::Starting,
            1 => PipelineState::Running,
            2 => PipelineState::Paused,
            3 => PipelineState::Stopping,
            4 => PipelineState::Stopped,
            _ => PipelineState::Failed,
        }
    }
}

/// One dead letter, kept for operators: which message and why, and what it held as far as its
/// pipeline lets payloads be shown (`logging.payloads`, with `scrub_fields` hashed).
#[derive(Debug, Clone)]
pub struct DeadLetterRecord {
    pub at: SystemTime,
    /// `<message id>: <class>: <reason>`.
    pub message: String,
    /// Header names, each with its value as the payload log renders it, or withheld.
    pub headers: Vec<(String, String)>,
    /// The payload's first bytes as the payload log renders them, or why it is withheld.
    pub payload_preview: String,
    /// The payload's whole size.
    pub payload_bytes: usize,
}

/// One error a pipeline met, kept for operators.
#[derive(Debug, Clone)]
pub struct RecordedError {
    pub at: SystemTime,
    pub message: String,
}

impl PipelineStats {
    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }

    /// The source's consumer lag, if it reports one and knows it yet.
    pub fn lag(&self) -> Option<u64> {
        self.lag_read().map(|(lag, _)| lag)
    }

    /// The source's consumer lag and when it was read (ms since the Unix epoch).
    pub fn lag_read(&self) -> Option<(u64, i64)> {
        self.consumer_lag.get()?.last()
    }

    pub(crate) fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    pub fn state(&self) -> PipelineState {
        PipelineState::from_u8(self.state.load(Ordering::Relaxed))
    }

    pub fn set_state(&self, state: PipelineState) {
        self.state.store(state as u8, Ordering::Relaxed);
    }

    /// Ready means pulling (or paused on purpose) with a source that is connected: by its own
    /// connection flag when it keeps one (so an idle queue after a reconnect is ready), else
    /// by its last pull not having failed.
    pub fn is_ready(&self) -> bool {
        let connected = match self.source_connected.get() {
            Some(flag) => flag.load(Ordering::Relaxed),
            None => !self.source_failing.load(Ordering::Relaxed),
        };
        matches!(self.state(), PipelineState::Running | PipelineState::Paused) && connected
    }

    /// Whether the sink breaker is open (sink writes kept failing; only probes are pulled).
    pub fn breaker_open(&self) -> bool {
        self.breaker_open.load(Ordering::Relaxed)
    }

    pub(crate) fn set_breaker_open(&self, open: bool) {
        self.breaker_open.store(open, Ordering::Relaxed);
    }

    pub(crate) fn set_source_failing(&self, failing: bool) {
        self.source_failing.store(failing, Ordering::Relaxed);
    }

    /// Stop pulling from the source (`true`) or start again. Deliveries already pulled finish.
    pub fn set_paused(&self, paused: bool) {
        self.pause.send_replace(paused);
    }

    pub fn is_paused(&self) -> bool {
        *self.pause.borrow()
    }

    pub(crate) fn pause_switch(&self) -> watch::Receiver<bool> {
        self.pause.subscribe()
    }

    /// Counters of the sink `name`, created on first use.
    pub fn sink(&self, name: &str) -> Arc<SinkStats> {
        let mut sinks = self.sinks.lock().unwrap_or_else(|e| e.into_inner());
        sinks.entry(name.to_owned()).or_default().clone()
    }

    /// Counters of the handler `name`, created on first use.
    pub fn handler(&self, name: &str) -> Arc<HandlerStats> {
        let mut handlers = self.handlers.lock().unwrap_or_else(|e| e.into_inner());
        handlers.entry(name.to_owned()).or_default().clone()
    }

    /// Every sink's counters, by name.
    pub fn sinks(&self) -> Vec<(String, Arc<SinkStats>)> {
        let sinks = self.sinks.lock().unwrap_or_else(|e| e.into_inner());
        sinks.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
    }

    /// Every handler's counters, by name.
    pub fn handlers(&self) -> Vec<(String, Arc<HandlerStats>)> {
        let handlers = self.handlers.lock().unwrap_or_else(|e| e.into_inner());
        handlers
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }

    /// Remember an error for operators (the last few are kept, each cut to about 2 KiB).
    pub fn record_error(&self, message: String) {
        push_recent(&self.last_errors, message);
    }

    /// Remember a dead letter and why, for operators (the last few are kept, apart from the
    /// errors).
    pub fn record_dead_letter(&self, mut record: DeadLetterRecord) {
        record.message = cut_message(record.message);
        push_ring(&self.last_dead_letters, record);
    }

    /// Add what `previous`, an earlier run of this pipeline that has ended, counted to these
    /// counters, so that totals (and `/metrics` counters) go on across a restart by reload
    /// instead of starting again from zero. Its recent errors and dead letters come along; the
    /// counters of sinks and handlers the new run does not have (`sinks`, `handlers`) are left
    /// behind.
    pub fn carry_over(&self, previous: &PipelineStats, sinks: &[String], handlers: &[String]) {
        let add = |to: &AtomicU64, from: &AtomicU64| Self::add(to, Self::get(from));
        for (to, from) in [
            (&self.received, &previous.received),
            (&self.outputs, &previous.outputs),
            (&self.acked, &previous.acked),
            (&self.filtered, &previous.filtered),
            (&self.retries, &previous.retries),
            (&self.dead_lettered, &previous.dead_lettered),
            (&self.discarded, &previous.discarded),
            (&self.nacked, &previous.nacked),
            (&self.sink_errors, &previous.sink_errors),
            (&self.source_errors, &previous.source_errors),
            (&self.settled, &previous.settled),
            (&self.rate_limit_wait_ns, &previous.rate_limit_wait_ns),
            (&self.breaker_probes, &previous.breaker_probes),
        ] {
            add(to, from);
        }
        for (to, from) in self
            .dead_lettered_by_class
            .iter()
            .zip(&previous.dead_lettered_by_class)
        {
            add(to, from);
        }
        self.end_to_end.carry_over(&previous.end_to_end);
        for (name, from) in previous.sinks() {
            if sinks.contains(&name) {
                let to = self.sink(&name);
                add(&to.outputs, &from.outputs);
                add(&to.errors, &from.errors);
                add(&to.rejected, &from.rejected);
            }
        }
        for (name, from) in previous.handlers() {
            if handlers.contains(&name) {
                let to = self.handler(&name);
                for (to, from) in to.errors.iter().zip(&from.errors) {
                    add(to, from);
                }
                to.duration.carry_over(&from.duration);
            }
        }
        for e in previous.last_errors() {
            push_ring(&self.last_errors, e);
        }
        for d in previous.last_dead_letters() {
            push_ring(&self.last_dead_letters, d);
        }
    }

    /// The last dead letters, oldest first.
    pub fn last_dead_letters(&self) -> Vec<DeadLetterRecord> {
        let recent = self
            .last_dead_letters
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        recent.iter().cloned().collect()
    }

    /// Forget the recorded errors whose message starts with `prefix`: they no longer hold (a
    /// refused reload whose file has since been fixed).
    pub fn clear_errors(&self, prefix: &str) {
        let mut errors = self.last_errors.lock().unwrap_or_else(|e| e.into_inner());
        errors.retain(|e| !e.message.starts_with(prefix));
    }

    /// The last errors, oldest first.
    pub fn last_errors(&self) -> Vec<RecordedError> {
        let errors = self.last_errors.lock().unwrap_or_else(|e| e.into_inner());
        errors.iter().cloned().collect()
    }

    pub(crate) fn add_rate_limit_wait(&self, waited: Duration) {
        let ns = u64::try_from(waited.as_nanos()).unwrap_or(u64::MAX);
        Self::add(&self.rate_limit_wait_ns, ns);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_interpolate_within_buckets_over_a_window() {
        let h = Histogram::default();
        assert_eq!(h.snapshot().quantile(0.5), None);
        for _ in 0..100 {
            h.observe(0.0003); // in (0.00025, 0.0005]
        }
        let first = h.snapshot();
        let p50 = first.quantile(0.5).unwrap();
        assert!((0.00025..=0.0005).contains(&p50), "{p50}");
        for _ in 0..100 {
            h.observe(2.0); // in (1, 2.5]
        }
        let window = h.snapshot().since(&first);
        assert_eq!(window.count, 100);
        let p99 = window.quantile(0.99).unwrap();
        assert!((1.0..=2.5).contains(&p99), "{p99}");
        // Past the last bucket: its bound, as "at least".
        h.observe(100.0);
        let beyond = h.snapshot().since(&h.snapshot());
        assert_eq!(beyond.quantile(0.5), None);
        let all = h.snapshot();
        assert_eq!(all.quantile(1.0), Some(30.0));
        // A count read ahead of the buckets (observations under way) does not push p99 past them.
        let ahead = HistogramSnapshot {
            count: first.count + 5,
            ..first.clone()
        };
        assert!(ahead.quantile(0.99).unwrap() <= 0.0005);
    }

    #[test]
    fn histogram_buckets_are_cumulative_and_inclusive() {
        let h = Histogram::default();
        h.observe(0.0001); // exactly on the first bound: counted in it
        h.observe(0.003);
        h.observe(100.0); // past the last bound: only in +Inf
        let s = h.snapshot();
        assert_eq!(s.count, 3);
        assert_eq!(s.buckets[0], (0.0001, 1));
        assert_eq!(s.buckets[4], (0.0025, 1));
        assert_eq!(s.buckets[5], (0.005, 2));
        assert_eq!(s.buckets.last(), Some(&(30.0, 2)));
        assert!((s.sum_seconds - 100.0031).abs() < 1e-6);
    }

    #[test]
    fn a_restarted_pipeline_goes_on_counting_from_its_previous_run() {
        let previous = PipelineStats::default();
        PipelineStats::add(&previous.received, 10);
        PipelineStats::add(&previous.dead_lettered, 2);
        PipelineStats::add(
            &previous.dead_lettered_by_class[ErrorClass::Invalid.index()],
            2,
        );
        PipelineStats::add(&previous.sink("out").outputs, 8);
        PipelineStats::add(&previous.sink("gone").outputs, 1);
        previous.handler("enrich").duration.observe(0.001);
        previous.end_to_end.observe(0.002);
        previous.record_error("a sink error".into());
        let next = PipelineStats::default();
        PipelineStats::add(&next.received, 1);
        next.carry_over(&previous, &["out".into()], &["enrich".into()]);
        assert_eq!(PipelineStats::get(&next.received), 11);
        assert_eq!(PipelineStats::get(&next.dead_lettered), 2);
        assert_eq!(
            PipelineStats::get(&next.dead_lettered_by_class[ErrorClass::Invalid.index()]),
            2
        );
        assert_eq!(PipelineStats::get(&next.sink("out").outputs), 8);
        assert!(next.sinks().iter().all(|(name, _)| name != "gone"));
        assert_eq!(next.handler("enrich").duration.snapshot().count, 1);
        assert_eq!(next.end_to_end.snapshot().count, 1);
        assert_eq!(next.last_errors().len(), 1);
    }

    #[test]
    fn error_classes_index_their_own_slot() {
        for (i, class) in ErrorClass::ALL.iter().enumerate() {
            assert_eq!(class.index(), i);
        }
    }
}
