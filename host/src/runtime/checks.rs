//! `sluice validate`: every error a pipeline file has, in one run, without touching the network.
//! The file's own errors (schema, cross-field, connector settings) come from the config crate;
//! here are the rest, the checks that `run` would make: every handler's plugin is loaded (its
//! `init` run) — also in files with other errors, for each handler that reads — and each
//! connector's local checks (files and directories) are made.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use crate::config::{
    ConfigError, FieldError, HandlerConfig, LoadedPipeline, ReadableParts, load_paths, positions,
    readable_parts,
};
use crate::connector::{BuildContext, SinkConfig, SourceConfig};
use crate::plugin::PluginHost;
use sluice_core::files::{MAX_PIPELINE_FILE, read_text_bounded};

/// Validate the pipeline files in `paths`: the pipelines that are valid, and every error found.
pub fn validate(host: &PluginHost, paths: &[PathBuf]) -> (Vec<LoadedPipeline>, Vec<ConfigError>) {
    let (loaded, mut errors) = load_paths(paths);
    // Files that did not load: their errors so far are the file's own.
    let failed: HashSet<PathBuf> = errors.iter().map(|e| e.file.clone()).collect();
    let mut valid = Vec::new();
    for p in loaded {
        let cfg = &p.config;
        let sinks: Vec<(String, SinkConfig)> = cfg
            .sinks
            .iter()
            .map(|(n, s)| (n.clone(), s.clone()))
            .collect();
        let parts = ReadableParts {
            handlers: cfg.handlers.iter().cloned().enumerate().collect(),
            source: Some(cfg.source.clone()),
            sinks,
            dead_letter: Some(cfg.dead_letter.clone()),
        };
        let found = part_errors(host, &p.file, &p.base_dir, &cfg.name, &parts, &errors);
        if found.is_empty() {
            valid.push(p);
        }
        errors.extend(found);
    }
    // Files with errors of their own: the parts that read are checked too.
    for file in failed {
        let base_dir = file.parent().map(Path::to_path_buf).unwrap_or_default();
        let name = file
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        let parts = readable_parts(&file);
        let found = part_errors(host, &file, &base_dir, &name, &parts, &errors);
        errors.extend(found);
    }
    errors.sort_by(|a, b| {
        (&a.file, a.location.unwrap_or((usize::MAX, 0)))
            .cmp(&(&b.file, b.location.unwrap_or((usize::MAX, 0))))
    });
    (valid, errors)
}

/// Load each handler's plugin (compile, check the world, run `init`); errors are located at
/// `handlers[i].plugin`.
fn plugin_errors(
    host: &PluginHost,
    file: &Path,
    base_dir: &Path,
    pipeline: &str,
    handlers: &[(usize, HandlerConfig)],
) -> Vec<ConfigError> {
    let failed: Vec<(usize, anyhow::Error)> = handlers
        .iter()
        .filter_map(|(i, h)| {
            super::load_handler_in(host, pipeline, base_dir, h)
                .err()
                .map(|e| (*i, e))
        })
        .collect();
    located(
        file,
        failed
            .into_iter()
            .map(|(i, e)| FieldError::new(format!("handlers[{i}].plugin"), format!("{e:#}")))
            .collect(),
    )
}

/// The plugin and connector errors of `parts` of `file`, leaving out a handler with an error
/// already reported inside it (in `reported`): loading it with a rejected limit would only
/// report that again.
fn part_errors(
    host: &PluginHost,
    file: &Path,
    base_dir: &Path,
    pipeline: &str,
    parts: &ReadableParts,
    reported: &[ConfigError],
) -> Vec<ConfigError> {
    let spoilt: HashSet<usize> = reported
        .iter()
        .filter(|e| e.file == file)
        .filter_map(|e| {
            let rest = e.error.path.strip_prefix("handlers[")?;
            let (index, field) = rest.split_once(']')?;
            field.starts_with('.').then(|| index.parse().ok())?
        })
        .collect();
    let handlers: Vec<(usize, HandlerConfig)> = parts
        .handlers
        .iter()
        .filter(|(i, _)| !spoilt.contains(i))
        .cloned()
        .collect();
    let mut found = plugin_errors(host, file, base_dir, pipeline, &handlers);
    let ctx = BuildContext {
        pipeline: pipeline.into(),
        max_in_flight: 1,
        base_dir: base_dir.to_path_buf(),
    };
    let mut local = Vec::new();
    // A connector section reads only without what the schema rejected in it, so its local
    // checks never repeat an error already reported.
    if let Some(source) = &parts.source {
        local.extend(source_errors(source, &ctx));
    }
    for (name, sink) in &parts.sinks {
        local.extend(sink_errors(sink, &ctx, &format!("sinks.{name}")));
    }
    if let Some(dl) = &parts.dead_letter {
        local.extend(sink_errors(dl, &ctx, "dead_letter"));
    }
    found.extend(located(file, local));
    found
}

/// What building the source would find wrong without the network.
fn source_errors(source: &SourceConfig, ctx: &BuildContext) -> Vec<FieldError> {
    let mut errs = Vec::new();
    source.factory().check_local(ctx, &mut errs);
    errs.into_iter().map(|e| e.under("source")).collect()
}

/// What building a sink would find wrong without the network.
fn sink_errors(sink: &SinkConfig, ctx: &BuildContext, section: &str) -> Vec<FieldError> {
    let mut errs = Vec::new();
    sink.factory().check_local(ctx, &mut errs);
    errs.into_iter().map(|e| e.under(section)).collect()
}

/// Each error with its line and column, the file read once however many there are.
fn located(file: &Path, found: Vec<FieldError>) -> Vec<ConfigError> {
    if found.is_empty() {
        return Vec::new();
    }
    let at = read_text_bounded(file, MAX_PIPELINE_FILE)
        .map(|text| positions(&text))
        .unwrap_or_default();
    found
        .into_iter()
        .map(|error| ConfigError {
            file: file.to_path_buf(),
            location: at.of(&error.path),
            error,
        })
        .collect()
}
