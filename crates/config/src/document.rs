//! A pipeline file as written: what the schema describes and serde reads once the schema has
//! accepted it. [`PipelineConfig`](super::PipelineConfig) is this with its defaults resolved.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::Deserialize;

use super::{DeliveryConfig, HandlerConfig, LoggingConfig};
use sluice_connectors::{SinkConfig, SourceConfig};

/// A Sluice pipeline: a source, a chain of handlers, named sinks, a dead-letter sink and a
/// policy.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[schemars(transform = sluice_core::schema::field_order::<Self>)]
// A misspelt key would otherwise be a setting silently left at its default.
#[serde(deny_unknown_fields)]
pub struct PipelineDocument {
    /// Unique among the pipelines a host runs (letters, digits, `-`, `_`, `.`). Default: the
    /// file name without extension.
    #[serde(default)]
    pub name: Option<String>,
    /// Where messages come from; `type` selects the connector.
    pub source: SourceConfig,
    /// Applied in order; each output of one handler is a message to the next. Default: none
    /// (messages pass through unchanged).
    #[serde(default)]
    pub handlers: Option<Vec<HandlerConfig>>,
    /// Named sinks (at least one); a handler routes an output to one by name.
    #[schemars(extend("minProperties" = 1))]
    pub sinks: BTreeMap<String, SinkConfig>,
    /// Sink for outputs without a route. Default: the only sink, when there is exactly one;
    /// required when there are more.
    #[serde(default)]
    pub default_sink: Option<String>,
    /// Where messages that cannot be handled go, original payload byte for byte.
    pub dead_letter: SinkConfig,
    /// Window, batching, retries, rate limit, invalid-message policy and guarantee. Default:
    /// every setting's own default.
    #[serde(default)]
    pub delivery: DeliveryConfig,
    /// How long a shutdown may take to finish in-flight work, in milliseconds. Default: 30000.
    #[serde(default = "default_shutdown_deadline_ms")]
    #[schemars(range(min = 1, max = 3600000))]
    pub shutdown_deadline_ms: u64,
    /// What the host may log about message contents. Default: payloads are never logged.
    #[serde(default)]
    pub logging: LoggingConfig,
}

fn default_shutdown_deadline_ms() -> u64 {
    30_000
}
