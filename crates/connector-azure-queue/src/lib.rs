//! `azure_queue`: Azure Queue Storage through the official `azure_storage_queue` SDK.
//!
//! Why this crate: `azure_storage_queue` is the maintained SDK; the older `azure_storage_queues`
//! accepts account keys but is no longer maintained. The official one takes Entra ID tokens or
//! SAS tokens only, so a connection string with an `AccountKey` is turned into a short-lived
//! account SAS here (signed with `azure_core`'s own HMAC, renewed well before it expires); a
//! connection string with a `SharedAccessSignature` is used as it is. Both forms work with
//! Azurite's well-known development connection string. Instead of a connection string,
//! `account_url` with `credential` authenticates with Entra ID through `azure_identity`
//! (managed identity, workload identity, Azure CLI / azd; `credential.rs`).
//!
//! Source: polls `receive_messages` (up to 32 per call, while the window has room; the service has
//! no long polling, so an empty queue is polled every `poll_interval_ms`). Ack → delete with the
//! pop receipt; nack → update the visibility timeout to the retry delay; abandoned → visibility 0.
//! A message dequeued more than `max_dequeue_count` times (the host kept crashing on it) is moved
//! to the poison queue, `<queue>-poison` by default (the Azure Functions convention), and deleted.
//!
//! Sink: one `send_message` per output, concurrently; refuses a message whose encoded text exceeds
//! the service's 64 KiB before sending.
//!
//! Messages are text. `encoding: base64` (default, binary-safe and what Azure Functions reads)
//! or `text` (UTF-8 payloads only). Queue messages have no headers: with `envelope: true` the
//! message is a JSON envelope `{"payload": <base64>, "key": <base64>?, "headers": [[n, v]...]}`
//! so keys and headers (a dead-letter copy's reason, a trace context) survive.

mod config;
mod connection;
mod credential;
mod envelope;
mod sink;
mod source;

use std::sync::Arc;

use sluice_core::FieldError;
use sluice_core::connector::{BuildContext, Resource, Sink, SinkFactory, Source, SourceFactory};

pub use connection::{Access, ConnectionString};
pub use credential::CredentialConfig;

pub use config::*;

/// The service's limit on a message's text, in bytes.
pub const MAX_MESSAGE_BYTES: usize = 64 * 1024;

/// Queue names: 3–63 lowercase letters, digits and single hyphens, starting and ending with a
/// letter or digit.
fn check_queue_name(path: &str, name: &str, errors: &mut Vec<FieldError>) {
    let ok = (3..=63).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.starts_with('-')
        && !name.ends_with('-')
        && !name.contains("--");
    if !ok {
        errors.push(FieldError::new(
            path,
            "is not a valid queue name (3-63 lowercase letters, digits and single hyphens)",
        ));
    }
}

/// Exactly one of `connection_string` and `account_url`; `credential` with `account_url` only.
fn check_access(
    connection_string: Option<&str>,
    account_url: Option<&str>,
    credential: Option<&CredentialConfig>,
    errors: &mut Vec<FieldError>,
) {
    if let Some(s) = connection_string
        && let Err(e) = ConnectionString::parse(s)
    {
        errors.push(FieldError::new("connection_string", e.to_string()));
    }
    if let Some(url) = account_url
        && let Err(e) = connection::parse_account_url(url)
    {
        errors.push(FieldError::new("account_url", e.to_string()));
    }
    match (connection_string, account_url, credential) {
        (Some(_), Some(_), _) => errors.push(FieldError::new(
            "account_url",
            "cannot be combined with connection_string: give one of them",
        )),
        (None, None, _) => errors.push(FieldError::new(
            "connection_string",
            "missing field (or give account_url with credential)",
        )),
        (None, Some(_), None) => errors.push(FieldError::new(
            "credential",
            "missing field: account_url needs managed_identity, workload_identity or developer_tools",
        )),
        (Some(_), None, Some(_)) => errors.push(FieldError::new(
            "credential",
            "goes with account_url; a connection string carries its own authorisation",
        )),
        _ => {}
    }
    if let Some(c) = credential {
        c.validate(errors);
    }
}

impl SourceFactory for AzureQueueSourceConfig {
    fn validate(&self, errors: &mut Vec<FieldError>) {
        check_access(
            self.connection_string.as_deref(),
            self.account_url.as_deref(),
            self.credential.as_ref(),
            errors,
        );
        check_queue_name("queue", &self.queue, errors);
        if let Some(p) = &self.poison_queue {
            check_queue_name("poison_queue", p, errors);
        }
    }

    fn build(&self, ctx: &BuildContext) -> anyhow::Result<Box<dyn Source>> {
        Ok(Box::new(source::AzureQueueSource::new(self.clone(), ctx)?))
    }

    fn resources(&self) -> Vec<Resource> {
        let account = account_of(
            self.connection_string.as_deref(),
            self.account_url.as_deref(),
        );
        // The poison queue the source moves a message to after `max_dequeue_count`, by
        // default `<queue>-poison` (as the source names it).
        let poison = self
            .poison_queue
            .clone()
            .unwrap_or_else(|| format!("{}-poison", self.queue));
        vec![
            Resource::AzureQueue {
                account: account.clone(),
                queue: self.queue.clone(),
            },
            Resource::AzureQueue {
                account,
                queue: poison,
            },
        ]
    }
}

/// The storage account a queue is in, for `sluice plan`: `AccountName` of a connection string
/// (Azurite's for `UseDevelopmentStorage=true`), else the account URL.
fn account_of(connection_string: Option<&str>, account_url: Option<&str>) -> String {
    let parts = || {
        connection_string
            .into_iter()
            .flat_map(|c| c.split(';'))
            .map(str::trim)
    };
    if parts().any(|p| p.eq_ignore_ascii_case("UseDevelopmentStorage=true")) {
        return "devstoreaccount1".into();
    }
    parts()
        .find_map(|part| part.strip_prefix("AccountName="))
        .or(account_url)
        .unwrap_or_default()
        .to_owned()
}

impl SinkFactory for AzureQueueSinkConfig {
    fn validate(&self, errors: &mut Vec<FieldError>) {
        check_access(
            self.connection_string.as_deref(),
            self.account_url.as_deref(),
            self.credential.as_ref(),
            errors,
        );
        check_queue_name("queue", &self.queue, errors);
    }

    fn write_timeout_ms(&self) -> Option<(&'static str, u64)> {
        Some(("request_timeout_ms", self.request_timeout_ms))
    }

    fn resources(&self) -> Vec<Resource> {
        vec![Resource::AzureQueue {
            account: account_of(
                self.connection_string.as_deref(),
                self.account_url.as_deref(),
            ),
            queue: self.queue.clone(),
        }]
    }

    fn build(&self, _ctx: &BuildContext) -> anyhow::Result<Arc<dyn Sink>> {
        Ok(Arc::new(sink::AzureQueueSink::new(self.clone())?))
    }
}
