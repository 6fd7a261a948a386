//! Payload ↔ message text, with or without the JSON envelope that carries key and headers.

use base64::Engine as _;
use bytes::Bytes;
use serde::{Deserialize, Serialize};

use super::Encoding;
use sluice_core::message::{ByteString, Headers};

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Envelope {
    payload: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    key: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    headers: Vec<(String, String)>,
}

/// What a message's text decodes to.
pub struct Decoded {
    pub payload: Bytes,
    pub key: Option<Bytes>,
    pub headers: Headers,
}

pub fn encode(
    payload: &[u8],
    key: Option<&[u8]>,
    headers: &Headers,
    encoding: Encoding,
    envelope: bool,
) -> anyhow::Result<String> {
    if envelope {
        let e = Envelope {
            payload: B64.encode(payload),
            key: key.map(|k| B64.encode(k)),
            headers: headers
                .iter()
                .map(|(n, v)| (n.to_string(), v.to_string()))
                .collect(),
        };
        let json = serde_json::to_string(&e)?;
        return Ok(match encoding {
            Encoding::Base64 => B64.encode(json),
            Encoding::Text => json,
        });
    }
    Ok(match encoding {
        Encoding::Base64 => B64.encode(payload),
        Encoding::Text => String::from_utf8(payload.to_vec()).map_err(|_| {
            anyhow::anyhow!("the payload is not UTF-8 text (use `encoding: base64`)")
        })?,
    })
}

/// Decode `text`; on failure, the error and the raw text as payload.
pub fn decode(text: &str, encoding: Encoding, envelope: bool) -> Result<Decoded, String> {
    let raw = match encoding {
        Encoding::Base64 => B64
            .decode(text.trim())
            .map_err(|e| format!("message text is not base64: {e}"))?,
        Encoding::Text => text.as_bytes().to_vec(),
    };
    if !envelope {
        return Ok(Decoded {
            payload: Bytes::from(raw),
            key: None,
            headers: Headers::new(),
        });
    }
    let e: Envelope = serde_json::from_slice(&raw)
        .map_err(|e| format!("message is not a Sluice envelope: {e}"))?;
    let payload = B64
        .decode(&e.payload)
        .map_err(|e| format!("envelope payload is not base64: {e}"))?;
    let key = e
        .key
        .map(|k| B64.decode(k))
        .transpose()
        .map_err(|e| format!("envelope key is not base64: {e}"))?;
    Ok(Decoded {
        payload: Bytes::from(payload),
        key: key.map(Bytes::from),
        headers: e
            .headers
            .into_iter()
            .map(|(n, v)| (ByteString::from(n), v.into()))
            .collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_form_round_trips() {
        let headers: Headers = vec![("a".into(), "1".into()), ("a".into(), "2".into())];
        for encoding in [Encoding::Base64, Encoding::Text] {
            let text = encode(b"\xffbin", Some(b"k"), &headers, encoding, true).unwrap();
            let d = decode(&text, encoding, true).unwrap();
            assert_eq!(&d.payload[..], b"\xffbin");
            assert_eq!(d.key.as_deref(), Some(&b"k"[..]));
            assert_eq!(d.headers, headers);
        }
        let text = encode(b"\xff", None, &headers, Encoding::Base64, false).unwrap();
        assert_eq!(
            &decode(&text, Encoding::Base64, false).unwrap().payload[..],
            b"\xff"
        );
        assert!(encode(b"\xff", None, &headers, Encoding::Text, false).is_err());
        assert!(decode("not json", Encoding::Text, true).is_err());
    }
}
