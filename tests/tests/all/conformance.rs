//! The conformance suite (`tests/src/conformance.rs`) for every connector that acknowledges.

mod memory {
    sluice_tests::conformance_tests!(sluice_tests::brokers::MemoryBroker);
}

mod rabbitmq {
    sluice_tests::conformance_tests!(sluice_tests::brokers::RabbitMqBroker::default());
    sluice_tests::refusal_tests!(sluice_tests::brokers::RabbitMqBroker::default());
}

mod kafka {
    sluice_tests::conformance_tests!(sluice_tests::kafka::KafkaBroker::default());
    sluice_tests::refusal_tests!(sluice_tests::kafka::KafkaBroker::default());
}
