//! `${VAR}` and `${VAR:-default}` in pipeline files, for secrets and per-environment values.
//! `$$` is a literal `$`. Done on the raw text before parsing, like Vector, so numbers and
//! booleans can come from the environment too.

use super::FieldError;

/// Replace every reference using `lookup`; unset variables without a default are errors, each
/// reported at its line and column (`line 3:14`, both 1-based).
pub fn interpolate(
    text: &str,
    lookup: impl Fn(&str) -> Option<String>,
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
    fn replaces_set_variables_and_defaults() {
        let out = interpolate("url: amqp://${HOST}:${PORT:-5672}/ cost: $$5 $x", env).unwrap();
        assert_eq!(out, "url: amqp://rabbit.local:5672/ cost: $5 $x");
    }

    #[test]
    fn reports_every_unset_variable_with_its_line() {
        let errors = interpolate("a: ${A}\nb: ok\nc: ${C}\n", env).unwrap_err();
        assert_eq!(errors.len(), 2);
        assert_eq!(errors[0].path, "line 1:4");
        assert_eq!(errors[1].path, "line 3:4");
        assert!(errors[1].message.contains("`C` is not set"));
    }

    #[test]
    fn rejects_malformed_references() {
        assert_eq!(
            interpolate("a: ${oops", env).unwrap_err()[0].message,
            "unclosed `${`"
        );
        assert!(
            interpolate("a: ${bad name}", env).unwrap_err()[0]
                .message
                .contains("not a valid")
        );
    }
}
