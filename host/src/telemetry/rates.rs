//! Per-second rates and recent latency quantiles for the admin API and the dashboard, from
//! counters and histograms sampled once a second.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::Instant;

use super::Inventory;
use crate::engine::{HistogramSnapshot, PipelineStats};

/// Rates are averaged over this many seconds of samples.
const WINDOW: usize = 5;

/// Messages per second, and latency, over the last few seconds.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Rates {
    pub received: f64,
    pub outputs: f64,
    /// Source, handler and sink errors.
    pub errors: f64,
    pub dead_lettered: f64,
    /// From pull to settlement, of the deliveries settled in the window.
    pub end_to_end: HistogramSnapshot,
    /// One handler call (a batch), per handler, in the window.
    pub handlers: Vec<(String, HistogramSnapshot)>,
}

#[derive(Debug, Clone)]
struct Sample {
    at: Instant,
    received: u64,
    outputs: u64,
    errors: u64,
    dead_lettered: u64,
    end_to_end: HistogramSnapshot,
    handlers: Vec<(String, HistogramSnapshot)>,
}

impl Sample {
    fn of(stats: &PipelineStats) -> Self {
        let handler_errors: u64 = stats
            .handlers()
            .iter()
            .flat_map(|(_, h)| h.errors.iter().map(PipelineStats::get))
            .sum();
        Sample {
            at: Instant::now(),
            received: PipelineStats::get(&stats.received),
            outputs: PipelineStats::get(&stats.outputs),
            errors: PipelineStats::get(&stats.sink_errors)
                + PipelineStats::get(&stats.source_errors)
                + handler_errors,
            dead_lettered: PipelineStats::get(&stats.dead_lettered),
            end_to_end: stats.end_to_end.snapshot(),
            handlers: stats
                .handlers()
                .iter()
                .map(|(name, h)| (name.clone(), h.duration.snapshot()))
                .collect(),
        }
    }
}

/// Keeps a few seconds of samples per pipeline; call [`RateSampler::sample`] once a second.
#[derive(Debug, Default)]
pub struct RateSampler {
    samples: Mutex<HashMap<String, VecDeque<Sample>>>,
}

impl RateSampler {
    /// Take one sample of every pipeline, and forget pipelines that are gone.
    pub fn sample(&self, inventory: &Inventory) {
        let all = inventory.all();
        let mut samples = self.samples.lock().unwrap_or_else(|e| e.into_inner());
        samples.retain(|name, _| all.iter().any(|p| &p.name == name));
        for p in all {
            let ring = samples.entry(p.name.clone()).or_default();
            if ring.len() > WINDOW {
                ring.pop_front();
            }
            ring.push_back(Sample::of(&p.stats));
        }
    }

    /// Rates of `pipeline` between its oldest kept sample and now.
    pub fn rates(&self, pipeline: &str, stats: &PipelineStats) -> Rates {
        let samples = self.samples.lock().unwrap_or_else(|e| e.into_inner());
        let Some(first) = samples.get(pipeline).and_then(|r| r.front().cloned()) else {
            return Rates::default();
        };
        let now = Sample::of(stats);
        let secs = now.at.duration_since(first.at).as_secs_f64();
        if secs < 0.2 {
            return Rates::default();
        }
        let per_sec = |a: u64, b: u64| b.saturating_sub(a) as f64 / secs;
        Rates {
            received: per_sec(first.received, now.received),
            outputs: per_sec(first.outputs, now.outputs),
            errors: per_sec(first.errors, now.errors),
            dead_lettered: per_sec(first.dead_lettered, now.dead_lettered),
            end_to_end: now.end_to_end.since(&first.end_to_end),
            // A handler that appeared within the window (a swap) counts from nothing.
            handlers: now
                .handlers
                .iter()
                .map(|(name, h)| {
                    let before = first.handlers.iter().find(|(n, _)| n == name);
                    let window = before.map_or_else(|| h.clone(), |(_, b)| h.since(b));
                    (name.clone(), window)
                })
                .collect(),
        }
    }
}
