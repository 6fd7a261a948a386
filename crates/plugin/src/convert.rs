//! Between the engine's message types and the generated WIT types of each contract version.
//! The versions differ only in header values: strings in 0.1, text, bytes or null in 0.2.

use bytes::Bytes;

use crate::settings::Limits;
use sluice_core::message::{ByteString, HeaderValue, Message, ValueRef};
use sluice_core::transform::{ErrorClass, Failure, Outcome};

/// `to_wit`, `outcome` and `failure` for one contract version, given how its header values
/// convert both ways and how many bytes one holds.
macro_rules! conversions {
    ($version:ident, $value_to_wit:expr, $value_from_wit:expr, $value_len:expr) => {
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

            /// A call's result for one message. The output count and each output's headers are
            /// checked against `limits` before anything is built from them (a binary value's
            /// text is a lossy copy, up to three times its bytes); the rest of the limits are
            /// checked on the result (`within_limits`).
            pub fn outcome(
                result: Result<Vec<wit::Output>, wit::HandlerError>,
                limits: &Limits,
            ) -> Outcome {
                let from_wit = $value_from_wit;
                let value_len = $value_len;
                if let Ok(outputs) = &result {
                    let over = limits.outputs_over(outputs.len()).or_else(|| {
                        outputs.iter().enumerate().find_map(|(i, o)| {
                            let bytes: u64 = o
                                .headers
                                .iter()
                                .map(|(n, v)| (n.len() + value_len(v)) as u64)
                                .sum();
                            limits.headers_over(i, o.headers.len(), bytes)
                        })
                    });
                    if let Some(reason) = over {
                        return Outcome::Failed(Failure::new(ErrorClass::OutputLimit, reason));
                    }
                }
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
conversions!(
    v0_1,
    |v: &HeaderValue| v.to_string(),
    |v: String| HeaderValue::from(v),
    |v: &String| v.len()
);

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
    },
    |v: &wit::HeaderValue| match v {
        wit::HeaderValue::Text(text) => text.len(),
        wit::HeaderValue::Bytes(bytes) => bytes.len(),
        wit::HeaderValue::Null => 0,
    }
);
