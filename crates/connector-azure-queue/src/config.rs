//! `azure_queue`'s config types: what a `type: azure_queue` source or sink section may say
//! (`credential:` is in `credential.rs`, beside the code that makes the credential).

use schemars::JsonSchema;
use serde::Deserialize;

use super::credential::{self, CredentialConfig};

/// How a payload becomes message text.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Encoding {
    /// Base64 of the payload. Default.
    #[default]
    Base64,
    /// The payload as UTF-8 text.
    Text,
}

/// `type: azure_queue` as a source.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[schemars(transform = sluice_core::schema::field_order::<Self>)]
#[serde(deny_unknown_fields)]
pub struct AzureQueueSourceConfig {
    /// Storage connection string (`AccountName`/`AccountKey` or `SharedAccessSignature`, with
    /// `QueueEndpoint` or `EndpointSuffix`; `UseDevelopmentStorage=true` for Azurite). Put it in
    /// the environment: `"${AZURE_STORAGE_CONNECTION_STRING}"`. No default; give this or
    /// `account_url`, not both.
    #[serde(default)]
    pub connection_string: Option<String>,
    /// The queue service URL (`https://<account>.queue.core.windows.net/`), authenticated with
    /// `credential` (Entra ID). No default; give this or `connection_string`, not both.
    #[serde(default)]
    pub account_url: Option<String>,
    /// With `account_url`: `managed_identity`, `workload_identity` or `developer_tools`, or a
    /// map `{ type: managed_identity, client_id: ... }` (see `CredentialConfig`). No default.
    #[serde(default, deserialize_with = "credential::deserialize_credential")]
    #[schemars(schema_with = "credential::credential_schema")]
    pub credential: Option<CredentialConfig>,
    pub queue: String,
    /// Default: `base64`.
    #[serde(default)]
    pub encoding: Encoding,
    /// Messages are JSON envelopes carrying key and headers. Default: false.
    #[serde(default)]
    pub envelope: bool,
    /// How long a received message stays invisible, in seconds. Default: 30.
    #[serde(default = "default_visibility_timeout_s")]
    #[schemars(range(min = 1, max = 604800))]
    pub visibility_timeout_s: i32,
    /// Pause between polls of an empty queue, in ms. Default: 500.
    #[serde(default = "default_poll_interval_ms")]
    #[schemars(range(min = 0, max = 3600000))]
    pub poll_interval_ms: u64,
    /// Dequeues after which a message goes to the poison queue. Default: 5.
    #[serde(default = "default_max_dequeue_count")]
    #[schemars(range(min = 1, max = 1000000))]
    pub max_dequeue_count: i64,
    /// Default: `<queue>-poison`.
    #[serde(default)]
    pub poison_queue: Option<String>,
    /// Create the queue (and the poison queue) if missing. Default: false.
    #[serde(default)]
    pub create: bool,
    /// How often the queue's depth is read into the lag gauge (`sluice_consumer_lag`), in ms.
    /// Each read is one call to the broker. Default: 5000.
    #[serde(default = "sluice_core::connector::default_lag_interval_ms")]
    #[schemars(range(min = 100, max = 3600000))]
    pub lag_interval_ms: u64,
    /// Longest wait for one call to the service, retries included, in milliseconds: a service
    /// that accepts the connection and never answers fails the call instead of holding it.
    /// Default: 30000.
    #[serde(default = "default_request_timeout_ms")]
    #[schemars(range(min = 100, max = 600000))]
    pub request_timeout_ms: u64,
}

/// `type: azure_queue` as a sink.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[schemars(transform = sluice_core::schema::field_order::<Self>)]
#[serde(deny_unknown_fields)]
pub struct AzureQueueSinkConfig {
    /// As for the source: `connection_string`, or `account_url` with `credential`. No default.
    #[serde(default)]
    pub connection_string: Option<String>,
    /// As for the source. No default.
    #[serde(default)]
    pub account_url: Option<String>,
    /// As for the source. No default.
    #[serde(default, deserialize_with = "credential::deserialize_credential")]
    #[schemars(schema_with = "credential::credential_schema")]
    pub credential: Option<CredentialConfig>,
    pub queue: String,
    /// Default: `base64`.
    #[serde(default)]
    pub encoding: Encoding,
    /// Write JSON envelopes carrying key and headers. Default: false.
    #[serde(default)]
    pub envelope: bool,
    /// Create the queue if missing. Default: false.
    #[serde(default)]
    pub create: bool,
    /// As for the source. Default: 30000.
    #[serde(default = "default_request_timeout_ms")]
    #[schemars(range(min = 100, max = 600000))]
    pub request_timeout_ms: u64,
}

fn default_request_timeout_ms() -> u64 {
    30_000
}

fn default_visibility_timeout_s() -> i32 {
    30
}
fn default_poll_interval_ms() -> u64 {
    500
}
fn default_max_dequeue_count() -> i64 {
    5
}
