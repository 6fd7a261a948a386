//! Sluice: a stream processor whose message handlers are WebAssembly components.
//!
//! See `ARCHITECTURE.md` at the repository root for the code map and the invariants.

pub mod ack;
pub mod admin;
pub mod config;
pub mod connector;
pub mod deadline;
pub mod engine;
pub mod message;
pub mod plugin;
pub mod runtime;
pub mod scaffold;
pub mod telemetry;
pub mod testing;
