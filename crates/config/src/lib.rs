//! Pipeline files: the typed configuration, its defaults, and validation that reports every
//! error at once with its path in the file.
//!
//! Architecture invariant: nothing here touches wasmtime or a broker client; checking that a
//! plugin loads is the plugin host's job (`sluice validate` does both).

mod checks;
mod document;
mod errors;
mod interpolate;
mod load;
mod locate;
#[cfg(test)]
mod reference_doc;
pub mod schema;

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;

use std::borrow::Cow;

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Deserializer};

use sluice_connectors::{SinkConfig, SourceConfig};

pub use document::PipelineDocument;
pub use interpolate::interpolate;
pub use load::{
    LoadedPipeline, ReadableParts, load_file, load_paths, parse, pipeline_files, readable_parts,
};
pub use locate::{Positions, locate, positions};
pub use sluice_core::{FieldError, join_path};

/// One pipeline: a source, a chain of handlers, named sinks, a dead-letter sink and a policy.
#[derive(Debug, Clone)]
pub struct PipelineConfig {
    /// Unique among the pipelines a host runs. Default: the file name without extension.
    pub name: String,
    pub source: SourceConfig,
    /// Applied in order; each output of one handler is a message to the next. May be empty
    /// (messages pass through unchanged).
    pub handlers: Vec<HandlerConfig>,
    /// Named sinks; a handler routes an output to one by name.
    pub sinks: BTreeMap<String, SinkConfig>,
    /// Sink for outputs without a route. Default: the only sink, when there is exactly one.
    pub default_sink: String,
    /// Where messages that cannot be handled go, original payload byte for byte.
    pub dead_letter: SinkConfig,
    pub delivery: DeliveryConfig,
    /// How long a shutdown may take to finish in-flight work, in milliseconds. Default: 30000.
    pub shutdown_deadline_ms: u64,
    pub logging: LoggingConfig,
}

/// What the host may write to its log about message contents.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[schemars(transform = sluice_core::schema::field_order::<Self>)]
#[serde(deny_unknown_fields, default)]
pub struct LoggingConfig {
    /// Log payloads: each delivery's when pulled, and a dead-lettered one's with its
    /// dead-letter line, both at `debug` level. Default: false (payloads are never logged).
    pub payloads: bool,
    /// JSON fields (dotted paths, e.g. `card.number`) replaced by `sha256:<hex>` of their value
    /// before a payload is logged. A payload that is not JSON is withheld when this list is not
    /// empty. Default: none.
    pub scrub_fields: Vec<String>,
}

/// One handler in the chain.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[schemars(transform = sluice_core::schema::field_order::<Self>)]
#[serde(deny_unknown_fields)]
pub struct HandlerConfig {
    /// Path to the component (`.wasm`), relative to the pipeline file's directory.
    pub plugin: PathBuf,
    /// Name in logs, metrics and dead-letter headers. Default: the plugin file's stem.
    #[serde(default)]
    pub name: Option<String>,
    /// Settings passed once to the handler's `init`. Scalars are passed as strings.
    #[serde(default)]
    pub config: BTreeMap<String, Scalar>,
    #[serde(default)]
    pub limits: LimitsConfig,
    /// How batches cross into the component. Default: `auto`.
    #[serde(default)]
    pub batch_abi: BatchAbi,
    /// Tag every output and dead-letter copy with an `x-sluice-plugin` header naming this
    /// handler's version and content hash, so that reloads are auditable. Default: true.
    #[serde(default = "yes")]
    pub version_header: bool,
    /// WASI capabilities the handler gets (language runtimes need some). Default: none; a
    /// component importing a WASI interface not granted here is refused at load.
    #[serde(default)]
    pub grants: Vec<Grant>,
}

/// A WASI capability a pipeline grants one handler. Filesystem and network are not grantable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Grant {
    /// `wasi:clocks`: wall clock and monotonic clock.
    Clocks,
    /// `wasi:random`: secure and insecure random bytes.
    Random,
    /// `wasi:cli/stdout`: each line the handler prints becomes a host log line (`info`).
    Stdout,
    /// `wasi:cli/stderr`: each line becomes a host log line (`warn`).
    Stderr,
    /// The rest of `wasi:cli`: an empty environment, no arguments, an empty stdin, `exit`.
    Cli,
}

impl Grant {
    pub fn as_str(self) -> &'static str {
        match self {
            Grant::Clocks => "clocks",
            Grant::Random => "random",
            Grant::Stdout => "stdout",
            Grant::Stderr => "stderr",
            Grant::Cli => "cli",
        }
    }
}

fn yes() -> bool {
    true
}

/// How the host hands a batch to a handler.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum BatchAbi {
    /// The packed fast path when the component exports it, else `handle-batch`.
    #[default]
    Auto,
    /// Always `handle-batch` through the canonical ABI (to rule out an SDK's packed codec).
    Canonical,
}

impl HandlerConfig {
    pub fn display_name(&self) -> String {
        self.name.clone().unwrap_or_else(|| {
            self.plugin
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_else(|| "handler".into())
        })
    }
}

/// Resource limits for one handler; always on.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[schemars(transform = sluice_core::schema::field_order::<Self>)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsConfig {
    /// Budget for one handler call, in milliseconds of the call's own time (guest code running,
    /// and its waits on the host), not counting its waits for a thread. Default: 1000.
    #[schemars(range(min = 1, max = 3600000))]
    pub timeout_ms: u64,
    /// Memory cap per instance, in MiB: all its linear memories and tables together. Default: 64.
    #[schemars(range(min = 1, max = 4096))]
    pub memory_mb: u64,
    /// Most outputs one message may produce. Default: 1024.
    #[schemars(range(min = 1, max = 1000000))]
    pub max_outputs: u32,
    /// Most output payload bytes one message may produce, in bytes. Default: 4194304 (4 MiB).
    #[schemars(range(min = 0, max = 1073741824))]
    pub max_output_bytes: u64,
    /// WebAssembly stack size, in KiB. Default: 512.
    #[schemars(range(min = 16, max = 65536))]
    pub stack_kb: u64,
    /// Instances kept warm and called in parallel. Default: the number of CPUs.
    #[schemars(range(min = 1, max = 1024))]
    pub instances: Option<usize>,
    /// Most headers on one output. Default: 64.
    #[schemars(range(min = 0, max = 65536))]
    pub max_headers: u32,
    /// Most bytes of header names and values on one output. Default: 65536 (64 KiB).
    #[schemars(range(min = 0, max = 67108864))]
    pub max_header_bytes: u64,
    /// Most bytes in one output's key. Default: 65536 (64 KiB).
    #[schemars(range(min = 0, max = 67108864))]
    pub max_key_bytes: u64,
    /// Longest error reason kept (a handler's `fatal`, `transient` or `invalid` text, a panic
    /// message), in bytes; a longer one is cut, with a marker. Default: 4096.
    #[schemars(range(min = 64, max = 1048576))]
    pub max_reason_bytes: u32,
    /// Longest log line kept, in bytes; a longer one is cut, with a marker. Default: 4096.
    #[schemars(range(min = 64, max = 1048576))]
    pub max_log_bytes: u32,
    /// Log lines the handler may write per second, all its instances together; the rest are
    /// dropped and counted in `sluice_handler_log_lines_dropped_total`. Default: 100.
    #[schemars(range(min = 1, max = 1000000))]
    pub log_lines_per_second: u32,
    /// Most counter names the handler may keep; further names are refused and counted in
    /// `sluice_handler_counters_refused_total`. Default: 1000.
    #[schemars(range(min = 0, max = 100000))]
    pub max_counters: u32,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        LimitsConfig {
            timeout_ms: 1000,
            memory_mb: 64,
            max_outputs: 1024,
            max_output_bytes: 4 * 1024 * 1024,
            stack_kb: 512,
            instances: None,
            max_headers: 64,
            max_header_bytes: 64 * 1024,
            max_key_bytes: 64 * 1024,
            max_reason_bytes: 4096,
            max_log_bytes: 4096,
            log_lines_per_second: 100,
            max_counters: 1000,
        }
    }
}

/// How deliveries flow: window, batching, retries, rate limit, invalid-payload policy.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[schemars(transform = sluice_core::schema::field_order::<Self>)]
#[serde(deny_unknown_fields, default)]
pub struct DeliveryConfig {
    /// Most deliveries pulled from the source and not yet settled. Default: 1024.
    #[schemars(range(min = 1, max = 1000000))]
    pub max_in_flight: usize,
    /// Most messages handed to a handler in one call; batches form only from messages already
    /// waiting, so light traffic is never delayed. Default: 128.
    #[schemars(range(min = 1, max = 65536))]
    pub batch_size: usize,
    pub retry: RetryConfig,
    /// Longest wait, in milliseconds, for a sink to confirm one write (the dead-letter sink's
    /// too); past it the write counts as failed and is retried, then nacked. Default: 60000,
    /// above the brokers' own confirm timeouts (30 s), so that their clearer errors come first.
    #[schemars(range(min = 1, max = 3600000))]
    pub sink_timeout_ms: u64,
    /// Consecutive failed sink writes (any sink, the dead-letter sink too) after which the
    /// pipeline stops pulling and probes the sink with one batch at a time, with the retry
    /// backoff between probes, until a write is confirmed. Default: 5.
    #[schemars(range(min = 1, max = 1000))]
    pub breaker_failures: u32,
    /// Default: no rate limit.
    pub rate_limit: Option<RateLimitConfig>,
    /// What to do with a message a handler calls `invalid`. Default: `dead_letter`.
    pub on_invalid: InvalidPolicy,
    /// The guarantee the pipeline asks for. Default: `at_least_once`; a source that cannot
    /// acknowledge or a sink that cannot confirm (ZeroMQ) needs an explicit `at_most_once`.
    pub guarantee: Guarantee,
}

/// Delivery guarantee a pipeline asks of its source.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Guarantee {
    #[default]
    AtLeastOnce,
    /// Accept that a message taken from the source may be lost (a crash, a full restart).
    AtMostOnce,
}

impl Default for DeliveryConfig {
    fn default() -> Self {
        DeliveryConfig {
            max_in_flight: 1024,
            batch_size: 128,
            retry: RetryConfig::default(),
            sink_timeout_ms: 60_000,
            breaker_failures: 5,
            rate_limit: None,
            on_invalid: InvalidPolicy::DeadLetter,
            guarantee: Guarantee::AtLeastOnce,
        }
    }
}

/// Exponential backoff with jitter, for transient handler errors and sink failures.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[schemars(transform = sluice_core::schema::field_order::<Self>)]
#[serde(deny_unknown_fields, default)]
pub struct RetryConfig {
    /// Attempts in all, the first included, before a message is dead-lettered. Default: 5.
    #[schemars(range(min = 1, max = 1000))]
    pub max_attempts: u32,
    /// Delay before the first retry, in milliseconds; doubles each retry. Default: 100.
    #[schemars(range(min = 0, max = 86400000))]
    pub base_delay_ms: u64,
    /// Cap on one delay, in milliseconds. Default: 30000.
    #[schemars(range(min = 0, max = 86400000))]
    pub max_delay_ms: u64,
    /// Fraction of each delay drawn at random (0 = none, 1 = full jitter). Default: 0.2.
    #[schemars(range(min = 0, max = 1))]
    pub jitter: f64,
}

impl Default for RetryConfig {
    fn default() -> Self {
        RetryConfig {
            max_attempts: 5,
            base_delay_ms: 100,
            max_delay_ms: 30_000,
            jitter: 0.2,
        }
    }
}

/// Token bucket applied before the handler.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[schemars(transform = sluice_core::schema::field_order::<Self>)]
#[serde(deny_unknown_fields)]
pub struct RateLimitConfig {
    /// Sustained messages per second.
    #[schemars(range(min = 1, max = 1000000000))]
    pub per_second: u32,
    /// Messages allowed at once above the sustained rate. Default: `per_second`.
    #[serde(default)]
    #[schemars(range(min = 1, max = 1000000000))]
    pub burst: Option<u32>,
}

/// What happens to a message a handler rejects as `invalid`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum InvalidPolicy {
    /// Send it to the dead-letter sink (then ack).
    DeadLetter,
    /// Ack it and count it as discarded.
    Discard,
}

/// A handler setting: strings, numbers and booleans are all passed to `init` as strings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scalar(pub String);

impl<'de> Deserialize<'de> for Scalar {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match serde_json::Value::deserialize(d)? {
            serde_json::Value::String(s) => Ok(Scalar(s)),
            v @ (serde_json::Value::Number(_) | serde_json::Value::Bool(_)) => {
                Ok(Scalar(v.to_string()))
            }
            _ => Err(serde::de::Error::custom(
                "expected a string, number or boolean",
            )),
        }
    }
}

impl JsonSchema for Scalar {
    fn schema_name() -> Cow<'static, str> {
        "Scalar".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({ "type": ["string", "number", "boolean"] })
    }
}

/// A [`FieldError`] in a given file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub file: PathBuf,
    /// Line and column (1-based) of the key at `error.path`, or of the mapping that lacks it.
    pub location: Option<(usize, usize)>,
    pub error: FieldError,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some((line, column)) = self.location {
            write!(f, ":{line}:{column}")?;
        }
        if !self.error.path.is_empty() {
            write!(f, ": {}", self.error.path)?;
        }
        write!(f, ": {}", self.error.message)
    }
}
