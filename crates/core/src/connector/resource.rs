//! What a connector expects to exist on its broker (a topic, a queue, an exchange, a binding),
//! so that `sluice plan` can list what a pipeline needs before it runs and infrastructure code
//! (`deploy/terraform/`) can declare it.

use serde::Serialize;

/// One thing on a broker that a source or sink uses. Names are as the pipeline file gives them,
/// after `${VAR}` interpolation.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Resource {
    /// A Kafka topic.
    KafkaTopic { brokers: String, topic: String },
    /// A Kafka consumer group (created by its first member; listed for ACLs and lag alerts).
    KafkaConsumerGroup {
        brokers: String,
        group: String,
        topics: Vec<String>,
    },
    /// A RabbitMQ queue. `arguments` is a JSON object (`x-queue-type`, dead-lettering, ...):
    /// a queue redeclared with other settings than it has is refused by the broker.
    RabbitmqQueue {
        queue: String,
        durable: bool,
        arguments: String,
    },
    /// A RabbitMQ exchange and its type (`direct`, `fanout`, `topic`, `headers`); `None` when
    /// the pipeline uses the exchange without declaring it, so its type is not in the file.
    RabbitmqExchange {
        exchange: String,
        exchange_type: Option<String>,
        durable: bool,
        arguments: String,
    },
    /// A binding of `queue` to `exchange` with `routing_key` and `arguments` (a JSON object:
    /// a headers exchange's `x-match` and headers).
    RabbitmqBinding {
        exchange: String,
        queue: String,
        routing_key: String,
        arguments: String,
    },
    /// An SQS queue (FIFO when its name ends in `.fifo`).
    SqsQueue { queue: String, fifo: bool },
    /// An Azure Storage queue in `account` (the account name, or the endpoint it is reached at).
    AzureQueue { account: String, queue: String },
}

impl Resource {
    /// A durable queue with no arguments, as the connectors declare one (`declare: true`,
    /// `declare_queue`) or expect one to be.
    pub fn rabbitmq_queue(queue: &str) -> Resource {
        Resource::RabbitmqQueue {
            queue: queue.to_owned(),
            durable: true,
            arguments: "{}".into(),
        }
    }

    /// The SQS queue named by `queue`, or by the last path segment of `queue_url`.
    pub fn sqs_queue(queue: Option<&str>, queue_url: Option<&str>) -> Option<Resource> {
        let name =
            queue.or_else(|| queue_url.and_then(|u| u.trim_end_matches('/').rsplit('/').next()))?;
        Some(Resource::SqsQueue {
            queue: name.to_owned(),
            fifo: name.ends_with(".fifo"),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_sqs_queue_is_named_by_its_url_when_no_name_is_given() {
        assert_eq!(
            Resource::sqs_queue(
                None,
                Some("https://sqs.eu-west-1.amazonaws.com/123/orders.fifo")
            ),
            Some(Resource::SqsQueue {
                queue: "orders.fifo".into(),
                fifo: true
            })
        );
        assert_eq!(Resource::sqs_queue(None, None), None);
    }
}
