//! The dead-letter copy of a message: the original payload, key and headers byte for byte, plus
//! headers that say why.

use sluice_core::message::{Message, Output};

use sluice_core::transform::Failure;

/// Header names added to dead-lettered messages.
pub mod headers {
    pub const REASON: &str = "x-sluice-reason";
    pub const ERROR_CLASS: &str = "x-sluice-error-class";
    pub const ATTEMPTS: &str = "x-sluice-attempts";
    pub const PIPELINE: &str = "x-sluice-pipeline";
    pub const HANDLER: &str = "x-sluice-handler";
    pub const SOURCE: &str = "x-sluice-source";
    pub const TOPIC: &str = "x-sluice-topic";
    pub const PARTITION: &str = "x-sluice-partition";
    pub const OFFSET: &str = "x-sluice-offset";
    pub const MESSAGE_ID: &str = "x-sluice-message-id";
    /// The plugin version (name, declared version, content hash) that produced an output or
    /// failed a message.
    pub const PLUGIN: &str = "x-sluice-plugin";
}

/// Build the dead-letter output for `msg`, which failed in `handler` (if a handler was involved).
pub fn dead_letter_output(
    msg: &Message,
    failure: &Failure,
    pipeline: &str,
    handler: Option<&str>,
) -> Output {
    let mut h = msg.headers.clone();
    h.push((headers::REASON.into(), failure.reason.clone().into()));
    h.push((headers::ERROR_CLASS.into(), failure.class.as_str().into()));
    h.push((
        headers::ATTEMPTS.into(),
        msg.meta.attempt.to_string().into(),
    ));
    h.push((headers::PIPELINE.into(), pipeline.into()));
    if let Some(handler) = handler {
        h.push((headers::HANDLER.into(), handler.into()));
    }
    if let Some(plugin) = &failure.plugin {
        // The version that failed it (after any labels the message carried in).
        h.push((headers::PLUGIN.into(), plugin.clone().into()));
    }
    h.push((headers::SOURCE.into(), msg.meta.source.to_string().into()));
    h.push((headers::TOPIC.into(), msg.meta.topic.to_string().into()));
    if let Some(p) = msg.meta.partition {
        h.push((headers::PARTITION.into(), p.to_string().into()));
    }
    if let Some(o) = msg.meta.offset {
        h.push((headers::OFFSET.into(), o.to_string().into()));
    }
    h.push((headers::MESSAGE_ID.into(), msg.id.clone().into()));
    Output {
        payload: msg.payload.clone(),
        key: msg.key.clone(),
        headers: h,
        route: None,
        timestamp_ms: msg.meta.timestamp_ms,
    }
}
