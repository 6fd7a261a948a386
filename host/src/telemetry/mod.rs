//! What the host tells operators: the inventory of running pipelines that the admin API and
//! `/metrics` read, the Prometheus exposition, and OpenTelemetry tracing.
//!
//! Architecture invariant: telemetry reads the engine's counters ([`PipelineStats`]); it never
//! counts on its own, so `/metrics`, `/pipelines` and the tests see the same numbers.

pub mod exposition;
pub mod payload_log;
mod rates;
pub mod trace;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, RwLock};

use crate::engine::PipelineStats;

pub use rates::{RateSampler, Rates};

/// A loaded handler, as operators see it.
#[derive(Clone)]
pub struct PluginInfo {
    /// The handler's name in the pipeline.
    pub name: String,
    /// SHA-256 of the component file, hex.
    pub sha256: String,
    /// The component's declared version, when it carries one.
    pub version: Option<String>,
    /// The handler's own counters (`sluice:plugin/counters`).
    pub counters: Arc<dyn Fn() -> HashMap<String, u64> + Send + Sync>,
}

impl std::fmt::Debug for PluginInfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PluginInfo")
            .field("name", &self.name)
            .field("sha256", &self.sha256)
            .field("version", &self.version)
            .finish_non_exhaustive()
    }
}

/// One pipeline the host runs.
#[derive(Debug)]
pub struct PipelineEntry {
    pub name: String,
    /// The source's connector type (`rabbitmq`, `kafka`, ...).
    pub source: String,
    /// Sink names with their connector types.
    pub sinks: Vec<(String, String)>,
    pub plugins: Vec<PluginInfo>,
    pub stats: Arc<PipelineStats>,
}

/// The pipelines this host runs, by name; shared by the runtime (which adds and removes them)
/// and the admin server (which reads them).
#[derive(Debug, Default, Clone)]
pub struct Inventory {
    pipelines: Arc<RwLock<BTreeMap<String, Arc<PipelineEntry>>>>,
}

impl Inventory {
    pub fn insert(&self, entry: PipelineEntry) {
        let mut map = self.pipelines.write().unwrap_or_else(|e| e.into_inner());
        map.insert(entry.name.clone(), Arc::new(entry));
    }

    pub fn remove(&self, name: &str) {
        let mut map = self.pipelines.write().unwrap_or_else(|e| e.into_inner());
        map.remove(name);
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

    /// Ready when there is at least one pipeline and every one is running (or paused on
    /// purpose) with a source that answers.
    pub fn ready(&self) -> bool {
        let all = self.all();
        !all.is_empty() && all.iter().all(|p| p.stats.is_ready())
    }
}
