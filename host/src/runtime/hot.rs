//! A handler that can be replaced while the pipeline runs.
//!
//! The engine holds a [`HotHandler`]; each call loads the current plugin once and uses it for the
//! whole batch, so a call in flight finishes on the version it started with while the next call
//! uses the new one. The swap is one atomic pointer store: compiling, checking and `init` of the
//! new version happen before, off the message path.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use arc_swap::ArcSwap;
use bytestring::ByteString;

use crate::engine::{Outcome, Transform};
use crate::message::Message;
use crate::plugin::WasmHandler;
use crate::telemetry::PluginView;

/// The header naming the plugin version that produced an output or a dead-letter copy.
pub const PLUGIN_HEADER: &str = crate::engine::dead_letter_headers::PLUGIN;

/// One handler of a running pipeline, replaceable.
pub struct HotHandler {
    name: String,
    current: ArcSwap<Versioned>,
    /// Tag outputs and dead-letter copies with [`PLUGIN_HEADER`].
    tag: bool,
    swaps: AtomicU64,
}

/// A loaded version and its label, made once per version.
struct Versioned {
    handler: WasmHandler,
    /// `<name>@<version> sha256:<hash>`, or `<name> sha256:<hash>` without a declared version.
    label: ByteString,
}

impl Versioned {
    fn new(name: &str, handler: WasmHandler) -> Self {
        let label = match handler.version() {
            Some(v) => format!("{name}@{v} sha256:{}", handler.hash()),
            None => format!("{name} sha256:{}", handler.hash()),
        };
        Versioned {
            handler,
            label: label.into(),
        }
    }
}

impl HotHandler {
    pub fn new(name: String, handler: WasmHandler, tag: bool) -> Self {
        let current = ArcSwap::from_pointee(Versioned::new(&name, handler));
        HotHandler {
            name,
            current,
            tag,
            swaps: AtomicU64::new(0),
        }
    }

    /// Put `handler` in place for every call that starts from now on.
    pub fn swap(&self, handler: WasmHandler) {
        let old = self
            .current
            .swap(Arc::new(Versioned::new(&self.name, handler)));
        self.swaps.fetch_add(1, Ordering::Relaxed);
        // Tearing down the old version's instances (their stores and memories) takes a few
        // milliseconds: never on the caller's thread, which may be one the pipeline runs on.
        // Calls still running on it keep their own reference and finish first.
        let retire = std::thread::Builder::new()
            .name("sluice-retire".into())
            .spawn(move || drop(old));
        if let Err(err) = retire {
            tracing::warn!(error = %err, "cannot start a thread to retire the old plugin version");
        }
    }

    /// The handler's name in its pipeline.
    pub fn handler_name(&self) -> &str {
        &self.name
    }

    /// How many times a new version was swapped in.
    pub fn swaps(&self) -> u64 {
        self.swaps.load(Ordering::Relaxed)
    }

    /// SHA-256 of the version in place.
    pub fn hash(&self) -> String {
        self.current.load().handler.hash().to_owned()
    }

    /// The declared version of the version in place.
    pub fn version(&self) -> Option<String> {
        self.current.load().handler.version().map(str::to_owned)
    }

    /// The counters of the version in place (a new version starts from zero).
    pub fn counters(&self) -> std::collections::HashMap<String, u64> {
        self.current.load().handler.counters()
    }
}

impl PluginView for HotHandler {
    fn name(&self) -> &str {
        &self.name
    }

    fn sha256(&self) -> String {
        self.hash()
    }

    fn version(&self) -> Option<String> {
        HotHandler::version(self)
    }

    fn counters(&self) -> std::collections::HashMap<String, u64> {
        HotHandler::counters(self)
    }

    fn guard_counts(&self) -> crate::plugin::GuardCounts {
        self.current.load().handler.guard_counts()
    }

    fn swaps(&self) -> u64 {
        HotHandler::swaps(self)
    }
}

#[async_trait::async_trait]
impl Transform for HotHandler {
    fn name(&self) -> &str {
        &self.name
    }

    /// The current version's. A swap between versions of different contracts landing while a
    /// batch runs can give that one batch the other version's answer: at worst a header a 0.2
    /// version turned from null (or bytes) into text gets its source form back, or one a 0.1
    /// version returned unchanged as "" stays text.
    fn sees_header_types(&self) -> bool {
        self.current.load().handler.sees_header_types()
    }

    async fn process(&self, batch: &[Message]) -> Vec<Outcome> {
        // One version for the whole call, even if a swap lands meanwhile.
        let version = self.current.load_full();
        let mut outcomes = version.handler.process(batch).await;
        if self.tag {
            for outcome in &mut outcomes {
                match outcome {
                    Outcome::Outputs(outputs) => {
                        for out in outputs {
                            tag(&mut out.headers, &self.name, &version.label);
                        }
                    }
                    Outcome::Failed(failure) => failure.plugin = Some(version.label.clone()),
                }
            }
        }
        outcomes
    }
}

/// Set this handler's label, replacing one it copied from its input (a message that went through
/// the same handler before), and keeping other handlers' labels.
fn tag(headers: &mut crate::message::Headers, name: &str, label: &ByteString) {
    headers.retain(|(k, v)| {
        k != PLUGIN_HEADER
            || !(v.strip_prefix(name))
                .is_some_and(|rest| rest.starts_with('@') || rest.starts_with(' '))
    });
    headers.push((ByteString::from_static(PLUGIN_HEADER), label.clone().into()));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_label_replaces_only_its_own_handlers_earlier_label() {
        let mut headers = vec![
            (ByteString::from(PLUGIN_HEADER), "enrich sha256:old".into()),
            (
                ByteString::from(PLUGIN_HEADER),
                "enricher sha256:other".into(),
            ),
            (ByteString::from("keep"), "me".into()),
        ];
        tag(
            &mut headers,
            "enrich",
            &ByteString::from("enrich@2 sha256:new"),
        );
        let values: Vec<&str> = headers.iter().map(|(_, v)| &**v).collect();
        assert_eq!(
            values,
            ["enricher sha256:other", "me", "enrich@2 sha256:new"]
        );
    }
}
