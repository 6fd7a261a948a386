//! Turns loaded pipeline files into running pipelines: builds connectors from the registry,
//! loads plugins through the plugin host, and runs everything until shutdown.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use tokio_util::sync::CancellationToken;

use crate::config::{ConfigError, FieldError, LoadedPipeline};
use crate::connector::BuildContext;
use crate::engine::{Pipeline, PipelineState, PipelineStats, RunEnd, Transform};
use crate::plugin::{PluginHost, WasmHandler};
use crate::telemetry::payload_log::PayloadLog;
use crate::telemetry::{Inventory, PipelineEntry, PluginInfo};

/// A pipeline ready to run, with handles to watch it.
pub struct BuiltPipeline {
    pub pipeline: Pipeline,
    pub stats: Arc<PipelineStats>,
    pub handlers: Vec<Arc<WasmHandler>>,
    /// What the admin API and `/metrics` show of it.
    pub entry: PipelineEntry,
}

/// Load every handler of `p` (compile, check the world, run `init`); used by `sluice validate`.
/// Errors are located at `handlers[i].plugin`.
pub fn check_plugins(host: &PluginHost, p: &LoadedPipeline) -> Vec<ConfigError> {
    p.config
        .handlers
        .iter()
        .enumerate()
        .filter_map(|(i, h)| {
            let loaded = host
                .load(&p.base_dir.join(&h.plugin), &h.limits)
                .and_then(|plugin| {
                    plugin.into_handler(&p.config.name, &h.display_name(), settings(h), h.batch_abi)
                });
            loaded.err().map(|e| ConfigError {
                file: p.file.clone(),
                error: FieldError::new(format!("handlers[{i}].plugin"), format!("{e:#}")),
            })
        })
        .collect()
}

fn settings(h: &crate::config::HandlerConfig) -> Vec<(String, String)> {
    h.config
        .iter()
        .map(|(k, v)| (k.clone(), v.0.clone()))
        .collect()
}

/// Build one pipeline: connectors, plugins, policy.
pub fn build(host: &PluginHost, p: &LoadedPipeline) -> anyhow::Result<BuiltPipeline> {
    let cfg = &p.config;
    let ctx = BuildContext {
        pipeline: cfg.name.as_str().into(),
        max_in_flight: cfg.delivery.max_in_flight,
        base_dir: p.base_dir.clone(),
    };
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
    let mut handlers = Vec::new();
    for h in &cfg.handlers {
        let name = h.display_name();
        let plugin = host
            .load(&p.base_dir.join(&h.plugin), &h.limits)
            .with_context(|| format!("pipeline {}", cfg.name))?;
        let handler = plugin
            .into_handler(&cfg.name, &name, settings(h), h.batch_abi)
            .with_context(|| format!("pipeline {}", cfg.name))?;
        tracing::info!(pipeline = %cfg.name, handler = %name, sha256 = %handler.hash(), "handler loaded");
        handlers.push(Arc::new(handler));
    }
    let workers = cfg
        .handlers
        .iter()
        .filter_map(|h| h.limits.instances)
        .min()
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get()));
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
        delivery: cfg.delivery.clone(),
        shutdown_deadline: Duration::from_millis(cfg.shutdown_deadline_ms),
        workers,
        stats: stats.clone(),
        payload_log: cfg
            .logging
            .payloads
            .then(|| Arc::new(PayloadLog::new(&cfg.logging.scrub_fields))),
    };
    let entry = PipelineEntry {
        name: cfg.name.clone(),
        source: cfg.source.type_name().to_owned(),
        sinks: cfg
            .sinks
            .iter()
            .map(|(name, sink)| (name.clone(), sink.type_name().to_owned()))
            .collect(),
        plugins: cfg
            .handlers
            .iter()
            .zip(&handlers)
            .map(|(h, loaded)| {
                let counted = loaded.clone();
                PluginInfo {
                    name: h.display_name(),
                    sha256: loaded.hash().to_owned(),
                    version: loaded.version().map(str::to_owned),
                    counters: Arc::new(move || counted.counters()),
                }
            })
            .collect(),
        stats: stats.clone(),
    };
    Ok(BuiltPipeline {
        pipeline,
        stats,
        handlers,
        entry,
    })
}

/// Run every pipeline until each one's source ends or `shutdown` is cancelled. A pipeline that
/// fails to build stops the start-up before any pipeline runs. Each pipeline is listed in
/// `inventory` while the host runs it.
pub async fn run_all(
    host: &PluginHost,
    pipelines: &[LoadedPipeline],
    inventory: &Inventory,
    shutdown: CancellationToken,
) -> anyhow::Result<Vec<(String, RunEnd)>> {
    let mut built = Vec::new();
    for p in pipelines {
        built.push((p.config.name.clone(), build(host, p)?));
    }
    let runs = built.into_iter().map(|(name, b)| {
        let shutdown = shutdown.clone();
        let stats = b.stats.clone();
        inventory.insert(b.entry);
        async move {
            let result = b.pipeline.run(shutdown).await;
            if result.is_err() {
                stats.set_state(PipelineState::Failed);
            }
            (name, result)
        }
    });
    let mut ends = Vec::new();
    for (name, result) in futures::future::join_all(runs).await {
        ends.push((
            name.clone(),
            result.with_context(|| format!("pipeline {name}"))?,
        ));
    }
    Ok(ends)
}
