//! The vocabulary every other Sluice crate shares: messages and outputs, the ack token, the
//! source/sink traits, the handler stage trait and its error classes, bounded waits, and the
//! field errors that validation reports.
//!
//! Architecture invariant: this crate depends on no broker client, no wasmtime and no
//! OpenTelemetry; `tests/all/architecture.rs` checks it with `cargo metadata`.

pub mod ack;
pub mod connector;
pub mod deadline;
mod field_error;
pub mod files;
pub mod message;
pub mod schema;
pub mod transform;

pub use field_error::{FieldError, join_path};

/// The dead-letter sink's name in metrics, status and `sluice test` expectations; no user sink
/// may take it.
pub const DEAD_LETTER_SINK: &str = "dead_letter";
