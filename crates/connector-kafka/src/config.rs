//! `kafka`'s config types: what a `type: kafka` source or sink section may say.

use std::collections::BTreeMap;
use std::path::PathBuf;

use schemars::JsonSchema;
use serde::Deserialize;

/// Where a group with no committed offset starts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum StartFrom {
    /// The oldest retained record. Default.
    #[default]
    Earliest,
    /// Only records produced after the group first joins.
    Latest,
}

/// How the group spreads partitions over its members.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Assignment {
    /// Incremental rebalancing: members keep their partitions while others join. Default.
    #[default]
    CooperativeSticky,
    Range,
    Roundrobin,
}

/// Producer compression.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Compression {
    None,
    Gzip,
    Snappy,
    Lz4,
    /// Default.
    #[default]
    Zstd,
}

/// `tls:` — its presence turns TLS on (`tls: {}` trusts the system's CAs).
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[schemars(transform = sluice_core::schema::field_order::<Self>)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// PEM file of the CAs to trust. Default: the system's.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// PEM client certificate, for mutual TLS. Default: none.
    #[serde(default)]
    pub cert_file: Option<PathBuf>,
    /// PEM private key of `cert_file`. Default: none.
    #[serde(default)]
    pub key_file: Option<PathBuf>,
    /// Password of `key_file`; put it in the environment: `${KAFKA_KEY_PASSWORD}`.
    #[serde(default)]
    pub key_password: Option<String>,
}

/// SASL mechanisms.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, JsonSchema)]
pub enum SaslMechanism {
    #[serde(rename = "PLAIN")]
    Plain,
    #[serde(rename = "SCRAM-SHA-256")]
    ScramSha256,
    #[serde(rename = "SCRAM-SHA-512")]
    ScramSha512,
}

impl SaslMechanism {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            SaslMechanism::Plain => "PLAIN",
            SaslMechanism::ScramSha256 => "SCRAM-SHA-256",
            SaslMechanism::ScramSha512 => "SCRAM-SHA-512",
        }
    }
}

/// `sasl:` — username/password authentication.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[schemars(transform = sluice_core::schema::field_order::<Self>)]
#[serde(deny_unknown_fields)]
pub struct SaslConfig {
    /// `PLAIN`, `SCRAM-SHA-256` or `SCRAM-SHA-512`.
    pub mechanism: SaslMechanism,
    pub username: String,
    /// Put it in the environment: `password: ${KAFKA_PASSWORD}`.
    pub password: String,
}

/// `type: kafka` as a source.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[schemars(transform = sluice_core::schema::field_order::<Self>)]
#[serde(deny_unknown_fields)]
pub struct KafkaSourceConfig {
    /// Bootstrap servers, `host:port[,host:port...]`.
    pub brokers: String,
    /// Topics to consume.
    pub topics: Vec<String>,
    /// Consumer group id; replicas with the same group share the partitions.
    pub group: String,
    /// Where a group without a committed offset starts. Default: `earliest`.
    #[serde(default)]
    pub start_from: StartFrom,
    /// Default: `cooperative_sticky`.
    #[serde(default)]
    pub assignment: Assignment,
    /// How often stored offsets are committed, in ms. Default: 1000. (They are also committed on
    /// every revocation and at shutdown.)
    #[serde(default = "default_commit_interval_ms")]
    #[schemars(range(min = 1, max = 3600000))]
    pub commit_interval_ms: u64,
    /// Group session timeout, in ms. Default: librdkafka's (45000).
    #[serde(default)]
    #[schemars(range(min = 1, max = 3600000))]
    pub session_timeout_ms: Option<u64>,
    /// How often consumer lag (high watermark minus committed offset, summed over the assigned
    /// partitions) is read from the broker, in ms; 0 turns it off. Default: 5000.
    #[serde(default = "default_lag_interval_ms")]
    #[schemars(range(min = 0, max = 3600000))]
    pub lag_interval_ms: u64,
    /// Default: plaintext.
    #[serde(default)]
    pub tls: Option<TlsConfig>,
    /// Default: no authentication.
    #[serde(default)]
    pub sasl: Option<SaslConfig>,
    /// Further librdkafka properties, e.g. `fetch.max.bytes: "1048576"`. Those the connector
    /// owns (offset handling, group id, brokers) are refused.
    #[serde(default)]
    pub options: BTreeMap<String, String>,
}

/// `type: kafka` as a sink.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[schemars(transform = sluice_core::schema::field_order::<Self>)]
#[serde(deny_unknown_fields)]
pub struct KafkaSinkConfig {
    /// Bootstrap servers, `host:port[,host:port...]`.
    pub brokers: String,
    /// Topic every output is written to.
    pub topic: String,
    /// Default: `zstd`.
    #[serde(default)]
    pub compression: Compression,
    /// How long the producer waits to fill a batch, in ms. Default: 5.
    #[serde(default = "default_linger_ms")]
    #[schemars(range(min = 0, max = 900000))]
    pub linger_ms: u64,
    /// How long a record may take to be acknowledged before the write fails (and the engine
    /// retries it), in ms. Default: 30000.
    #[serde(default = "default_message_timeout_ms")]
    #[schemars(range(min = 0, max = 2147483647))]
    pub message_timeout_ms: u64,
    #[serde(default)]
    pub tls: Option<TlsConfig>,
    #[serde(default)]
    pub sasl: Option<SaslConfig>,
    /// Further librdkafka properties. Those that would weaken delivery (`acks`,
    /// `enable.idempotence`) are refused.
    #[serde(default)]
    pub options: BTreeMap<String, String>,
}

fn default_commit_interval_ms() -> u64 {
    1000
}
fn default_lag_interval_ms() -> u64 {
    5000
}
fn default_linger_ms() -> u64 {
    5
}
fn default_message_timeout_ms() -> u64 {
    30_000
}
