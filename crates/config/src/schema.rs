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
    #[test]
    #[ignore]
    fn dump() {
        println!(
            "{}",
            serde_json::to_string_pretty(&super::pipeline_schema()).unwrap()
        );
    }
}
