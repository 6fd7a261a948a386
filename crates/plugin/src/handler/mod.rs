//! A loaded plugin bound to a pipeline: a pool of warm instances, the calls into them (packed or
//! canonical), the limits checked on what comes back, and traps turned into typed failures.

mod failure;
mod pool;

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context as _;
use async_trait::async_trait;
use wasmtime::Store;

use super::bindings::Exports;
use super::guard::{Counters, GuardCounts, GuardStats, LogRate};
use super::state::{HostState, Shared};
use super::{Plugin, convert, packed, wasi};
use crate::clock::timed;
use crate::settings::{BatchAbi, Grant};
use sluice_core::message::Message;
use sluice_core::transform::{ErrorClass, Failure, Outcome, Transform};

use failure::cannot_instantiate;

impl Plugin {
    /// A handler for `pipeline`, named `name`, initialised with `config`, taking batches as `abi`
    /// says. One instance is made
    /// (and `init` run) now, so a plugin that refuses its configuration fails here.
    pub fn into_handler(
        self,
        pipeline: &str,
        name: &str,
        config: Vec<(String, String)>,
        abi: BatchAbi,
    ) -> anyhow::Result<WasmHandler> {
        self.into_handler_with(pipeline, name, config, abi, &[])
    }

    /// [`Plugin::into_handler`] with the WASI capabilities its pipeline grants. Refused, with
    /// every missing grant named, when the component imports WASI interfaces not granted.
    pub fn into_handler_with(
        self,
        pipeline: &str,
        name: &str,
        config: Vec<(String, String)>,
        abi: BatchAbi,
        grants: &[Grant],
    ) -> anyhow::Result<WasmHandler> {
        let missing: Vec<String> = self
            .wasi_imports
            .iter()
            .filter_map(|import| match wasi::grant_for(import) {
                Ok(Some(grant)) if !grants.contains(&grant) => {
                    Some(format!("{import} (needs `{}`)", grant.as_str()))
                }
                _ => None,
            })
            .collect();
        if !missing.is_empty() {
            let mut needed: Vec<&str> = self
                .wasi_imports
                .iter()
                .filter_map(|i| wasi::grant_for(i).ok().flatten())
                .map(Grant::as_str)
                .collect();
            needed.sort_unstable();
            needed.dedup();
            anyhow::bail!(
                "handler `{name}` imports WASI interfaces its pipeline does not grant: {}; to allow them, set `grants: [{}]` on the handler",
                missing.join(", "),
                needed.join(", ")
            );
        }
        let shared = Arc::new(Shared {
            counters: Counters::new(self.limits.max_counters as usize),
            log_rate: LogRate::new(self.limits.log_lines_per_second),
            max_log_bytes: self.limits.max_log_bytes as usize,
            stats: GuardStats::default(),
        });
        let handler = HandlerCore {
            grants: grants.to_vec(),
            packed: abi == BatchAbi::Auto && self.packed.is_some(),
            name: name.to_owned(),
            pipeline: pipeline.into(),
            plugin_name: name.into(),
            config,
            timeout: Duration::from_millis(self.limits.timeout_ms),
            isolation_slots: Arc::new(tokio::sync::Semaphore::new(parallel_calls(&self.limits))),
            plugin: self,
            pool: Mutex::new(Vec::new()),
            shared,
        };
        let first = handler
            .instantiate_now()
            .with_context(|| format!("handler `{name}`"))?;
        handler
            .pool
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(first);
        Ok(WasmHandler {
            core: Arc::new(handler),
        })
    }
}

/// A live instance and its store.
struct Instance {
    store: Store<HostState>,
    bindings: Exports,
    packed: Option<PackedFunc>,
}

/// A plugin bound to one pipeline: a pool of warm instances, reused across calls.
pub struct WasmHandler {
    /// Shared with the tasks that isolate a failed batch's culprits side by side.
    core: Arc<HandlerCore>,
}

struct HandlerCore {
    name: String,
    pipeline: Arc<str>,
    plugin_name: Arc<str>,
    config: Vec<(String, String)>,
    /// `limits.timeout_ms`: how long one call (or instantiation with `init`) may run.
    timeout: Duration,
    /// Batches go through `handle-packed` (the component has it and the pipeline allows it).
    packed: bool,
    plugin: Plugin,
    pool: Mutex<Vec<Instance>>,
    /// `limits.instances` permits, one per isolation call under way, across every batch of the
    /// handler: however many batches fail at once, their re-runs hold at most that many
    /// instances besides the pipeline's own calls.
    isolation_slots: Arc<tokio::sync::Semaphore>,
    /// Counters, log rate and guard statistics, shared by every instance.
    shared: Arc<Shared>,
    /// The WASI capabilities each instance gets.
    grants: Vec<Grant>,
}

impl WasmHandler {
    /// The plugin's content hash.
    pub fn hash(&self) -> &str {
        &self.core.plugin.hash
    }

    /// The version the component declares, if any.
    pub fn version(&self) -> Option<&str> {
        self.core.plugin.version.as_deref()
    }

    /// Counters the handler added through `sluice:plugin/counters`.
    pub fn counters(&self) -> HashMap<String, u64> {
        self.core.shared.counters.snapshot()
    }

    /// What the guards turned away (log lines over the rate, counters over the cap) and how
    /// many batches had to be isolated.
    pub fn guard_counts(&self) -> GuardCounts {
        self.core.shared.stats.snapshot()
    }

    /// Make sure `n` instances are warm (instantiated, `init` run), so that the first `n`
    /// concurrent calls of a freshly loaded version do not pay for instantiation: a hot swap
    /// prepares the new version this way before it goes in.
    pub fn prewarm(&self, n: usize) -> anyhow::Result<()> {
        self.core.prewarm(n)
    }
}

impl HandlerCore {
    /// Start the clock of a call: it may take `timeout` of its own time (`clock.rs`), yielding
    /// at every tick meanwhile.
    fn arm(&self, store: &mut Store<HostState>) {
        store.data().clock.arm(self.timeout);
        store.set_epoch_deadline(1);
    }

    /// Arm the call's deadline and size what it may copy back (wasmtime's "hostcall fuel",
    /// counted in the host's bytes): `n` messages' worth of results within their limits, but
    /// never more than twice the instance's memory budget. A result of payloads takes about its
    /// size in guest memory once copied (one of tiny headers up to three times), so a large batch
    /// of good messages is not refused for its size as wasmtime's default of 128 MiB a call
    /// would; and a guest that points many outputs at the same bytes, to be copied over and
    /// over, makes the host hold about `2 × memory_mb` for the call (wasmtime's count; more in
    /// allocator overhead when the copies are tiny strings) before the call fails.
    fn prepare(&self, inst: &mut Instance, n: usize, single_id: Option<&str>) {
        self.arm(&mut inst.store);
        let limits = &self.plugin.limits;
        let memory =
            usize::try_from(limits.memory_mb.saturating_mul(1024 * 1024)).unwrap_or(usize::MAX);
        let budget = limits
            .result_budget()
            .saturating_mul(n.max(1))
            .min(memory.saturating_mul(2));
        inst.store.set_hostcall_fuel(budget);
        let state = inst.store.data_mut();
        state.message_id = single_id.map(str::to_owned);
        state.last_panic = None;
    }

    /// Through the canonical ABI: `handle` for one message, `handle-batch` for more, in the
    /// instance's contract version. The outcomes are not yet checked against the output limits.
    async fn call(&self, inst: &mut Instance, msgs: &[Message]) -> wasmtime::Result<Vec<Outcome>> {
        self.prepare(
            inst,
            msgs.len(),
            (msgs.len() == 1).then(|| msgs[0].id.as_str()),
        );
        let clock = inst.store.data().clock.clone();
        // The same calls for each version, on its own generated types.
        macro_rules! call {
            ($bindings:expr, $convert:ident) => {{
                let exports = $bindings.sluice_plugin_message_handler();
                let msgs: Vec<_> = msgs.iter().map(convert::$convert::to_wit).collect();
                let results = if let [one] = &msgs[..] {
                    vec![timed(&clock, exports.call_handle(&mut inst.store, one)).await?]
                } else {
                    timed(&clock, exports.call_handle_batch(&mut inst.store, &msgs)).await?
                };
                let limits = &self.plugin.limits;
                results
                    .into_iter()
                    .map(|r| convert::$convert::outcome(r, limits))
                    .collect()
            }};
        }
        Ok(match &inst.bindings {
            Exports::V0_1(bindings) => call!(bindings, v0_1),
            Exports::V0_2(bindings) => call!(bindings, v0_2),
        })
    }

    /// Through `handle-packed`: one buffer in, one buffer out (`docs/packed-batch.md`).
    async fn call_packed(
        &self,
        inst: &mut Instance,
        func: PackedFunc,
        batch: &[Message],
    ) -> wasmtime::Result<Vec<u8>> {
        self.prepare(inst, batch.len(), None);
        let encoded = packed::encode_batch(batch, inst.bindings.contract());
        let clock = inst.store.data().clock.clone();
        let typed = func.typed::<(&[u8],), (Vec<u8>,)>(&inst.store)?;
        let (results,) = timed(
            &clock,
            typed.call_async(&mut inst.store, (encoded.as_slice(),)),
        )
        .await?;
        Ok(results)
    }

    /// One message on its own, used to find the culprit after a batch trapped.
    async fn process_one(&self, msg: &Message) -> Outcome {
        let mut inst = match self.take_instance().await {
            Ok(i) => i,
            Err(e) => return Outcome::Failed(cannot_instantiate(&e)),
        };
        match self.call(&mut inst, std::slice::from_ref(msg)).await {
            Ok(mut results) => {
                self.give_back(inst);
                let outcome = results.pop().unwrap_or_else(|| {
                    Outcome::Failed(Failure::new(ErrorClass::Fatal, "no result"))
                });
                self.within_limits(outcome)
            }
            Err(err) => Outcome::Failed(self.describe_trap(&err, &inst.store)),
        }
    }

    /// The messages of a batch whose call failed as a whole (a trap, a timeout, a wrong number
    /// of results, a malformed or over-limit packed result), each run on its own so that only a culprit fails.
    ///
    /// Up to `limits.instances` run at once (across every batch of the handler that is being
    /// isolated), each in a task of its own (so on threads of their own where the runtime has
    /// them free), in instances of their own; each call's timeout
    /// counts only its own time (`clock.rs`), so calls sharing a thread do not make one another
    /// time out. Worst case for one batch: `k` culprits that loop hold it for
    /// `(1 + ⌈k / instances⌉) × timeout_ms` when the runtime has `instances` threads free (the
    /// batch call, then the culprits side by side), and `(1 + k) × timeout_ms` on one thread.
    async fn isolate(self: &Arc<Self>, msgs: Vec<Message>, why: &str) -> Vec<Outcome> {
        self.shared
            .stats
            .batches_isolated
            .fetch_add(1, Ordering::Relaxed);
        tracing::warn!(
            target: "sluice::handler",
            pipeline = &*self.pipeline,
            plugin = &*self.plugin_name,
            messages = msgs.len(),
            "batch call failed ({why}); running its messages one per call to find the culprit"
        );
        let side_by_side = self.parallel_calls().min(msgs.len());
        if side_by_side <= 1 || tokio::runtime::Handle::try_current().is_err() {
            let mut outcomes = Vec::with_capacity(msgs.len());
            for m in &msgs {
                outcomes.push(self.process_one(m).await);
            }
            return outcomes;
        }
        // Workers take the next message until none is left; dropping the set (the batch's task
        // cancelled) aborts them.
        let msgs = Arc::new(msgs);
        let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let mut workers = tokio::task::JoinSet::new();
        for _ in 0..side_by_side {
            let (core, msgs, next) = (self.clone(), msgs.clone(), next.clone());
            workers.spawn(async move {
                let mut done = Vec::new();
                loop {
                    // The semaphore is never closed.
                    let Ok(_slot) = core.isolation_slots.clone().acquire_owned().await else {
                        break done;
                    };
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(m) = msgs.get(i) else { break done };
                    done.push((i, core.process_one(m).await));
                }
            });
        }
        let mut outcomes: Vec<Option<Outcome>> = vec![None; msgs.len()];
        while let Some(joined) = workers.join_next().await {
            match joined {
                Ok(done) => {
                    for (i, outcome) in done {
                        outcomes[i] = Some(outcome);
                    }
                }
                // A panic in the host's own code: the same as if it had happened here.
                Err(err) if err.is_panic() => std::panic::resume_unwind(err.into_panic()),
                Err(err) => {
                    return vec![
                        Outcome::Failed(cannot_instantiate(&anyhow::anyhow!(err)));
                        msgs.len()
                    ];
                }
            }
        }
        outcomes
            .into_iter()
            .map(|o| {
                o.unwrap_or_else(|| {
                    Outcome::Failed(cannot_instantiate(&anyhow::anyhow!("no result")))
                })
            })
            .collect()
    }

    /// `limits.instances`, or the number of CPUs: how many instances the handler keeps warm.
    fn parallel_calls(&self) -> usize {
        parallel_calls(&self.plugin.limits)
    }
}

fn parallel_calls(limits: &crate::settings::Limits) -> usize {
    limits
        .instances
        .unwrap_or_else(|| {
            std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get)
        })
        .max(1)
}

/// `handle-packed`, typed at each call: its parameter borrows the encoded batch.
type PackedFunc = wasmtime::component::Func;

#[async_trait]
impl Transform for WasmHandler {
    fn name(&self) -> &str {
        &self.core.name
    }

    async fn process(&self, batch: &[Message]) -> Vec<Outcome> {
        self.core.process(batch).await
    }

    fn sees_header_types(&self) -> bool {
        self.core.plugin.contract == crate::bindings::Contract::V0_2
    }
}

impl HandlerCore {
    async fn process(self: &Arc<Self>, batch: &[Message]) -> Vec<Outcome> {
        let n = batch.len();
        let mut inst = match self.take_instance().await {
            Ok(i) => i,
            Err(e) => return vec![Outcome::Failed(cannot_instantiate(&e)); n],
        };
        if let Some(func) = inst.packed.filter(|_| n > 1) {
            let why = match self.call_packed(&mut inst, func, batch).await {
                Ok(buf) => {
                    let contract = inst.bindings.contract();
                    self.give_back(inst);
                    let limits = &self.plugin.limits;
                    match packed::decode_results(bytes::Bytes::from(buf), n, contract, limits) {
                        Ok(outcomes) => {
                            return outcomes
                                .into_iter()
                                .map(|o| self.within_limits(o))
                                .collect();
                        }
                        Err(reason) => format!("packed result refused: {reason}"),
                    }
                }
                // A trapped instance is never reused.
                Err(err) => {
                    let why = failure::into_error(self.describe_trap(&err, &inst.store));
                    drop(inst);
                    why.to_string()
                }
            };
            return self.isolate(batch.to_vec(), &why).await;
        }
        match self.call(&mut inst, batch).await {
            Ok(results) if results.len() == n => {
                self.give_back(inst);
                results.into_iter().map(|o| self.within_limits(o)).collect()
            }
            Ok(results) => {
                self.give_back(inst);
                let why = format!(
                    "handle-batch returned {} results for {n} messages",
                    results.len()
                );
                drop(results);
                self.isolate(batch.to_vec(), &why).await
            }
            // A trapped instance is never reused.
            Err(err) if n == 1 => vec![Outcome::Failed(self.describe_trap(&err, &inst.store))],
            Err(err) => {
                let why = failure::into_error(self.describe_trap(&err, &inst.store)).to_string();
                drop(inst);
                self.isolate(batch.to_vec(), &why).await
            }
        }
    }
}
