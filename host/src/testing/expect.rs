//! Comparing what a case produced with what it expects, as a readable list of differences.

use serde_json::Value;

use super::Outcome;
use super::file::{ExpectedMessage, TestCase};
use crate::connector::memory::StoredMessage;
use crate::engine::{DEAD_LETTER_SINK, dead_letter_headers};

/// Every difference between `outcome` and `case.expect`; empty when the case passed.
pub fn compare(case: &TestCase, outcome: &Outcome) -> Vec<String> {
    let mut failures = Vec::new();
    for name in case.expect.sinks.keys() {
        if !outcome.sinks.contains_key(name) || name == DEAD_LETTER_SINK {
            failures.push(format!(
                "expect.sinks.{name}: the pipeline has no sink `{name}`"
            ));
        }
    }
    for (name, got) in &outcome.sinks {
        let want: &[ExpectedMessage] = if name == DEAD_LETTER_SINK {
            &case.expect.dead_letter
        } else {
            case.expect.sinks.get(name).map_or(&[], Vec::as_slice)
        };
        let place = if name == DEAD_LETTER_SINK {
            "dead_letter".to_owned()
        } else {
            format!("sink `{name}`")
        };
        if got.len() != want.len() {
            let mut text = format!(
                "{place}: expected {} message(s), got {}",
                want.len(),
                got.len()
            );
            for m in got {
                text.push_str(&format!("\n    got: {}", show(m)));
            }
            failures.push(text);
            continue;
        }
        for (i, (w, g)) in want.iter().zip(got).enumerate() {
            for problem in mismatches(w, g) {
                failures.push(format!("{place}[{i}]: {problem}\n    got: {}", show(g)));
            }
        }
    }
    if let Some(filtered) = case.expect.filtered
        && filtered != outcome.filtered
    {
        failures.push(format!(
            "filtered: expected {filtered}, got {}",
            outcome.filtered
        ));
    }
    failures
}

fn mismatches(want: &ExpectedMessage, got: &StoredMessage) -> Vec<String> {
    let mut out = Vec::new();
    let text = String::from_utf8_lossy(&got.payload);
    if let Some(p) = &want.payload
        && *p != text
    {
        out.push(format!("payload: expected {p:?}, got {text:?}"));
    }
    let parsed = || serde_json::from_slice::<Value>(&got.payload);
    if let Some(json) = &want.json {
        match parsed() {
            Ok(v) if v == *json => {}
            Ok(v) => out.push(format!("json: expected {json}, got {v}")),
            Err(e) => out.push(format!("json: the payload is not JSON ({e})")),
        }
    }
    if let Some(fields) = &want.json_contains {
        match parsed() {
            Ok(v) => {
                if let Some(diff) = contains(&v, fields, "$") {
                    out.push(format!("json_contains: {diff}"));
                }
            }
            Err(e) => out.push(format!("json_contains: the payload is not JSON ({e})")),
        }
    }
    if let Some(key) = &want.key {
        let got_key = got
            .key
            .as_ref()
            .map(|k| String::from_utf8_lossy(k).into_owned());
        if got_key.as_deref() != Some(key.as_str()) {
            out.push(format!("key: expected {key:?}, got {got_key:?}"));
        }
    }
    let header = |name: &str| {
        got.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.to_string())
    };
    for (name, value) in &want.headers {
        match header(name) {
            Some(v) if v == *value => {}
            Some(v) => out.push(format!("header {name}: expected {value:?}, got {v:?}")),
            None => out.push(format!("header {name}: missing")),
        }
    }
    if let Some(class) = &want.error_class {
        let got_class = header(dead_letter_headers::ERROR_CLASS);
        if got_class.as_deref() != Some(class.as_str()) {
            out.push(format!(
                "error_class: expected {class:?}, got {got_class:?}"
            ));
        }
    }
    if let Some(part) = &want.reason_contains {
        let reason = header(dead_letter_headers::REASON).unwrap_or_default();
        if !reason.contains(part.as_str()) {
            out.push(format!(
                "reason: expected it to contain {part:?}, got {reason:?}"
            ));
        }
    }
    out
}

/// `None` when `got` holds every field of `want` with its value (objects recursively; other
/// values, arrays included, compared whole); otherwise where it differs.
fn contains(got: &Value, want: &Value, at: &str) -> Option<String> {
    match (got, want) {
        (Value::Object(g), Value::Object(w)) => w.iter().find_map(|(k, wv)| match g.get(k) {
            Some(gv) => contains(gv, wv, &format!("{at}.{k}")),
            None => Some(format!("{at}.{k}: missing")),
        }),
        _ if got == want => None,
        _ => Some(format!("{at}: expected {want}, got {got}")),
    }
}

/// One message as the report shows it.
fn show(m: &StoredMessage) -> String {
    let payload = String::from_utf8_lossy(&m.payload);
    let headers: Vec<String> = m
        .headers
        .iter()
        .filter(|(k, _)| !k.starts_with("x-sluice-plugin") && *k != "traceparent")
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    match &m.key {
        Some(k) => format!(
            "{payload} (key {}; headers {})",
            String::from_utf8_lossy(k),
            headers.join(", ")
        ),
        None => format!("{payload} (headers {})", headers.join(", ")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_contains_checks_nested_fields_and_names_the_first_difference() {
        let got: Value = serde_json::json!({"a": {"b": 1, "c": [1, 2]}, "d": "x"});
        assert_eq!(
            contains(&got, &serde_json::json!({"a": {"b": 1}}), "$"),
            None
        );
        assert_eq!(
            contains(&got, &serde_json::json!({"a": {"b": 2}}), "$"),
            Some("$.a.b: expected 2, got 1".into())
        );
        assert_eq!(
            contains(&got, &serde_json::json!({"e": 1}), "$"),
            Some("$.e: missing".into())
        );
    }
}
