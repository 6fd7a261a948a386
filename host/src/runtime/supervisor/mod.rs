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
//!   world or fails `init`) is refused with its errors and the running version stays;
//! - a pipeline that has ended (its source ended: a `file` read to its end, a `generate` count
//!   reached; or it failed) is not started again unless its own file changes: a reload caused by
//!   another file, or refused, would otherwise run it a second time and write every output and
//!   dead letter twice.
//!
//! Architecture invariant: a reload never stops a running version before its replacement has
//! been built and checked.

mod reload;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context as _;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::request::ReloadRequest;
use super::watch::Watcher;
use super::{BuiltPipeline, HotHandler, build};
use crate::config::LoadedPipeline;
use crate::engine::{PipelineState, PipelineStats, RunEnd};
use crate::plugin::{PluginHost, content_hash};
use crate::telemetry::Inventory;

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
    /// Pipelines that ended on their own (finished or failed), by name: the file they ran from
    /// and its fingerprint then. A reload starts one again only when that file's content (or the
    /// file) changes.
    finished: BTreeMap<String, (PathBuf, String)>,
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
            finished: BTreeMap::new(),
        }
    }

    /// Build every pipeline of `loaded`, then start them all. A pipeline that fails to build
    /// stops the start-up before any pipeline runs.
    pub async fn start(&mut self, loaded: Vec<LoadedPipeline>) -> anyhow::Result<()> {
        let names: Vec<String> = loaded.iter().map(|p| p.config.name.clone()).collect();
        for name in &names {
            self.inventory.set_starting(name, WAITING, true);
        }
        let mut built = Vec::new();
        for p in loaded {
            match self.build_first(&p, true).await {
                Ok(b) => {
                    let fingerprint = fingerprint(&p);
                    built.push((p, fingerprint, b));
                }
                Err(err) => {
                    names.iter().for_each(|n| self.inventory.clear_starting(n));
                    return Err(err);
                }
            }
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
                    // A reload (building plugins, draining replaced versions) never delays a
                    // shutdown: SIGTERM cuts it short, and what it left running is drained below.
                    let shutdown = self.shutdown.clone();
                    let report = tokio::select! {
                        biased;
                        () = shutdown.cancelled() => break,
                        report = self.reload(&request.scope, request.cause) => report,
                    };
                    self.update_watch(&mut watcher);
                    if let Some(reply) = request.reply {
                        let _ = reply.send(report);
                    }
                }
            }
        }
        drop(watcher);
        // Shutdown: every pipeline's token is a child of `shutdown`, so all are draining now.
        // Only the current versions' ends count; a replaced version that ended is not one.
        let running = std::mem::take(&mut self.running);
        let current: BTreeMap<String, u64> = running
            .iter()
            .map(|(name, r)| (name.clone(), r.generation))
            .collect();
        for (_, r) in running {
            r.stop.cancel();
            let _ = r.task.await;
            while let Ok(ended) = self.ended_rx.try_recv() {
                if current.get(&ended.name) == Some(&ended.generation) {
                    self.record_end(ended);
                }
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
            // Finished or failed alike: running it again from the same file would repeat what
            // it had already written.
            if let Some(r) = self.running.remove(&ended.name) {
                self.finished
                    .insert(ended.name.clone(), (r.loaded.file, r.fingerprint));
            }
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
        self.finished.remove(&p.config.name);
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
        self.inventory.clear_starting(&name);
        let ended = self.ended_tx.clone();
        let run_stop = stop.clone();
        let run_stats = stats.clone();
        let run_name = name.clone();
        let task = tokio::spawn(async move {
            // A panic in the pipeline's task comes back as an error (`Pipeline::run`): reported
            // like any failure, never a task that vanished while `/readyz` waits for it.
            let result = pipeline.run(run_stop).await;
            if let Err(err) = &result {
                run_stats.set_state(PipelineState::Failed);
                // `/pipelines` shows why, beside the failed state `/readyz` names.
                run_stats.record_error(format!("pipeline failed: {err:#}"));
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
        if let Some(r) = self.running.get_mut(name) {
            r.stop.cancel();
            // Awaited in place: if a shutdown cuts this reload short, the pipeline is still in
            // `running`, and the shutdown waits for its drain.
            let _ = (&mut r.task).await;
            self.running.remove(name);
            self.inventory.remove(name);
        }
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

/// What a pipeline being built for its first run waits for, as `/readyz` says it.
const WAITING: &str = "loading its handlers and connectors; a handler's first load compiles it (the log says which, and how long it took: a Python or JavaScript one takes tens of seconds)";

impl Supervisor {
    /// Build a pipeline for its first run: `/readyz` names it as starting meanwhile; at start-up
    /// (`blocks_ready`) the host is not ready until it runs, while a new file on reload leaves a
    /// host that runs its other pipelines ready. The entry goes when the build fails, or is cut
    /// short by a shutdown (this future dropped); `spawn` removes it when the pipeline starts.
    async fn build_first(
        &self,
        p: &LoadedPipeline,
        blocks_ready: bool,
    ) -> anyhow::Result<BuiltPipeline> {
        struct Starting<'a>(&'a Inventory, &'a str, bool);
        impl Drop for Starting<'_> {
            fn drop(&mut self) {
                if self.2 {
                    self.0.clear_starting(self.1);
                }
            }
        }
        self.inventory
            .set_starting(&p.config.name, WAITING, blocks_ready);
        let mut guard = Starting(&self.inventory, &p.config.name, true);
        let built = build_off_the_runtime(&self.host, p).await;
        // Built: it stays named until `spawn` inserts it, so readiness never flickers.
        guard.2 = built.is_err();
        built
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
    sluice_core::files::read_bounded(&p.file, sluice_core::files::MAX_PIPELINE_FILE)
        .map(|bytes| content_hash(&bytes))
        .unwrap_or_default()
}

fn short(hash: &str) -> &str {
    &hash[..hash.len().min(12)]
}
