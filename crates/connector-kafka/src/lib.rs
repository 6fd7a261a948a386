//! `kafka`: Apache Kafka (and Kafka-protocol brokers) through `rdkafka`, with librdkafka built from
//! the crate's bundled sources.
//!
//! Source: a consumer group member (cooperative-sticky assignment by default). Offsets are stored
//! by hand: a partition's offset moves only past the contiguous prefix of acknowledged messages
//! (see `offsets.rs`), and librdkafka commits what is stored every `commit_interval_ms`, on every
//! revocation and at close. A nack redelivers the message from the host after its delay (Kafka
//! has no per-message nack); its offset stays uncommitted meanwhile, so a crash redelivers it too.
//!
//! Sink: an idempotent producer (`enable.idempotence=true`, `acks=all`); `send` returns when every
//! record of the batch is acknowledged by the broker.
//!
//! Mapping both ways: payload = record value, key = record key, headers = record headers (order and
//! repeats kept; a null header value reads as ""), timestamp = record timestamp.

mod offsets;
mod sink;
mod source;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use rdkafka::ClientConfig;
use schemars::JsonSchema;
use serde::Deserialize;

use sluice_core::FieldError;
use sluice_core::connector::{BuildContext, Sink, SinkFactory, Source, SourceFactory};

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
    fn as_str(self) -> &'static str {
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
    #[schemars(range(min = 1))]
    pub commit_interval_ms: u64,
    /// Group session timeout, in ms. Default: librdkafka's (45000).
    #[serde(default)]
    pub session_timeout_ms: Option<u64>,
    /// How often consumer lag (high watermark minus committed offset, summed over the assigned
    /// partitions) is read from the broker, in ms; 0 turns it off. Default: 5000.
    #[serde(default = "default_lag_interval_ms")]
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
    pub linger_ms: u64,
    /// How long a record may take to be acknowledged before the write fails (and the engine
    /// retries it), in ms. Default: 30000.
    #[serde(default = "default_message_timeout_ms")]
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

/// Properties the connector sets itself; `options` may not override them.
const SOURCE_OWNED: &[&str] = &[
    "bootstrap.servers",
    "group.id",
    "enable.auto.commit",
    "enable.auto.offset.store",
    "auto.commit.interval.ms",
];
const SINK_OWNED: &[&str] = &["bootstrap.servers", "enable.idempotence", "acks"];

/// The settings common to consumers and producers.
struct Common<'a> {
    brokers: &'a str,
    tls: Option<&'a TlsConfig>,
    sasl: Option<&'a SaslConfig>,
    options: &'a BTreeMap<String, String>,
}

impl Common<'_> {
    fn client_config(&self, ctx: Option<&BuildContext>) -> ClientConfig {
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", self.brokers);
        let protocol = match (self.tls.is_some(), self.sasl.is_some()) {
            (false, false) => "plaintext",
            (true, false) => "ssl",
            (false, true) => "sasl_plaintext",
            (true, true) => "sasl_ssl",
        };
        c.set("security.protocol", protocol);
        if let Some(tls) = self.tls {
            let path = |p: &PathBuf| {
                ctx.map_or_else(|| p.clone(), |ctx| ctx.resolve(p))
                    .display()
                    .to_string()
            };
            if let Some(p) = &tls.ca_file {
                c.set("ssl.ca.location", path(p));
            }
            if let Some(p) = &tls.cert_file {
                c.set("ssl.certificate.location", path(p));
            }
            if let Some(p) = &tls.key_file {
                c.set("ssl.key.location", path(p));
            }
            if let Some(pw) = &tls.key_password {
                c.set("ssl.key.password", pw);
            }
        }
        if let Some(sasl) = self.sasl {
            c.set("sasl.mechanism", sasl.mechanism.as_str());
            c.set("sasl.username", &sasl.username);
            c.set("sasl.password", &sasl.password);
        }
        for (k, v) in self.options {
            c.set(k, v);
        }
        c
    }

    fn validate(&self, owned: &[&str], errors: &mut Vec<FieldError>) {
        if self.brokers.trim().is_empty() {
            errors.push(FieldError::new(
                "brokers",
                "must name at least one host:port",
            ));
        }
        for key in self.options.keys() {
            if owned.contains(&key.as_str()) {
                errors.push(FieldError::new(
                    format!("options.{key}"),
                    "is set by the connector and cannot be overridden",
                ));
            }
        }
        // librdkafka checks every property name and value without connecting anywhere.
        if let Err(e) = self.client_config(None).create_native_config() {
            errors.push(FieldError::new(
                "options",
                format!("librdkafka refused: {e}"),
            ));
        }
    }
}

impl KafkaSourceConfig {
    fn common(&self) -> Common<'_> {
        Common {
            brokers: &self.brokers,
            tls: self.tls.as_ref(),
            sasl: self.sasl.as_ref(),
            options: &self.options,
        }
    }
}

impl KafkaSinkConfig {
    fn common(&self) -> Common<'_> {
        Common {
            brokers: &self.brokers,
            tls: self.tls.as_ref(),
            sasl: self.sasl.as_ref(),
            options: &self.options,
        }
    }
}

impl SourceFactory for KafkaSourceConfig {
    fn validate(&self, errors: &mut Vec<FieldError>) {
        self.common().validate(SOURCE_OWNED, errors);
        if self.topics.is_empty() {
            errors.push(FieldError::new("topics", "must name at least one topic"));
        }
        for (i, t) in self.topics.iter().enumerate() {
            if t.is_empty() {
                errors.push(FieldError::new(format!("topics[{i}]"), "must not be empty"));
            }
        }
        if self.group.is_empty() {
            errors.push(FieldError::new("group", "must not be empty"));
        }
    }

    fn build(&self, ctx: &BuildContext) -> anyhow::Result<Box<dyn Source>> {
        Ok(Box::new(source::KafkaSource::new(self.clone(), ctx)?))
    }
}

impl SinkFactory for KafkaSinkConfig {
    fn validate(&self, errors: &mut Vec<FieldError>) {
        self.common().validate(SINK_OWNED, errors);
        if self.topic.is_empty() {
            errors.push(FieldError::new("topic", "must not be empty"));
        }
    }

    fn build(&self, ctx: &BuildContext) -> anyhow::Result<Arc<dyn Sink>> {
        Ok(Arc::new(sink::KafkaSink::new(self, ctx)?))
    }
}
