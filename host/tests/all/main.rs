//! The `sluice` binary as a user runs it, in one test binary (one link instead of one per file,
//! as wasmtime's `tests/all`): the CLI, the admin server and dashboard, hot reload.

mod admin;
mod cli;
mod common;
mod container;
mod deploy;
// The docs name every broker family: they are run in the default build, where all are in.
#[cfg(all(
    feature = "kafka",
    feature = "rabbitmq",
    feature = "sqs",
    feature = "azure",
    feature = "zeromq"
))]
mod docs;
#[cfg(feature = "kafka")]
mod kafka_crash;
#[cfg(feature = "rabbitmq")]
mod reload;
