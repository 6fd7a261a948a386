//! `zeromq`'s config types: what a `type: zeromq` source or sink section may say.

use schemars::JsonSchema;
use serde::Deserialize;

/// Socket types a source can use.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum SourceSocket {
    /// Receive from PUSH peers (load-balanced). Default.
    #[default]
    Pull,
    /// Receive from PUB peers, filtered by `topics`.
    Sub,
}

/// Socket types a sink can use.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum SinkSocket {
    /// Send to PULL peers, round robin. Default.
    #[default]
    Push,
    /// Send to every SUB peer whose subscription matches.
    Pub,
}

/// `type: zeromq` as a source.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[schemars(transform = sluice_core::schema::field_order::<Self>)]
#[serde(deny_unknown_fields)]
pub struct ZeroMqSourceConfig {
    /// `tcp://host:port` or `ipc:///path`.
    pub endpoint: String,
    /// Default: `pull`.
    #[serde(default)]
    pub socket: SourceSocket,
    /// Bind the endpoint (true) or connect to it (false). Default: true for `pull`, false for `sub`.
    #[serde(default)]
    pub bind: Option<bool>,
    /// SUB prefixes to subscribe to. Default: `[""]` (everything).
    #[serde(default)]
    pub topics: Option<Vec<String>>,
}

/// `type: zeromq` as a sink.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[schemars(transform = sluice_core::schema::field_order::<Self>)]
#[serde(deny_unknown_fields)]
pub struct ZeroMqSinkConfig {
    /// `tcp://host:port` or `ipc:///path`.
    pub endpoint: String,
    /// Default: `push`.
    #[serde(default)]
    pub socket: SinkSocket,
    /// Bind the endpoint (true) or connect to it (false). Default: false for `push`, true for `pub`.
    #[serde(default)]
    pub bind: Option<bool>,
}
