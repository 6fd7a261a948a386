//! What a RabbitMQ source or sink sets up on the broker before it moves a message: exchanges,
//! queues (with arguments such as `x-queue-type`, `x-dead-letter-exchange`, `x-delivery-limit`)
//! and bindings, declared on every (re)connect; and the TLS settings of an `amqps://` connection.
//!
//! Declarations are idempotent on the broker: one that matches what exists is a no-op, one that
//! conflicts (another type, other arguments) fails the connect with the broker's reason, naming
//! the exchange or queue.

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::Context as _;
use lapin::options::{ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions};
use lapin::tcp::{OwnedIdentity, OwnedTLSConfig};
use lapin::types::{AMQPValue, FieldTable, LongString};
use lapin::{Channel, Connection, ConnectionProperties, ExchangeKind};
use schemars::JsonSchema;
use serde::Deserialize;

use sluice_core::FieldError;
use sluice_core::connector::Resource;

/// `topology:` — declared in order: exchanges, then queues, then bindings. Default: nothing.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[schemars(transform = sluice_core::schema::field_order::<Self>)]
#[serde(deny_unknown_fields)]
pub struct Topology {
    /// Exchanges to declare. Default: none.
    #[serde(default)]
    pub exchanges: Vec<ExchangeDecl>,
    /// Queues to declare. Default: none.
    #[serde(default)]
    pub queues: Vec<QueueDecl>,
    /// Bindings of queues to exchanges. Default: none.
    #[serde(default)]
    pub bindings: Vec<BindingDecl>,
}

/// One exchange.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[schemars(transform = sluice_core::schema::field_order::<Self>)]
#[serde(deny_unknown_fields)]
pub struct ExchangeDecl {
    pub name: String,
    /// `direct`, `fanout`, `topic` or `headers`. Default: `direct`.
    #[serde(rename = "type", default)]
    pub kind: ExchangeType,
    /// Survives a broker restart. Default: true.
    #[serde(default = "super::yes")]
    pub durable: bool,
    /// Exchange arguments (e.g. `alternate-exchange`). Default: none.
    #[serde(default)]
    pub arguments: BTreeMap<String, ArgValue>,
}

#[derive(Debug, Clone, Copy, Default, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum ExchangeType {
    #[default]
    Direct,
    Fanout,
    Topic,
    Headers,
}

impl ExchangeType {
    /// The type's name, as AMQP and the pipeline file spell it.
    pub fn name(self) -> &'static str {
        match self {
            ExchangeType::Direct => "direct",
            ExchangeType::Fanout => "fanout",
            ExchangeType::Topic => "topic",
            ExchangeType::Headers => "headers",
        }
    }
}

/// One queue.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[schemars(transform = sluice_core::schema::field_order::<Self>)]
#[serde(deny_unknown_fields)]
pub struct QueueDecl {
    pub name: String,
    /// Survives a broker restart. Default: true.
    #[serde(default = "super::yes")]
    pub durable: bool,
    /// Queue arguments: `x-queue-type: quorum`, `x-dead-letter-exchange`,
    /// `x-dead-letter-routing-key`, `x-delivery-limit` (quorum queues: dead-letter after that
    /// many redeliveries), `x-message-ttl` (ms), `x-max-length`, ... Default: none.
    #[serde(default)]
    pub arguments: BTreeMap<String, ArgValue>,
}

/// One binding: messages published to `exchange` with a matching routing key go to `queue`.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[schemars(transform = sluice_core::schema::field_order::<Self>)]
#[serde(deny_unknown_fields)]
pub struct BindingDecl {
    pub exchange: String,
    pub queue: String,
    /// Routing key, or pattern for a topic exchange (`order.*`, `#`). Default: `""`.
    #[serde(default)]
    pub routing_key: String,
    /// Binding arguments (headers exchanges: `x-match` and the headers to match). Default: none.
    #[serde(default)]
    pub arguments: BTreeMap<String, ArgValue>,
}

/// An argument value: YAML booleans, integers and strings map to AMQP booleans, 64-bit
/// integers and long strings.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum ArgValue {
    Bool(bool),
    Int(i64),
    Text(String),
}

/// Declaration arguments as a JSON object, as `sluice plan` hands them to Terraform.
fn json_object(arguments: &BTreeMap<String, ArgValue>) -> String {
    let object: serde_json::Map<String, serde_json::Value> = arguments
        .iter()
        .map(|(name, value)| {
            let value = match value {
                ArgValue::Bool(b) => serde_json::Value::from(*b),
                ArgValue::Int(i) => serde_json::Value::from(*i),
                ArgValue::Text(t) => serde_json::Value::from(t.as_str()),
            };
            (name.clone(), value)
        })
        .collect();
    serde_json::Value::Object(object).to_string()
}

fn table(arguments: &BTreeMap<String, ArgValue>) -> FieldTable {
    let mut table = FieldTable::default();
    for (name, value) in arguments {
        let value = match value {
            ArgValue::Bool(b) => AMQPValue::Boolean(*b),
            ArgValue::Int(i) => AMQPValue::LongLongInt(*i),
            ArgValue::Text(s) => AMQPValue::LongString(LongString::from(s.as_bytes())),
        };
        table.insert(name.as_str().into(), value);
    }
    table
}

impl Topology {
    /// What this topology declares, as `sluice plan` lists it.
    pub fn resources(&self) -> Vec<Resource> {
        let exchanges = self.exchanges.iter().map(|e| Resource::RabbitmqExchange {
            exchange: e.name.clone(),
            exchange_type: Some(e.kind.name().to_owned()),
            durable: e.durable,
            arguments: json_object(&e.arguments),
        });
        let queues = self.queues.iter().map(|q| Resource::RabbitmqQueue {
            queue: q.name.clone(),
            durable: q.durable,
            arguments: json_object(&q.arguments),
        });
        let bindings = self.bindings.iter().map(|b| Resource::RabbitmqBinding {
            exchange: b.exchange.clone(),
            queue: b.queue.clone(),
            routing_key: b.routing_key.clone(),
            arguments: json_object(&b.arguments),
        });
        exchanges.chain(queues).chain(bindings).collect()
    }

    pub fn validate(&self, errors: &mut Vec<FieldError>) {
        for (i, e) in self.exchanges.iter().enumerate() {
            if e.name.is_empty() || e.name.starts_with("amq.") {
                errors.push(FieldError::new(
                    format!("topology.exchanges[{i}].name"),
                    "must be a name of your own (not empty, not `amq.*`, which the broker reserves)",
                ));
            }
        }
        for (i, q) in self.queues.iter().enumerate() {
            if q.name.is_empty() {
                errors.push(FieldError::new(
                    format!("topology.queues[{i}].name"),
                    "must not be empty",
                ));
            }
        }
        for (i, b) in self.bindings.iter().enumerate() {
            for (field, value) in [("exchange", &b.exchange), ("queue", &b.queue)] {
                if value.is_empty() {
                    errors.push(FieldError::new(
                        format!("topology.bindings[{i}].{field}"),
                        "must not be empty (the default exchange cannot be bound)",
                    ));
                }
            }
        }
    }

    /// Declare everything on `channel`; `who` names the connector in errors.
    pub async fn declare(&self, channel: &Channel, who: &str) -> anyhow::Result<()> {
        for e in &self.exchanges {
            let kind = match e.kind {
                ExchangeType::Direct => ExchangeKind::Direct,
                ExchangeType::Fanout => ExchangeKind::Fanout,
                ExchangeType::Topic => ExchangeKind::Topic,
                ExchangeType::Headers => ExchangeKind::Headers,
            };
            let options = ExchangeDeclareOptions {
                durable: e.durable,
                ..Default::default()
            };
            channel
                .exchange_declare(e.name.as_str().into(), kind, options, table(&e.arguments))
                .await
                .with_context(|| format!("{who}: cannot declare exchange `{}`", e.name))?;
        }
        for q in &self.queues {
            let options = QueueDeclareOptions {
                durable: q.durable,
                ..Default::default()
            };
            channel
                .queue_declare(q.name.as_str().into(), options, table(&q.arguments))
                .await
                .with_context(|| format!("{who}: cannot declare queue `{}`", q.name))?;
        }
        for b in &self.bindings {
            channel
                .queue_bind(
                    b.queue.as_str().into(),
                    b.exchange.as_str().into(),
                    b.routing_key.as_str().into(),
                    QueueBindOptions::default(),
                    table(&b.arguments),
                )
                .await
                .with_context(|| {
                    format!(
                        "{who}: cannot bind queue `{}` to exchange `{}` with key `{}`",
                        b.queue, b.exchange, b.routing_key
                    )
                })?;
        }
        Ok(())
    }
}

/// `tls:` for `amqps://` URLs. Default: the system's trust roots, no client certificate.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[schemars(transform = sluice_core::schema::field_order::<Self>)]
#[serde(deny_unknown_fields)]
pub struct TlsSettings {
    /// PEM file of CA certificates to trust besides the defaults (a private CA). Default: none.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// PEM certificate chain presented to the broker (mutual TLS); needs `key_file`.
    /// Default: none.
    #[serde(default)]
    pub cert_file: Option<PathBuf>,
    /// PEM private key (PKCS#8) of `cert_file`. Default: none.
    #[serde(default)]
    pub key_file: Option<PathBuf>,
}

impl TlsSettings {
    pub fn validate(&self, url: &str, errors: &mut Vec<FieldError>) {
        let any = self.ca_file.is_some() || self.cert_file.is_some();
        if any && !url.starts_with("amqps://") {
            errors.push(FieldError::new(
                "tls",
                "applies only to `amqps://` URLs; this one is not TLS",
            ));
        }
        if self.cert_file.is_some() != self.key_file.is_some() {
            errors.push(FieldError::new(
                "tls",
                "`cert_file` and `key_file` go together (mutual TLS needs both)",
            ));
        }
        for (field, path) in [
            ("ca_file", &self.ca_file),
            ("cert_file", &self.cert_file),
            ("key_file", &self.key_file),
        ] {
            if let Some(path) = path
                && !path.is_file()
            {
                errors.push(FieldError::new(
                    format!("tls.{field}"),
                    format!("{} is not a readable file", path.display()),
                ));
            }
        }
    }

    fn owned(&self) -> anyhow::Result<OwnedTLSConfig> {
        let read = |path: &PathBuf| {
            std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))
        };
        let cert_chain = match &self.ca_file {
            Some(path) => Some(
                String::from_utf8(read(path)?)
                    .with_context(|| format!("{} is not PEM text", path.display()))?,
            ),
            None => None,
        };
        let identity = match (&self.cert_file, &self.key_file) {
            (Some(cert), Some(key)) => Some(OwnedIdentity::PKCS8 {
                pem: read(cert)?,
                key: read(key)?,
            }),
            _ => None,
        };
        Ok(OwnedTLSConfig {
            identity,
            cert_chain,
        })
    }
}

/// Open a connection to `url` with `tls`; `who` names the connector in errors.
pub async fn connect(url: &str, tls: &TlsSettings, who: &str) -> anyhow::Result<Connection> {
    let runtime = lapin::runtime::default_runtime().context("no async runtime for lapin")?;
    Connection::connect_with_config(
        url,
        ConnectionProperties::default(),
        tls.owned().with_context(|| format!("{who}: tls"))?,
        runtime,
    )
    .await
    .with_context(|| format!("{who}: cannot connect"))
}
