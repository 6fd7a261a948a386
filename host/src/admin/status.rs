//! The admin API's JSON shapes; `sluice status` reads the same types back.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::engine::{ErrorClass, HistogramSnapshot, PipelineStats};
use crate::telemetry::{PipelineEntry, Rates};

/// `GET /pipelines`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PipelineList {
    pub pipelines: Vec<PipelineStatus>,
    /// The host itself (absent from hosts older than this field).
    #[serde(default)]
    pub host: Option<HostStatus>,
}

/// The host: what it is, how long it has run, what its reloads did.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HostStatus {
    /// `sluice --version`'s text: version, commit and its date.
    pub version: String,
    /// RFC 3339, UTC.
    pub started_at: String,
    pub uptime_seconds: u64,
    /// Reloads that applied every change they found, and those that refused one.
    pub reloads_applied: u64,
    pub reloads_refused: u64,
    /// The last few reloads' reports (as `GET /reload` shows one), oldest first.
    pub recent_reloads: Vec<ReloadEntry>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ReloadEntry {
    /// RFC 3339, UTC.
    pub at: String,
    pub report: serde_json::Value,
}

impl HostStatus {
    pub fn of(started: std::time::SystemTime, reloads: &crate::telemetry::ReloadLog) -> Self {
        use std::sync::atomic::Ordering;
        HostStatus {
            version: crate::VERSION.to_owned(),
            started_at: rfc3339(started),
            uptime_seconds: started.elapsed().map_or(0, |d| d.as_secs()),
            reloads_applied: reloads.applied.load(Ordering::Relaxed),
            reloads_refused: reloads.refused.load(Ordering::Relaxed),
            recent_reloads: reloads
                .recent()
                .into_iter()
                .map(|(at, report)| ReloadEntry {
                    at: rfc3339(at),
                    report,
                })
                .collect(),
        }
    }
}

/// Latency quantiles over the last few seconds, in milliseconds.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct Quantiles {
    pub p50_ms: f64,
    pub p99_ms: f64,
    /// Observations in the window.
    pub count: u64,
}

impl Quantiles {
    fn of(h: &HistogramSnapshot) -> Option<Self> {
        Some(Quantiles {
            p50_ms: h.quantile(0.5)? * 1e3,
            p99_ms: h.quantile(0.99)? * 1e3,
            count: h.count,
        })
    }
}

/// What one sink did since the pipeline started.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SinkStatus {
    pub name: String,
    /// The connector type.
    pub kind: String,
    /// Outputs it confirmed.
    pub outputs: u64,
    /// Writes that failed (each retried).
    pub errors: u64,
    /// Outputs refused for good (their deliveries dead-lettered as `sink-rejected`).
    pub rejected: u64,
}

/// `GET /pipelines/{name}`: one pipeline as operators see it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PipelineStatus {
    pub name: String,
    /// starting, running, paused, stopping, stopped or failed.
    pub state: String,
    /// Running (or paused) with a source that answers.
    pub ready: bool,
    pub source: String,
    pub sinks: Vec<String>,
    pub handlers: Vec<HandlerStatus>,
    pub in_flight: u64,
    /// Messages waiting in the broker, where the broker reports it.
    pub lag: Option<u64>,
    /// How old `lag` is, in ms: it is read every `lag_interval_ms` of the source.
    #[serde(default)]
    pub lag_age_ms: Option<u64>,
    /// Sink writes kept failing: the pipeline pulls only probes until one is confirmed.
    #[serde(default)]
    pub sink_breaker_open: bool,
    pub totals: Totals,
    /// Per second, over the last few seconds.
    pub rates: RatesStatus,
    /// The last errors, oldest first.
    pub last_errors: Vec<ErrorStatus>,
    /// The last dead letters, oldest first.
    #[serde(default)]
    pub last_dead_letters: Vec<DeadLetterStatus>,
    /// Dead-lettered deliveries by error class (classes with none left out).
    #[serde(default)]
    pub dead_letters_by_class: BTreeMap<String, u64>,
    /// Per sink, in the order the pipeline names them.
    #[serde(default)]
    pub sink_totals: Vec<SinkStatus>,
    /// From pull to settlement, over the last few seconds (`None` when nothing settled).
    #[serde(default)]
    pub end_to_end_latency: Option<Quantiles>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HandlerStatus {
    pub name: String,
    pub sha256: String,
    pub version: Option<String>,
    /// New versions swapped in while the pipeline ran.
    pub swaps: u64,
    /// One call (a batch) over the last few seconds (`None` when it was not called).
    #[serde(default)]
    pub latency: Option<Quantiles>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Totals {
    pub received: u64,
    pub outputs: u64,
    pub acked: u64,
    pub filtered: u64,
    pub retries: u64,
    pub dead_lettered: u64,
    pub discarded: u64,
    pub nacked: u64,
    pub sink_errors: u64,
    pub source_errors: u64,
}

#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
pub struct RatesStatus {
    pub received: f64,
    pub outputs: f64,
    pub errors: f64,
    pub dead_lettered: f64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ErrorStatus {
    /// RFC 3339, UTC.
    pub at: String,
    pub message: String,
}

/// One of the last dead letters.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DeadLetterStatus {
    /// RFC 3339, UTC.
    pub at: String,
    /// `<message id>: <class>: <reason>`.
    pub message: String,
    /// Header names with their values, or `<withheld>` unless the pipeline sets
    /// `logging.payloads` (then a name in `scrub_fields` shows its value's SHA-256).
    #[serde(default)]
    pub headers: Vec<(String, String)>,
    /// The payload's first 256 bytes, with `scrub_fields` hashed, when the pipeline sets
    /// `logging.payloads`; else why not.
    #[serde(default)]
    pub payload_preview: String,
    #[serde(default)]
    pub payload_bytes: usize,
}

impl PipelineStatus {
    /// Drop what the dead letters held (header values, payload previews): for a caller who
    /// may not see message contents.
    pub fn withhold_contents(&mut self) {
        for dead in &mut self.last_dead_letters {
            for (_, value) in &mut dead.headers {
                *value = WITHHELD_FROM_CALLER.to_owned();
            }
            dead.payload_preview = WITHHELD_FROM_CALLER.to_owned();
        }
    }
}

/// What a caller without the admin token sees of a dead letter's contents.
const WITHHELD_FROM_CALLER: &str = "<withheld: send the admin token to see it>";

impl From<crate::engine::DeadLetterRecord> for DeadLetterStatus {
    fn from(d: crate::engine::DeadLetterRecord) -> Self {
        DeadLetterStatus {
            at: rfc3339(d.at),
            message: d.message,
            headers: d.headers,
            payload_preview: d.payload_preview,
            payload_bytes: d.payload_bytes,
        }
    }
}

impl From<crate::engine::RecordedError> for ErrorStatus {
    fn from(e: crate::engine::RecordedError) -> Self {
        ErrorStatus {
            at: rfc3339(e.at),
            message: e.message,
        }
    }
}

impl PipelineStatus {
    pub fn of(p: &PipelineEntry, rates: Rates) -> Self {
        let s = &p.stats;
        let get = PipelineStats::get;
        PipelineStatus {
            name: p.name.clone(),
            state: s.state().as_str().to_owned(),
            ready: s.is_ready(),
            source: p.source.clone(),
            sinks: p.sinks.iter().map(|(name, _)| name.clone()).collect(),
            handlers: p
                .plugins
                .iter()
                .map(|h| HandlerStatus {
                    name: h.name().to_owned(),
                    sha256: h.sha256(),
                    version: h.version(),
                    swaps: h.swaps(),
                    latency: rates
                        .handlers
                        .iter()
                        .find(|(name, _)| name == h.name())
                        .and_then(|(_, window)| Quantiles::of(window)),
                })
                .collect(),
            in_flight: get(&s.in_flight),
            lag: s.lag(),
            lag_age_ms: s.lag_read().map(|(_, read_ms)| {
                u64::try_from(sluice_core::message::now_ms() - read_ms).unwrap_or(0)
            }),
            sink_breaker_open: s.breaker_open(),
            totals: Totals {
                received: get(&s.received),
                outputs: get(&s.outputs),
                acked: get(&s.acked),
                filtered: get(&s.filtered),
                retries: get(&s.retries),
                dead_lettered: get(&s.dead_lettered),
                discarded: get(&s.discarded),
                nacked: get(&s.nacked),
                sink_errors: get(&s.sink_errors),
                source_errors: get(&s.source_errors),
            },
            rates: RatesStatus {
                received: rates.received,
                outputs: rates.outputs,
                errors: rates.errors,
                dead_lettered: rates.dead_lettered,
            },
            last_errors: s.last_errors().into_iter().map(ErrorStatus::from).collect(),
            last_dead_letters: s
                .last_dead_letters()
                .into_iter()
                .map(DeadLetterStatus::from)
                .collect(),
            dead_letters_by_class: ErrorClass::ALL
                .iter()
                .map(|c| {
                    (
                        c.as_str().to_owned(),
                        get(&s.dead_lettered_by_class[c.index()]),
                    )
                })
                .filter(|(_, n)| *n > 0)
                .collect(),
            sink_totals: p
                .sinks
                .iter()
                .map(|(name, kind)| {
                    let sink = s.sink(name);
                    SinkStatus {
                        name: name.clone(),
                        kind: kind.clone(),
                        outputs: get(&sink.outputs),
                        errors: get(&sink.errors),
                        rejected: get(&sink.rejected),
                    }
                })
                .collect(),
            end_to_end_latency: Quantiles::of(&rates.end_to_end),
        }
    }
}

fn rfc3339(at: std::time::SystemTime) -> String {
    time::OffsetDateTime::from(at)
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}
