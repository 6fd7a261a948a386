//! `${VAR}` and `${VAR:-default}` in pipeline files, for secrets and per-environment values.
//! `$$` is a literal `$`.
//!
//! Done on the parsed document, in string values only, so that a value can hold any character:
//! a secret with ` #`, `: ` or a newline arrives whole, and cannot cut the line or add a key as
//! it would if substituted into the YAML text. A value that is one reference and nothing else
//! (`max_in_flight: ${WINDOW}`) becomes a number or a boolean where the schema wants one.
//!
//! Before parsing, each reference is masked ([`mask`]) by a placeholder of as many characters,
//! made of characters YAML takes as plain text (private-use code points), so that a reference
//! may stand unquoted anywhere, also inside `{ … }`, and every position in the file stays where
//! it was. Each string value is unmasked and then resolved.

use serde_json::Value;

use super::FieldError;

/// The first character of a placeholder; digits and padding follow (`U+E001`..).
const MARK: char = '\u{E000}';
const DIGIT0: u32 = 0xE001;
const PAD: char = '\u{E00B}';

/// Pipeline text with its references masked, and the references.
pub struct Masked {
    pub text: String,
    refs: Vec<String>,
}

/// Mask every `${…}` reference of `text` (not those after `$$`) by a placeholder of the same
/// number of characters. Text that already holds the placeholder characters is left as it is
/// (and its unquoted references inside `{ … }` then fail to parse, as YAML says).
pub fn mask(text: &str) -> Masked {
    let unmasked = || Masked {
        text: text.to_owned(),
        refs: Vec::new(),
    };
    if text.chars().any(|c| (MARK..=PAD).contains(&c)) {
        return unmasked();
    }
    let mut out = String::with_capacity(text.len());
    let mut refs = Vec::new();
    let mut rest = text;
    while let Some(pos) = rest.find('$') {
        out.push_str(&rest[..pos]);
        let after = &rest[pos..];
        if let Some(tail) = after.strip_prefix("$$") {
            out.push_str("$$");
            rest = tail;
            continue;
        }
        let end = after.strip_prefix("${").and_then(|body| {
            body.find(['}', '\n'])
                .filter(|&e| body.as_bytes()[e] == b'}')
        });
        let Some(end) = end else {
            out.push('$');
            rest = &after[1..];
            continue;
        };
        let reference = &after[..end + 3];
        let name = reference[2..end + 2].split(":-").next().unwrap_or("");
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            // Not a reference: left as written, for the value's check to report.
            out.push('$');
            rest = &after[1..];
            continue;
        }
        let digits: Vec<char> = refs
            .len()
            .to_string()
            .chars()
            .map(|d| char::from_u32(DIGIT0 + d.to_digit(10).unwrap_or(0)).unwrap_or(PAD))
            .collect();
        let width = reference.chars().count();
        if digits.len() + 1 > width {
            // Too short to hold its number (only `${}`-like text): left for the value's check.
            out.push_str(reference);
        } else {
            out.push(MARK);
            out.extend(digits.iter());
            out.extend(std::iter::repeat_n(PAD, width - 1 - digits.len()));
            refs.push(reference.to_owned());
        }
        rest = &after[end + 3..];
    }
    out.push_str(rest);
    Masked { text: out, refs }
}

impl Masked {
    /// `s` with its placeholders turned back into the references they stand for.
    pub fn unmask(&self, s: &str) -> String {
        // Without references nothing was masked: text that holds the placeholder characters
        // itself is kept as it is.
        if self.refs.is_empty() || !s.contains(MARK) {
            return s.to_owned();
        }
        let mut out = String::with_capacity(s.len());
        let mut chars = s.chars().peekable();
        while let Some(c) = chars.next() {
            if c != MARK {
                out.push(c);
                continue;
            }
            let mut n = 0usize;
            while let Some(&d) = chars.peek() {
                match u32::from(d).checked_sub(DIGIT0).filter(|&v| v < 10) {
                    Some(v) => n = n * 10 + v as usize,
                    None if d == PAD => {}
                    None => break,
                }
                chars.next();
            }
            out.push_str(self.refs.get(n).map_or("", String::as_str));
        }
        out
    }
}

/// A string value that was one reference and nothing else, and what it became.
pub struct WholeReference {
    /// JSON pointer to the value.
    pub pointer: String,
    pub value: String,
}

/// Substitute references in every string value of `doc` (keys are left alone). Errors carry the
/// dotted path of the value that holds the reference.
pub fn interpolate_values(
    doc: &mut Value,
    masked: &Masked,
    lookup: &impl Fn(&str) -> Option<String>,
) -> (Vec<WholeReference>, Vec<FieldError>) {
    let mut whole = Vec::new();
    let mut errors = Vec::new();
    let mut walk = Walk {
        masked,
        lookup,
        whole: &mut whole,
        errors: &mut errors,
    };
    walk.value(doc, "", "");
    (whole, errors)
}

struct Walk<'a, F> {
    masked: &'a Masked,
    lookup: &'a F,
    whole: &'a mut Vec<WholeReference>,
    errors: &'a mut Vec<FieldError>,
}

impl<F: Fn(&str) -> Option<String>> Walk<'_, F> {
    fn value(&mut self, v: &mut Value, path: &str, pointer: &str) {
        match v {
            Value::String(masked) => {
                let s = self.masked.unmask(masked);
                if !s.contains('$') {
                    *masked = s;
                    return;
                }
                match interpolate(&s, self.lookup) {
                    Ok(out) => {
                        let is_whole = s.starts_with("${")
                            && s.ends_with('}')
                            && s[2..].find('}') == Some(s.len() - 3);
                        if is_whole {
                            self.whole.push(WholeReference {
                                pointer: pointer.to_owned(),
                                value: out.clone(),
                            });
                        }
                        *masked = out;
                    }
                    Err(errs) => {
                        *masked = s;
                        self.errors
                            .extend(errs.into_iter().map(|e| FieldError::new(path, e.message)));
                    }
                }
            }
            Value::Array(items) => {
                for (i, item) in items.iter_mut().enumerate() {
                    self.value(item, &format!("{path}[{i}]"), &format!("{pointer}/{i}"));
                }
            }
            Value::Object(map) => {
                // Keys are not interpolated: a masked reference in one is put back as written.
                if map.keys().any(|k| k.contains(MARK)) {
                    let entries = std::mem::take(map);
                    *map = entries
                        .into_iter()
                        .map(|(k, v)| (self.masked.unmask(&k), v))
                        .collect();
                }
                for (k, item) in map.iter_mut() {
                    let escaped = k.replace('~', "~0").replace('/', "~1");
                    self.value(
                        item,
                        &super::join_path(path, k),
                        &format!("{pointer}/{escaped}"),
                    );
                }
            }
            _ => {}
        }
    }
}

/// The number or boolean a whole reference's value reads as, if it reads as one.
pub fn typed(value: &str) -> Option<Value> {
    match value.trim() {
        "true" => Some(Value::Bool(true)),
        "false" => Some(Value::Bool(false)),
        t => {
            if let Ok(n) = t.parse::<i64>() {
                Some(Value::from(n))
            } else if let Ok(n) = t.parse::<u64>() {
                Some(Value::from(n))
            } else {
                t.parse::<f64>()
                    .ok()
                    .filter(|f| f.is_finite())
                    .and_then(serde_json::Number::from_f64)
                    .map(Value::Number)
            }
        }
    }
}

/// Replace every reference using `lookup`; unset variables without a default are errors, each
/// reported at its line and column (`line 3:14`, both 1-based).
pub fn interpolate(
    text: &str,
    lookup: &impl Fn(&str) -> Option<String>,
) -> Result<String, Vec<FieldError>> {
    let mut out = String::with_capacity(text.len());
    let mut errors = Vec::new();
    for (line_no, line) in text.split_inclusive('\n').enumerate() {
        let mut rest = line;
        let at = |rest: &str, pos: usize| {
            let column = line[..line.len() - rest.len() + pos].chars().count() + 1;
            format!("line {}:{column}", line_no + 1)
        };
        while let Some(pos) = rest.find('$') {
            out.push_str(&rest[..pos]);
            let after = &rest[pos + 1..];
            if let Some(tail) = after.strip_prefix('$') {
                out.push('$');
                rest = tail;
            } else if let Some(body) = after.strip_prefix('{') {
                let Some(end) = body.find('}') else {
                    errors.push(FieldError::new(at(rest, pos), "unclosed `${`"));
                    out.push_str(&rest[pos..]);
                    rest = "";
                    break;
                };
                let expr = &body[..end];
                let (name, default) = match expr.split_once(":-") {
                    Some((n, d)) => (n, Some(d)),
                    None => (expr, None),
                };
                let valid =
                    !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
                let here = at(rest, pos);
                match (valid, lookup(name), default) {
                    (false, _, _) => errors.push(FieldError::new(here.clone(), format!("`${{{expr}}}` is not a valid variable reference"))),
                    (true, Some(v), _) => out.push_str(&v),
                    (true, None, Some(d)) => out.push_str(d),
                    (true, None, None) => errors.push(FieldError::new(
                        here,
                        format!("environment variable `{name}` is not set (use `${{{name}:-default}}` for a default)"),
                    )),
                }
                rest = &body[end + 1..];
            } else {
                out.push('$');
                rest = after;
            }
        }
        out.push_str(rest);
    }
    if errors.is_empty() {
        Ok(out)
    } else {
        Err(errors)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        (name == "HOST").then(|| "rabbit.local".to_owned())
    }

    #[test]
    fn masking_keeps_every_position_and_unmasks_to_the_reference() {
        let text = "a: { b: ${B:-1}, c: \"x ${C} $${D} ${\" }\n";
        let masked = mask(text);
        assert!(!masked.text.contains("${B") && !masked.text.contains("${C"));
        assert!(
            masked.text.contains("$${D}"),
            "an escaped reference is left alone"
        );
        assert_eq!(masked.text.chars().count(), text.chars().count());
        for (a, b) in masked.text.lines().zip(text.lines()) {
            assert_eq!(a.chars().count(), b.chars().count());
        }
        let doc: Value = serde_saphyr::from_str(&masked.text).unwrap();
        assert_eq!(masked.unmask(doc["a"]["b"].as_str().unwrap()), "${B:-1}");
        assert_eq!(
            masked.unmask(doc["a"]["c"].as_str().unwrap()),
            "x ${C} $${D} ${"
        );
    }

    #[test]
    fn replaces_set_variables_and_defaults() {
        let out = interpolate("url: amqp://${HOST}:${PORT:-5672}/ cost: $$5 $x", &env).unwrap();
        assert_eq!(out, "url: amqp://rabbit.local:5672/ cost: $5 $x");
    }

    #[test]
    fn reports_every_unset_variable_with_its_line() {
        let errors = interpolate("a: ${A}\nb: ok\nc: ${C}\n", &env).unwrap_err();
        assert_eq!(errors.len(), 2);
        assert_eq!(errors[0].path, "line 1:4");
        assert_eq!(errors[1].path, "line 3:4");
        assert!(errors[1].message.contains("`C` is not set"));
    }

    #[test]
    fn rejects_malformed_references() {
        assert_eq!(
            interpolate("a: ${oops", &env).unwrap_err()[0].message,
            "unclosed `${`"
        );
        assert!(
            interpolate("a: ${bad name}", &env).unwrap_err()[0]
                .message
                .contains("not a valid")
        );
    }
}
