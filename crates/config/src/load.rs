//! Reading pipeline files: interpolate, parse YAML, check the document against the schema
//! (every error, each located), check what the schema cannot on the sections that read, and
//! only then deserialize.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use serde_json::Value;

use super::checks::Sections;
use super::errors::{Found, schema_errors};
use super::interpolate::{Masked, WholeReference, interpolate_values, mask, typed};
use super::locate::{Position, parent, positions};
use super::{ConfigError, FieldError, PipelineConfig, PipelineDocument};

/// A valid pipeline and where it came from.
#[derive(Debug, Clone)]
pub struct LoadedPipeline {
    pub file: PathBuf,
    /// Relative paths in the file resolve against this directory.
    pub base_dir: PathBuf,
    pub config: PipelineConfig,
}

/// Expand directories into the `.yaml`/`.yml` files directly in them, sorted by name, leaving
/// out pipeline unit tests (`*.test.yaml`, `*.test.yml`, which `sluice test` reads): the folder
/// `sluice new` makes holds both and runs as a directory. A test file named on its own is read.
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
                                && !is_test_file(p)
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
            // Without `.` components, as messages should show it (`pipelines/./p.yaml` is
            // `pipelines/p.yaml`; a leading `./` stays).
            files.push(path.components().collect());
        }
    }
    if errors.is_empty() {
        Ok(files)
    } else {
        Err(errors)
    }
}

/// A pipeline unit test file (`*.test.yaml`, `*.test.yml`).
fn is_test_file(path: &Path) -> bool {
    path.file_stem()
        .and_then(|s| s.to_str())
        .is_some_and(|stem| stem.ends_with(".test"))
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
                    let mut error = file_error(
                        &file,
                        "name",
                        &format!(
                            "pipeline `{}` is already defined in {}",
                            p.config.name,
                            first.display()
                        ),
                    );
                    error.location = sluice_core::files::read_text_bounded(
                        &file,
                        sluice_core::files::MAX_PIPELINE_FILE,
                    )
                    .ok()
                    .and_then(|text| super::locate(&text, "name"));
                    errors.push(error);
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
    let text = sluice_core::files::read_text_bounded(path, sluice_core::files::MAX_PIPELINE_FILE)
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
    let located = |errors: Vec<(FieldError, Option<Position>)>| {
        errors
            .into_iter()
            .map(|(error, location)| ConfigError {
                file: file.to_path_buf(),
                location,
                error,
            })
            .collect::<Vec<_>>()
    };
    let default_name = file
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    parse_value(text, &default_name, &env).map_err(located)
}

fn parse_value(
    text: &str,
    default_name: &str,
    env: &impl Fn(&str) -> Option<String>,
) -> Result<PipelineConfig, Vec<(FieldError, Option<Position>)>> {
    let masked = mask(text);
    let doc: Value = serde_saphyr::from_str(&masked.text).map_err(|e| {
        let e = masked.unmask(&e.to_string());
        vec![(FieldError::new("", format!("not valid YAML: {e}")), None)]
    })?;
    if !doc.is_object() {
        return Err(vec![(
            FieldError::new(
                "",
                "a pipeline file must be a mapping with `source`, `sinks` and `dead_letter`",
            ),
            None,
        )]);
    }
    let at = positions(text);
    let Prepared {
        doc,
        unresolved,
        found,
        aside,
        sections,
    } = prepare(doc, &masked, default_name, env);
    let mut checks = Vec::new();
    sections.check(&mut checks);
    // What was set aside has its error already; a check would only say that it is missing.
    checks.retain(|e| !aside.iter().any(|a| within(&e.path, a)));

    let mut errors: Vec<(FieldError, Option<Position>)> = unresolved
        .into_iter()
        .map(|e| {
            let location = at.node(&e.path);
            (e, location)
        })
        .chain(found.into_iter().map(|f| {
            let location = match &f.at_node {
                Some(node) => at.node(node),
                None => at.of(&f.error.path),
            };
            (reworded(f.error), location)
        }))
        .chain(checks.into_iter().map(|e| {
            let location = at.of(&e.path);
            (e, location)
        }))
        .collect();
    if !errors.is_empty() {
        // Document order; errors at one place keep the order they were found in.
        errors.sort_by_key(|(_, location)| location.unwrap_or((usize::MAX, 0)));
        return Err(errors);
    }

    // The schema accepted the document, so this cannot fail unless the schema and the types
    // disagree (a bug, which the example-pipeline test guards); say so as serde does.
    let document: PipelineDocument = serde_path_to_error::deserialize(doc).map_err(|e| {
        let path = e.path().to_string();
        let path = if path == "." { String::new() } else { path };
        let location = at.of(&path);
        vec![(FieldError::new(path, e.into_inner().to_string()), location)]
    })?;
    let default_sink = sections.default_sink(&mut Vec::new()).unwrap_or_default();
    Ok(PipelineConfig {
        name: document.name.unwrap_or_else(|| default_name.to_owned()),
        source: document.source,
        handlers: document.handlers.unwrap_or_default(),
        sinks: document.sinks,
        default_sink,
        dead_letter: document.dead_letter,
        delivery: document.delivery,
        shutdown_deadline_ms: document.shutdown_deadline_ms,
        logging: document.logging,
    })
}

/// Messages that say why, where the schema's words alone would not.
fn reworded(mut e: FieldError) -> FieldError {
    let why = match (e.path.as_str(), e.message.as_str()) {
        ("sinks", "missing field") => "missing field: a pipeline needs at least one sink",
        ("sinks", "must not be empty") => "a pipeline needs at least one sink",
        ("sinks", m) if m.starts_with("invalid type") => "must be a mapping of sink name to sink",
        ("handlers", m) if m.starts_with("invalid type") => "must be a list of handlers",
        _ => return e,
    };
    e.message = why.to_owned();
    e
}

/// The document without what the schema rejected, for the checks that need the rest: a rejected
/// value is removed (a list item becomes null, keeping the indexes), and so, found by validating
/// again, is a mapping that then lacks a required field.
fn set_aside(mut doc: Value, found: &[Found]) -> (Value, Vec<String>) {
    let mut aside: Vec<String> = Vec::new();
    let mut pending: Vec<String> = found
        .iter()
        .map(|f| f.at_node.clone().unwrap_or_else(|| f.error.path.clone()))
        .collect();
    for _ in 0..16 {
        if pending.is_empty() {
            break;
        }
        for path in pending.drain(..) {
            if path.is_empty() || aside.iter().any(|a| within(&path, a)) {
                continue;
            }
            remove(&mut doc, &path);
            aside.push(path);
        }
        pending = schema_errors(&doc)
            .into_iter()
            .map(|f| f.at_node.unwrap_or(f.error.path))
            .filter(|p| !aside.iter().any(|a| within(p, a)))
            .collect();
    }
    (doc, aside)
}

/// `path` is `outer` or lies under it.
fn within(path: &str, outer: &str) -> bool {
    path == outer
        || path
            .strip_prefix(outer)
            .is_some_and(|rest| outer.is_empty() || rest.starts_with(['.', '[']))
}

fn remove(doc: &mut Value, path: &str) {
    let Some(parent_path) = parent(path) else {
        return;
    };
    let last = &path[parent_path.len()..];
    let Some(container) = pointer_mut(doc, parent_path) else {
        return;
    };
    match (
        container,
        last.strip_prefix('[').and_then(|i| i.strip_suffix(']')),
    ) {
        (Value::Array(items), Some(i)) => {
            if let Some(item) = i.parse::<usize>().ok().and_then(|i| items.get_mut(i)) {
                *item = Value::Null;
            }
        }
        (Value::Object(map), None) => {
            map.remove(last.trim_start_matches('.'));
        }
        _ => {}
    }
}

/// The value at a dotted path.
fn pointer_mut<'v>(doc: &'v mut Value, path: &str) -> Option<&'v mut Value> {
    let mut cur = doc;
    let mut rest = path;
    while !rest.is_empty() {
        rest = rest.strip_prefix('.').unwrap_or(rest);
        if let Some(r) = rest.strip_prefix('[') {
            let end = r.find(']')?;
            let i: usize = r[..end].parse().ok()?;
            cur = cur.as_array_mut()?.get_mut(i)?;
            rest = &r[end + 1..];
        } else {
            let end = rest.find(['.', '[']).unwrap_or(rest.len());
            cur = cur.as_object_mut()?.get_mut(&rest[..end])?;
            rest = &rest[end..];
        }
    }
    Some(cur)
}

fn file_error(file: &Path, path: &str, message: &str) -> ConfigError {
    ConfigError {
        file: file.to_path_buf(),
        location: None,
        error: FieldError::new(path, message),
    }
}

/// A value that was one reference (`${WINDOW}`) and reads as a number or boolean becomes one
/// where that is what the schema wants: kept only when it leaves fewer schema errors than the
/// string did.
fn type_whole_references(doc: &mut Value, whole: Vec<WholeReference>) {
    let mut errors = None;
    for w in whole {
        let Some(typed) = typed(&w.value) else {
            continue;
        };
        let before = *errors.get_or_insert_with(|| schema_errors(doc).len());
        let Some(slot) = doc.pointer_mut(&w.pointer) else {
            continue;
        };
        let string = std::mem::replace(slot, typed);
        let after = schema_errors(doc).len();
        if after < before {
            errors = Some(after);
        } else if let Some(slot) = doc.pointer_mut(&w.pointer) {
            *slot = string;
        }
    }
}

/// A parsed document made ready for checking: references resolved (those that cannot be are
/// left as written, with their errors), then what the schema rejects set aside so that the rest
/// reads.
struct Prepared {
    doc: Value,
    unresolved: Vec<FieldError>,
    found: Vec<Found>,
    aside: Vec<String>,
    sections: Sections,
}

fn prepare(
    mut doc: Value,
    masked: &Masked,
    default_name: &str,
    env: &impl Fn(&str) -> Option<String>,
) -> Prepared {
    let (whole, unresolved) = interpolate_values(&mut doc, masked, env);
    type_whole_references(&mut doc, whole);
    let found = schema_errors(&doc);
    let (usable, aside) = set_aside(doc.clone(), &found);
    let top = usable.as_object().cloned().unwrap_or_default();
    let sections = Sections::read(&top, default_name);
    Prepared {
        doc,
        unresolved,
        found,
        aside,
        sections,
    }
}

/// The parts of a pipeline file that read on their own, even when the file has errors elsewhere
/// (what the schema rejects is set aside first): `sluice validate` loads their plugins and makes
/// their connectors' local checks too, so that one run reports every error.
#[derive(Debug, Default)]
pub struct ReadableParts {
    pub handlers: Vec<(usize, super::HandlerConfig)>,
    pub source: Option<sluice_connectors::SourceConfig>,
    pub sinks: Vec<(String, sluice_connectors::SinkConfig)>,
    pub dead_letter: Option<sluice_connectors::SinkConfig>,
}

/// [`ReadableParts`] of the pipeline file at `path`, with the process environment for `${VAR}`.
pub fn readable_parts(path: &Path) -> ReadableParts {
    let Ok(text) =
        sluice_core::files::read_text_bounded(path, sluice_core::files::MAX_PIPELINE_FILE)
    else {
        return ReadableParts::default();
    };
    let masked = mask(&text);
    let Ok(doc) = serde_saphyr::from_str::<Value>(&masked.text) else {
        return ReadableParts::default();
    };
    let sections = prepare(doc, &masked, "", &|name| std::env::var(name).ok()).sections;
    ReadableParts {
        handlers: sections
            .handlers
            .into_iter()
            .enumerate()
            .filter_map(|(i, h)| Some((i, h?)))
            .collect(),
        source: sections.source,
        sinks: sections
            .sinks
            .into_iter()
            .filter_map(|(name, sink)| Some((name, sink?)))
            .collect(),
        dead_letter: sections.dead_letter,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_directory_of_pipelines_leaves_out_their_unit_tests() {
        let dir = tempfile::tempdir().unwrap();
        for name in ["b.yaml", "a.yml", "b.test.yaml", "a.test.yml", "notes.txt"] {
            std::fs::write(dir.path().join(name), "").unwrap();
        }
        let files = pipeline_files(&[dir.path().to_path_buf()]).unwrap();
        let names: Vec<_> = files.iter().map(|f| f.file_name().unwrap()).collect();
        assert_eq!(names, ["a.yml", "b.yaml"]);
        // Named on its own, a test file is read as what it was named for.
        let named = dir.path().join("b.test.yaml");
        assert_eq!(
            pipeline_files(std::slice::from_ref(&named)).unwrap(),
            [named]
        );
        // A folder of nothing but tests holds no pipelines.
        let only_tests = tempfile::tempdir().unwrap();
        std::fs::write(only_tests.path().join("p.test.yaml"), "").unwrap();
        assert!(pipeline_files(&[only_tests.path().to_path_buf()]).is_err());
    }

    /// A secret holding what YAML treats as syntax (a comment, a key, a new line) reaches the
    /// connector whole: references are resolved in the parsed values, not in the text.
    #[test]
    fn a_secret_passes_through_interpolation_unchanged() {
        let secret = "p@ss #not-a-comment: injected: true\nsecond line ${NOT_A_REF} $$";
        let text = "source: { type: kafka, brokers: localhost:9092, topics: [t], group: \"${SECRET}\" }\n\
                    sinks: { out: { type: drop } }\ndead_letter: { type: drop }\n\
                    delivery: { max_in_flight: ${WINDOW}, guarantee: ${GUARANTEE:-at_least_once} }\n";
        let env = |name: &str| match name {
            "SECRET" => Some(secret.to_owned()),
            "WINDOW" => Some("64".to_owned()),
            _ => None,
        };
        let cfg = parse(Path::new("p.yaml"), text, env).expect("parses");
        let sluice_connectors::SourceConfig::kafka(kafka) = &cfg.source else {
            panic!("{:?}", cfg.source)
        };
        assert_eq!(
            kafka.group, secret,
            "the value is not substituted again, nor cut"
        );
        assert_eq!(
            cfg.delivery.max_in_flight, 64,
            "a whole reference becomes a number"
        );
    }

    #[test]
    fn every_unresolved_reference_is_reported_with_the_other_errors() {
        let text = "source: { type: generate, count: \"${COUNT}\" }\nsinks: { out: { type: drop, bogus: 1 } }\ndead_letter: { type: \"${DL}\" }\n";
        let errors = parse(Path::new("p.yaml"), text, |_| None).unwrap_err();
        let said: Vec<String> = errors.iter().map(ToString::to_string).collect();
        assert!(
            said.iter()
                .any(|e| e.contains("source.count: environment variable `COUNT` is not set")),
            "{said:#?}"
        );
        assert!(
            said.iter()
                .any(|e| e.contains("dead_letter.type: environment variable `DL` is not set")),
            "{said:#?}"
        );
        assert!(
            said.iter().any(|e| e.contains("sinks.out.bogus")),
            "{said:#?}"
        );
    }

    /// A sink whose own write timeout is not below `delivery.sink_timeout_ms` would be cut off
    /// by the engine before its clearer error and its own cleanup: refused, at the sink's field.
    #[test]
    fn a_sink_timeout_at_or_above_the_pipelines_is_refused() {
        let text = "source: { type: generate }\ndefault_sink: out\nsinks:\n  out: { type: rabbitmq, url: \"amqp://localhost\", routing_key: q, confirm_timeout_ms: 60000 }\n  log: { type: kafka, brokers: localhost, topic: t, message_timeout_ms: 1000 }\ndead_letter: { type: kafka, brokers: localhost, topic: d, message_timeout_ms: 90000 }\n";
        let errors = parse(Path::new("p.yaml"), text, |_| None).unwrap_err();
        let said: Vec<String> = errors.iter().map(ToString::to_string).collect();
        assert_eq!(said.len(), 2, "{said:#?}");
        assert!(
            said.iter().any(|e| e.contains(
                "sinks.out.confirm_timeout_ms: must be below delivery.sink_timeout_ms (60000)"
            )),
            "{said:#?}"
        );
        assert!(
            said.iter()
                .any(|e| e.contains("dead_letter.message_timeout_ms: must be below")),
            "{said:#?}"
        );
        let raised = format!("{text}delivery: {{ sink_timeout_ms: 120000 }}\n");
        assert!(parse(Path::new("p.yaml"), &raised, |_| None).is_ok());
    }
}
