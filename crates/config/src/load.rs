//! Reading pipeline files: interpolate, parse YAML, deserialize each section on its own (so one
//! bad section does not hide the errors in the others), then check what types cannot.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use serde_json::Value;

use super::{
    ConfigError, DeliveryConfig, FieldError, HandlerConfig, LoggingConfig, PipelineConfig,
    interpolate, join_path,
};
use sluice_connectors::{SinkConfig, SourceConfig};

/// A valid pipeline and where it came from.
#[derive(Debug, Clone)]
pub struct LoadedPipeline {
    pub file: PathBuf,
    /// Relative paths in the file resolve against this directory.
    pub base_dir: PathBuf,
    pub config: PipelineConfig,
}

const TOP_LEVEL: &[&str] = &[
    "name",
    "source",
    "handlers",
    "sinks",
    "default_sink",
    "dead_letter",
    "delivery",
    "shutdown_deadline_ms",
    "logging",
];

/// Expand directories into the `.yaml`/`.yml` files directly in them, sorted by name.
pub fn pipeline_files(paths: &[PathBuf]) -> Result<Vec<PathBuf>, Vec<ConfigError>> {
    let mut files = Vec::new();
    let mut errors = Vec::new();
    for path in paths {
        if path.is_dir() {
            match std::fs::read_dir(path) {
                Ok(entries) => {
                    let mut found: Vec<PathBuf> = entries
                        .filter_map(Result::ok)
                        .map(|e| e.path())
                        .filter(|p| {
                            p.is_file()
                                && matches!(
                                    p.extension().and_then(|e| e.to_str()),
                                    Some("yaml" | "yml")
                                )
                        })
                        .collect();
                    found.sort();
                    if found.is_empty() {
                        errors.push(file_error(
                            path,
                            "",
                            "directory holds no pipeline files (*.yaml, *.yml)",
                        ));
                    }
                    files.extend(found);
                }
                Err(e) => errors.push(file_error(path, "", &format!("cannot read directory: {e}"))),
            }
        } else {
            files.push(path.clone());
        }
    }
    if errors.is_empty() {
        Ok(files)
    } else {
        Err(errors)
    }
}

/// Load every pipeline in `paths` (files or directories). Returns the valid pipelines and every
/// error found, including pipeline names used twice.
pub fn load_paths(paths: &[PathBuf]) -> (Vec<LoadedPipeline>, Vec<ConfigError>) {
    let files = match pipeline_files(paths) {
        Ok(f) => f,
        Err(e) => return (Vec::new(), e),
    };
    let mut loaded = Vec::new();
    let mut errors = Vec::new();
    let mut names: HashMap<String, PathBuf> = HashMap::new();
    for file in files {
        match load_file(&file) {
            Ok(p) => {
                if let Some(first) = names.get(&p.config.name) {
                    errors.push(file_error(
                        &file,
                        "name",
                        &format!(
                            "pipeline `{}` is already defined in {}",
                            p.config.name,
                            first.display()
                        ),
                    ));
                } else {
                    names.insert(p.config.name.clone(), file.clone());
                    loaded.push(p);
                }
            }
            Err(e) => errors.extend(e),
        }
    }
    (loaded, errors)
}

/// Load one pipeline file, with the process environment for `${VAR}`.
pub fn load_file(path: &Path) -> Result<LoadedPipeline, Vec<ConfigError>> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| vec![file_error(path, "", &format!("cannot read: {e}"))])?;
    let config = parse(path, &text, |name| std::env::var(name).ok())?;
    let base_dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
    Ok(LoadedPipeline {
        file: path.to_path_buf(),
        base_dir,
        config,
    })
}

/// Parse pipeline text; `file` names it in errors and gives the default pipeline name.
pub fn parse(
    file: &Path,
    text: &str,
    env: impl Fn(&str) -> Option<String>,
) -> Result<PipelineConfig, Vec<ConfigError>> {
    let located = |errors: Vec<FieldError>| {
        errors
            .into_iter()
            .map(|error| ConfigError {
                file: file.to_path_buf(),
                error,
            })
            .collect::<Vec<_>>()
    };
    let text = interpolate(text, env).map_err(located)?;
    let default_name = file
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    parse_value(&text, &default_name).map_err(located)
}

fn parse_value(text: &str, default_name: &str) -> Result<PipelineConfig, Vec<FieldError>> {
    let doc: Value = serde_saphyr::from_str(text)
        .map_err(|e| vec![FieldError::new("", format!("not valid YAML: {e}"))])?;
    let Value::Object(top) = doc else {
        return Err(vec![FieldError::new(
            "",
            "a pipeline file must be a mapping with `source`, `sinks` and `dead_letter`",
        )]);
    };
    let mut errors = Vec::new();
    for key in top.keys().filter(|k| !TOP_LEVEL.contains(&k.as_str())) {
        errors.push(FieldError::new(
            key.as_str(),
            format!("unknown field, expected one of {}", TOP_LEVEL.join(", ")),
        ));
    }

    let name =
        optional::<String>(&top, "name", &mut errors).unwrap_or_else(|| default_name.to_owned());
    let source = required::<SourceConfig>(&top, "source", &mut errors);
    let dead_letter = required::<SinkConfig>(&top, "dead_letter", &mut errors);
    let delivery = optional::<DeliveryConfig>(&top, "delivery", &mut errors).unwrap_or_default();
    let shutdown_deadline_ms =
        optional::<u64>(&top, "shutdown_deadline_ms", &mut errors).unwrap_or(30_000);
    let logging = optional::<LoggingConfig>(&top, "logging", &mut errors).unwrap_or_default();
    for (i, field) in logging.scrub_fields.iter().enumerate() {
        if field.is_empty() || field.split('.').any(str::is_empty) {
            errors.push(FieldError::new(
                format!("logging.scrub_fields[{i}]"),
                "expected a dotted JSON path such as `card.number`",
            ));
        }
    }
    let default_sink = optional::<String>(&top, "default_sink", &mut errors);

    let mut handlers = Vec::new();
    match top.get("handlers") {
        None | Some(Value::Null) => {}
        Some(Value::Array(items)) => {
            for (i, item) in items.iter().enumerate() {
                if let Some(h) =
                    section::<HandlerConfig>(item, &format!("handlers[{i}]"), &mut errors)
                {
                    check_handler(&h, &format!("handlers[{i}]"), &mut errors);
                    // Names label metrics, spans and dead-letter headers: one per stage.
                    let name = h.display_name();
                    if let Some(first) = handlers
                        .iter()
                        .position(|o: &HandlerConfig| o.display_name() == name)
                    {
                        errors.push(FieldError::new(
                            format!("handlers[{i}]"),
                            format!("the name `{name}` is taken by handlers[{first}]; give one of them a `name`"),
                        ));
                    }
                    handlers.push(h);
                }
            }
        }
        Some(_) => errors.push(FieldError::new("handlers", "must be a list of handlers")),
    }

    let mut sinks = BTreeMap::new();
    match top.get("sinks") {
        None | Some(Value::Null) => errors.push(FieldError::new(
            "sinks",
            "missing field: a pipeline needs at least one sink",
        )),
        Some(Value::Object(map)) => {
            if map.is_empty() {
                errors.push(FieldError::new(
                    "sinks",
                    "a pipeline needs at least one sink",
                ));
            }
            for (sink_name, item) in map {
                if sink_name == sluice_core::DEAD_LETTER_SINK {
                    errors.push(FieldError::new(
                        format!("sinks.{sink_name}"),
                        "`dead_letter` names the pipeline's dead-letter sink; choose another sink name",
                    ));
                }
                if let Some(s) =
                    section::<SinkConfig>(item, &format!("sinks.{sink_name}"), &mut errors)
                {
                    sinks.insert(sink_name.clone(), s);
                }
            }
        }
        Some(_) => errors.push(FieldError::new(
            "sinks",
            "must be a mapping of sink name to sink",
        )),
    }

    // Checks across fields and per connector.
    check_name(&name, &mut errors);
    let default_sink = resolve_default_sink(default_sink, &top, &sinks, &mut errors);
    if let Some(source) = &source {
        let mut errs = Vec::new();
        source.factory().validate(&mut errs);
        errors.extend(errs.into_iter().map(|e| e.under("source")));
        if source.factory().at_most_once() && delivery.guarantee != super::Guarantee::AtMostOnce {
            errors.push(FieldError::new(
                "source.type",
                format!(
                    "a `{}` source cannot acknowledge, so it delivers at most once; set `delivery.guarantee: at_most_once` to accept that",
                    source.type_name()
                ),
            ));
        }
    }
    for (sink_name, sink) in &sinks {
        let mut errs = Vec::new();
        sink.factory().validate(&mut errs);
        errors.extend(
            errs.into_iter()
                .map(|e| e.under(&format!("sinks.{sink_name}"))),
        );
    }
    if let Some(dl) = &dead_letter {
        let mut errs = Vec::new();
        dl.factory().validate(&mut errs);
        errors.extend(errs.into_iter().map(|e| e.under("dead_letter")));
    }
    check_delivery(&delivery, &mut errors);
    if shutdown_deadline_ms == 0 && top.contains_key("shutdown_deadline_ms") {
        errors.push(FieldError::new(
            "shutdown_deadline_ms",
            "must be at least 1",
        ));
    }

    match (source, dead_letter, errors.is_empty()) {
        (Some(source), Some(dead_letter), true) => Ok(PipelineConfig {
            name,
            source,
            handlers,
            sinks,
            default_sink: default_sink.unwrap_or_default(),
            dead_letter,
            delivery,
            shutdown_deadline_ms,
            logging,
        }),
        _ => Err(errors),
    }
}

fn check_name(name: &str, errors: &mut Vec<FieldError>) {
    if name.is_empty()
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    {
        errors.push(FieldError::new(
            "name",
            format!("`{name}` is not a valid pipeline name (letters, digits, `-`, `_`, `.`)"),
        ));
    }
}

fn resolve_default_sink(
    named: Option<String>,
    top: &serde_json::Map<String, Value>,
    sinks: &BTreeMap<String, SinkConfig>,
    errors: &mut Vec<FieldError>,
) -> Option<String> {
    match named {
        Some(name) if sinks.contains_key(&name) => Some(name),
        Some(name) => {
            // Only worth saying when the sinks themselves parsed.
            if top
                .get("sinks")
                .is_some_and(|s| s.as_object().is_some_and(|m| m.len() == sinks.len()))
            {
                let known: Vec<&str> = sinks.keys().map(String::as_str).collect();
                errors.push(FieldError::new(
                    "default_sink",
                    format!("names no sink `{name}`; sinks are: {}", known.join(", ")),
                ));
            }
            None
        }
        None if sinks.len() == 1 => sinks.keys().next().cloned(),
        None if sinks.len() > 1 => {
            errors.push(FieldError::new(
                "default_sink",
                "missing field: required when there is more than one sink",
            ));
            None
        }
        None => None,
    }
}

fn check_handler(h: &HandlerConfig, path: &str, errors: &mut Vec<FieldError>) {
    let mut push =
        |field: &str, msg: &str| errors.push(FieldError::new(join_path(path, field), msg));
    if h.plugin.as_os_str().is_empty() {
        push("plugin", "must not be empty");
    }
    let l = &h.limits;
    if l.timeout_ms == 0 {
        push("limits.timeout_ms", "must be at least 1");
    }
    if l.memory_mb == 0 || l.memory_mb > 4096 {
        push("limits.memory_mb", "must be between 1 and 4096");
    }
    if l.max_outputs == 0 {
        push("limits.max_outputs", "must be at least 1");
    }
    if l.stack_kb < 16 || l.stack_kb > 64 * 1024 {
        push("limits.stack_kb", "must be between 16 and 65536");
    }
    if l.instances == Some(0) {
        push("limits.instances", "must be at least 1");
    }
}

fn check_delivery(d: &DeliveryConfig, errors: &mut Vec<FieldError>) {
    let mut push =
        |field: &str, msg: &str| errors.push(FieldError::new(format!("delivery.{field}"), msg));
    if d.max_in_flight == 0 {
        push("max_in_flight", "must be at least 1");
    }
    if d.batch_size == 0 {
        push("batch_size", "must be at least 1");
    }
    let r = &d.retry;
    if r.max_attempts == 0 {
        push("retry.max_attempts", "must be at least 1");
    }
    if r.base_delay_ms > r.max_delay_ms {
        push("retry.base_delay_ms", "must not exceed retry.max_delay_ms");
    }
    if !(0.0..=1.0).contains(&r.jitter) {
        push("retry.jitter", "must be between 0 and 1");
    }
    if let Some(rl) = &d.rate_limit {
        if rl.per_second == 0 {
            push("rate_limit.per_second", "must be at least 1");
        }
        if rl.burst == Some(0) {
            push("rate_limit.burst", "must be at least 1");
        }
    }
}

fn required<T: DeserializeOwned>(
    top: &serde_json::Map<String, Value>,
    key: &str,
    errors: &mut Vec<FieldError>,
) -> Option<T> {
    match top.get(key) {
        None | Some(Value::Null) => {
            errors.push(FieldError::new(key, "missing field"));
            None
        }
        Some(v) => section(v, key, errors),
    }
}

fn optional<T: DeserializeOwned>(
    top: &serde_json::Map<String, Value>,
    key: &str,
    errors: &mut Vec<FieldError>,
) -> Option<T> {
    match top.get(key) {
        None | Some(Value::Null) => None,
        Some(v) => section(v, key, errors),
    }
}

/// Deserialize one section, turning serde's message into `path: message` with the field that is
/// missing or unknown moved into the path (`sinks.primary.queue: missing field`).
///
/// Serde stops at the first error, so after an unknown field or a value of the wrong type the
/// offending key is removed and the section is read again, until it parses or an error cannot
/// be stepped over: one section reports all of its field errors, not just the first.
fn section<T: DeserializeOwned>(
    value: &Value,
    path: &str,
    errors: &mut Vec<FieldError>,
) -> Option<T> {
    let mut value = value.clone();
    let mut removed: Vec<String> = Vec::new();
    for _ in 0..32 {
        let err = match serde_path_to_error::deserialize::<_, T>(value.clone()) {
            // With keys removed the section is already in error; the value still lets the checks
            // below report problems in its other fields.
            Ok(v) => return Some(v),
            Err(err) => err,
        };
        let mut segments: Vec<String> = err
            .path()
            .iter()
            .filter_map(|s| match s {
                serde_path_to_error::Segment::Map { key } => Some(key.clone()),
                serde_path_to_error::Segment::Seq { index } => Some(format!("[{index}]")),
                _ => None,
            })
            .collect();
        let message = err.into_inner().to_string();
        let unknown = quoted_after(&message, "unknown field `");
        // Inside internally tagged enums serde loses the path; the message still names the key.
        if let Some(field) = &unknown
            && segments.last() != Some(field)
        {
            segments.push(field.clone());
        }
        let inner = segments
            .iter()
            .fold(String::new(), |acc, s| join_path(&acc, s));
        let location = join_path(path, &inner);
        let described = describe(&location, &message);
        if described.message == "missing field" && removed.contains(&described.path) {
            return None; // We removed it ourselves; its real error is already reported.
        }
        errors.push(described);
        let step_over = unknown.is_some()
            || message.starts_with("invalid type")
            || message.starts_with("invalid value")
            || message.starts_with("unknown variant");
        if !step_over || segments.is_empty() || !remove_at(&mut value, &segments) {
            return None;
        }
        removed.push(location);
    }
    None
}

/// Remove the entry at `segments` (map keys and `[index]`es) from `value`.
fn remove_at(value: &mut Value, segments: &[String]) -> bool {
    let Some((last, parents)) = segments.split_last() else {
        return false;
    };
    let mut cur = value;
    for seg in parents {
        let next = match (
            seg.strip_prefix('[')
                .and_then(|s| s.strip_suffix(']'))
                .and_then(|i| i.parse::<usize>().ok()),
            cur,
        ) {
            (Some(i), Value::Array(items)) => items.get_mut(i),
            (None, Value::Object(map)) => map.get_mut(seg),
            _ => None,
        };
        match next {
            Some(v) => cur = v,
            None => return false,
        }
    }
    match cur {
        Value::Object(map) => map.remove(last).is_some(),
        _ => false,
    }
}

fn quoted_after(message: &str, prefix: &str) -> Option<String> {
    message
        .strip_prefix(prefix)
        .and_then(|rest| rest.split('`').next())
        .map(str::to_owned)
}

fn describe(location: &str, message: &str) -> FieldError {
    let expected = || {
        message
            .split_once(", expected ")
            .map(|(_, e)| format!(", expected {e}"))
            .unwrap_or_default()
    };
    if let Some(f) = quoted_after(message, "missing field `") {
        return FieldError::new(join_path(location, &f), "missing field");
    }
    if quoted_after(message, "unknown field `").is_some() {
        return FieldError::new(location, format!("unknown field{}", expected()));
    }
    if let Some(v) = quoted_after(message, "unknown variant `") {
        let what = if location == "type" || location.ends_with(".type") || !location.contains('.') {
            "type"
        } else {
            "value"
        };
        if let Some(feature) = sluice_connectors::missing_feature(&v).filter(|_| what == "type") {
            return FieldError::new(
                location,
                format!(
                    "connector `{v}` is not built into this sluice: build it with the cargo \
                     feature `{feature}` (the default build has every connector){}",
                    expected()
                ),
            );
        }
        return FieldError::new(location, format!("unknown {what} `{v}`{}", expected()));
    }
    FieldError::new(location, message)
}

fn file_error(file: &Path, path: &str, message: &str) -> ConfigError {
    ConfigError {
        file: file.to_path_buf(),
        error: FieldError::new(path, message),
    }
}
