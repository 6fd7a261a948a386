//! The test file format (`*.test.yaml`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use serde::Deserialize;

use crate::connector::memory::StoredMessage;

/// A test file: the pipeline(s) under test and the cases each must pass.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TestFile {
    /// The pipeline file, relative to the test file.
    #[serde(default)]
    pub pipeline: Option<PathBuf>,
    /// Several pipeline files that must all behave the same (one handler written in several
    /// languages, say); every case runs against each.
    #[serde(default)]
    pub pipelines: Vec<PathBuf>,
    pub tests: Vec<TestCase>,
}

/// One case: messages in, what must come out.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TestCase {
    /// Shown in the report. Default: `tests[<index>]`.
    #[serde(default)]
    pub name: Option<String>,
    pub input: Vec<InputMessage>,
    pub expect: Expectations,
}

/// A message fed to the pipeline's source.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InputMessage {
    /// The payload as text; or give `json`.
    #[serde(default)]
    pub payload: Option<String>,
    /// The payload as JSON (written compactly).
    #[serde(default)]
    pub json: Option<serde_json::Value>,
    #[serde(default)]
    pub key: Option<String>,
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
}

impl InputMessage {
    pub fn to_stored(&self) -> anyhow::Result<StoredMessage> {
        let payload = match (&self.payload, &self.json) {
            (Some(text), None) => text.clone().into_bytes(),
            (None, Some(json)) => serde_json::to_vec(json)?,
            (None, None) => anyhow::bail!("give `payload` or `json`"),
            (Some(_), Some(_)) => anyhow::bail!("give `payload` or `json`, not both"),
        };
        Ok(StoredMessage {
            key: self.key.clone().map(|k| k.into_bytes().into()),
            payload: payload.into(),
            headers: self
                .headers
                .iter()
                .map(|(k, v)| (k.as_str().into(), v.as_str().into()))
                .collect(),
        })
    }
}

/// What the case must produce. Every sink of the pipeline not named here must receive nothing.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Expectations {
    /// Sink name → the messages it must receive, in order.
    #[serde(default)]
    pub sinks: BTreeMap<String, Vec<ExpectedMessage>>,
    /// The dead-letter entries, in order.
    #[serde(default)]
    pub dead_letter: Vec<ExpectedMessage>,
    /// How many inputs the handlers filtered (produced nothing for). Default: not checked.
    #[serde(default)]
    pub filtered: Option<u64>,
}

/// A message a sink must receive. Every field given must match; fields left out are not
/// checked.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExpectedMessage {
    /// The payload, exactly, as text.
    #[serde(default)]
    pub payload: Option<String>,
    /// The payload parsed as JSON equals this.
    #[serde(default)]
    pub json: Option<serde_json::Value>,
    /// The payload parsed as JSON holds these fields (recursively) with these values.
    #[serde(default)]
    pub json_contains: Option<serde_json::Value>,
    #[serde(default)]
    pub key: Option<String>,
    /// These headers with these values (others may be present).
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Dead-letter entries: the error class (`invalid`, `fatal`, `transient`, `trap`, ...).
    #[serde(default)]
    pub error_class: Option<String>,
    /// Dead-letter entries: text the reason must contain.
    #[serde(default)]
    pub reason_contains: Option<String>,
}

impl TestFile {
    pub fn load(path: &Path) -> anyhow::Result<TestFile> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("{}: cannot read", path.display()))?;
        let doc: serde_json::Value = serde_saphyr::from_str(&text)
            .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        let file: TestFile = serde_path_to_error::deserialize(doc)
            .map_err(|e| anyhow::anyhow!("{}: {}: {}", path.display(), e.path(), e.inner()))?;
        if file.pipeline.is_some() != file.pipelines.is_empty() {
            anyhow::bail!("{}: give `pipeline` or `pipelines`", path.display());
        }
        Ok(file)
    }
}
