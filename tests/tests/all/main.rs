//! End-to-end tests of the Sluice host, in one test binary (one link instead of one per file, as
//! wasmtime's `tests/all`). Run them with `cargo nextest run` (scripts/test.sh does): every test
//! gets its own process, so process-wide state (the OpenTelemetry exporter) stays per test, and
//! `.config/nextest.toml` runs the tests that stop a broker alone.
//!
//! Each broker family's end-to-end tests live in its connector's folder
//! (`crates/connector-*/tests/e2e/`, as Vector keeps them beside the connector) and are compiled
//! here, into this one binary, with the shared fixtures of `tests/src/`.

mod architecture;
#[path = "../../../crates/connector-azure-queue/tests/e2e/azure_entra.rs"]
mod azure_entra;
#[path = "../../../crates/connector-azure-queue/tests/e2e/azure_queue.rs"]
mod azure_queue;
#[path = "../../../crates/connector-azure-queue/tests/e2e/azure_restart.rs"]
mod azure_restart;
mod conformance;
mod contract;
mod engine_faults;
mod hostile;
#[path = "../../../crates/connector-kafka/tests/e2e/kafka.rs"]
mod kafka;
#[path = "../../../crates/connector-kafka/tests/e2e/kafka_restart.rs"]
mod kafka_restart;
mod otel_tracing;
mod packed_batch;
mod pipeline_files;
mod plugin_host;
#[path = "../../../crates/connector-rabbitmq/tests/e2e/rabbitmq.rs"]
mod rabbitmq;
#[path = "../../../crates/connector-rabbitmq/tests/e2e/rabbitmq_blocked.rs"]
mod rabbitmq_blocked;
#[path = "../../../crates/connector-rabbitmq/tests/e2e/rabbitmq_restart.rs"]
mod rabbitmq_restart;
mod replicas;
mod schema_files;
#[path = "../../../crates/connector-sqs/tests/e2e/sqs.rs"]
mod sqs;
#[path = "../../../crates/connector-sqs/tests/e2e/sqs_restart.rs"]
mod sqs_restart;
#[path = "../../../crates/connector-zeromq/tests/e2e/zeromq.rs"]
mod zeromq;
