//! What the host tells operators: the inventory of running pipelines that the admin API and
//! `/metrics` read, the Prometheus exposition, and OpenTelemetry tracing.
//!
//! Architecture invariant: telemetry reads the engine's counters ([`PipelineStats`]); it never
//! counts on its own, so `/metrics`, `/pipelines` and the tests see the same numbers.

mod export;
pub mod exposition;
mod rates;

pub use sluice_engine::payload_log;

/// Delivery tracing: the spans (`sluice-trace`) and the exporter that sends them (`export.rs`).
pub mod trace {
    pub use super::export::{Exporter, TraceConfig, init};
    pub use sluice_trace::*;
}

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, RwLock};

use crate::engine::{PipelineState, PipelineStats};

pub use rates::{RateSampler, Rates};

/// A loaded handler, as operators see it; it may be swapped for a new version at any time, so
/// every read asks for what is in place now.
pub trait PluginView: Send + Sync {
    /// The handler's name in the pipeline.
    fn name(&self) -> &str;
    /// SHA-256 of the component in place, hex.
    fn sha256(&self) -> String;
    /// The version the component in place declares, if any.
    fn version(&self) -> Option<String>;
    /// The handler's own counters (`sluice:plugin/counters`).
    fn counters(&self) -> HashMap<String, u64>;
    /// How many times a new version was swapped in.
    fn swaps(&self) -> u64;
    /// What the sandbox's guards turned away, and batches isolated, by the version in place.
    fn guard_counts(&self) -> crate::plugin::GuardCounts;
}

/// One pipeline the host runs.
pub struct PipelineEntry {
    pub name: String,
    /// The source's connector type (`rabbitmq`, `kafka`, ...).
    pub source: String,
    /// Sink names with their connector types.
    pub sinks: Vec<(String, String)>,
    pub plugins: Vec<Arc<dyn PluginView>>,
    pub stats: Arc<PipelineStats>,
}

impl std::fmt::Debug for PipelineEntry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PipelineEntry")
            .field("name", &self.name)
            .field("source", &self.source)
            .field("sinks", &self.sinks)
            .finish_non_exhaustive()
    }
}

/// The pipelines this host runs, by name; shared by the runtime (which adds and removes them)
/// and the admin server (which reads them).
#[derive(Debug, Default, Clone)]
pub struct Inventory {
    pipelines: Arc<RwLock<BTreeMap<String, Arc<PipelineEntry>>>>,
    /// Pipelines being built before they first run, by name, with what they wait for and
    /// whether the host is unready meanwhile (at start-up; not for a new file on reload, while
    /// the host runs its other pipelines); `/readyz` names them.
    starting: Arc<Mutex<BTreeMap<String, (String, bool)>>>,
    reloads: Arc<ReloadLog>,
}

/// What reloads did, for `/metrics` and `GET /reload`.
#[derive(Debug, Default)]
pub struct ReloadLog {
    /// Reloads that applied every change they found.
    pub applied: AtomicU64,
    /// Reloads that refused at least one change (the running version stayed).
    pub refused: AtomicU64,
    /// The last reload's report, as the admin API shows it.
    pub last: Mutex<Option<serde_json::Value>>,
    /// The last few reports with when they were made, oldest first (the dashboard's history).
    recent: Mutex<std::collections::VecDeque<(std::time::SystemTime, serde_json::Value)>>,
}

impl ReloadLog {
    /// How many reports `recent` keeps.
    pub const RECENT: usize = 10;

    /// Keep `report` as the last one and in the history.
    pub fn record(&self, report: serde_json::Value) {
        let mut recent = self.recent.lock().unwrap_or_else(|e| e.into_inner());
        if recent.len() == Self::RECENT {
            recent.pop_front();
        }
        recent.push_back((std::time::SystemTime::now(), report.clone()));
        *self.last.lock().unwrap_or_else(|e| e.into_inner()) = Some(report);
    }

    /// The last few reports with their times, oldest first.
    pub fn recent(&self) -> Vec<(std::time::SystemTime, serde_json::Value)> {
        let recent = self.recent.lock().unwrap_or_else(|e| e.into_inner());
        recent.iter().cloned().collect()
    }
}

impl Inventory {
    pub fn insert(&self, entry: PipelineEntry) {
        let mut map = self.pipelines.write().unwrap_or_else(|e| e.into_inner());
        map.insert(entry.name.clone(), Arc::new(entry));
    }

    /// `name` is being built for its first run, waiting for `what`; the host is not ready
    /// meanwhile if `blocks_ready`.
    pub fn set_starting(&self, name: &str, what: &str, blocks_ready: bool) {
        let mut starting = self.starting.lock().unwrap_or_else(|e| e.into_inner());
        starting.insert(name.to_owned(), (what.to_owned(), blocks_ready));
    }

    /// `name` is built (or failed to build).
    pub fn clear_starting(&self, name: &str) {
        let mut starting = self.starting.lock().unwrap_or_else(|e| e.into_inner());
        starting.remove(name);
    }

    /// Pipelines being built for their first run: name, what each waits for, and whether the
    /// host is unready meanwhile.
    pub fn starting(&self) -> Vec<(String, String, bool)> {
        let starting = self.starting.lock().unwrap_or_else(|e| e.into_inner());
        starting
            .iter()
            .map(|(k, (what, blocks))| (k.clone(), what.clone(), *blocks))
            .collect()
    }

    pub fn remove(&self, name: &str) {
        let mut map = self.pipelines.write().unwrap_or_else(|e| e.into_inner());
        map.remove(name);
    }

    pub fn reloads(&self) -> &ReloadLog {
        &self.reloads
    }

    pub fn get(&self, name: &str) -> Option<Arc<PipelineEntry>> {
        let map = self.pipelines.read().unwrap_or_else(|e| e.into_inner());
        map.get(name).cloned()
    }

    /// Every pipeline, by name.
    pub fn all(&self) -> Vec<Arc<PipelineEntry>> {
        let map = self.pipelines.read().unwrap_or_else(|e| e.into_inner());
        map.values().cloned().collect()
    }

    /// Ready when at least one pipeline runs, none is still being built at start-up, and
    /// every pipeline is running (or paused on purpose) with a connected source. A pipeline
    /// whose source ended (a finished file) does not make the host unready.
    pub fn ready(&self) -> bool {
        if self.starting().iter().any(|(_, _, blocks)| *blocks) {
            return false;
        }
        let live: Vec<_> = self
            .all()
            .into_iter()
            .filter(|p| p.stats.state() != PipelineState::Stopped)
            .collect();
        !live.is_empty() && live.iter().all(|p| p.stats.is_ready())
    }
}
