//! JSON payload helpers.

use crate::HandlerError;

/// Parse a payload as JSON; a parse failure is an `invalid` error naming the problem.
pub fn parse<T: serde::de::DeserializeOwned>(payload: &[u8]) -> Result<T, HandlerError> {
    serde_json::from_slice(payload)
        .map_err(|e| HandlerError::Invalid(format!("payload is not valid JSON: {e}")))
}

/// Serialize a value as a JSON payload; a failure (a map with non-string keys) is `fatal`.
pub fn to_payload<T: serde::Serialize>(value: &T) -> Result<Vec<u8>, HandlerError> {
    serde_json::to_vec(value)
        .map_err(|e| HandlerError::Fatal(format!("cannot encode JSON output: {e}")))
}
