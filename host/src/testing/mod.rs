//! `sluice test`: unit tests for pipelines, without any broker.
//!
//! A test file names a pipeline file and lists cases: input messages, and what each sink, the
//! dead-letter sink and the filter count must end up with. The runner keeps the pipeline's
//! handlers, routes and delivery policy, and replaces its source and sinks with in-memory ones
//! (same sink names), so the real components run the real chain. A mismatch is reported as a
//! readable diff. Format: `docs/testing.md`.

mod expect;
mod file;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use tokio_util::sync::CancellationToken;

use crate::config::{LoadedPipeline, load_file};
use crate::connector::memory::{MemoryQueue, MemorySinkConfig, MemorySourceConfig, StoredMessage};
use crate::connector::{SinkConfig, SourceConfig};
use crate::engine::{DEAD_LETTER_SINK, PipelineStats};
use crate::plugin::PluginHost;
use crate::runtime::build;

pub use file::{TestCase, TestFile};

/// How long one case may take before it is reported as stuck.
const CASE_TIMEOUT: Duration = Duration::from_secs(30);

/// The outcome of one case.
#[derive(Debug)]
pub struct CaseResult {
    pub file: PathBuf,
    pub name: String,
    /// Empty when the case passed; otherwise each mismatch, readable.
    pub failures: Vec<String>,
}

/// Run every case of the test file at `path`.
pub async fn run_file(host: &PluginHost, path: &Path) -> anyhow::Result<Vec<CaseResult>> {
    let test = TestFile::load(path)?;
    let dir = path.parent().unwrap_or_else(|| Path::new("."));
    let several = test.pipelines.len() > 1;
    let mut results = Vec::new();
    for pipeline in test.pipeline.iter().chain(&test.pipelines) {
        let pipeline_path = dir.join(pipeline);
        let loaded = load_file(&pipeline_path).map_err(|errors| {
            let lines: Vec<String> = errors.iter().map(ToString::to_string).collect();
            anyhow::anyhow!("{}", lines.join("\n"))
        })?;
        for (i, case) in test.tests.iter().enumerate() {
            let mut name = case.name.clone().unwrap_or_else(|| format!("tests[{i}]"));
            if several {
                name = format!("[{}] {name}", loaded.config.name);
            }
            let failures = match run_case(host, &loaded, case).await {
                Ok(outcome) => expect::compare(case, &outcome),
                Err(err) => vec![format!("could not run: {err:#}")],
            };
            results.push(CaseResult {
                file: path.to_path_buf(),
                name,
                failures,
            });
        }
    }
    Ok(results)
}

/// What one case produced.
#[derive(Debug, Default)]
pub struct Outcome {
    /// Sink name (and `dead_letter`) → messages, in order.
    pub sinks: BTreeMap<String, Vec<StoredMessage>>,
    pub filtered: u64,
    pub discarded: u64,
}

async fn run_case(
    host: &PluginHost,
    loaded: &LoadedPipeline,
    case: &TestCase,
) -> anyhow::Result<Outcome> {
    static RUN: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let run = RUN.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let queue = |name: &str| format!("sluice-test-{}-{run}-{name}", std::process::id());

    let mut p = loaded.clone();
    let cfg = &mut p.config;
    cfg.source = SourceConfig::memory(MemorySourceConfig {
        queue: queue("input"),
        visibility_timeout_ms: 60_000,
    });
    for (name, sink) in cfg.sinks.iter_mut() {
        *sink = SinkConfig::memory(MemorySinkConfig { queue: queue(name) });
    }
    cfg.dead_letter = SinkConfig::memory(MemorySinkConfig {
        queue: queue(DEAD_LETTER_SINK),
    });
    // One delivery at a time, so outputs arrive in input order; retries without waiting.
    cfg.delivery.max_in_flight = 1;
    cfg.delivery.batch_size = 1;
    cfg.delivery.rate_limit = None;
    cfg.delivery.retry.base_delay_ms = 0;
    cfg.delivery.retry.max_delay_ms = 0;

    let input = MemoryQueue::named(&queue("input"));
    for (i, m) in case.input.iter().enumerate() {
        input.push(m.to_stored().with_context(|| format!("input[{i}]"))?);
    }
    let (host, built_from) = (host.clone(), p.clone());
    let built = tokio::task::spawn_blocking(move || build(&host, &built_from))
        .await
        .context("building the pipeline")??;
    let stats: Arc<PipelineStats> = built.stats.clone();
    let stop = CancellationToken::new();
    let running = tokio::spawn(built.pipeline.run(stop.clone()));
    let expected = case.input.len() as u64;
    let settled = tokio::time::timeout(CASE_TIMEOUT, async {
        while PipelineStats::get(&stats.acked)
            + PipelineStats::get(&stats.filtered)
            + PipelineStats::get(&stats.discarded)
            + PipelineStats::get(&stats.dead_lettered)
            < expected
        {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    })
    .await;
    stop.cancel();
    running.await.context("the pipeline task")??;
    if settled.is_err() {
        anyhow::bail!(
            "not every input was settled within {}s (a sink kept failing?)",
            CASE_TIMEOUT.as_secs()
        );
    }
    let mut outcome = Outcome {
        filtered: PipelineStats::get(&stats.filtered),
        discarded: PipelineStats::get(&stats.discarded),
        ..Outcome::default()
    };
    for name in p
        .config
        .sinks
        .keys()
        .map(String::as_str)
        .chain([DEAD_LETTER_SINK])
    {
        let messages = MemoryQueue::named(&queue(name)).drain();
        outcome.sinks.insert(name.to_owned(), messages);
    }
    Ok(outcome)
}
