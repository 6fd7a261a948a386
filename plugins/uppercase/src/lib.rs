//! `uppercase`: ASCII-uppercases the payload; key and headers pass through.
//! The smallest useful handler, and the one the benchmarks measure.
//!
//! It implements both paths: `handle` (single messages, owned) and `handle_view` (batches,
//! borrowed from the host's buffer, written straight into the result: no allocation per message).

use std::cell::RefCell;

use sluice_sdk::{
    Handler, HandlerError, Message, MessageView, Output, OutputRef, Outputs, export_handler,
};

struct Uppercase;

thread_local! {
    /// Reused for every message, so the batch path allocates nothing once warm.
    static SCRATCH: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

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

    fn handle_view(msg: &MessageView<'_>, out: &mut Outputs<'_>) -> Result<(), HandlerError> {
        SCRATCH.with_borrow_mut(|upper| {
            upper.clear();
            upper.extend(msg.payload.iter().map(u8::to_ascii_uppercase));
            out.push(OutputRef {
                key: msg.key,
                headers: msg.raw_headers,
                ..OutputRef::new(upper)
            });
        });
        Ok(())
    }
}

export_handler!(Uppercase);
