//! What each plugin instance's `Store` holds: its limits and the host imports' state.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use wasmtime::ResourceLimiter;

use super::bindings::v0_1::sluice::plugin::{counters, log, types};
use sluice_trace as trace;

/// Per-instance host state.
pub struct HostState {
    pub limiter: MemoryCap,
    pub pipeline: Arc<str>,
    pub plugin: Arc<str>,
    /// Message id of the single message being handled, for log lines; `None` for batches.
    pub message_id: Option<String>,
    /// The last `panic: …` line the guest logged, to put in a trap's reason.
    pub last_panic: Option<String>,
    /// When the current call runs past its timeout (checked at every epoch tick).
    pub call_deadline: std::time::Instant,
    pub counters: Arc<Mutex<HashMap<String, u64>>>,
    /// WASI as the pipeline grants it (`wasi.rs`); used only by components that import WASI.
    pub wasi: wasmtime_wasi::WasiCtx,
    pub table: wasmtime::component::ResourceTable,
}

impl wasmtime_wasi::WasiView for HostState {
    fn ctx(&mut self) -> wasmtime_wasi::WasiCtxView<'_> {
        wasmtime_wasi::WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

/// Caps linear memory growth; remembers that the cap was hit so the trap can be classified.
pub struct MemoryCap {
    pub max_bytes: usize,
    pub hit: Option<usize>,
}

impl ResourceLimiter for MemoryCap {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.max_bytes {
            self.hit = Some(desired);
            // An error (not `Ok(false)`) traps right here, with a reason, instead of letting the
            // guest's allocator turn the failure into a less telling abort.
            return Err(wasmtime::Error::msg(format!(
                "memory limit exceeded: the guest asked for {desired} bytes, the limit is {} bytes",
                self.max_bytes
            )));
        }
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= 1_000_000)
    }
}

impl types::Host for HostState {}

impl log::Host for HostState {
    fn log(&mut self, level: log::Level, message: String) {
        if message.starts_with("panic: ") {
            self.last_panic = Some(message.clone());
        }
        let (pipeline, plugin) = (&*self.pipeline, &*self.plugin);
        let id = self.message_id.as_deref().unwrap_or("");
        let level_name = match level {
            log::Level::Trace => "trace",
            log::Level::Debug => "debug",
            log::Level::Info => "info",
            log::Level::Warn => "warn",
            log::Level::Error => "error",
        };
        // With tracing on, the line is also an event on the handler's span.
        let trace_id = trace::handler_event(self.message_id.as_deref(), level_name, &message);
        let trace_id = trace_id.as_deref().unwrap_or("");
        match level {
            log::Level::Trace => {
                tracing::trace!(target: "sluice::handler", pipeline, plugin, message_id = id, trace_id, "{message}")
            }
            log::Level::Debug => {
                tracing::debug!(target: "sluice::handler", pipeline, plugin, message_id = id, trace_id, "{message}")
            }
            log::Level::Info => {
                tracing::info!(target: "sluice::handler", pipeline, plugin, message_id = id, trace_id, "{message}")
            }
            log::Level::Warn => {
                tracing::warn!(target: "sluice::handler", pipeline, plugin, message_id = id, trace_id, "{message}")
            }
            log::Level::Error => {
                tracing::error!(target: "sluice::handler", pipeline, plugin, message_id = id, trace_id, "{message}")
            }
        }
    }
}

impl counters::Host for HostState {
    fn add(&mut self, name: String, delta: u64) {
        let mut counters = self.counters.lock().unwrap_or_else(|e| e.into_inner());
        *counters.entry(name).or_default() += delta;
    }
}
