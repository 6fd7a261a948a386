//! `docs/pipeline-reference.md` is written for people, so it is not generated; this test keeps
//! it from drifting from the schema: every field of the schema has its row (with its default
//! when the schema has a scalar one), and every field a row names exists.

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::Value;

use super::schema::pipeline_schema;

/// The tables of the reference, by heading: each row's cells.
fn tables(text: &str) -> BTreeMap<String, Vec<Vec<String>>> {
    let mut out: BTreeMap<String, Vec<Vec<String>>> = BTreeMap::new();
    let mut heading = String::new();
    let mut header_seen = false;
    for line in text.lines() {
        if let Some(h) = line
            .strip_prefix("## ")
            .or_else(|| line.strip_prefix("### "))
        {
            heading = h.trim().to_owned();
            header_seen = false;
        } else if line.starts_with('|') && !line.starts_with("|---") {
            if !header_seen {
                header_seen = true;
                continue;
            }
            let cells = line
                .trim_matches('|')
                .split('|')
                .map(|c| c.trim().to_owned())
                .collect();
            out.entry(heading.clone()).or_default().push(cells);
        }
    }
    out
}

/// The `code` spans of a cell.
fn code(cell: &str) -> Vec<String> {
    cell.split('`')
        .skip(1)
        .step_by(2)
        .map(str::to_owned)
        .collect()
}

/// A `$ref`'s target; an `Option`'s non-null branch.
fn resolve<'a>(root: &'a Value, schema: &'a Value) -> &'a Value {
    if let Some(r) = schema.get("$ref").and_then(Value::as_str) {
        return resolve(root, root.pointer(r.trim_start_matches('#')).unwrap());
    }
    if let Some(branches) = schema.get("anyOf").and_then(Value::as_array) {
        let some: Vec<&Value> = branches
            .iter()
            .filter(|b| b.get("type") != Some(&Value::from("null")))
            .collect();
        if let [one] = some.as_slice() {
            return resolve(root, one);
        }
    }
    schema
}

/// The fields of an object schema, with `expand`ed nested structs as `outer.inner`.
fn fields<'a>(root: &'a Value, schema: &'a Value, expand: &[&str]) -> Vec<(String, &'a Value)> {
    let mut out = Vec::new();
    let Some(props) = resolve(root, schema)
        .get("properties")
        .and_then(Value::as_object)
    else {
        return out;
    };
    for (name, prop) in props {
        if name == "type" {
            continue;
        }
        if expand.contains(&name.as_str()) {
            for (inner, p) in fields(root, prop, &[]) {
                out.push((format!("{name}.{inner}"), p));
            }
        } else {
            out.push((name.clone(), prop));
        }
    }
    out
}

/// The default as the reference writes it, when it is a scalar worth checking.
fn default_text(prop: &Value) -> Option<String> {
    match prop.get("default")? {
        Value::Bool(b) => Some(b.to_string()),
        Value::Number(n) => Some(n.to_string()),
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        _ => None,
    }
}

/// `(name, field)` pairs of each connector `type` of a `SourceConfig`/`SinkConfig` definition.
fn connectors<'a>(root: &'a Value, def: &str) -> Vec<(String, Vec<(String, &'a Value)>)> {
    root["$defs"][def]["oneOf"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| {
            let name = b["properties"]["type"]["const"]
                .as_str()
                .unwrap()
                .to_owned();
            (name, fields(root, b, &[]))
        })
        .collect()
}

/// The values an enum field takes (`enum`, or a `oneOf` of `const`s and `enum`s).
fn values(root: &Value, prop: &Value) -> Vec<String> {
    let schema = resolve(root, prop);
    let mut out: Vec<&Value> = Vec::new();
    let branches = schema.get("oneOf").and_then(Value::as_array);
    for s in std::iter::once(schema).chain(branches.into_iter().flatten()) {
        out.extend(
            s.get("enum")
                .and_then(Value::as_array)
                .into_iter()
                .flatten(),
        );
        out.extend(s.get("const"));
    }
    out.iter()
        .filter_map(|v| v.as_str().map(str::to_owned))
        .collect()
}

/// The field a comma-separated part of a connector row starts with (`or \`account_url\` with
/// ...` names `account_url`); commas inside parentheses are the default's.
fn named_fields(cell: &str) -> Vec<String> {
    let mut parts = Vec::new();
    let (mut depth, mut start) = (0i32, 0);
    for (i, c) in cell.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(&cell[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&cell[start..]);
    parts
        .iter()
        .filter_map(|p| code(p).into_iter().next())
        .filter(|f| f != "none" && !f.contains(' '))
        .collect()
}

#[test]
fn the_reference_documents_every_field_of_the_schema_and_no_other() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/pipeline-reference.md");
    let text = std::fs::read_to_string(path).unwrap();
    let tables = tables(&text);
    let root = pipeline_schema();
    let defs = &root["$defs"];
    let mut problems = Vec::new();

    // Struct tables: the first cell names the field, a later one gives its default.
    let structs: [(&str, &Value, &[&str]); 4] = [
        ("Top level", &root, &[]),
        ("`handlers[]`", &defs["HandlerConfig"], &["limits"]),
        (
            "`delivery`",
            &defs["DeliveryConfig"],
            &["retry", "rate_limit"],
        ),
        ("`logging`", &defs["LoggingConfig"], &[]),
    ];
    for (heading, schema, expand) in structs {
        let rows = tables.get(heading).cloned().unwrap_or_default();
        let documented: Vec<(String, &Vec<String>)> = rows
            .iter()
            .flat_map(|r| code(&r[0]).into_iter().map(move |f| (f, r)))
            .collect();
        let known = fields(&root, schema, expand);
        for (field, prop) in &known {
            match documented.iter().find(|(f, _)| f == field) {
                None => problems.push(format!("{heading}: `{field}` has no row")),
                Some((_, row)) => {
                    if let Some(d) = default_text(prop)
                        && !row[1..].iter().any(|c| c.contains(&d))
                    {
                        problems.push(format!("{heading}: `{field}`'s row lacks its default {d}"));
                    }
                }
            }
        }
        for (field, _) in &documented {
            if !known.iter().any(|(k, _)| k == field) {
                problems.push(format!("{heading}: `{field}` is not in the schema"));
            }
        }
    }

    // Connector tables: one row per `type`, naming each of its fields.
    for (heading, def) in [
        ("Sources", "SourceConfig"),
        ("Sinks (also for `dead_letter`)", "SinkConfig"),
    ] {
        let rows = tables.get(heading).cloned().unwrap_or_default();
        let all = connectors(&root, def);
        for (name, known) in &all {
            let Some(row) = rows.iter().find(|r| code(&r[0]) == [name.clone()]) else {
                problems.push(format!("{heading}: `{name}` has no row"));
                continue;
            };
            let named = code(&row[1]);
            for (field, prop) in known {
                if !named.contains(field) {
                    problems.push(format!("{heading}: `{name}`'s row does not name `{field}`"));
                } else if let Some(d) = default_text(prop)
                    && !row[1].contains(&d)
                {
                    problems.push(format!("{heading}: `{name}.{field}` lacks its default {d}"));
                }
            }
            // A list of a field's values (`range` or `roundrobin`) is not a field.
            let values: Vec<String> = known.iter().flat_map(|(_, p)| values(&root, p)).collect();
            for field in named_fields(&row[1]) {
                if !known.iter().any(|(k, _)| *k == field) && !values.contains(&field) {
                    problems.push(format!("{heading}: `{name}.{field}` is not in the schema"));
                }
            }
        }
        for row in &rows {
            let name = code(&row[0]).join(",");
            if !all.iter().any(|(n, _)| *n == name) {
                problems.push(format!(
                    "{heading}: `{name}` is not a connector of the schema"
                ));
            }
        }
    }
    assert!(
        problems.is_empty(),
        "docs/pipeline-reference.md:\n{}",
        problems.join("\n")
    );
}
