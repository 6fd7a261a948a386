//! `rabbitmq`: AMQP 0-9-1 through `lapin`, as a source (manual acks, prefetch = the pipeline's
//! window) and as a sink (publisher confirms on every publish, `mandatory` so that an unroutable
//! message is an error, not a silent drop).
//!
//! Mapping: the payload is the message body; the key is the routing key; headers are the AMQP
//! `headers` table (values shown as strings; AMQP tables are maps, so a repeated header name keeps
//! its last value). Settlement: ack → `basic.ack`; nack → `basic.nack` with requeue after the
//! delay; abandoned (shutdown deadline) → `basic.nack` with requeue, so it is redelivered at once
//! rather than when the connection closes.

mod ack_window;
mod config;
mod headers;
mod in_order;
mod sink;
mod source;
mod topology;

use std::sync::Arc;

pub use self::in_order::in_order;
pub use self::topology::{TlsSettings, Topology};
use sluice_core::FieldError;
use sluice_core::connector::{BuildContext, Resource, Sink, SinkFactory, Source, SourceFactory};

pub use config::*;

/// How long closing a connection, or handing one acknowledgement to lapin, may take. Both wait
/// for a broker that may be gone; neither may hold up shutdown or the other acknowledgements.
const BROKER_REPLY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// How long connecting (connection, channel, declarations, consumer) may take before it counts as
/// a failure and is retried with backoff. A broker that is still booting can accept the TCP
/// connection and then say nothing.
const CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// `connect` within [`CONNECT_TIMEOUT`]; `who` names the connector in the error.
async fn within_connect_timeout<T>(
    who: &str,
    connect: impl std::future::Future<Output = anyhow::Result<T>>,
) -> anyhow::Result<T> {
    sluice_core::deadline::within(CONNECT_TIMEOUT, connect, || {
        anyhow::anyhow!(
            "{who}: connecting took longer than {} s",
            CONNECT_TIMEOUT.as_secs()
        )
    })
    .await
}

/// Close `connection` politely, within [`BROKER_REPLY_TIMEOUT`]; `who` names the connector.
async fn close_connection(connection: &lapin::Connection, who: &str) -> anyhow::Result<()> {
    use anyhow::Context as _;
    let close = async {
        let closed = connection.close(200, "sluice closing".into()).await;
        closed.with_context(|| format!("{who}: closing"))
    };
    // Past the limit the connection is dropped, which closes its socket; the broker requeues
    // what it holds.
    sluice_core::deadline::within(BROKER_REPLY_TIMEOUT, close, || {
        anyhow::anyhow!(
            "{who}: the broker did not answer connection.close within {} s",
            BROKER_REPLY_TIMEOUT.as_secs()
        )
    })
    .await
}

pub(crate) fn yes() -> bool {
    true
}

/// Declare `queue` as a durable queue (a no-op if it exists with the same settings); `who` names
/// the connector in the error.
async fn declare_durable(channel: &lapin::Channel, queue: &str, who: &str) -> anyhow::Result<()> {
    use anyhow::Context as _;
    let options = lapin::options::QueueDeclareOptions {
        durable: true,
        ..Default::default()
    };
    channel
        .queue_declare(queue.into(), options, lapin::types::FieldTable::default())
        .await
        .with_context(|| format!("{who}: cannot declare queue `{queue}`"))?;
    Ok(())
}

fn check_url(url: &str, errors: &mut Vec<FieldError>) {
    if url.parse::<lapin::uri::AMQPUri>().is_err() {
        errors.push(FieldError::new(
            "url",
            "is not an AMQP URI (amqp://user:pass@host:port/vhost)",
        ));
    }
}

impl SourceFactory for RabbitMqSourceConfig {
    fn validate(&self, errors: &mut Vec<FieldError>) {
        check_url(&self.url, errors);
        if self.queue.is_empty() {
            errors.push(FieldError::new("queue", "must not be empty"));
        }
        self.topology.validate(errors);
        self.tls.validate(&self.url, errors);
    }

    fn build(&self, ctx: &BuildContext) -> anyhow::Result<Box<dyn Source>> {
        let prefetch = self
            .prefetch
            .unwrap_or_else(|| ctx.max_in_flight.min(u16::MAX as usize) as u16);
        Ok(Box::new(source::RabbitMqSource::new(
            self.clone(),
            prefetch,
        )))
    }

    fn resources(&self) -> Vec<Resource> {
        let mut needs = self.topology.resources();
        if !declares_queue(&needs, &self.queue) {
            needs.push(Resource::rabbitmq_queue(&self.queue));
        }
        needs.sort();
        needs.dedup();
        needs
    }
}

/// Whether `needs` (a topology's) already declares `queue`, with its own settings.
fn declares_queue(needs: &[Resource], queue: &str) -> bool {
    needs
        .iter()
        .any(|r| matches!(r, Resource::RabbitmqQueue { queue: q, .. } if q == queue))
}

impl SinkFactory for RabbitMqSinkConfig {
    fn validate(&self, errors: &mut Vec<FieldError>) {
        check_url(&self.url, errors);
        if self.routing_key.as_deref() == Some("") && self.exchange.is_empty() {
            errors.push(FieldError::new(
                "routing_key",
                "must name a queue when publishing to the default exchange",
            ));
        }
        self.topology.validate(errors);
        self.tls.validate(&self.url, errors);
    }

    fn write_timeout_ms(&self) -> Option<(&'static str, u64)> {
        Some(("confirm_timeout_ms", self.confirm_timeout_ms))
    }

    fn build(&self, _ctx: &BuildContext) -> anyhow::Result<Arc<dyn Sink>> {
        Ok(Arc::new(sink::RabbitMqSink::new(self.clone())))
    }

    fn resources(&self) -> Vec<Resource> {
        let mut needs = self.topology.resources();
        if self.exchange.is_empty() {
            // The default exchange routes by queue name: the routing key names the queue. (With
            // no routing key, each output's key does: the queues are not in the file.)
            if let Some(queue) = &self.routing_key
                && !declares_queue(&needs, queue)
            {
                needs.push(Resource::rabbitmq_queue(queue));
            }
        } else if !self.exchange.starts_with("amq.")
            && !needs.iter().any(
                |r| matches!(r, Resource::RabbitmqExchange { exchange, .. } if *exchange == self.exchange),
            )
        {
            // Not declared here, so its type and settings are not in the file (`amq.*`
            // exchanges are the broker's own).
            needs.push(Resource::RabbitmqExchange {
                exchange: self.exchange.clone(),
                exchange_type: None,
                durable: true,
                arguments: "{}".into(),
            });
        }
        if let Some(queue) = &self.declare_queue
            && !declares_queue(&needs, queue)
        {
            needs.push(Resource::rabbitmq_queue(queue));
        }
        needs.sort();
        needs.dedup();
        needs
    }
}
