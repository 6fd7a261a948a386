//! `json-enrich`: validates the event envelope our users send, enriches it and routes it by type.
//!
//! Envelope: `event_type`, `event_id`, `timestamp`, `version`, `data` (object) and `metadata`
//! (`producer`, optional `trace_id`, `correlation_id`). A payload that is not such an envelope is
//! rejected as `invalid` with the reason. Valid events get `processed_at` (the host's receive
//! time, ms since the Unix epoch) and `processed_by`, an `event-type` header, and a route chosen
//! by the part of `event_type` before the first dot, from `init` settings `route.<prefix>: <sink>`.

use std::sync::OnceLock;

use serde_json::{Map, Value};
use sluice_sdk::{Handler, HandlerError, Message, Output, export_handler, json};

struct JsonEnrich;

/// `(event type prefix, sink)` pairs from the handler's `config`.
static ROUTES: OnceLock<Vec<(String, String)>> = OnceLock::new();

fn field<'a>(obj: &'a Map<String, Value>, name: &str) -> Result<&'a Value, HandlerError> {
    obj.get(name)
        .ok_or_else(|| HandlerError::Invalid(format!("envelope is missing `{name}`")))
}

fn string_field<'a>(obj: &'a Map<String, Value>, name: &str) -> Result<&'a str, HandlerError> {
    match field(obj, name)? {
        Value::String(s) if !s.is_empty() => Ok(s),
        _ => Err(HandlerError::Invalid(format!(
            "envelope field `{name}` must be a non-empty string"
        ))),
    }
}

impl Handler for JsonEnrich {
    fn init(config: Vec<(String, String)>) -> Result<(), String> {
        let mut routes = Vec::new();
        for (key, value) in config {
            match key.strip_prefix("route.") {
                Some(prefix) if !prefix.is_empty() && !value.is_empty() => {
                    routes.push((prefix.to_owned(), value))
                }
                _ => {
                    return Err(format!(
                        "unknown setting `{key}` (expected `route.<event type prefix>: <sink>`)"
                    ));
                }
            }
        }
        ROUTES
            .set(routes)
            .map_err(|_| "init called twice".to_owned())
    }

    fn handle(msg: Message) -> Result<Vec<Output>, HandlerError> {
        let mut event: Value = json::parse(&msg.payload)?;
        let obj = event
            .as_object_mut()
            .ok_or_else(|| HandlerError::Invalid("envelope must be a JSON object".into()))?;
        let event_type = string_field(obj, "event_type")?.to_owned();
        string_field(obj, "event_id")?;
        string_field(obj, "version")?;
        if !matches!(
            field(obj, "timestamp")?,
            Value::Number(_) | Value::String(_)
        ) {
            return Err(HandlerError::Invalid(
                "envelope field `timestamp` must be a number or a string".into(),
            ));
        }
        if !field(obj, "data")?.is_object() {
            return Err(HandlerError::Invalid(
                "envelope field `data` must be an object".into(),
            ));
        }
        let metadata = field(obj, "metadata")?.as_object().ok_or_else(|| {
            HandlerError::Invalid("envelope field `metadata` must be an object".into())
        })?;
        string_field(metadata, "producer").map_err(|_| {
            HandlerError::Invalid(
                "envelope field `metadata.producer` must be a non-empty string".into(),
            )
        })?;
        for optional in ["trace_id", "correlation_id"] {
            if metadata.get(optional).is_some_and(|v| !v.is_string()) {
                return Err(HandlerError::Invalid(format!(
                    "envelope field `metadata.{optional}` must be a string"
                )));
            }
        }

        obj.insert("processed_at".into(), Value::from(msg.metadata.received_ms));
        obj.insert("processed_by".into(), Value::from("sluice/json-enrich"));
        let prefix = event_type.split('.').next().unwrap_or(&event_type);
        let route = ROUTES
            .get()
            .and_then(|routes| routes.iter().find(|(p, _)| p == prefix))
            .map(|(_, sink)| sink.clone());
        let mut headers = msg.headers;
        headers.push(("event-type".into(), event_type.into()));
        Ok(vec![Output {
            payload: json::to_payload(&event)?,
            key: msg.key,
            headers,
            route,
        }])
    }
}

export_handler!(JsonEnrich);
