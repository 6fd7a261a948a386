//! The JSON Schema of pipeline files, derived from the config types of this build (its
//! connectors included), and the validator compiled from it once.

use std::sync::OnceLock;

use schemars::generate::SchemaSettings;
use serde_json::Value;

use super::document::PipelineDocument;

/// `$id` of the schema; `docs/sluice.schema.json` is the default build's copy.
pub const SCHEMA_ID: &str = "https://example.invalid/sluice/sluice.schema.json";

/// The schema of a pipeline file for this build's connectors (JSON Schema 2020-12).
pub fn pipeline_schema() -> Value {
    let generator = SchemaSettings::draft2020_12().into_generator();
    let mut schema = generator.into_root_schema_for::<PipelineDocument>();
    schema.insert("$id".into(), SCHEMA_ID.into());
    schema.insert("title".into(), "Sluice pipeline file".into());
    schema.to_value()
}

/// The compiled validator, built on first use.
pub(crate) fn validator() -> &'static jsonschema::Validator {
    static VALIDATOR: OnceLock<jsonschema::Validator> = OnceLock::new();
    VALIDATOR.get_or_init(|| {
        jsonschema::draft202012::new(&pipeline_schema())
            .expect("the derived pipeline schema compiles")
    })
}

/// The schema as compiled, for error messages that quote it.
pub(crate) fn schema() -> &'static Value {
    static SCHEMA: OnceLock<Value> = OnceLock::new();
    SCHEMA.get_or_init(pipeline_schema)
}

#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};

    use super::*;

    fn repo() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
    }

    /// `docs/sluice.schema.json` is what `sluice schema` prints for the default build (every
    /// connector: this crate's dev-dependencies turn them all on).
    #[test]
    fn the_committed_schema_file_is_current() {
        let file = repo().join("docs/sluice.schema.json");
        let want = serde_json::to_string_pretty(&pipeline_schema()).unwrap() + "\n";
        if std::env::var_os("SLUICE_BLESS").is_some() {
            std::fs::write(&file, &want).unwrap();
            return;
        }
        let have = std::fs::read_to_string(&file).unwrap_or_default();
        assert!(
            have == want,
            "docs/sluice.schema.json differs from pipeline_schema(); regenerate it with\n  \
             SLUICE_BLESS=1 cargo nextest run -p sluice-config -E 'test(/the_committed_schema_file/)'"
        );
    }

    /// A setting without an upper bound can ask the host for what it cannot give (a window of
    /// 2^61 deliveries once panicked a worker and hung the pipeline): every number a pipeline
    /// sets has a `maximum`, checked by `validate`. Values handed on as they are (a handler's
    /// `config` to its `init`, RabbitMQ's `arguments` to the broker) are not settings.
    #[test]
    fn every_number_a_pipeline_sets_has_an_upper_bound() {
        fn walk(node: &Value, path: &str, unbounded: &mut Vec<String>) {
            match node {
                Value::Object(map) => {
                    let types: Vec<&str> = match map.get("type") {
                        Some(Value::String(t)) => vec![t.as_str()],
                        Some(Value::Array(ts)) => ts.iter().filter_map(Value::as_str).collect(),
                        _ => Vec::new(),
                    };
                    let numeric = types.iter().any(|t| matches!(*t, "integer" | "number"));
                    if numeric
                        && !map.contains_key("maximum")
                        && !path.ends_with("/ArgValue/anyOf/1")
                        && !path.ends_with("/Scalar")
                    {
                        unbounded.push(path.to_owned());
                    }
                    for (k, v) in map {
                        walk(v, &format!("{path}/{k}"), unbounded);
                    }
                }
                Value::Array(items) => {
                    for (i, v) in items.iter().enumerate() {
                        walk(v, &format!("{path}/{i}"), unbounded);
                    }
                }
                _ => {}
            }
        }
        let mut unbounded = Vec::new();
        walk(&pipeline_schema(), "", &mut unbounded);
        assert!(
            unbounded.is_empty(),
            "numbers without a maximum: {unbounded:#?}"
        );
    }

    /// Every pipeline file under `pipelines/` (not the `*.test.yaml` test files).
    pub(crate) fn example_pipelines() -> Vec<PathBuf> {
        fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
            for entry in std::fs::read_dir(dir).unwrap() {
                let path = entry.unwrap().path();
                let name = path.file_name().unwrap().to_string_lossy().into_owned();
                if path.is_dir() {
                    walk(&path, out);
                } else if (name.ends_with(".yaml") || name.ends_with(".yml"))
                    && !name.ends_with(".test.yaml")
                {
                    out.push(path);
                }
            }
        }
        let mut out = Vec::new();
        walk(&repo().join("pipelines"), &mut out);
        out.sort();
        out
    }

    /// What the schema accepts, serde reads: the loader's serde step never has to report an
    /// error of its own for these files.
    #[test]
    fn every_example_pipeline_is_accepted_by_the_schema_and_read_by_serde() {
        let files = example_pipelines();
        assert!(files.len() >= 10, "{files:?}");
        for file in files {
            let text = std::fs::read_to_string(&file).unwrap();
            // Defaults of `${VAR:-default}`, as a host with an empty environment would.
            let text = crate::interpolate(&text, &|_| None).unwrap();
            let doc: Value = serde_saphyr::from_str(&text).unwrap();
            let errors: Vec<String> = validator()
                .iter_errors(&doc)
                .map(|e| e.to_string())
                .collect();
            assert!(errors.is_empty(), "{}: {errors:?}", file.display());
            if let Err(e) = serde_json::from_value::<super::PipelineDocument>(doc) {
                panic!(
                    "{}: the schema accepts it but serde does not: {e}",
                    file.display()
                );
            }
            if let Err(e) = crate::parse(&file, &std::fs::read_to_string(&file).unwrap(), |_| None)
            {
                panic!("{}: {e:?}", file.display());
            }
        }
    }
}
