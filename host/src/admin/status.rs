//! The admin API's JSON shapes; `sluice status` reads the same types back.

use serde::{Deserialize, Serialize};

use crate::engine::PipelineStats;
use crate::telemetry::{PipelineEntry, Rates};

/// `GET /pipelines`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PipelineList {
    pub pipelines: Vec<PipelineStatus>,
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
    /// The last dead letters, oldest first: `<message id>: <class>: <reason>`.
    #[serde(default)]
    pub last_dead_letters: Vec<ErrorStatus>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HandlerStatus {
    pub name: String,
    pub sha256: String,
    pub version: Option<String>,
    /// New versions swapped in while the pipeline ran.
    pub swaps: u64,
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
                .map(ErrorStatus::from)
                .collect(),
        }
    }
}

fn rfc3339(at: std::time::SystemTime) -> String {
    time::OffsetDateTime::from(at)
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}
