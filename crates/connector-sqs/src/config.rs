//! `sqs`'s config types: what a `type: sqs` source or sink section may say.

use schemars::JsonSchema;
use serde::Deserialize;

/// Declares a config struct with the fields every SQS section has (serde's `flatten` cannot be
/// combined with `deny_unknown_fields`), plus its own.
macro_rules! sqs_config {
    ($(#[$meta:meta])* $name:ident { $($extra:tt)* }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Deserialize, JsonSchema)]
        #[schemars(transform = sluice_core::schema::field_order::<Self>)]
        #[serde(deny_unknown_fields)]
        pub struct $name {
            /// Queue name (its URL is looked up) — or give `queue_url`.
            #[serde(default)]
            pub queue: Option<String>,
            /// Full queue URL, instead of `queue`.
            #[serde(default)]
            pub queue_url: Option<String>,
            /// AWS region. Default: from the standard chain (`AWS_REGION`, profile).
            #[serde(default)]
            pub region: Option<String>,
            /// Endpoint override for local servers (moto, ElasticMQ, LocalStack). Default: AWS's.
            #[serde(default)]
            pub endpoint: Option<String>,
            /// Static credentials, for local servers. Default: the standard AWS chain
            /// (environment, profile, web identity, container and instance roles).
            #[serde(default)]
            pub credentials: Option<StaticCredentials>,
            /// Bodies are base64 of the payload (binary payloads). Default: false (UTF-8 text).
            #[serde(default)]
            pub base64: bool,
            /// Longest wait for one call to SQS, retries included (a receive gets `wait_time_s`
            /// more), in milliseconds: a server that accepts the connection and never answers
            /// fails the call instead of holding it. Default: 30000.
            #[serde(default = "default_request_timeout_ms")]
            #[schemars(range(min = 100, max = 600000))]
            pub request_timeout_ms: u64,
            $($extra)*
        }

        impl $name {
            pub(crate) fn spec(&self) -> SqsQueue {
                SqsQueue {
                    queue: self.queue.clone(),
                    queue_url: self.queue_url.clone(),
                    region: self.region.clone(),
                    endpoint: self.endpoint.clone(),
                    credentials: self.credentials.clone(),
                    base64: self.base64,
                    request_timeout: std::time::Duration::from_millis(self.request_timeout_ms),
                }
            }
        }
    };
}

/// Where a queue is and how to reach it.
#[derive(Debug, Clone)]
pub struct SqsQueue {
    pub queue: Option<String>,
    pub queue_url: Option<String>,
    pub region: Option<String>,
    pub endpoint: Option<String>,
    pub credentials: Option<StaticCredentials>,
    pub base64: bool,
    /// Longest wait for one call (retries included); a long-polling receive gets its wait on top.
    pub request_timeout: std::time::Duration,
}

fn default_request_timeout_ms() -> u64 {
    30_000
}

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[schemars(transform = sluice_core::schema::field_order::<Self>)]
#[serde(deny_unknown_fields)]
pub struct StaticCredentials {
    pub access_key_id: String,
    /// Put it in the environment: `"${AWS_SECRET_ACCESS_KEY}"`.
    pub secret_access_key: String,
    #[serde(default)]
    pub session_token: Option<String>,
}

sqs_config! {
    /// `type: sqs` as a source.
    SqsSourceConfig {
        /// Long-poll wait per receive, in seconds (1–20; 0, short polling, would spin on an
        /// empty queue). Default: 20.
        #[serde(default = "default_wait_time_s")]
        #[schemars(range(min = 1, max = 20))]
        pub wait_time_s: i32,
        /// Visibility timeout for received messages, in seconds. Default: the queue's.
        #[serde(default)]
        #[schemars(range(min = 0, max = 43200))]
        pub visibility_timeout_s: Option<i32>,
        /// How often the queue's depth is read into the lag gauge (`sluice_consumer_lag`), in ms.
        /// Each read is one call to the broker. Default: 5000.
        #[serde(default = "sluice_core::connector::default_lag_interval_ms")]
        #[schemars(range(min = 100, max = 3600000))]
        pub lag_interval_ms: u64,
    }
}

sqs_config! {
    /// `type: sqs` as a sink.
    SqsSinkConfig {
        /// FIFO only: group id of every message. Default: each output's key (else `sluice`).
        #[serde(default)]
        pub message_group_id: Option<String>,
        /// FIFO only: the header whose value is the deduplication id. Default: none (the
        /// queue's content-based deduplication).
        #[serde(default)]
        pub deduplication_id_header: Option<String>,
    }
}

fn default_wait_time_s() -> i32 {
    20
}
