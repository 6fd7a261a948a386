//! `rabbitmq`'s config types: what a `type: rabbitmq` source or sink section may say (its
//! `topology` and `tls` are in `topology.rs`, beside the code that declares and connects).

use schemars::JsonSchema;
use serde::Deserialize;

use super::{TlsSettings, Topology, yes};

/// `type: rabbitmq` as a source.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[schemars(transform = sluice_core::schema::field_order::<Self>)]
#[serde(deny_unknown_fields)]
pub struct RabbitMqSourceConfig {
    /// AMQP URI, e.g. `amqp://guest:guest@127.0.0.1:5672/%2f` (`amqps://` for TLS). Put
    /// credentials in the environment: `url: ${AMQP_URL}`.
    pub url: String,
    /// Queue to consume.
    pub queue: String,
    /// Declare the queue (durable) if it does not exist. Default: false.
    #[serde(default)]
    pub declare: bool,
    /// Unacknowledged messages the broker may push at once. Default: the pipeline's
    /// `delivery.max_in_flight` (capped at 65535).
    #[serde(default)]
    #[schemars(range(min = 1))]
    pub prefetch: Option<u16>,
    /// While earlier deliveries of this source are still unsettled, wait up to this long, in
    /// ms, for a batch to fill before handing it on. An idle pipeline gets each message at once;
    /// a busy one gets fuller batches (fewer handler calls, publishes and ack frames). Default:
    /// 2; 0 hands on whatever has arrived.
    #[serde(default = "default_linger_ms")]
    #[schemars(range(max = 10000))]
    pub batch_linger_ms: u64,
    /// Exchanges, queues and bindings to declare on every connect. Default: none.
    #[serde(default)]
    pub topology: Topology,
    /// TLS settings for `amqps://`. Default: the system's trust roots.
    #[serde(default)]
    pub tls: TlsSettings,
    /// How often the queue's depth is read into the lag gauge (`sluice_consumer_lag`), in ms.
    /// Each read is one call to the broker. Default: 5000.
    #[serde(default = "sluice_core::connector::default_lag_interval_ms")]
    #[schemars(range(min = 100, max = 3600000))]
    pub lag_interval_ms: u64,
}

pub(crate) fn default_linger_ms() -> u64 {
    2
}

/// `type: rabbitmq` as a sink.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[schemars(transform = sluice_core::schema::field_order::<Self>)]
#[serde(deny_unknown_fields)]
pub struct RabbitMqSinkConfig {
    /// AMQP URI, as for the source.
    pub url: String,
    /// Exchange to publish to. Default: `""` (the default exchange: routing key = queue name).
    #[serde(default)]
    pub exchange: String,
    /// Routing key for every message. Default: each output's key.
    #[serde(default)]
    pub routing_key: Option<String>,
    /// Declare this queue (durable) before publishing. Default: none.
    #[serde(default)]
    pub declare_queue: Option<String>,
    /// Publish as persistent (delivery mode 2). Default: true.
    #[serde(default = "yes")]
    pub persistent: bool,
    /// Exchanges, queues and bindings to declare on every connect. Default: none.
    #[serde(default)]
    pub topology: Topology,
    /// TLS settings for `amqps://`. Default: the system's trust roots.
    #[serde(default)]
    pub tls: TlsSettings,
    /// How long, in ms, to wait for the broker to confirm a batch before the batch counts as
    /// failed: the connection is dropped and the batch retried on a new one (a confirm lost with
    /// a half-dead connection would otherwise hold its messages forever). Default: 30000.
    #[serde(default = "default_confirm_timeout_ms")]
    #[schemars(range(min = 1, max = 3600000))]
    pub confirm_timeout_ms: u64,
}

fn default_confirm_timeout_ms() -> u64 {
    30_000
}
