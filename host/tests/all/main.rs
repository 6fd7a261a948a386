//! The `sluice` binary as a user runs it, in one test binary (one link instead of one per file,
//! as wasmtime's `tests/all`): the CLI, the admin server and dashboard, hot reload.

mod admin;
mod cli;
mod common;
#[cfg(feature = "kafka")]
mod kafka_crash;
#[cfg(feature = "rabbitmq")]
mod reload;
