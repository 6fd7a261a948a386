//! Per-second rates for the admin API and the dashboard, from counters sampled once a second.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::Instant;

use serde::Serialize;

use super::Inventory;
use crate::engine::PipelineStats;

/// Rates are averaged over this many seconds of samples.
const WINDOW: usize = 5;

/// Messages per second over the last few seconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Rates {
    pub received: f64,
    pub outputs: f64,
    /// Source, handler and sink errors.
    pub errors: f64,
    pub dead_lettered: f64,
}

#[derive(Debug, Clone, Copy)]
struct Sample {
    at: Instant,
    received: u64,
    outputs: u64,
    errors: u64,
    dead_lettered: u64,
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
        let Some(first) = samples.get(pipeline).and_then(|r| r.front().copied()) else {
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
        }
    }
}
