//! What the engine needs from a handler, whatever runs it (a WASM component, or native code in
//! benchmarks and tests).

use std::fmt;

use async_trait::async_trait;

use crate::message::{ByteString, Message, Output};

/// A stage of the handler chain.
///
/// `process` runs on the async runtime's workers, in the task of its batch: it must not hold
/// the thread for long without yielding. WASM handlers yield at every epoch tick (1 ms); native
/// transforms (benchmarks, tests) are quick.
#[async_trait]
pub trait Transform: Send + Sync {
    /// Name for logs, metrics and dead-letter headers.
    fn name(&self) -> &str;

    /// Handle a batch; exactly one outcome per message, in order. The batch is borrowed: the
    /// engine keeps the originals for retries and dead letters.
    async fn process(&self, batch: &[Message]) -> Vec<Outcome>;

    /// Whether the stage sees header values as text, bytes or null (a handler of contract 0.2)
    /// rather than as text only (0.1). It decides how its outputs' headers get their source
    /// form back ([`restore_natives`](crate::message::restore_natives)): from a stage that sees
    /// types, a text value matches only an input value that was text, so a null or bytes it
    /// turned into text on purpose stays text.
    fn sees_header_types(&self) -> bool {
        false
    }
}

/// What became of one message in one stage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Zero outputs means filtered.
    Outputs(Vec<Output>),
    Failed(Failure),
}

/// Why a stage produced nothing for a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub class: ErrorClass,
    pub reason: String,
    /// The plugin version that failed the message, for the dead-letter copy's
    /// `x-sluice-plugin` header; set by handlers that tag their outputs.
    pub plugin: Option<ByteString>,
}

impl Failure {
    pub fn new(class: ErrorClass, reason: impl Into<String>) -> Self {
        Failure {
            class,
            reason: reason.into(),
            plugin: None,
        }
    }
}

/// The error classes, as written in the `x-sluice-error-class` dead-letter header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorClass {
    /// The handler said: try again later. Retried with backoff up to `max_attempts`.
    Transient,
    /// The handler said: this will never work.
    Fatal,
    /// The handler (or the source's decoder) said: the payload is malformed.
    Invalid,
    /// The guest trapped (panic, unreachable, out-of-bounds access, stack overflow).
    Trap,
    /// The call ran past `limits.timeout_ms`.
    Timeout,
    /// The guest tried to grow memory past `limits.memory_mb`.
    MemoryLimit,
    /// The outputs broke `limits.max_outputs` or `limits.max_output_bytes`.
    OutputLimit,
    /// An output named a route that is not a sink of the pipeline.
    UnknownRoute,
    /// A sink refused an output for good (too large, a name the broker does not accept).
    SinkRejected,
}

impl ErrorClass {
    /// How many classes there are.
    pub const COUNT: usize = 9;

    /// Every class, in [`ErrorClass::index`] order.
    pub const ALL: [ErrorClass; Self::COUNT] = [
        ErrorClass::Transient,
        ErrorClass::Fatal,
        ErrorClass::Invalid,
        ErrorClass::Trap,
        ErrorClass::Timeout,
        ErrorClass::MemoryLimit,
        ErrorClass::OutputLimit,
        ErrorClass::UnknownRoute,
        ErrorClass::SinkRejected,
    ];

    /// Position in [`ErrorClass::ALL`], for per-class counters.
    pub fn index(self) -> usize {
        self as usize
    }

    pub fn as_str(self) -> &'static str {
        match self {
            ErrorClass::Transient => "transient",
            ErrorClass::Fatal => "fatal",
            ErrorClass::Invalid => "invalid",
            ErrorClass::Trap => "trap",
            ErrorClass::Timeout => "timeout",
            ErrorClass::MemoryLimit => "memory-limit",
            ErrorClass::OutputLimit => "output-limit",
            ErrorClass::UnknownRoute => "unknown-route",
            ErrorClass::SinkRejected => "sink-rejected",
        }
    }
}

impl fmt::Display for ErrorClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
