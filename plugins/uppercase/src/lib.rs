//! `uppercase`: ASCII-uppercases the payload; key, headers and route pass through.
//! The smallest useful handler, and the one the benchmarks measure.

use sluice_sdk::{Handler, HandlerError, Message, Output, export_handler};

struct Uppercase;

impl Handler for Uppercase {
    fn handle(msg: Message) -> Result<Vec<Output>, HandlerError> {
        let mut payload = msg.payload;
        payload.make_ascii_uppercase();
        Ok(vec![Output {
            payload,
            key: msg.key,
            headers: msg.headers,
            route: None,
        }])
    }
}

export_handler!(Uppercase);
