//! What each plugin instance's `Store` holds: its limits and the host imports' state.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use super::bindings::v0_1::sluice::plugin::{counters, log, types};
use super::bindings::v0_2::sluice::plugin as v0_2;
use crate::guard::{self, Counters, GuardStats, InstanceBudget, LogRate};
use sluice_trace as trace;

/// Per-instance host state.
pub struct HostState {
    pub limiter: InstanceBudget,
    pub pipeline: Arc<str>,
    pub plugin: Arc<str>,
    /// Message id of the single message being handled, for log lines; `None` for batches.
    pub message_id: Option<String>,
    /// The last `panic: …` line the guest logged, to put in a trap's reason.
    pub last_panic: Option<String>,
    /// The time the current call has used of its `timeout_ms` (checked at every epoch tick).
    pub clock: Arc<crate::clock::CallClock>,
    /// What the handler's instances share: counters, the log rate, what the guards turned away.
    pub shared: Arc<Shared>,
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

/// State all instances of one handler share.
pub struct Shared {
    pub counters: Counters,
    pub log_rate: LogRate,
    pub max_log_bytes: usize,
    pub stats: GuardStats,
}

impl types::Host for HostState {}

impl log::Host for HostState {
    fn log(&mut self, level: log::Level, message: String) {
        let shared = &*self.shared;
        if message.starts_with("panic: ") {
            // Kept even when the line is not written: it explains the trap that follows.
            self.last_panic = Some(guard::log_text(&message, shared.max_log_bytes));
        }
        // Refused before any work on the text: a flood costs the host a counter increment.
        if !shared.log_rate.admit() {
            shared
                .stats
                .log_lines_dropped
                .fetch_add(1, Ordering::Relaxed);
            return;
        }
        let message = guard::log_text(&message, shared.max_log_bytes);
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
        if !self.shared.counters.add(&name, delta) {
            let refused = &self.shared.stats.counters_refused;
            if refused.fetch_add(1, Ordering::Relaxed) == 0 {
                tracing::warn!(target: "sluice::handler", pipeline = &*self.pipeline, plugin = &*self.plugin,
                    "counter refused (a name over {} bytes, or more names than `limits.max_counters`); sluice_handler_counters_refused_total counts every refusal",
                    guard::MAX_COUNTER_NAME);
            }
        }
    }
}

// Contract 0.2's imports are 0.1's under new names.

impl v0_2::types::Host for HostState {}

impl v0_2::log::Host for HostState {
    fn log(&mut self, level: v0_2::log::Level, message: String) {
        let level = match level {
            v0_2::log::Level::Trace => log::Level::Trace,
            v0_2::log::Level::Debug => log::Level::Debug,
            v0_2::log::Level::Info => log::Level::Info,
            v0_2::log::Level::Warn => log::Level::Warn,
            v0_2::log::Level::Error => log::Level::Error,
        };
        log::Host::log(self, level, message);
    }
}

impl v0_2::counters::Host for HostState {
    fn add(&mut self, name: String, delta: u64) {
        counters::Host::add(self, name, delta);
    }
}
