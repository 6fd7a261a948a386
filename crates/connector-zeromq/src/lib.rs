//! `zeromq`: PULL/SUB sources and PUSH/PUB sinks over `tcp://` and `ipc://`, through the pure-Rust
//! `zeromq` crate (interoperable with libzmq peers such as pyzmq).
//!
//! ZeroMQ has no acknowledgements: a message is gone from the sender once it is sent, and a
//! receiver that dies loses whatever it had taken. A ZeroMQ source is therefore **at most once**,
//! and a pipeline reading one must say `delivery.guarantee: at_most_once`; `validate` refuses it
//! otherwise. As a sink, "confirmed" means handed to the socket.
//!
//! Frames: a one-frame message is the payload; with more frames the first is the key (a PUB/SUB
//! topic) and the last the payload. A sink sends `[key, payload]` when an output has a key and the
//! socket is PUB, else `[payload]`.

mod config;
mod sink;
mod source;

use std::sync::Arc;

use sluice_core::FieldError;
use sluice_core::connector::{BuildContext, Sink, SinkFactory, Source, SourceFactory};

pub use config::*;

/// Bind or connect `socket` to `endpoint`; `who` names the connector in the error.
async fn attach<S: zeromq::Socket>(
    socket: &mut S,
    endpoint: &str,
    bind: bool,
    who: &str,
) -> anyhow::Result<()> {
    use anyhow::Context as _;
    if bind {
        socket
            .bind(endpoint)
            .await
            .with_context(|| format!("{who}: cannot bind {endpoint}"))?;
    } else {
        socket
            .connect(endpoint)
            .await
            .with_context(|| format!("{who}: cannot connect to {endpoint}"))?;
    }
    Ok(())
}

fn check_endpoint(endpoint: &str, errors: &mut Vec<FieldError>) {
    if !(endpoint.starts_with("tcp://") || endpoint.starts_with("ipc://")) {
        errors.push(FieldError::new(
            "endpoint",
            "must start with tcp:// or ipc://",
        ));
    }
}

impl SourceFactory for ZeroMqSourceConfig {
    fn validate(&self, errors: &mut Vec<FieldError>) {
        check_endpoint(&self.endpoint, errors);
        if self.socket == SourceSocket::Pull && self.topics.is_some() {
            errors.push(FieldError::new("topics", "only a `sub` socket has topics"));
        }
    }

    fn build(&self, _ctx: &BuildContext) -> anyhow::Result<Box<dyn Source>> {
        Ok(Box::new(source::ZeroMqSource::new(self.clone())))
    }

    fn redelivers(&self) -> bool {
        false
    }

    fn at_most_once(&self) -> bool {
        true
    }
}

impl SinkFactory for ZeroMqSinkConfig {
    fn validate(&self, errors: &mut Vec<FieldError>) {
        check_endpoint(&self.endpoint, errors);
    }

    fn at_most_once(&self) -> bool {
        true
    }

    fn build(&self, _ctx: &BuildContext) -> anyhow::Result<Arc<dyn Sink>> {
        Ok(Arc::new(sink::ZeroMqSink::new(self.clone())))
    }
}
