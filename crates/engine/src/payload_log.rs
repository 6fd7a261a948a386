//! Payloads as they may appear in logs: only when a pipeline asks (`logging.payloads`), and then
//! with the configured JSON fields replaced by the SHA-256 of their value, so that log lines can
//! still be correlated without holding the secret.

use serde_json::Value;
use sha2::{Digest, Sha256};

/// Longest payload text written to a log line, in bytes; the rest is elided.
const MAX_LOGGED: usize = 4096;

/// How one pipeline renders payloads for its log.
#[derive(Debug, Clone, Default)]
pub struct PayloadLog {
    /// Dotted paths, split.
    scrub: Vec<Vec<String>>,
}

impl PayloadLog {
    pub fn new(scrub_fields: &[String]) -> Self {
        PayloadLog {
            scrub: scrub_fields
                .iter()
                .map(|f| f.split('.').map(str::to_owned).collect())
                .collect(),
        }
    }

    /// The payload as it may be logged.
    pub fn render(&self, payload: &[u8]) -> String {
        if self.scrub.is_empty() {
            return elide(String::from_utf8_lossy(payload).into_owned());
        }
        let Ok(mut json) = serde_json::from_slice::<Value>(payload) else {
            // Fields cannot be found in what is not JSON: withhold it rather than leak them.
            return format!("<withheld: {} bytes, not JSON>", payload.len());
        };
        for path in &self.scrub {
            scrub(&mut json, path);
        }
        elide(json.to_string())
    }
}

impl PayloadLog {
    /// The payload as a preview may show it: [`PayloadLog::render`], cut to about `max` bytes.
    pub fn preview(&self, payload: &[u8], max: usize) -> String {
        cut(self.render(payload), max)
    }

    /// A header's value as it may be shown: its digest when its name is one of the scrubbed
    /// fields (a one-part path) or names a credential (`authorization`, `cookie`, anything with
    /// `token`, `secret`, `password`, `api-key` or `signature` in it), else its text cut to 128
    /// bytes.
    pub fn header_value(&self, name: &str, value: &str) -> String {
        let lower = name.to_ascii_lowercase();
        let credential = [
            "authorization",
            "cookie",
            "token",
            "secret",
            "password",
            "passwd",
            "api-key",
            "api_key",
            "apikey",
            "signature",
        ]
        .iter()
        .any(|word| lower.contains(word));
        if credential
            || self
                .scrub
                .iter()
                .any(|path| path.len() == 1 && path[0].eq_ignore_ascii_case(name))
        {
            return digest(&Value::String(value.to_owned()));
        }
        cut(value.to_owned(), 128)
    }
}

/// `text` cut to at most `max` bytes, on a character boundary, marked `…` when cut.
pub(crate) fn cut(mut text: String, max: usize) -> String {
    if text.len() > max {
        let mut end = max;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
        text.push('…');
    }
    text
}

/// Replace the value at `path`, counted from the document's root, by its digest; an array met
/// on the way is entered at every element (`items.email` reaches each item's email).
fn scrub(value: &mut Value, path: &[String]) {
    match value {
        Value::Array(items) => items.iter_mut().for_each(|v| scrub(v, path)),
        Value::Object(map) => {
            let Some((first, rest)) = path.split_first() else {
                return;
            };
            let Some(child) = map.get_mut(first) else {
                return;
            };
            if rest.is_empty() {
                *child = Value::String(digest(child));
            } else {
                scrub(child, rest);
            }
        }
        _ => {}
    }
}

/// `sha256:<hex>` of a string's text, or of any other value's JSON.
fn digest(value: &Value) -> String {
    let text = match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    format!("sha256:{}", hex::encode(Sha256::digest(text.as_bytes())))
}

fn elide(mut text: String) -> String {
    if text.len() > MAX_LOGGED {
        let mut cut = MAX_LOGGED;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        let total = text.len();
        text.truncate(cut);
        text.push_str(&format!("… ({total} bytes)"));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn previews_are_cut_and_scrubbed_headers_hashed() {
        let log = PayloadLog::new(&["authorization".into(), "card.number".into()]);
        let preview = log.preview(
            br#"{"card":{"number":"4111111111111111"},"note":"aaaaaaaaaaaaaaaaaaaa"}"#,
            40,
        );
        assert!(!preview.contains("4111"), "{preview}");
        assert!(
            preview.ends_with('…') && preview.len() <= 40 + '…'.len_utf8(),
            "{preview}"
        );
        let sha = format!("sha256:{}", hex::encode(Sha256::digest(b"Bearer x")));
        assert_eq!(log.header_value("Authorization", "Bearer x"), sha);
        assert_eq!(log.header_value("origin", "shop"), "shop");
        for credential in ["Cookie", "x-api-key", "X-Auth-Token", "client_secret"] {
            assert!(
                log.header_value(credential, "s3cr3t")
                    .starts_with("sha256:"),
                "{credential}"
            );
        }
        assert!(
            PayloadLog::new(&[])
                .header_value("Authorization", "Bearer x")
                .starts_with("sha256:")
        );
    }

    #[test]
    fn configured_paths_are_hashed_through_arrays() {
        let log = PayloadLog::new(&["card.number".into(), "email".into(), "items.email".into()]);
        let out = log.render(
            br#"{"email":"a@b.c","card":{"number":"4111111111111111","exp":"12/30"},"items":[{"email":"x@y.z"}],"n":1}"#,
        );
        let v: Value = serde_json::from_str(&out).unwrap();
        let sha = |s: &str| format!("sha256:{}", hex::encode(Sha256::digest(s.as_bytes())));
        assert_eq!(v["email"], sha("a@b.c"));
        assert_eq!(v["card"]["number"], sha("4111111111111111"));
        assert_eq!(v["card"]["exp"], "12/30");
        assert_eq!(v["items"][0]["email"], sha("x@y.z"));
        assert_eq!(v["n"], 1);
        assert!(!out.contains("4111111111111111") && !out.contains("a@b.c"));
    }

    #[test]
    fn non_json_is_withheld_when_fields_must_be_scrubbed() {
        let log = PayloadLog::new(&["secret".into()]);
        assert_eq!(
            log.render(b"secret=hunter2"),
            "<withheld: 14 bytes, not JSON>"
        );
        let open = PayloadLog::new(&[]);
        assert_eq!(open.render(b"plain text"), "plain text");
    }

    #[test]
    fn long_payloads_are_elided() {
        let out = PayloadLog::new(&[]).render(&vec![b'x'; 10_000]);
        assert!(out.len() < 4200 && out.ends_with("(10000 bytes)"), "{out}");
    }
}
