//! The supervisor: runs a host's pipelines and applies reloads to them while they run.
//!
//! A reload (from the file watcher, SIGHUP or the admin API) re-reads the pipeline files and the
//! plugins they name, and changes only what changed:
//! - a new file starts its pipeline; a removed file stops its pipeline (drained, like a shutdown);
//! - a changed file builds the new version first and, only if it builds, drains the old one and
//!   starts the new one (messages not yet pulled wait in the broker; none is lost or handled
//!   twice);
//! - a changed plugin is compiled, checked and initialised off the message path, then swapped
//!   in atomically ([`HotHandler`]);
//! - anything invalid (a file with errors, a plugin that does not compile, implements another
//!   world or fails `init`) is refused with its errors and the running version stays.
//!
//! Architecture invariant: a reload never stops a running version before its replacement has
//! been built and checked.

use std::collections::{BTreeMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use anyhow::Context as _;
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::watch::Watcher;
use super::{BuiltPipeline, HotHandler, build, load_handler, workers};
use crate::config::{LoadedPipeline, load_file, load_paths};
use crate::engine::{PipelineState, PipelineStats, RunEnd};
use crate::plugin::{PluginHost, WasmHandler, content_hash};
use crate::telemetry::Inventory;

/// What a reload looks at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReloadScope {
    /// Every pipeline file and plugin.
    All,
    /// One running pipeline: its file and its plugins.
    Pipeline(String),
}

/// A request to reload, with where to send the report.
#[derive(Debug)]
pub struct ReloadRequest {
    pub scope: ReloadScope,
    /// What asked for it (`watch`, `SIGHUP`, `admin`), for the log and the report.
    pub cause: &'static str,
    pub reply: Option<oneshot::Sender<ReloadReport>>,
}

impl ReloadRequest {
    /// A request that gets its report back.
    pub fn with_reply(
        scope: ReloadScope,
        cause: &'static str,
    ) -> (Self, oneshot::Receiver<ReloadReport>) {
        let (tx, rx) = oneshot::channel();
        let request = ReloadRequest {
            scope,
            cause,
            reply: Some(tx),
        };
        (request, rx)
    }
}

/// What a reload did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReloadReport {
    /// Nothing was refused.
    pub ok: bool,
    pub cause: String,
    /// Pipelines started from new files.
    pub started: Vec<String>,
    /// Pipelines whose file changed: drained and started again with the new version.
    pub restarted: Vec<String>,
    /// Pipelines whose file was removed: drained and stopped.
    pub stopped: Vec<String>,
    /// Plugins swapped in: `pipeline/handler: old-hash -> new-hash`.
    pub swapped: Vec<String>,
    /// Changes refused, each with its errors; the running versions stayed.
    pub refused: Vec<String>,
}

impl ReloadReport {
    fn changed_anything(&self) -> bool {
        !(self.started.is_empty()
            && self.restarted.is_empty()
            && self.stopped.is_empty()
            && self.swapped.is_empty()
            && self.refused.is_empty())
    }
}

/// A pipeline the supervisor runs.
struct Running {
    loaded: LoadedPipeline,
    /// SHA-256 of the pipeline file when it was loaded.
    fingerprint: String,
    handlers: Vec<Arc<HotHandler>>,
    stats: Arc<PipelineStats>,
    stop: CancellationToken,
    task: JoinHandle<()>,
    generation: u64,
}

/// A pipeline run that ended.
struct Ended {
    name: String,
    generation: u64,
    result: anyhow::Result<RunEnd>,
}

/// Runs the pipelines of one host; see the module docs.
pub struct Supervisor {
    host: PluginHost,
    paths: Vec<PathBuf>,
    inventory: Inventory,
    shutdown: CancellationToken,
    running: BTreeMap<String, Running>,
    generation: u64,
    ended_tx: mpsc::UnboundedSender<Ended>,
    ended_rx: mpsc::UnboundedReceiver<Ended>,
    ends: Vec<(String, RunEnd)>,
    failure: Option<anyhow::Error>,
}

impl Supervisor {
    /// A supervisor for the pipeline files found at `paths`; every pipeline stops when
    /// `shutdown` is cancelled.
    pub fn new(
        host: PluginHost,
        paths: Vec<PathBuf>,
        inventory: Inventory,
        shutdown: CancellationToken,
    ) -> Self {
        let (ended_tx, ended_rx) = mpsc::unbounded_channel();
        Supervisor {
            host,
            paths,
            inventory,
            shutdown,
            running: BTreeMap::new(),
            generation: 0,
            ended_tx,
            ended_rx,
            ends: Vec::new(),
            failure: None,
        }
    }

    /// Build every pipeline of `loaded`, then start them all. A pipeline that fails to build
    /// stops the start-up before any pipeline runs.
    pub async fn start(&mut self, loaded: Vec<LoadedPipeline>) -> anyhow::Result<()> {
        let mut built = Vec::new();
        for p in loaded {
            let b = build_off_the_runtime(&self.host, &p).await?;
            let fingerprint = fingerprint(&p);
            built.push((p, fingerprint, b));
        }
        for (p, fingerprint, b) in built {
            self.spawn(p, fingerprint, b);
        }
        Ok(())
    }

    /// Apply reload requests until shutdown, or until every pipeline has ended on its own; then
    /// drain what runs. `watch` (the sender side of `requests`) turns the file watcher on.
    pub async fn run(
        mut self,
        mut requests: mpsc::Receiver<ReloadRequest>,
        watch: Option<mpsc::Sender<ReloadRequest>>,
    ) -> anyhow::Result<Vec<(String, RunEnd)>> {
        let mut watcher = match watch {
            Some(tx) => match Watcher::new(tx) {
                Ok(w) => Some(w),
                Err(err) => {
                    tracing::warn!(error = %format!("{err:#}"), "cannot watch files; reload with SIGHUP or POST /reload");
                    None
                }
            },
            None => None,
        };
        self.update_watch(&mut watcher);
        while !self.running.is_empty() {
            tokio::select! {
                biased;
                () = self.shutdown.cancelled() => break,
                Some(ended) = self.ended_rx.recv() => self.ended(ended),
                Some(request) = requests.recv() => {
                    let report = self.reload(&request.scope, request.cause).await;
                    self.update_watch(&mut watcher);
                    if let Some(reply) = request.reply {
                        let _ = reply.send(report);
                    }
                }
            }
        }
        drop(watcher);
        // Shutdown: every pipeline's token is a child of `shutdown`, so all are draining now.
        for (_, r) in std::mem::take(&mut self.running) {
            r.stop.cancel();
            let _ = r.task.await;
            while let Ok(ended) = self.ended_rx.try_recv() {
                self.record_end(ended);
            }
        }
        match self.failure {
            Some(err) => Err(err),
            None => Ok(self.ends),
        }
    }

    fn ended(&mut self, ended: Ended) {
        // Only the current version's end counts; replaced versions were drained on purpose.
        if self
            .running
            .get(&ended.name)
            .is_some_and(|r| r.generation == ended.generation)
        {
            self.running.remove(&ended.name);
            self.record_end(ended);
        }
    }

    fn record_end(&mut self, ended: Ended) {
        match ended.result {
            Ok(end) => self.ends.push((ended.name, end)),
            Err(err) => {
                let err = err.context(format!("pipeline {}", ended.name));
                tracing::error!(error = %format!("{err:#}"), "pipeline failed");
                self.failure.get_or_insert(err);
            }
        }
    }

    fn spawn(&mut self, p: LoadedPipeline, fingerprint: String, built: BuiltPipeline) {
        self.generation += 1;
        let generation = self.generation;
        let name = p.config.name.clone();
        let stop = self.shutdown.child_token();
        let BuiltPipeline {
            pipeline,
            stats,
            handlers,
            entry,
        } = built;
        self.inventory.insert(entry);
        let ended = self.ended_tx.clone();
        let run_stop = stop.clone();
        let run_stats = stats.clone();
        let run_name = name.clone();
        let task = tokio::spawn(async move {
            let result = pipeline.run(run_stop).await;
            if result.is_err() {
                run_stats.set_state(PipelineState::Failed);
            }
            let _ = ended.send(Ended {
                name: run_name,
                generation,
                result,
            });
        });
        self.running.insert(
            name,
            Running {
                loaded: p,
                fingerprint,
                handlers,
                stats,
                stop,
                task,
                generation,
            },
        );
    }

    /// Drain and stop one pipeline, as a shutdown would.
    async fn stop(&mut self, name: &str) {
        if let Some(r) = self.running.remove(name) {
            r.stop.cancel();
            let _ = r.task.await;
            self.inventory.remove(name);
        }
    }

    async fn reload(&mut self, scope: &ReloadScope, cause: &'static str) -> ReloadReport {
        let mut report = ReloadReport {
            cause: cause.to_owned(),
            ..ReloadReport::default()
        };
        let (loaded, errors) = match scope {
            ReloadScope::All => load_paths(&self.paths),
            ReloadScope::Pipeline(name) => match self.running.get(name) {
                Some(r) => match load_file(&r.loaded.file) {
                    Ok(p) if p.config.name == *name => (vec![p], Vec::new()),
                    Ok(p) => {
                        let msg = format!(
                            "{}: renames the pipeline `{name}` to `{}`; reload everything to apply that",
                            r.loaded.file.display(),
                            p.config.name
                        );
                        report.refused.push(msg);
                        (Vec::new(), Vec::new())
                    }
                    Err(e) => (Vec::new(), e),
                },
                None => {
                    report.refused.push(format!("no pipeline named `{name}`"));
                    return self.finish(report);
                }
            },
        };

        // Files with errors are refused; the pipelines they ran keep running.
        let bad_files: HashSet<PathBuf> = errors.iter().map(|e| e.file.clone()).collect();
        for e in &errors {
            report.refused.push(e.to_string());
        }
        for r in self.running.values() {
            if bad_files.contains(&r.loaded.file) {
                let of_file: Vec<String> = errors
                    .iter()
                    .filter(|e| e.file == r.loaded.file)
                    .map(ToString::to_string)
                    .collect();
                r.stats
                    .record_error(format!("reload refused: {}", of_file.join("; ")));
            }
        }

        if *scope == ReloadScope::All {
            let present: HashSet<&str> = loaded.iter().map(|p| p.config.name.as_str()).collect();
            let gone: Vec<String> = self
                .running
                .iter()
                .filter(|(name, r)| {
                    !present.contains(name.as_str()) && !bad_files.contains(&r.loaded.file)
                })
                .map(|(name, _)| name.clone())
                .collect();
            for name in gone {
                tracing::info!(pipeline = %name, "pipeline file removed; draining the pipeline");
                self.stop(&name).await;
                report.stopped.push(name);
            }
        }

        for p in loaded {
            let name = p.config.name.clone();
            let fingerprint = fingerprint(&p);
            let changed = match self.running.get(&name) {
                None => None,
                Some(r) => Some(r.fingerprint != fingerprint || r.loaded.file != p.file),
            };
            match changed {
                None => match build_off_the_runtime(&self.host, &p).await {
                    Ok(built) => {
                        tracing::info!(pipeline = %name, file = %p.file.display(), "starting a new pipeline");
                        self.spawn(p, fingerprint, built);
                        report.started.push(name);
                    }
                    Err(err) => report.refused.push(format!("{err:#}")),
                },
                Some(true) => match build_off_the_runtime(&self.host, &p).await {
                    // Built and checked: only now is the running version drained and replaced.
                    Ok(built) => {
                        tracing::info!(pipeline = %name, "pipeline file changed; draining and restarting it");
                        self.stop(&name).await;
                        self.spawn(p, fingerprint, built);
                        report.restarted.push(name);
                    }
                    Err(err) => {
                        let msg = format!("{err:#}");
                        if let Some(r) = self.running.get(&name) {
                            r.stats.record_error(format!("reload refused: {msg}"));
                        }
                        report.refused.push(msg);
                    }
                },
                Some(false) => match self.swap_changed_plugins(&p).await {
                    Ok(swapped) => report.swapped.extend(swapped),
                    Err(err) => {
                        let msg = format!("{err:#}");
                        if let Some(r) = self.running.get(&name) {
                            r.stats.record_error(format!("reload refused: {msg}"));
                        }
                        report.refused.push(msg);
                    }
                },
            }
        }
        self.finish(report)
    }

    /// Load every plugin of `p` that differs from the version running, off the runtime; swap
    /// them in only if all of them load.
    async fn swap_changed_plugins(&self, p: &LoadedPipeline) -> anyhow::Result<Vec<String>> {
        let name = &p.config.name;
        let Some(r) = self.running.get(name) else {
            return Ok(Vec::new());
        };
        let mut changed = Vec::new();
        for (i, (h, hot)) in p.config.handlers.iter().zip(&r.handlers).enumerate() {
            let path = p.base_dir.join(&h.plugin);
            let bytes = std::fs::read(&path).with_context(|| {
                format!("pipeline {name}: plugin {}: cannot read", path.display())
            })?;
            if content_hash(&bytes) != hot.hash() {
                changed.push(i);
            }
        }
        if changed.is_empty() {
            return Ok(Vec::new());
        }
        let (host, loaded, which) = (self.host.clone(), p.clone(), changed.clone());
        let versions: Vec<(usize, WasmHandler)> = tokio::task::spawn_blocking(move || {
            which
                .into_iter()
                .map(|i| {
                    let h = &loaded.config.handlers[i];
                    load_handler(&host, &loaded, h)
                        // A warm instance per worker, so the swap costs no instantiation.
                        .and_then(|w| w.prewarm(workers(&loaded.config)).map(|()| w))
                        .with_context(|| {
                            format!(
                                "pipeline {}: handler `{}`",
                                loaded.config.name,
                                h.display_name()
                            )
                        })
                        .map(|w| (i, w))
                })
                .collect::<anyhow::Result<_>>()
        })
        .await
        .context("loading the new plugin versions")??;
        let mut swapped = Vec::new();
        for (i, version) in versions {
            let hot = &r.handlers[i];
            let (old, new) = (hot.hash(), version.hash().to_owned());
            hot.swap(version);
            tracing::info!(pipeline = %name, handler = %hot.handler_name(), old = %short(&old), new = %short(&new), "plugin swapped");
            swapped.push(format!(
                "{name}/{}: {} -> {}",
                hot.handler_name(),
                short(&old),
                short(&new)
            ));
        }
        Ok(swapped)
    }

    fn finish(&self, mut report: ReloadReport) -> ReloadReport {
        report.ok = report.refused.is_empty();
        if !report.changed_anything() {
            tracing::debug!(cause = report.cause, "reload: nothing changed");
            return report;
        }
        let log = self.inventory.reloads();
        if report.ok {
            log.applied.fetch_add(1, Ordering::Relaxed);
            tracing::info!(
                cause = report.cause,
                started = ?report.started,
                restarted = ?report.restarted,
                stopped = ?report.stopped,
                swapped = ?report.swapped,
                "reload applied"
            );
        } else {
            log.refused.fetch_add(1, Ordering::Relaxed);
            for refusal in &report.refused {
                tracing::warn!(cause = report.cause, refused = %refusal, "reload refused a change; the running version stays");
            }
        }
        if let Ok(value) = serde_json::to_value(&report) {
            *log.last.lock().unwrap_or_else(|e| e.into_inner()) = Some(value);
        }
        report
    }

    /// Watch the directories of the pipeline files and of every plugin that runs.
    fn update_watch(&self, watcher: &mut Option<Watcher>) {
        let Some(watcher) = watcher else {
            return;
        };
        let mut dirs: Vec<PathBuf> = self
            .paths
            .iter()
            .map(|p| {
                if p.is_dir() {
                    p.clone()
                } else {
                    p.parent().map(PathBuf::from).unwrap_or_default()
                }
            })
            .collect();
        for r in self.running.values() {
            for h in &r.loaded.config.handlers {
                if let Some(dir) = r.loaded.base_dir.join(&h.plugin).parent() {
                    dirs.push(dir.to_path_buf());
                }
            }
        }
        watcher.watch_dirs(dirs);
    }
}

/// Building loads plugins (compiling them on a cache miss) and connectors: blocking work, kept
/// off the async workers.
async fn build_off_the_runtime(
    host: &PluginHost,
    p: &LoadedPipeline,
) -> anyhow::Result<BuiltPipeline> {
    let (host, p) = (host.clone(), p.clone());
    tokio::task::spawn_blocking(move || build(&host, &p))
        .await
        .context("building the pipeline")?
}

fn fingerprint(p: &LoadedPipeline) -> String {
    std::fs::read(&p.file)
        .map(|bytes| content_hash(&bytes))
        .unwrap_or_default()
}

fn short(hash: &str) -> &str {
    &hash[..hash.len().min(12)]
}
