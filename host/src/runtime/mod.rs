//! Turns loaded pipeline files into running pipelines: builds connectors from the registry,
//! loads plugins through the plugin host, runs everything until shutdown, and applies reloads
//! (`supervisor.rs`, with the file watcher in `watch.rs` and swappable handlers in `hot.rs`).
//!
//! Architecture invariant: this is the only place that knows both the config types and the
//! engine/plugin types; the engine never sees a config file.

mod checks;
pub mod hot;
pub mod plan;
mod request;
pub mod settings;
pub mod supervisor;
mod watch;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;

use crate::config::{HandlerConfig, LoadedPipeline, PipelineConfig};
use crate::connector::BuildContext;
use crate::engine::{Pipeline, PipelineStats, Transform};
use crate::plugin::{PluginHost, WasmHandler};
use crate::telemetry::payload_log::PayloadLog;
use crate::telemetry::{PipelineEntry, PluginView};

pub use checks::validate;
pub use hot::{HotHandler, PLUGIN_HEADER};
pub use request::{ReloadReport, ReloadRequest, ReloadScope};
pub use supervisor::Supervisor;

/// A pipeline ready to run, with handles to watch it.
pub struct BuiltPipeline {
    pub pipeline: Pipeline,
    pub stats: Arc<PipelineStats>,
    pub handlers: Vec<Arc<HotHandler>>,
    /// What the admin API and `/metrics` show of it.
    pub entry: PipelineEntry,
}

/// Load `h`'s plugin for pipeline `p`: compile (through the cache), check the world and the
/// imports, instantiate once and run `init`.
pub fn load_handler(
    host: &PluginHost,
    p: &LoadedPipeline,
    h: &HandlerConfig,
) -> anyhow::Result<WasmHandler> {
    load_handler_in(host, &p.config.name, &p.base_dir, h)
}

/// [`load_handler`] for a handler of pipeline `pipeline`, whose file is in `base_dir`.
pub fn load_handler_in(
    host: &PluginHost,
    pipeline: &str,
    base_dir: &std::path::Path,
    h: &HandlerConfig,
) -> anyhow::Result<WasmHandler> {
    let plugin = host.load(&base_dir.join(&h.plugin), &settings::limits(&h.limits))?;
    plugin.into_handler_with(
        pipeline,
        &h.display_name(),
        init_settings(h),
        settings::batch_abi(h),
        &settings::grants(h),
    )
}

/// One handler's plugin compiled into the cache by [`precompile`].
#[derive(Debug)]
pub struct Precompiled {
    pub plugin: std::path::PathBuf,
    /// It was in the cache already.
    pub from_cache: bool,
    pub compile_time: Duration,
}

/// Compile every plugin the pipeline files at `paths` name into `host`'s cache, with each
/// handler's limits (which the cache's key includes), as their first load would: a host that
/// starts later on the same cache (an image's, a shared volume) loads them without compiling.
/// Each plugin once; every error (a file that does not load, a plugin that does not compile).
pub fn precompile(
    host: &PluginHost,
    paths: &[std::path::PathBuf],
) -> (Vec<Precompiled>, Vec<anyhow::Error>) {
    let (loaded, config_errors) = crate::config::load_paths(paths);
    let mut errors: Vec<anyhow::Error> = config_errors
        .into_iter()
        .map(|e| anyhow::anyhow!("{e}"))
        .collect();
    let mut done = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for p in &loaded {
        for h in &p.config.handlers {
            let path: std::path::PathBuf = p.base_dir.join(&h.plugin).components().collect();
            let limits = settings::limits(&h.limits);
            if !seen.insert((path.clone(), limits.stack_kb)) {
                continue;
            }
            match host.load(&path, &limits) {
                Ok(plugin) => done.push(Precompiled {
                    plugin: path,
                    from_cache: plugin.from_cache,
                    compile_time: plugin.compile_time,
                }),
                Err(err) => errors.push(err.context(format!("pipeline {}", p.config.name))),
            }
        }
    }
    (done, errors)
}

fn init_settings(h: &HandlerConfig) -> Vec<(String, String)> {
    h.config
        .iter()
        .map(|(k, v)| (k.clone(), v.0.clone()))
        .collect()
}

/// Build one pipeline: plugins (loaded first: the likeliest to fail), connectors, policy. A
/// restarted pipeline starts its counters from zero, like a restarted process.
pub fn build(host: &PluginHost, p: &LoadedPipeline) -> anyhow::Result<BuiltPipeline> {
    let cfg = &p.config;
    let ctx = BuildContext {
        pipeline: cfg.name.as_str().into(),
        max_in_flight: cfg.delivery.max_in_flight,
        base_dir: p.base_dir.clone(),
    };
    let mut handlers = Vec::new();
    for h in &cfg.handlers {
        let name = h.display_name();
        let handler = load_handler(host, p, h).with_context(|| format!("pipeline {}", cfg.name))?;
        tracing::info!(pipeline = %cfg.name, handler = %name, sha256 = %handler.hash(), "handler loaded");
        handlers.push(Arc::new(HotHandler::new(name, handler, h.version_header)));
    }
    let source_factory = cfg.source.factory();
    let source = source_factory
        .build(&ctx)
        .with_context(|| format!("pipeline {}: source ({})", cfg.name, cfg.source.type_name()))?;
    let mut sinks = HashMap::new();
    for (name, sink) in &cfg.sinks {
        let built = sink.factory().build(&ctx).with_context(|| {
            format!(
                "pipeline {}: sink `{name}` ({})",
                cfg.name,
                sink.type_name()
            )
        })?;
        sinks.insert(name.clone(), built);
    }
    let dead_letter = cfg.dead_letter.factory().build(&ctx).with_context(|| {
        format!(
            "pipeline {}: dead_letter ({})",
            cfg.name,
            cfg.dead_letter.type_name()
        )
    })?;
    let workers = workers(cfg);
    let stats = Arc::new(PipelineStats::default());
    let pipeline = Pipeline {
        name: cfg.name.as_str().into(),
        source,
        source_redelivers: source_factory.redelivers(),
        chain: handlers
            .iter()
            .map(|h| h.clone() as Arc<dyn Transform>)
            .collect(),
        sinks,
        default_sink: cfg.default_sink.clone(),
        dead_letter,
        delivery: settings::delivery(&cfg.delivery),
        shutdown_deadline: Duration::from_millis(cfg.shutdown_deadline_ms),
        workers,
        stats: stats.clone(),
        payload_log: cfg
            .logging
            .payloads
            .then(|| Arc::new(PayloadLog::new(&cfg.logging.scrub_fields))),
    };
    let entry = entry(cfg, &stats, &handlers);
    Ok(BuiltPipeline {
        pipeline,
        stats,
        handlers,
        entry,
    })
}

fn entry(
    cfg: &PipelineConfig,
    stats: &Arc<PipelineStats>,
    handlers: &[Arc<HotHandler>],
) -> PipelineEntry {
    PipelineEntry {
        name: cfg.name.clone(),
        source: cfg.source.type_name().to_owned(),
        sinks: cfg
            .sinks
            .iter()
            .map(|(name, sink)| (name.clone(), sink.type_name().to_owned()))
            .collect(),
        plugins: handlers
            .iter()
            .map(|h| h.clone() as Arc<dyn PluginView>)
            .collect(),
        stats: stats.clone(),
    }
}

/// Concurrent handler calls of a pipeline: the smallest `instances` of its handlers, else the
/// number of CPUs.
pub fn workers(cfg: &PipelineConfig) -> usize {
    cfg.handlers
        .iter()
        .filter_map(|h| h.limits.instances)
        .min()
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get()))
}
