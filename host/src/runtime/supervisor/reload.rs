//! Applying a reload: re-read the files and plugins in scope, start, replace, stop or swap only
//! what changed, and refuse what is invalid while the running version stays.

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::atomic::Ordering;

use anyhow::Context as _;

use super::super::request::{ReloadReport, ReloadScope};
use super::{Supervisor, build_off_the_runtime, fingerprint, short};
use crate::config::{LoadedPipeline, load_file, load_paths};
use crate::plugin::{WasmHandler, content_hash};
use crate::runtime::{load_handler, workers};

/// How a refused reload is recorded among a pipeline's errors; cleared once its file loads again.
const REFUSED: &str = "reload refused: ";

impl Supervisor {
    pub(super) async fn reload(
        &mut self,
        scope: &ReloadScope,
        cause: &'static str,
    ) -> ReloadReport {
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
                    .record_error(format!("{REFUSED}{}", of_file.join("; ")));
            }
        }

        if *scope == ReloadScope::All {
            let present: HashSet<&str> = loaded.iter().map(|p| p.config.name.as_str()).collect();
            // A finished pipeline whose file is gone is forgotten: it may come back as new.
            self.finished.retain(|name, (file, _)| {
                present.contains(name.as_str()) || bad_files.contains(file)
            });
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
            if self.finished.get(&name) == Some(&(p.file.clone(), fingerprint.clone())) {
                // It ran to its end from this very file: running it again would repeat its work.
                continue;
            }
            let changed = match self.running.get(&name) {
                None => None,
                Some(r) => Some(r.fingerprint != fingerprint || r.loaded.file != p.file),
            };
            match changed {
                None => match self.build_first(&p, false).await {
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
                        let previous = self.running.get(&name).map(|r| r.stats.clone());
                        self.stop(&name).await;
                        // Its totals go on from where the drained run left them; a refusal
                        // it showed no longer holds, since this file loads.
                        if let Some(previous) = previous {
                            let config = &p.config;
                            let sinks: Vec<String> = config
                                .sinks
                                .keys()
                                .cloned()
                                .chain([crate::engine::DEAD_LETTER_SINK.to_owned()])
                                .collect();
                            let handlers: Vec<String> =
                                config.handlers.iter().map(|h| h.display_name()).collect();
                            built.stats.carry_over(&previous, &sinks, &handlers);
                            built.stats.clear_errors(REFUSED);
                        }
                        self.spawn(p, fingerprint, built);
                        report.restarted.push(name);
                    }
                    Err(err) => {
                        let msg = format!("{err:#}");
                        if let Some(r) = self.running.get(&name) {
                            r.stats.record_error(format!("{REFUSED}{msg}"));
                        }
                        report.refused.push(msg);
                    }
                },
                Some(false) => match self.swap_changed_plugins(&p).await {
                    Ok(swapped) => {
                        // The file and its plugins load: an earlier refusal no longer holds.
                        if let Some(r) = self.running.get(&name) {
                            r.stats.clear_errors(REFUSED);
                        }
                        report.swapped.extend(swapped);
                    }
                    Err(err) => {
                        let msg = format!("{err:#}");
                        if let Some(r) = self.running.get(&name) {
                            r.stats.record_error(format!("{REFUSED}{msg}"));
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
            let bytes =
                sluice_core::files::read_bounded(&path, sluice_core::files::MAX_PLUGIN_FILE)
                    .with_context(|| {
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
            log.record(value);
        }
        report
    }
}
