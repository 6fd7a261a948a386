//! The schema's verdict in `sluice validate`'s words: each `jsonschema` error becomes a
//! [`FieldError`] whose message comes from the failing keyword and the schema around it (the
//! accepted fields in declaration order, an enum's values, a number's Rust type, its bounds).

use jsonschema::error::ValidationErrorKind;
use jsonschema::paths::{Location, LocationSegment};
use jsonschema::{JsonType, ValidationError};
use serde_json::Value;

use super::{FieldError, join_path};

/// One schema error: what to say, and what the loader sets aside before its own checks.
#[derive(Debug)]
pub struct Found {
    pub error: FieldError,
    /// Located at the value at this path rather than at `error.path` (a missing field is
    /// reported where the mapping that lacks it is written).
    pub at_node: Option<String>,
}

/// Every schema error of `doc`, in the validator's order.
pub fn schema_errors(doc: &Value) -> Vec<Found> {
    let mut out = Vec::new();
    let errors: Vec<ValidationError<'_>> = super::schema::validator().iter_errors(doc).collect();
    describe_all(doc, &errors, &mut out);
    out
}

fn describe_all(doc: &Value, errors: &[ValidationError<'_>], out: &mut Vec<Found>) {
    for e in errors {
        describe(doc, e, out);
    }
}

fn dotted(location: &Location) -> String {
    location.segments().fold(String::new(), |acc, s| match s {
        LocationSegment::Property(p) => join_path(&acc, &p),
        LocationSegment::Index(i) => format!("{acc}[{i}]"),
    })
}

/// The schema object holding the keyword that failed.
fn subschema<'s>(e: &ValidationError<'_>) -> &'s Value {
    static EMPTY: Value = Value::Null;
    let pointer = e.schema_path().as_str();
    let parent = pointer.rsplit_once('/').map_or("", |(p, _)| p);
    super::schema::schema().pointer(parent).unwrap_or(&EMPTY)
}

/// A `$ref`'s target, or the schema itself.
fn resolved(schema: &Value) -> &Value {
    match schema.get("$ref").and_then(Value::as_str) {
        Some(r) => super::schema::schema()
            .pointer(r.trim_start_matches('#'))
            .map_or(schema, resolved),
        None => schema,
    }
}

fn push(out: &mut Vec<Found>, path: &str, message: impl Into<String>) {
    out.push(Found {
        error: FieldError::new(path, message),
        at_node: None,
    });
}

fn describe(doc: &Value, e: &ValidationError<'_>, out: &mut Vec<Found>) {
    let path = dotted(e.instance_path());
    let schema = subschema(e);
    let instance = e.instance();
    match e.kind() {
        ValidationErrorKind::AdditionalProperties { unexpected } => {
            let expected = if path.is_empty() {
                // The top level has always listed its sections without quotes.
                format!(", expected one of {}", field_names(schema).join(", "))
            } else {
                expected(&quoted(&field_names(schema)))
            };
            for key in unexpected {
                push(
                    out,
                    &join_path(&path, key),
                    format!("unknown field{expected}"),
                );
            }
        }
        ValidationErrorKind::Required { property } => {
            let name = property.as_str().unwrap_or_default();
            out.push(Found {
                error: FieldError::new(join_path(&path, name), "missing field"),
                at_node: Some(path),
            });
        }
        ValidationErrorKind::Type { .. } => push(
            out,
            &path,
            format!(
                "invalid type: {}, expected {}",
                unexpected(instance),
                rust_type(schema)
            ),
        ),
        ValidationErrorKind::Enum { options } => {
            let values: Vec<String> = options
                .as_array()
                .map(|o| o.iter().map(plain).collect())
                .unwrap_or_default();
            push(out, &path, unknown_value(schema, &path, instance, &values));
        }
        ValidationErrorKind::Constant { expected_value } => push(
            out,
            &path,
            unknown_value(schema, &path, instance, &[plain(expected_value)]),
        ),
        ValidationErrorKind::Minimum { .. } | ValidationErrorKind::Maximum { .. } => {
            push(out, &path, range_message(schema, instance))
        }
        ValidationErrorKind::ExclusiveMinimum { limit } => {
            let message = if limit.as_f64() == Some(0.0) {
                "must be a positive number".to_owned()
            } else {
                format!("must be greater than {limit}")
            };
            push(out, &path, message)
        }
        ValidationErrorKind::MinProperties { limit } | ValidationErrorKind::MinItems { limit } => {
            let message = if *limit == 1 {
                "must not be empty".to_owned()
            } else {
                format!("must have at least {limit} entries")
            };
            push(out, &path, message)
        }
        ValidationErrorKind::OneOfNotValid { context } | ValidationErrorKind::AnyOf { context } => {
            let branches = schema
                .get("oneOf")
                .or_else(|| schema.get("anyOf"))
                .and_then(Value::as_array)
                .map(Vec::as_slice)
                .unwrap_or_default();
            choose(doc, &path, instance, branches, context, out);
        }
        _ => push(out, &path, e.to_string()),
    }
}

/// A value against `oneOf`/`anyOf`: report the branch the value meant, not every branch.
fn choose(
    doc: &Value,
    path: &str,
    instance: &Value,
    branches: &[Value],
    context: &[Vec<ValidationError<'static>>],
    out: &mut Vec<Found>,
) {
    let resolved: Vec<&Value> = branches.iter().map(resolved).collect();
    // Unit enums with documented variants are a `oneOf` of `const`s (and an `enum` of the rest).
    let is_value = |b: &&Value| b.get("const").is_some() || b.get("enum").is_some();
    if !resolved.is_empty() && resolved.iter().all(is_value) {
        let values: Vec<String> = resolved
            .iter()
            .flat_map(|b| {
                let listed = b.get("enum").and_then(Value::as_array);
                listed.into_iter().flatten().chain(b.get("const"))
            })
            .map(plain)
            .collect();
        let title = &Value::Null;
        return push(out, path, unknown_value(title, path, instance, &values));
    }
    let tags: Vec<&str> = resolved.iter().filter_map(|b| tag_of(b)).collect();
    if !tags.is_empty() && tags.len() == resolved.len() && !instance.is_object() {
        // `source: ~` has always read as a missing section.
        if instance.is_null() {
            return push(out, path, "missing field");
        }
        let message = format!(
            "invalid type: {}, expected a mapping with a `type`",
            unexpected(instance)
        );
        return push(out, path, message);
    }
    if !tags.is_empty() && tags.len() == resolved.len() {
        let type_path = join_path(path, "type");
        match instance.get("type") {
            None | Some(Value::Null) => out.push(Found {
                error: FieldError::new(type_path, "missing field"),
                at_node: Some(path.to_owned()),
            }),
            Some(tag) => match tags.iter().position(|t| Some(*t) == tag.as_str()) {
                Some(i) => describe_all(doc, &context[i], out),
                None => push(out, &type_path, unknown_type(tag, &tags)),
            },
        }
        return;
    }
    // `Option<T>` and other unions: the branch whose JSON type the value has.
    let fits = |b: &Value| {
        let b = if b.get("oneOf").is_some() {
            &Value::Null
        } else {
            b
        };
        types(b).is_empty() || types(b).iter().any(|t| has_type(instance, t))
    };
    match resolved
        .iter()
        .position(|b| fits(b) || (b.get("oneOf").is_some() && instance.is_object()))
    {
        Some(i) if i < context.len() && !context[i].is_empty() => {
            describe_all(doc, &context[i], out)
        }
        _ => {
            let mut wanted: Vec<String> = Vec::new();
            for b in resolved.iter().filter(|b| types(b) != ["null"]) {
                let t = rust_type(b);
                if !wanted.contains(&t) {
                    wanted.push(t);
                }
            }
            push(
                out,
                path,
                format!(
                    "invalid type: {}, expected {}",
                    unexpected(instance),
                    wanted.join(" or ")
                ),
            )
        }
    }
}

/// The `type` const of a tagged enum's branch.
fn tag_of(branch: &Value) -> Option<&str> {
    branch
        .pointer("/properties/type/const")
        .and_then(Value::as_str)
}

fn unknown_type(tag: &Value, known: &[&str]) -> String {
    let name = plain(tag);
    let list = expected(&quoted(known));
    match sluice_connectors::missing_feature(&name) {
        Some(feature) => format!(
            "connector `{name}` is not built into this sluice: build it with the cargo \
             feature `{feature}` (the default build has every connector){list}"
        ),
        None => format!("unknown type `{name}`{list}"),
    }
}

fn unknown_value(schema: &Value, path: &str, instance: &Value, values: &[String]) -> String {
    let list = expected(&quoted(values));
    if !instance.is_string() {
        return format!("invalid type: {}{list}", unexpected(instance));
    }
    let what = match schema.get("title").and_then(Value::as_str) {
        Some(title) => title,
        None if path == "type" || path.ends_with(".type") => "type",
        None => "value",
    };
    format!("unknown {what} `{}`{list}", plain(instance))
}

fn range_message(schema: &Value, instance: &Value) -> String {
    let min = schema.get("minimum");
    let max = schema.get("maximum");
    if min.and_then(Value::as_f64) == Some(0.0)
        && instance.as_f64().is_some_and(|v| v < 0.0)
        && max.is_none()
    {
        // Only unsigned types have a bare minimum of 0: say it as serde would.
        return format!(
            "invalid value: {}, expected {}",
            unexpected(instance),
            rust_type(schema)
        );
    }
    match (min, max) {
        (Some(min), Some(max)) => format!("must be between {min} and {max}"),
        (Some(min), None) => format!("must be at least {min}"),
        (None, Some(max)) => format!("must be at most {max}"),
        (None, None) => "is out of range".to_owned(),
    }
}

/// A struct's fields as declared (`x-field-order`), else as the schema lists them.
fn field_names(schema: &Value) -> Vec<String> {
    let declared = schema
        .get(sluice_core::schema::FIELD_ORDER)
        .and_then(Value::as_array);
    match declared {
        Some(names) => names.iter().map(plain).collect(),
        None => schema
            .get("properties")
            .and_then(Value::as_object)
            .map(|p| p.keys().filter(|k| *k != "type").cloned().collect())
            .unwrap_or_default(),
    }
}

fn quoted<S: AsRef<str>>(names: &[S]) -> Vec<String> {
    names.iter().map(|n| format!("`{}`", n.as_ref())).collect()
}

/// `, expected a`, `, expected a or b`, `, expected one of a, b, c` (serde's wording).
fn expected(names: &[String]) -> String {
    match names {
        [] => String::new(),
        [one] => format!(", expected {one}"),
        [a, b] => format!(", expected {a} or {b}"),
        more => format!(", expected one of {}", more.join(", ")),
    }
}

fn plain(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// The value as serde names an unexpected one.
fn unexpected(v: &Value) -> String {
    match v {
        Value::Null => "null".into(),
        Value::Bool(b) => format!("boolean `{b}`"),
        Value::Number(n) if n.is_f64() => format!("floating point `{n}`"),
        Value::Number(n) => format!("integer `{n}`"),
        Value::String(s) => format!("string {s:?}"),
        Value::Array(_) => "sequence".into(),
        Value::Object(_) => "map".into(),
    }
}

fn types(schema: &Value) -> Vec<&str> {
    match schema.get("type") {
        Some(Value::String(t)) => vec![t.as_str()],
        Some(Value::Array(ts)) => ts.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    }
}

fn has_type(v: &Value, t: &str) -> bool {
    let kind = match v {
        Value::Null => JsonType::Null,
        Value::Bool(_) => JsonType::Boolean,
        Value::Number(n) if n.is_f64() => JsonType::Number,
        Value::Number(_) => JsonType::Integer,
        Value::String(_) => JsonType::String,
        Value::Array(_) => JsonType::Array,
        Value::Object(_) => JsonType::Object,
    };
    t == kind.to_string() || (t == "number" && kind == JsonType::Integer)
}

/// What a schema expects, in Rust's words where the schema says which Rust type it is.
fn rust_type(schema: &Value) -> String {
    let schema = resolved(schema);
    if let Some(format) = schema.get("format").and_then(Value::as_str) {
        let name = match format {
            "uint" => "usize",
            "int" => "isize",
            "uint8" => "u8",
            "uint16" => "u16",
            "uint32" => "u32",
            "uint64" => "u64",
            "int8" => "i8",
            "int16" => "i16",
            "int32" => "i32",
            "int64" => "i64",
            "double" => "f64",
            "float" => "f32",
            other => other,
        };
        return name.to_owned();
    }
    let names: Vec<&str> = types(schema)
        .into_iter()
        .filter(|t| *t != "null")
        .map(|t| match t {
            "string" => "string",
            "boolean" => "boolean",
            "integer" => "integer",
            "number" => "number",
            "array" => "sequence",
            _ => "map",
        })
        .collect();
    match names.as_slice() {
        [] if schema.get("enum").is_some() || schema.get("oneOf").is_some() => "a string".into(),
        [] => "a value".into(),
        ["integer"] => "an integer".into(),
        [one] => format!("a {one}"),
        [init @ .., last] => format!("a {} or {last}", init.join(", ")),
    }
}
