//! `sluice plan`: what pipelines expect to find on their brokers (topics, consumer groups,
//! queues, exchanges, bindings, dead-letter queues), read from the pipeline files alone, without
//! connecting. Printed as a table, as JSON, or as the input variables of a
//! `deploy/terraform/<family>` module, so that what a pipeline needs is declared as code.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use crate::config::LoadedPipeline;
use crate::connector::Resource;
use serde::Serialize;
use serde_json::{Value, json};

/// An SQS dead-letter queue's redrive: after this many receives, SQS moves a message from the
/// source queue to the pipeline's dead-letter queue itself. Sluice dead-letters what its
/// handlers and sinks refuse; this catches what never reaches a verdict (a message that brings
/// down every replica that receives it).
pub const SQS_MAX_RECEIVE_COUNT: u32 = 10;

/// Where in a pipeline a resource is used.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Source,
    Sink(String),
    DeadLetter,
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Role::Source => f.write_str("source"),
            Role::Sink(name) => write!(f, "sinks.{name}"),
            Role::DeadLetter => f.write_str("dead_letter"),
        }
    }
}

/// One resource and where the pipeline uses it.
#[derive(Debug, Clone, Serialize)]
pub struct Need {
    pub role: Role,
    #[serde(flatten)]
    pub resource: Resource,
}

/// What one pipeline file needs.
#[derive(Debug, Serialize)]
pub struct PipelinePlan {
    pub pipeline: String,
    pub file: PathBuf,
    pub needs: Vec<Need>,
}

impl PipelinePlan {
    pub fn of(p: &LoadedPipeline) -> PipelinePlan {
        let cfg = &p.config;
        let mut needs = Vec::new();
        let mut add = |role: Role, resources: Vec<Resource>| {
            needs.extend(resources.into_iter().map(|resource| Need {
                role: role.clone(),
                resource,
            }));
        };
        add(Role::Source, cfg.source.factory().resources());
        for (name, sink) in &cfg.sinks {
            add(Role::Sink(name.clone()), sink.factory().resources());
        }
        add(Role::DeadLetter, cfg.dead_letter.factory().resources());
        PipelinePlan {
            pipeline: cfg.name.clone(),
            file: p.file.clone(),
            needs,
        }
    }

    /// The pipeline's SQS source queue and SQS dead-letter queue, when it has both.
    fn sqs_redrive(&self) -> Option<(&str, &str)> {
        let queue_of = |role: &Role| {
            self.needs.iter().find_map(|n| match &n.resource {
                Resource::SqsQueue { queue, .. } if n.role == *role => Some(queue.as_str()),
                _ => None,
            })
        };
        Some((queue_of(&Role::Source)?, queue_of(&Role::DeadLetter)?))
    }
}

/// The broker families `deploy/terraform/` has a module for.
pub const FAMILIES: &[&str] = &["kafka", "rabbitmq", "sqs", "azure"];

/// The input variables of `deploy/terraform/<family>` that declare what `plans` need, as a
/// `terraform.tfvars.json` object; `None` for a family without a module.
pub fn terraform_vars(plans: &[PipelinePlan], family: &str) -> Option<Value> {
    let resources = || plans.iter().flat_map(|p| &p.needs).map(|n| &n.resource);
    let vars = match family {
        "kafka" => {
            let topics: BTreeSet<&str> = resources()
                .filter_map(|r| match r {
                    Resource::KafkaTopic { topic, .. } => Some(topic.as_str()),
                    _ => None,
                })
                .collect();
            let topics: BTreeMap<&str, Value> =
                topics.into_iter().map(|t| (t, json!({}))).collect();
            json!({ "topics": topics })
        }
        "rabbitmq" => {
            // Settings a topology declares win over a plain use of the same name elsewhere.
            let mut queues: BTreeMap<&str, Value> = BTreeMap::new();
            let mut exchanges: BTreeMap<&str, Value> = BTreeMap::new();
            let mut bindings = BTreeSet::new();
            for r in resources() {
                match r {
                    Resource::RabbitmqQueue {
                        queue,
                        durable,
                        arguments,
                    } => {
                        let settings = json!({ "durable": durable, "arguments_json": arguments });
                        let plain = *durable && arguments == "{}";
                        if !plain || !queues.contains_key(queue.as_str()) {
                            queues.insert(queue, settings);
                        }
                    }
                    Resource::RabbitmqExchange {
                        exchange,
                        exchange_type: Some(kind),
                        durable,
                        arguments,
                    } => {
                        exchanges.insert(
                            exchange,
                            json!({ "type": kind, "durable": durable, "arguments_json": arguments }),
                        );
                    }
                    // Its type is not in the files: `unknown_exchanges` names it for the user.
                    Resource::RabbitmqExchange { .. } => {}
                    Resource::RabbitmqBinding {
                        exchange,
                        queue,
                        routing_key,
                        arguments,
                    } => {
                        bindings.insert((
                            exchange.as_str(),
                            queue.as_str(),
                            routing_key.as_str(),
                            arguments.as_str(),
                        ));
                    }
                    _ => {}
                }
            }
            let bindings: Vec<Value> = bindings
                .into_iter()
                .map(|(exchange, queue, routing_key, arguments)| {
                    json!({ "exchange": exchange, "queue": queue, "routing_key": routing_key,
                            "arguments_json": arguments })
                })
                .collect();
            json!({ "queues": queues, "exchanges": exchanges, "bindings": bindings })
        }
        "sqs" => {
            let mut queues: BTreeMap<&str, Value> = BTreeMap::new();
            for r in resources() {
                if let Resource::SqsQueue { queue, fifo } = r {
                    queues.insert(queue, json!({ "fifo": fifo }));
                }
            }
            for (queue, dead_letter) in plans.iter().filter_map(PipelinePlan::sqs_redrive) {
                if let Some(Value::Object(settings)) = queues.get_mut(queue) {
                    settings.insert("dead_letter_queue".into(), dead_letter.into());
                    settings.insert("max_receive_count".into(), SQS_MAX_RECEIVE_COUNT.into());
                }
            }
            json!({ "queues": queues })
        }
        "azure" => {
            let queues: BTreeSet<&str> = resources()
                .filter_map(|r| match r {
                    Resource::AzureQueue { queue, .. } => Some(queue.as_str()),
                    _ => None,
                })
                .collect();
            json!({ "queues": queues })
        }
        _ => return None,
    };
    Some(vars)
}

/// RabbitMQ exchanges the pipelines publish to without declaring them anywhere: their type is
/// not in the files, so `terraform_vars` leaves them out and `sluice plan` says so.
pub fn unknown_exchanges(plans: &[PipelinePlan]) -> BTreeSet<&str> {
    let needs = || plans.iter().flat_map(|p| &p.needs).map(|n| &n.resource);
    let declared: BTreeSet<&str> = needs()
        .filter_map(|r| match r {
            Resource::RabbitmqExchange {
                exchange,
                exchange_type: Some(_),
                ..
            } => Some(exchange.as_str()),
            _ => None,
        })
        .collect();
    needs()
        .filter_map(|r| match r {
            Resource::RabbitmqExchange {
                exchange,
                exchange_type: None,
                ..
            } if !declared.contains(exchange.as_str()) => Some(exchange.as_str()),
            _ => None,
        })
        .collect()
}

/// The table `sluice plan` prints: one line per resource, grouped by pipeline.
pub fn table(plans: &[PipelinePlan]) -> String {
    let mut out = String::new();
    for p in plans {
        out.push_str(&format!("{} ({})\n", p.pipeline, p.file.display()));
        if p.needs.is_empty() {
            out.push_str("  nothing on a broker\n");
        }
        for n in &p.needs {
            out.push_str(&format!(
                "  {:<16} {}\n",
                n.role.to_string(),
                describe(&n.resource)
            ));
        }
        if let Some((queue, dead_letter)) = p.sqs_redrive() {
            out.push_str(&format!(
                "  {:<16} sqs redrive {queue} -> {dead_letter} after {SQS_MAX_RECEIVE_COUNT} receives\n",
                "dead_letter"
            ));
        }
    }
    out
}

fn describe(r: &Resource) -> String {
    match r {
        Resource::KafkaTopic { brokers, topic } => format!("kafka topic {topic} ({brokers})"),
        Resource::KafkaConsumerGroup {
            brokers,
            group,
            topics,
        } => format!(
            "kafka consumer group {group} on {} ({brokers})",
            topics.join(", ")
        ),
        Resource::RabbitmqQueue {
            queue,
            durable,
            arguments,
        } => format!(
            "rabbitmq queue {queue}{}{}",
            if *durable { "" } else { " (not durable)" },
            if arguments == "{}" {
                String::new()
            } else {
                format!(" {arguments}")
            }
        ),
        Resource::RabbitmqExchange {
            exchange,
            exchange_type,
            ..
        } => match exchange_type {
            Some(kind) => format!("rabbitmq exchange {exchange} ({kind})"),
            None => format!(
                "rabbitmq exchange {exchange} (not declared in the file: its type is not known)"
            ),
        },
        Resource::RabbitmqBinding {
            exchange,
            queue,
            routing_key,
            ..
        } => format!("rabbitmq binding {exchange} -> {queue} (routing key {routing_key:?})"),
        Resource::SqsQueue { queue, fifo } => {
            format!("sqs queue {queue}{}", if *fifo { " (FIFO)" } else { "" })
        }
        Resource::AzureQueue { account, queue } => format!("azure queue {queue} ({account})"),
    }
}
