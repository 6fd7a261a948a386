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

mod config;
mod offsets;
mod sink;
mod source;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use rdkafka::ClientConfig;

use sluice_core::FieldError;
use sluice_core::connector::{BuildContext, Resource, Sink, SinkFactory, Source, SourceFactory};

pub use config::*;

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

impl Common<'_> {
    /// The TLS files librdkafka will read when the client is made, each a readable file.
    fn check_local(&self, ctx: &BuildContext, errors: &mut Vec<FieldError>) {
        let Some(tls) = self.tls else { return };
        for (field, path) in [
            ("ca_file", &tls.ca_file),
            ("cert_file", &tls.cert_file),
            ("key_file", &tls.key_file),
        ] {
            let Some(path) = path else { continue };
            let path = ctx.resolve(path);
            if !std::fs::metadata(&path).is_ok_and(|m| m.is_file()) {
                errors.push(FieldError::new(
                    format!("tls.{field}"),
                    format!("{} is not a readable file", path.display()),
                ));
            }
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

    fn check_local(&self, ctx: &BuildContext, errors: &mut Vec<FieldError>) {
        self.common().check_local(ctx, errors);
    }

    fn build(&self, ctx: &BuildContext) -> anyhow::Result<Box<dyn Source>> {
        Ok(Box::new(source::KafkaSource::new(self.clone(), ctx)?))
    }

    fn resources(&self) -> Vec<Resource> {
        let mut needs: Vec<Resource> = self
            .topics
            .iter()
            .map(|t| Resource::KafkaTopic {
                brokers: self.brokers.clone(),
                topic: t.clone(),
            })
            .collect();
        needs.push(Resource::KafkaConsumerGroup {
            brokers: self.brokers.clone(),
            group: self.group.clone(),
            topics: self.topics.clone(),
        });
        needs
    }
}

impl SinkFactory for KafkaSinkConfig {
    fn validate(&self, errors: &mut Vec<FieldError>) {
        self.common().validate(SINK_OWNED, errors);
        if self.topic.is_empty() {
            errors.push(FieldError::new("topic", "must not be empty"));
        }
    }

    fn check_local(&self, ctx: &BuildContext, errors: &mut Vec<FieldError>) {
        self.common().check_local(ctx, errors);
    }

    fn write_timeout_ms(&self) -> Option<(&'static str, u64)> {
        Some(("message_timeout_ms", self.message_timeout_ms))
    }

    fn resources(&self) -> Vec<Resource> {
        vec![Resource::KafkaTopic {
            brokers: self.brokers.clone(),
            topic: self.topic.clone(),
        }]
    }

    fn build(&self, ctx: &BuildContext) -> anyhow::Result<Arc<dyn Sink>> {
        Ok(Arc::new(sink::KafkaSink::new(self, ctx)?))
    }
}
