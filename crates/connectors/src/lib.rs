//! The connectors this build knows: the `registry!` that maps each pipeline file's `type:` to a
//! connector's config type, the built-in connectors that need no broker (`generate`, `file`,
//! `stdin`/`stdout`, `memory`, `drop`), and each broker family behind its cargo feature.
//!
//! Architecture invariant: adding a broker is one crate (`crates/connector-<name>`) implementing
//! [`SourceFactory`]/[`SinkFactory`] for its config types, one optional dependency and feature
//! here, and one line in the `registry!` call below; the engine does not change.

mod codec;
pub mod drop;
pub mod file;
pub mod generate;
pub mod memory;
pub mod stdio;

use schemars::JsonSchema;
use serde::Deserialize;

pub use codec::Codec;
pub use sluice_core::connector::*;

#[cfg(feature = "azure")]
pub use sluice_connector_azure_queue as azure_queue;
#[cfg(feature = "kafka")]
pub use sluice_connector_kafka as kafka;
#[cfg(feature = "rabbitmq")]
pub use sluice_connector_rabbitmq as rabbitmq;
#[cfg(feature = "sqs")]
pub use sluice_connector_sqs as sqs;
#[cfg(feature = "zeromq")]
pub use sluice_connector_zeromq as zeromq;

/// Declares the `type:` names of every connector, once each.
macro_rules! registry {
    (sources { $($(#[$sm:meta])* $src:ident => $src_cfg:ty,)* } sinks { $($(#[$km:meta])* $snk:ident => $snk_cfg:ty,)* }) => {
        /// A `source:` section: `type` selects the connector.
        #[derive(Debug, Clone, Deserialize, JsonSchema)]
        #[serde(tag = "type")]
        #[allow(non_camel_case_types)]
        // Parsed once per pipeline: boxing the large connector configs would buy nothing.
        #[allow(clippy::large_enum_variant)]
        pub enum SourceConfig { $($(#[$sm])* $src($src_cfg),)* }

        impl SourceConfig {
            pub fn factory(&self) -> &dyn SourceFactory {
                match self { $($(#[$sm])* Self::$src(c) => c,)* }
            }
            pub fn type_name(&self) -> &'static str {
                match self { $($(#[$sm])* Self::$src(_) => stringify!($src),)* }
            }
        }

        /// A sink or `dead_letter:` section: `type` selects the connector.
        #[derive(Debug, Clone, Deserialize, JsonSchema)]
        #[serde(tag = "type")]
        #[allow(non_camel_case_types)]
        #[allow(clippy::large_enum_variant)]
        pub enum SinkConfig { $($(#[$km])* $snk($snk_cfg),)* }

        impl SinkConfig {
            pub fn factory(&self) -> &dyn SinkFactory {
                match self { $($(#[$km])* Self::$snk(c) => c,)* }
            }
            pub fn type_name(&self) -> &'static str {
                match self { $($(#[$km])* Self::$snk(_) => stringify!($snk),)* }
            }
        }

        /// Every source `type` this build knows.
        pub const SOURCE_TYPES: &[&str] = &[$($(#[$sm])* stringify!($src),)*];
        /// Every sink `type` this build knows.
        pub const SINK_TYPES: &[&str] = &[$($(#[$km])* stringify!($snk),)*];
    };
}

registry! {
    sources {
        generate => generate::GenerateSourceConfig,
        file => file::FileSourceConfig,
        stdin => stdio::StdinSourceConfig,
        memory => memory::MemorySourceConfig,
        #[cfg(feature = "kafka")]
        kafka => kafka::KafkaSourceConfig,
        #[cfg(feature = "rabbitmq")]
        rabbitmq => rabbitmq::RabbitMqSourceConfig,
        #[cfg(feature = "sqs")]
        sqs => sqs::SqsSourceConfig,
        #[cfg(feature = "azure")]
        azure_queue => azure_queue::AzureQueueSourceConfig,
        #[cfg(feature = "zeromq")]
        zeromq => zeromq::ZeroMqSourceConfig,
    }
    sinks {
        file => file::FileSinkConfig,
        stdout => stdio::StdoutSinkConfig,
        memory => memory::MemorySinkConfig,
        drop => drop::DropSinkConfig,
        #[cfg(feature = "kafka")]
        kafka => kafka::KafkaSinkConfig,
        #[cfg(feature = "rabbitmq")]
        rabbitmq => rabbitmq::RabbitMqSinkConfig,
        #[cfg(feature = "sqs")]
        sqs => sqs::SqsSinkConfig,
        #[cfg(feature = "azure")]
        azure_queue => azure_queue::AzureQueueSinkConfig,
        #[cfg(feature = "zeromq")]
        zeromq => zeromq::ZeroMqSinkConfig,
    }
}

/// Every connector `type` that a cargo feature can leave out, with that feature: a pipeline
/// naming one this build lacks is told which feature to build with.
pub const OPTIONAL_TYPES: &[(&str, &str)] = &[
    ("kafka", "kafka"),
    ("rabbitmq", "rabbitmq"),
    ("sqs", "sqs"),
    ("azure_queue", "azure"),
    ("zeromq", "zeromq"),
];

/// The cargo feature that builds in connector `type_name`, when this build lacks it.
pub fn missing_feature(type_name: &str) -> Option<&'static str> {
    OPTIONAL_TYPES
        .iter()
        .find(|(t, _)| *t == type_name)
        .map(|(_, feature)| *feature)
        .filter(|_| !SOURCE_TYPES.contains(&type_name) && !SINK_TYPES.contains(&type_name))
}
