//! Between the engine's message types and the generated WIT types.

use bytes::Bytes;

use super::bindings::v0_1::sluice::plugin::types as wit;
use sluice_core::message::{Message, Output};
use sluice_core::transform::{ErrorClass, Failure};

pub fn to_wit(m: &Message) -> wit::Message {
    wit::Message {
        id: m.id.clone(),
        key: m.key.as_ref().map(|k| k.to_vec()),
        payload: m.payload.to_vec(),
        headers: m
            .headers
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect(),
        metadata: wit::Metadata {
            source: m.meta.source.to_string(),
            topic: m.meta.topic.to_string(),
            partition: m.meta.partition,
            offset: m.meta.offset,
            timestamp_ms: m.meta.timestamp_ms,
            received_ms: m.meta.received_ms,
            attempt: m.meta.attempt,
        },
    }
}

pub fn from_wit(o: wit::Output) -> Output {
    Output {
        payload: Bytes::from(o.payload),
        key: o.key.map(Bytes::from),
        headers: o
            .headers
            .into_iter()
            .map(|(n, v)| (n.into(), v.into()))
            .collect(),
        route: o.route,
        timestamp_ms: None,
    }
}

pub fn failure(e: wit::HandlerError) -> Failure {
    match e {
        wit::HandlerError::Transient(r) => Failure::new(ErrorClass::Transient, r),
        wit::HandlerError::Fatal(r) => Failure::new(ErrorClass::Fatal, r),
        wit::HandlerError::Invalid(r) => Failure::new(ErrorClass::Invalid, r),
    }
}
