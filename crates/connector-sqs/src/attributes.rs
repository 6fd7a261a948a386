//! Headers ↔ SQS message attributes (see the module docs for the packing rule).

use std::collections::HashMap;

use aws_sdk_sqs::types::MessageAttributeValue;
use base64::Engine as _;

use sluice_core::message::{ByteString, Headers};

/// The attribute that carries every header when they do not fit as attributes of their own.
pub const PACKED: &str = "x-sluice-headers";
/// SQS's limit of attributes per message.
const MAX_ATTRIBUTES: usize = 10;

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 256
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        && !name.starts_with('.')
        && !name.ends_with('.')
        && !name.contains("..")
        && !name.to_ascii_lowercase().starts_with("aws.")
        && !name.to_ascii_lowercase().starts_with("amazon.")
}

fn string(value: &str) -> MessageAttributeValue {
    MessageAttributeValue::builder()
        .data_type("String")
        .string_value(value)
        .build()
        .expect("data_type is set")
}

/// The attributes that carry `headers`.
pub fn to_attributes(headers: &Headers) -> HashMap<String, MessageAttributeValue> {
    let mut names = std::collections::HashSet::new();
    let fits = headers.len() <= MAX_ATTRIBUTES
        && headers
            .iter()
            .all(|(n, v)| valid_name(n) && !v.is_empty() && names.insert(&**n) && &**n != PACKED);
    if fits {
        headers
            .iter()
            .map(|(n, v)| (n.to_string(), string(v)))
            .collect()
    } else {
        let pairs: Vec<[&str; 2]> = headers.iter().map(|(n, v)| [&**n, &**v]).collect();
        let json = serde_json::to_string(&pairs).expect("strings serialize");
        HashMap::from([(PACKED.to_owned(), string(&json))])
    }
}

/// The headers carried by `attributes` (binary attributes as base64).
pub fn from_attributes(attributes: Option<&HashMap<String, MessageAttributeValue>>) -> Headers {
    let Some(attributes) = attributes else {
        return Headers::new();
    };
    let mut headers = Headers::new();
    if let Some(packed) = attributes.get(PACKED).and_then(|v| v.string_value())
        && let Ok(pairs) = serde_json::from_str::<Vec<(String, String)>>(packed)
    {
        headers.extend(
            pairs
                .into_iter()
                .map(|(n, v)| (ByteString::from(n), v.into())),
        );
    }
    let mut rest: Vec<(&String, &MessageAttributeValue)> =
        attributes.iter().filter(|(n, _)| *n != PACKED).collect();
    rest.sort_by(|a, b| a.0.cmp(b.0));
    for (name, value) in rest {
        let text = match (value.string_value(), value.binary_value()) {
            (Some(s), _) => s.to_owned(),
            (None, Some(b)) => base64::engine::general_purpose::STANDARD.encode(b.as_ref()),
            (None, None) => String::new(),
        };
        headers.push((ByteString::from(name.as_str()), text.into()));
    }
    headers
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(pairs: &[(&str, &str)]) -> Headers {
        pairs
            .iter()
            .map(|(n, v)| ((*n).into(), (*v).into()))
            .collect()
    }

    #[test]
    fn few_plain_headers_are_attributes_of_their_own() {
        let headers = h(&[("a", "1"), ("trace-id", "x")]);
        let attrs = to_attributes(&headers);
        assert_eq!(attrs.len(), 2);
        assert_eq!(attrs["a"].string_value(), Some("1"));
        let mut back = from_attributes(Some(&attrs));
        back.sort_by(|a, b| (&a.0, &*a.1).cmp(&(&b.0, &*b.1)));
        assert_eq!(back, headers);
    }

    #[test]
    fn many_repeated_or_odd_headers_are_packed_and_come_back_in_order() {
        for headers in [
            h(&(0..12).map(|_| ("n", "v")).collect::<Vec<_>>()),
            h(&[("b", "1"), ("a", "2"), ("b", "3")]),
            h(&[("with space", "1")]),
            h(&[("empty", "")]),
        ] {
            let attrs = to_attributes(&headers);
            assert_eq!(attrs.len(), 1, "{headers:?}");
            assert_eq!(from_attributes(Some(&attrs)), headers);
        }
    }
}
