//! `needs-wasi`: a handler that reads an environment variable. Built for `wasm32-wasip2`, it
//! imports `wasi:cli/environment`; the host must refuse it at load time, naming that import,
//! because pipelines grant no WASI.

use sluice_sdk::{Handler, HandlerError, Message, Output, export_handler};

struct NeedsWasi;

impl Handler for NeedsWasi {
    fn handle(msg: Message) -> Result<Vec<Output>, HandlerError> {
        let suffix = std::env::var("SUFFIX").unwrap_or_default();
        let mut payload = msg.payload;
        payload.extend_from_slice(suffix.as_bytes());
        Ok(vec![Output::from_payload(payload)])
    }
}

export_handler!(NeedsWasi);
