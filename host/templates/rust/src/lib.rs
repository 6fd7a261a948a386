//! {{name}}: a Sluice handler in Rust.
//!
//! Adds `handled_by` (and the `tag` setting, when the pipeline gives one) to each JSON object it
//! receives; anything else is refused as `invalid`, which sends it to the dead-letter sink.

use std::sync::OnceLock;

use sluice_sdk::{Handler, HandlerError, Message, Output, export_handler};

struct Tagger;

/// The `tag` setting from the pipeline's `config`.
static TAG: OnceLock<Option<String>> = OnceLock::new();

impl Handler for Tagger {
    fn init(config: Vec<(String, String)>) -> Result<(), String> {
        let mut tag = None;
        for (key, value) in config {
            if key != "tag" {
                return Err(format!("unknown setting `{key}` (expected `tag`)"));
            }
            tag = Some(value);
        }
        let _ = TAG.set(tag);
        Ok(())
    }

    fn handle(msg: Message) -> Result<Vec<Output>, HandlerError> {
        let mut event: serde_json::Value = serde_json::from_slice(&msg.payload)
            .map_err(|e| HandlerError::Invalid(format!("payload is not a JSON object: {e}")))?;
        let Some(object) = event.as_object_mut() else {
            return Err(HandlerError::Invalid("payload is not a JSON object".into()));
        };
        object.insert("handled_by".into(), "{{name}}".into());
        if let Some(Some(tag)) = TAG.get() {
            object.insert("tag".into(), tag.clone().into());
        }
        let mut headers = msg.headers;
        headers.push(("x-handled-by".into(), "{{name}}".into()));
        Ok(vec![Output {
            payload: serde_json::to_vec(&event).map_err(|e| HandlerError::Fatal(e.to_string()))?,
            key: msg.key,
            headers,
            route: None,
        }])
    }
}

export_handler!(Tagger);
