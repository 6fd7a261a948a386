//! End-to-end tests of the Sluice host, in one test binary (one link instead of one per file, as
//! wasmtime's `tests/all`). Run them with `cargo nextest run` (scripts/test.sh does): every test
//! gets its own process, so process-wide state (the OpenTelemetry exporter) stays per test, and
//! `.config/nextest.toml` runs the tests that stop a broker alone.

mod architecture;
mod azure_entra;
mod azure_queue;
mod azure_restart;
mod conformance;
mod contract;
mod engine_faults;
mod kafka;
mod kafka_restart;
mod otel_tracing;
mod packed_batch;
mod pipeline_files;
mod plugin_host;
mod rabbitmq;
mod rabbitmq_blocked;
mod rabbitmq_restart;
mod sqs;
mod sqs_restart;
mod zeromq;
