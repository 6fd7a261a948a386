//! Between the engine's message types and the generated WIT types of each contract version.
//! The versions differ only in header values: strings in 0.1, text, bytes or null in 0.2.

use bytes::Bytes;

use sluice_core::message::{ByteString, HeaderValue, Message, ValueRef};
use sluice_core::transform::{ErrorClass, Failure, Outcome};

/// `to_wit`, `outcome` and `failure` for one contract version, given how its header values
/// convert both ways.
macro_rules! conversions {
    ($version:ident, $value_to_wit:expr, $value_from_wit:expr) => {
        pub mod $version {
            use super::*;
            use crate::bindings::$version::sluice::plugin::types as wit;

            pub fn to_wit(m: &Message) -> wit::Message {
                let to_wit = $value_to_wit;
                wit::Message {
                    id: m.id.clone(),
                    key: m.key.as_ref().map(|k| k.to_vec()),
                    payload: m.payload.to_vec(),
                    headers: m
                        .headers
                        .iter()
                        .map(|(n, v)| (n.to_string(), to_wit(v)))
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

            /// A call's result for one message, not yet checked against the output limits.
            pub fn outcome(result: Result<Vec<wit::Output>, wit::HandlerError>) -> Outcome {
                let from_wit = $value_from_wit;
                match result {
                    Err(e) => Outcome::Failed(failure(e)),
                    Ok(outputs) => Outcome::Outputs(
                        outputs
                            .into_iter()
                            .map(|o| sluice_core::message::Output {
                                payload: Bytes::from(o.payload),
                                key: o.key.map(Bytes::from),
                                headers: o
                                    .headers
                                    .into_iter()
                                    .map(|(n, v)| (ByteString::from(n), from_wit(v)))
                                    .collect(),
                                route: o.route,
                                timestamp_ms: None,
                            })
                            .collect(),
                    ),
                }
            }

            pub fn failure(e: wit::HandlerError) -> Failure {
                match e {
                    wit::HandlerError::Transient(r) => Failure::new(ErrorClass::Transient, r),
                    wit::HandlerError::Fatal(r) => Failure::new(ErrorClass::Fatal, r),
                    wit::HandlerError::Invalid(r) => Failure::new(ErrorClass::Invalid, r),
                }
            }
        }
    };
}

// 0.1: a header value is its text (lossy for bytes that are not UTF-8; empty for a null).
conversions!(v0_1, |v: &HeaderValue| v.to_string(), |v: String| {
    HeaderValue::from(v)
});

conversions!(
    v0_2,
    |v: &HeaderValue| match v.value() {
        ValueRef::Text(text) => wit::HeaderValue::Text(text.to_owned()),
        ValueRef::Bytes(bytes) => wit::HeaderValue::Bytes(bytes.to_vec()),
        ValueRef::Null => wit::HeaderValue::Null,
    },
    |v: wit::HeaderValue| match v {
        wit::HeaderValue::Text(text) => HeaderValue::from(text),
        wit::HeaderValue::Bytes(bytes) => HeaderValue::binary(Bytes::from(bytes)),
        wit::HeaderValue::Null => HeaderValue::null(),
    }
);
