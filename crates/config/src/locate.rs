//! Where each path of a YAML document is written: the line and column of every mapping key and
//! sequence item, and of every node, from the parser's events (serde keeps no positions).

use std::collections::HashMap;

use serde_saphyr::granit_parser::{Event, Parser, Span};

use super::join_path;

/// A 1-based line and column.
pub type Position = (usize, usize);

/// Positions by dotted path (`sinks.primary.queue`, `handlers[1]`).
#[derive(Debug, Default)]
pub struct Positions {
    /// The key of a mapping entry, or the start of a sequence item.
    keys: HashMap<String, Position>,
    /// The start of the value at the path (a flow mapping's `{`).
    nodes: HashMap<String, Position>,
}

impl Positions {
    /// Where the entry at `path` is written: its key; for an entry that is not written, the
    /// start of the closest written mapping or list that would hold it.
    pub fn of(&self, path: &str) -> Option<Position> {
        if let Some(p) = self.keys.get(path) {
            return Some(*p);
        }
        let mut path = path;
        loop {
            if let Some(p) = self.nodes.get(path) {
                return Some(*p);
            }
            path = parent(path)?;
        }
    }

    /// Where the value at `path` starts (for a missing field: the mapping that lacks it).
    pub fn node(&self, path: &str) -> Option<Position> {
        self.nodes.get(path).copied().or_else(|| self.of(path))
    }
}

/// Line and column of `path` in pipeline `text`, for errors found after loading (a plugin that
/// does not load, a name another file took).
pub fn locate(text: &str, path: &str) -> Option<Position> {
    positions(text).of(path)
}

/// `a.b[2]` → `a.b`, `a.b` → `a`, `a` → ``; none for ``.
pub fn parent(path: &str) -> Option<&str> {
    if path.is_empty() {
        return None;
    }
    Some(match path.rfind(['.', '[']) {
        Some(i) => &path[..i],
        None => "",
    })
}

enum Frame {
    Map {
        path: String,
        key: Option<(String, Position)>,
    },
    Seq {
        path: String,
        next: usize,
    },
}

fn position(span: &Span) -> Position {
    (span.start.line(), span.start.col() + 1)
}

/// Positions in the first document of `text`; a document the parser rejects gives what was
/// read before the error (the YAML error itself is reported by the loader). `${VAR}` references
/// are masked first, as the loader masks them, so one unquoted inside `{ … }` parses.
pub fn positions(text: &str) -> Positions {
    positions_of_masked(&super::interpolate::mask(text).text)
}

fn positions_of_masked(text: &str) -> Positions {
    let mut out = Positions::default();
    let mut stack: Vec<Frame> = Vec::new();
    for item in Parser::new_from_str(text) {
        let Ok((event, span)) = item else { break };
        let opens = match event {
            Event::MappingStart(..) => Some(true),
            Event::SequenceStart(..) => Some(false),
            Event::Scalar(..) | Event::Alias(..) => None,
            Event::MappingEnd | Event::SequenceEnd => {
                stack.pop();
                continue;
            }
            Event::DocumentEnd => break,
            _ => continue,
        };
        let at = position(&span);
        // A node is a mapping key, a mapping value, a sequence item or the root.
        let path = match stack.last_mut() {
            Some(Frame::Map {
                key: key @ None, ..
            }) => {
                match (&event, opens) {
                    (Event::Scalar(text, ..), _) => *key = Some((text.to_string(), at)),
                    // A complex key: record nothing under it.
                    (_, Some(map)) => {
                        *key = Some(("?".into(), at));
                        stack.push(skip(map));
                    }
                    _ => *key = Some(("?".into(), at)),
                }
                continue;
            }
            Some(Frame::Map { path, key }) => {
                let (name, key_at) = key.take().unwrap_or_default();
                let path = join_path(path, &name);
                out.keys.insert(path.clone(), key_at);
                path
            }
            Some(Frame::Seq { path, next }) => {
                let path = format!("{path}[{next}]");
                *next += 1;
                out.keys.insert(path.clone(), at);
                path
            }
            None => String::new(),
        };
        out.nodes.entry(path.clone()).or_insert(at);
        match opens {
            Some(true) => stack.push(Frame::Map { path, key: None }),
            Some(false) => stack.push(Frame::Seq { path, next: 0 }),
            None => {}
        }
    }
    out
}

/// A frame for a complex key's contents, which no path names.
fn skip(map: bool) -> Frame {
    let path = "?".to_owned();
    if map {
        Frame::Map { path, key: None }
    } else {
        Frame::Seq { path, next: 0 }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_keys_items_and_flow_mappings() {
        let text = "source: { type: memory }\nhandlers:\n  - plugin: a.wasm\n    limits:\n      timeout_ms: 0\n";
        let p = positions(text);
        assert_eq!(p.of("source"), Some((1, 1)));
        assert_eq!(p.of("source.type"), Some((1, 11)));
        assert_eq!(p.node("source"), Some((1, 9)));
        assert_eq!(p.of("handlers[0]"), Some((3, 5)));
        assert_eq!(p.of("handlers[0].limits.timeout_ms"), Some((5, 7)));
        assert_eq!(p.of("handlers[0].limits.nope"), Some((5, 7)));
        assert_eq!(p.of("source.queue"), Some((1, 9)));
        assert_eq!(p.node(""), Some((1, 1)));
    }
}
