//! Line codecs shared by the file and stdio connectors.
//!
//! `lines`: one payload per line, nothing else. `json`: one JSON object per line,
//! `{"payload": ..., "key": ..., "headers": [[name, value], ...], "route": ...}`, so key and
//! headers survive the trip and a dead-letter file can be replayed as a source.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use bytes::Bytes;
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::{Map, Value, json};

use sluice_core::message::{Headers, Output};

/// How lines map to messages. Default: `lines`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Codec {
    #[default]
    Lines,
    Json,
}

/// What one decoded line holds.
#[derive(Debug, Default)]
pub struct Decoded {
    pub payload: Bytes,
    pub key: Option<Bytes>,
    pub headers: Headers,
}

impl Codec {
    /// Decode one line (without its newline). On error the caller keeps the raw line as payload
    /// and marks the delivery undecodable.
    pub fn decode(self, line: &[u8]) -> Result<Decoded, String> {
        match self {
            Codec::Lines => Ok(Decoded {
                payload: Bytes::copy_from_slice(line),
                ..Decoded::default()
            }),
            Codec::Json => decode_json(line),
        }
    }

    /// Encode one output as a line, newline included.
    pub fn encode(self, out: &Output, buf: &mut Vec<u8>) {
        match self {
            Codec::Lines => buf.extend_from_slice(&out.payload),
            Codec::Json => {
                let mut obj = Map::new();
                put_bytes(&mut obj, "payload", &out.payload);
                if let Some(key) = &out.key {
                    put_bytes(&mut obj, "key", key);
                }
                obj.insert("headers".into(), json!(out.headers));
                if let Some(route) = &out.route {
                    obj.insert("route".into(), json!(route));
                }
                // Serializing a Value into a Vec cannot fail.
                serde_json::to_writer(&mut *buf, &Value::Object(obj)).unwrap_or_default();
            }
        }
        buf.push(b'\n');
    }
}

/// UTF-8 bytes as a string; anything else as `<name>_base64`.
fn put_bytes(obj: &mut Map<String, Value>, name: &str, bytes: &[u8]) {
    match std::str::from_utf8(bytes) {
        Ok(s) => obj.insert(name.into(), json!(s)),
        Err(_) => obj.insert(format!("{name}_base64"), json!(BASE64.encode(bytes))),
    };
}

fn take_bytes(obj: &mut Map<String, Value>, name: &str) -> Result<Option<Bytes>, String> {
    if let Some(v) = obj.remove(&format!("{name}_base64")) {
        let s = v
            .as_str()
            .ok_or_else(|| format!("`{name}_base64` must be a string"))?;
        return BASE64
            .decode(s)
            .map(|b| Some(Bytes::from(b)))
            .map_err(|e| format!("`{name}_base64`: {e}"));
    }
    Ok(match obj.remove(name) {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(Bytes::from(s)),
        // Any other JSON value is the payload itself, serialized compactly.
        Some(other) => Some(Bytes::from(other.to_string())),
    })
}

fn decode_json(line: &[u8]) -> Result<Decoded, String> {
    let value: Value = serde_json::from_slice(line).map_err(|e| format!("not a JSON line: {e}"))?;
    let Value::Object(mut obj) = value else {
        return Err("a JSON line must be an object with a `payload` field".into());
    };
    let payload = take_bytes(&mut obj, "payload")?.ok_or("missing field `payload`")?;
    let key = take_bytes(&mut obj, "key")?;
    let headers = match obj.remove("headers") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Object(map)) => map
            .into_iter()
            .map(|(k, v)| {
                Ok((
                    k.into(),
                    v.as_str()
                        .ok_or("header values must be strings")?
                        .to_owned()
                        .into(),
                ))
            })
            .collect::<Result<_, &str>>()?,
        Some(v) => serde_json::from_value::<Headers>(v).map_err(|e| format!("`headers`: {e}"))?,
    };
    obj.remove("route");
    if let Some(unknown) = obj.keys().next() {
        return Err(format!("unknown field `{unknown}`"));
    }
    Ok(Decoded {
        payload,
        key,
        headers,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_round_trip_keeps_key_headers_and_binary_payload() {
        let out = Output {
            payload: Bytes::from_static(&[0xff, 0x00, b'a']),
            key: Some(Bytes::from_static(b"k1")),
            headers: vec![("a".into(), "1".into()), ("a".into(), "2".into())],
            route: Some("errors".into()),
            timestamp_ms: None,
        };
        let mut line = Vec::new();
        Codec::Json.encode(&out, &mut line);
        let decoded = Codec::Json.decode(&line[..line.len() - 1]).unwrap();
        assert_eq!(decoded.payload, out.payload);
        assert_eq!(decoded.key, out.key);
        assert_eq!(decoded.headers, out.headers);
    }

    #[test]
    fn json_object_payload_is_kept_as_json_text() {
        let d = Codec::Json
            .decode(br#"{"payload": {"a": 1}, "headers": {"h": "v"}}"#)
            .unwrap();
        assert_eq!(&d.payload[..], br#"{"a":1}"#);
        assert_eq!(d.headers, vec![("h".into(), "v".into())]);
    }

    #[test]
    fn malformed_json_line_is_an_error_not_a_panic() {
        assert!(
            Codec::Json
                .decode(b"{nope")
                .unwrap_err()
                .contains("not a JSON line")
        );
        assert!(Codec::Json.decode(b"[1]").unwrap_err().contains("object"));
        assert!(
            Codec::Json
                .decode(br#"{"key":"x"}"#)
                .unwrap_err()
                .contains("payload")
        );
        assert!(
            Codec::Json
                .decode(br#"{"payload":"x","extra":1}"#)
                .unwrap_err()
                .contains("extra")
        );
    }
}
