//! What the schema cannot say: checks across fields (the default sink names a sink, handler names
//! are unique, retry delays are ordered, a source that cannot acknowledge needs `at_most_once`)
//! and each connector's own (`validate`: URLs, paths, names). They run on every section that
//! reads, so a file with schema errors still gets these reported too.

use std::collections::BTreeMap;

use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use super::{DeliveryConfig, FieldError, Guarantee, HandlerConfig, LoggingConfig, join_path};
use sluice_connectors::{SinkConfig, SourceConfig};

/// The sections of a file that read on their own (those the schema rejected were set aside).
#[derive(Debug, Default)]
pub struct Sections {
    pub name: String,
    pub source: Option<SourceConfig>,
    pub handlers: Vec<Option<HandlerConfig>>,
    pub sinks: BTreeMap<String, Option<SinkConfig>>,
    pub default_sink: Option<String>,
    pub dead_letter: Option<SinkConfig>,
    pub delivery: Option<DeliveryConfig>,
    pub logging: Option<LoggingConfig>,
}

fn read<T: DeserializeOwned>(top: &Map<String, Value>, key: &str) -> Option<T> {
    top.get(key)
        .filter(|v| !v.is_null())
        .and_then(|v| serde_json::from_value(v.clone()).ok())
}

impl Sections {
    pub fn read(top: &Map<String, Value>, default_name: &str) -> Sections {
        let items = |key: &str| top.get(key).cloned().unwrap_or(Value::Null);
        Sections {
            name: read(top, "name").unwrap_or_else(|| default_name.to_owned()),
            source: read(top, "source"),
            handlers: match items("handlers") {
                Value::Array(items) => items
                    .into_iter()
                    .map(|h| serde_json::from_value(h).ok())
                    .collect(),
                _ => Vec::new(),
            },
            sinks: match items("sinks") {
                Value::Object(map) => map
                    .into_iter()
                    .map(|(k, v)| (k, serde_json::from_value(v).ok()))
                    .collect(),
                _ => BTreeMap::new(),
            },
            default_sink: read(top, "default_sink"),
            dead_letter: read(top, "dead_letter"),
            delivery: read(top, "delivery"),
            logging: read(top, "logging"),
        }
    }

    /// The default sink: named, or the only one.
    pub fn default_sink(&self, errors: &mut Vec<FieldError>) -> Option<String> {
        match &self.default_sink {
            Some(name) if self.sinks.contains_key(name) => Some(name.clone()),
            Some(name) => {
                // Said whenever there are sinks to name, also when some of them have errors.
                if !self.sinks.is_empty() {
                    let known: Vec<&str> = self.sinks.keys().map(String::as_str).collect();
                    errors.push(FieldError::new(
                        "default_sink",
                        format!("names no sink `{name}`; sinks are: {}", known.join(", ")),
                    ));
                }
                None
            }
            None if self.sinks.len() == 1 => self.sinks.keys().next().cloned(),
            None if self.sinks.len() > 1 => {
                errors.push(FieldError::new(
                    "default_sink",
                    "missing field: required when there is more than one sink",
                ));
                None
            }
            None => None,
        }
    }

    pub fn check(&self, errors: &mut Vec<FieldError>) {
        check_name(&self.name, errors);
        if let Some(logging) = &self.logging {
            for (i, field) in logging.scrub_fields.iter().enumerate() {
                if field.is_empty() || field.split('.').any(str::is_empty) {
                    errors.push(FieldError::new(
                        format!("logging.scrub_fields[{i}]"),
                        "expected a dotted JSON path such as `card.number`",
                    ));
                }
            }
        }
        // By name, the first handler that took it (a map: linear in the number of handlers).
        let mut names: std::collections::HashMap<String, usize> = std::collections::HashMap::new();
        for (i, h) in self.handlers.iter().enumerate() {
            let Some(h) = h else { continue };
            let path = format!("handlers[{i}]");
            if h.plugin.as_os_str().is_empty() {
                errors.push(FieldError::new(
                    join_path(&path, "plugin"),
                    "must not be empty",
                ));
            }
            // Names label metrics, spans and dead-letter headers: one per stage.
            let name = h.display_name();
            if let Some(first) = names.get(&name) {
                errors.push(FieldError::new(
                    path,
                    format!(
                        "the name `{name}` is taken by handlers[{first}]; give one of them a `name`"
                    ),
                ));
            }
            names.entry(name).or_insert(i);
        }
        for sink_name in self.sinks.keys() {
            if sink_name == sluice_core::DEAD_LETTER_SINK {
                errors.push(FieldError::new(
                    format!("sinks.{sink_name}"),
                    "`dead_letter` names the pipeline's dead-letter sink; choose another sink name",
                ));
            }
        }
        self.default_sink(errors);
        let guarantee = self
            .delivery
            .as_ref()
            .map_or(Guarantee::default(), |d| d.guarantee);
        if let Some(source) = &self.source {
            let mut errs = Vec::new();
            source.factory().validate(&mut errs);
            errors.extend(errs.into_iter().map(|e| e.under("source")));
            if source.factory().at_most_once() && guarantee != Guarantee::AtMostOnce {
                errors.push(FieldError::new(
                    "source.type",
                    format!(
                        "a `{}` source cannot acknowledge, so it delivers at most once; set `delivery.guarantee: at_most_once` to accept that",
                        source.type_name()
                    ),
                ));
            }
        }
        for (sink_name, sink) in &self.sinks {
            let Some(sink) = sink else { continue };
            let mut errs = Vec::new();
            sink.factory().validate(&mut errs);
            errors.extend(
                errs.into_iter()
                    .map(|e| e.under(&format!("sinks.{sink_name}"))),
            );
        }
        if let Some(dl) = &self.dead_letter {
            let mut errs = Vec::new();
            dl.factory().validate(&mut errs);
            errors.extend(errs.into_iter().map(|e| e.under("dead_letter")));
        }
        let sink_timeout_ms = self.delivery.as_ref().map_or_else(
            || DeliveryConfig::default().sink_timeout_ms,
            |d| d.sink_timeout_ms,
        );
        let every_sink = self
            .sinks
            .iter()
            .map(|(name, sink)| (format!("sinks.{name}"), sink.as_ref()))
            .chain([("dead_letter".to_owned(), self.dead_letter.as_ref())]);
        for (path, sink) in every_sink {
            if let Some(sink) = sink
                && sink.factory().at_most_once()
                && guarantee != Guarantee::AtMostOnce
            {
                errors.push(FieldError::new(
                    join_path(&path, "type"),
                    format!(
                        "a `{}` sink cannot confirm delivery (a PUB socket drops what no subscriber takes; PUSH counts a message sent once it is queued in this process), so it delivers at most once; set `delivery.guarantee: at_most_once` to accept that",
                        sink.type_name()
                    ),
                ));
            }
            if let Some((field, ms)) = sink.and_then(|s| s.factory().write_timeout_ms())
                && ms >= sink_timeout_ms
            {
                errors.push(FieldError::new(
                    join_path(&path, field),
                    format!(
                        "must be below delivery.sink_timeout_ms ({sink_timeout_ms}): the engine would drop the write before the sink's own timeout"
                    ),
                ));
            }
        }
        if let Some(d) = &self.delivery
            && d.retry.base_delay_ms > d.retry.max_delay_ms
        {
            errors.push(FieldError::new(
                "delivery.retry.base_delay_ms",
                "must not exceed retry.max_delay_ms",
            ));
        }
    }
}

fn check_name(name: &str, errors: &mut Vec<FieldError>) {
    if name.is_empty()
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    {
        errors.push(FieldError::new(
            "name",
            format!("`{name}` is not a valid pipeline name (letters, digits, `-`, `_`, `.`)"),
        ));
    }
}
