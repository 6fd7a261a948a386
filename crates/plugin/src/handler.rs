//! A loaded plugin bound to a pipeline: a pool of warm instances, the calls into them (packed or
//! canonical), the limits checked on what comes back, and traps turned into typed failures.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context as _, anyhow};
use async_trait::async_trait;
use wasmtime::{Store, Trap, UpdateDeadline};

use super::bindings::v0_1::{self, sluice::plugin::types as wit};
use super::state::{HostState, MemoryCap};
use super::{Plugin, convert, packed, wasi};
use crate::settings::{BatchAbi, Grant};
use sluice_core::message::Message;
use sluice_core::transform::{ErrorClass, Failure, Outcome, Transform};

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
        let handler = WasmHandler {
            grants: grants.to_vec(),
            packed: abi == BatchAbi::Auto && self.packed.is_some(),
            name: name.to_owned(),
            pipeline: pipeline.into(),
            plugin_name: name.into(),
            config,
            timeout: Duration::from_millis(self.limits.timeout_ms),
            plugin: self,
            pool: Mutex::new(Vec::new()),
            counters: Arc::default(),
        };
        let first = handler
            .instantiate_now()
            .with_context(|| format!("handler `{name}`"))?;
        handler
            .pool
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(first);
        Ok(handler)
    }
}

/// A live instance and its store.
struct Instance {
    store: Store<HostState>,
    bindings: v0_1::Handler,
    packed: Option<PackedFunc>,
}

type CallResult = Result<Vec<wit::Output>, wit::HandlerError>;

/// A plugin bound to one pipeline: a pool of warm instances, reused across calls.
pub struct WasmHandler {
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
    counters: Arc<Mutex<HashMap<String, u64>>>,
    /// The WASI capabilities each instance gets.
    grants: Vec<Grant>,
}

impl WasmHandler {
    /// The plugin's content hash.
    pub fn hash(&self) -> &str {
        &self.plugin.hash
    }

    /// The version the component declares, if any.
    pub fn version(&self) -> Option<&str> {
        self.plugin.version.as_deref()
    }

    /// Counters the handler added through `sluice:plugin/counters`.
    pub fn counters(&self) -> HashMap<String, u64> {
        self.counters
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// [`WasmHandler::instantiate`] for callers that are not async (loading, a hot swap's
    /// prewarm), blocking the calling thread until guest code is done. The host's own imports
    /// and the WASI a handler may be granted (clocks, random, stdout/stderr as log lines) answer
    /// at once; only a guest that sleeps in `init` would wait on the runtime's timer.
    fn instantiate_now(&self) -> anyhow::Result<Instance> {
        futures::executor::block_on(self.instantiate())
    }

    async fn instantiate(&self) -> anyhow::Result<Instance> {
        let limits = &self.plugin.limits;
        let state = HostState {
            limiter: MemoryCap {
                max_bytes: usize::try_from(limits.memory_mb * 1024 * 1024)?,
                hit: None,
            },
            pipeline: self.pipeline.clone(),
            plugin: self.plugin_name.clone(),
            message_id: None,
            last_panic: None,
            call_deadline: Instant::now(),
            counters: self.counters.clone(),
            wasi: wasi::context(&self.pipeline, &self.plugin_name, &self.grants),
            table: wasmtime::component::ResourceTable::new(),
        };
        let mut store = Store::new(&self.plugin.engine, state);
        store.limiter(|s| &mut s.limiter);
        // Called at every epoch tick while guest code runs: past the call's deadline it traps
        // (`Trap::Interrupt`, reported as a timeout); before it, the call yields to the runtime.
        store.epoch_deadline_callback(|store| {
            if Instant::now() >= store.data().call_deadline {
                return Err(Trap::Interrupt.into());
            }
            Ok(UpdateDeadline::Yield(1))
        });
        self.arm(&mut store);
        let instance = self
            .plugin
            .pre
            .instance_pre()
            .instantiate_async(&mut store)
            .await
            .map_err(|e| into_error(self.describe_trap(&e, &store)))?;
        let bindings = v0_1::Handler::new(&mut store, &instance)?;
        if let Some(init) = &self.plugin.init {
            let init = instance.get_typed_func::<(Vec<(String, String)>,), (Result<(), String>,)>(
                &mut store, init,
            )?;
            self.arm(&mut store);
            let (result,) = init
                .call_async(&mut store, (self.config.clone(),))
                .await
                .map_err(|e| into_error(self.describe_trap(&e, &store)))?;
            result.map_err(|reason| anyhow!("init refused the configuration: {reason}"))?;
        }
        let packed = match &self.plugin.packed {
            Some(index) if self.packed => {
                let func = instance
                    .get_func(&mut store, index)
                    .context("handle-packed is not a function")?;
                // Check the signature once here; each call re-types it (cheap) to borrow its input.
                func.typed::<(&[u8],), (Vec<u8>,)>(&store)?;
                Some(func)
            }
            _ => None,
        };
        Ok(Instance {
            store,
            bindings,
            packed,
        })
    }

    /// Make sure `n` instances are warm (instantiated, `init` run), so that the first `n`
    /// concurrent calls of a freshly loaded version do not pay for instantiation: a hot swap
    /// prepares the new version this way before it goes in.
    pub fn prewarm(&self, n: usize) -> anyhow::Result<()> {
        let have = self.pool.lock().unwrap_or_else(|e| e.into_inner()).len();
        let mut fresh = Vec::new();
        for _ in have..n {
            fresh.push(self.instantiate_now()?);
        }
        self.pool
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .extend(fresh);
        Ok(())
    }

    async fn take_instance(&self) -> anyhow::Result<Instance> {
        let pooled = self.pool.lock().unwrap_or_else(|e| e.into_inner()).pop();
        match pooled {
            Some(instance) => Ok(instance),
            None => self.instantiate().await,
        }
    }

    /// Start the clock of a call: it may run `timeout`, yielding at every tick meanwhile.
    fn arm(&self, store: &mut Store<HostState>) {
        store.data_mut().call_deadline = Instant::now() + self.timeout;
        store.set_epoch_deadline(1);
    }

    fn prepare(&self, inst: &mut Instance, single_id: Option<&str>) {
        self.arm(&mut inst.store);
        let state = inst.store.data_mut();
        state.message_id = single_id.map(str::to_owned);
        state.last_panic = None;
    }

    /// Through the canonical ABI: `handle` for one message, `handle-batch` for more.
    async fn call(
        &self,
        inst: &mut Instance,
        msgs: &[wit::Message],
    ) -> wasmtime::Result<Vec<CallResult>> {
        self.prepare(inst, (msgs.len() == 1).then(|| msgs[0].id.as_str()));
        let exports = inst.bindings.sluice_plugin_message_handler();
        if let [one] = msgs {
            Ok(vec![exports.call_handle(&mut inst.store, one).await?])
        } else {
            exports.call_handle_batch(&mut inst.store, msgs).await
        }
    }

    /// Through `handle-packed`: one buffer in, one buffer out (`docs/packed-batch.md`).
    async fn call_packed(
        &self,
        inst: &mut Instance,
        func: PackedFunc,
        batch: &[Message],
    ) -> wasmtime::Result<Vec<u8>> {
        self.prepare(inst, None);
        let encoded = packed::encode_batch(batch);
        let (results,) = func
            .typed::<(&[u8],), (Vec<u8>,)>(&inst.store)?
            .call_async(&mut inst.store, (encoded.as_slice(),))
            .await?;
        Ok(results)
    }

    /// One message on its own, used to find the culprit after a batch trapped.
    async fn process_one(&self, msg: &wit::Message) -> Outcome {
        let mut inst = match self.take_instance().await {
            Ok(i) => i,
            Err(e) => return Outcome::Failed(cannot_instantiate(&e)),
        };
        match self.call(&mut inst, std::slice::from_ref(msg)).await {
            Ok(mut results) => {
                self.give_back(inst);
                let result = results
                    .pop()
                    .unwrap_or(Err(wit::HandlerError::Fatal("no result".into())));
                self.outcome(result)
            }
            Err(err) => Outcome::Failed(self.describe_trap(&err, &inst.store)),
        }
    }

    /// Every message of a batch whose call trapped, one at a time in fresh instances, so that only
    /// the culprit fails.
    async fn isolate(&self, msgs: &[wit::Message]) -> Vec<Outcome> {
        let mut outcomes = Vec::with_capacity(msgs.len());
        for m in msgs {
            outcomes.push(self.process_one(m).await);
        }
        outcomes
    }

    fn give_back(&self, inst: Instance) {
        self.pool
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(inst);
    }

    /// Convert one canonical-ABI result and check it against the output limits.
    fn outcome(&self, result: CallResult) -> Outcome {
        self.within_limits(match result {
            Err(e) => Outcome::Failed(convert::failure(e)),
            Ok(outputs) => Outcome::Outputs(outputs.into_iter().map(convert::from_wit).collect()),
        })
    }

    /// Check one message's outputs against `max_outputs` and `max_output_bytes`.
    fn within_limits(&self, outcome: Outcome) -> Outcome {
        let limits = &self.plugin.limits;
        let Outcome::Outputs(outputs) = &outcome else {
            return outcome;
        };
        if outputs.len() > limits.max_outputs as usize {
            let reason = format!(
                "{} outputs for one message, the limit is {}",
                outputs.len(),
                limits.max_outputs
            );
            return Outcome::Failed(Failure::new(ErrorClass::OutputLimit, reason));
        }
        let bytes: u64 = outputs.iter().map(|o| o.payload.len() as u64).sum();
        if bytes > limits.max_output_bytes {
            let reason = format!(
                "{bytes} output bytes for one message, the limit is {}",
                limits.max_output_bytes
            );
            return Outcome::Failed(Failure::new(ErrorClass::OutputLimit, reason));
        }
        outcome
    }

    /// Turn a failed call into a typed failure with a reason a person can act on.
    fn describe_trap(&self, err: &wasmtime::Error, store: &Store<HostState>) -> Failure {
        let state = store.data();
        let limits = &self.plugin.limits;
        if let Some(desired) = state.limiter.hit {
            let reason = format!(
                "memory limit of {} MiB exceeded (the guest asked for {desired} bytes)",
                limits.memory_mb
            );
            return Failure::new(ErrorClass::MemoryLimit, reason);
        }
        let panic = state
            .last_panic
            .as_deref()
            .map(|p| format!(" ({p})"))
            .unwrap_or_default();
        match err.downcast_ref::<Trap>() {
            Some(Trap::Interrupt) => Failure::new(
                ErrorClass::Timeout,
                format!("handler ran past its timeout of {} ms", limits.timeout_ms),
            ),
            Some(Trap::StackOverflow) => Failure::new(
                ErrorClass::Trap,
                format!("stack overflow (stack limit {} KiB)", limits.stack_kb),
            ),
            Some(trap) => Failure::new(ErrorClass::Trap, format!("trap: {trap}{panic}")),
            None => Failure::new(ErrorClass::Trap, format!("trap: {err:#}{panic}")),
        }
    }
}

/// `handle-packed`, typed at each call: its parameter borrows the encoded batch.
type PackedFunc = wasmtime::component::Func;

fn cannot_instantiate(e: &anyhow::Error) -> Failure {
    Failure::new(
        ErrorClass::Transient,
        format!("cannot instantiate the plugin: {e:#}"),
    )
}

/// The failure as an error naming its class, once: a trap's reason already starts with
/// `trap: `.
fn into_error(failure: Failure) -> anyhow::Error {
    let class = failure.class.to_string();
    match failure.reason.strip_prefix(class.as_str()) {
        Some(rest) if rest.starts_with(": ") => anyhow!("{}", failure.reason),
        _ => anyhow!("{class}: {}", failure.reason),
    }
}

#[async_trait]
impl Transform for WasmHandler {
    fn name(&self) -> &str {
        &self.name
    }

    async fn process(&self, batch: &[Message]) -> Vec<Outcome> {
        let n = batch.len();
        let mut inst = match self.take_instance().await {
            Ok(i) => i,
            Err(e) => return vec![Outcome::Failed(cannot_instantiate(&e)); n],
        };
        if let Some(func) = inst.packed.filter(|_| n > 1) {
            return match self.call_packed(&mut inst, func, batch).await {
                Ok(buf) => {
                    self.give_back(inst);
                    match packed::decode_results(bytes::Bytes::from(buf), n) {
                        Ok(outcomes) => outcomes
                            .into_iter()
                            .map(|o| self.within_limits(o))
                            .collect(),
                        Err(reason) => {
                            let reason = format!(
                                "handler `{}` returned a malformed packed result: {reason}",
                                self.name
                            );
                            vec![Outcome::Failed(Failure::new(ErrorClass::Fatal, reason)); n]
                        }
                    }
                }
                // A trapped instance is never reused.
                Err(_) => {
                    drop(inst);
                    self.isolate(&batch.iter().map(convert::to_wit).collect::<Vec<_>>())
                        .await
                }
            };
        }
        let msgs: Vec<wit::Message> = batch.iter().map(convert::to_wit).collect();
        match self.call(&mut inst, &msgs).await {
            Ok(results) if results.len() == n => {
                self.give_back(inst);
                results.into_iter().map(|r| self.outcome(r)).collect()
            }
            Ok(results) => {
                self.give_back(inst);
                let reason = format!(
                    "handle-batch returned {} results for {n} messages",
                    results.len()
                );
                vec![Outcome::Failed(Failure::new(ErrorClass::Fatal, reason)); n]
            }
            // A trapped instance is never reused.
            Err(err) if n == 1 => vec![Outcome::Failed(self.describe_trap(&err, &inst.store))],
            Err(_) => {
                drop(inst);
                self.isolate(&msgs).await
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_error_names_its_failure_class_once() {
        let trap = Failure::new(
            ErrorClass::Trap,
            "trap: wasm trap: unreachable (panic: boom)",
        );
        assert_eq!(
            into_error(trap).to_string(),
            "trap: wasm trap: unreachable (panic: boom)"
        );
        let timeout = Failure::new(ErrorClass::Timeout, "handler ran past its timeout of 5 ms");
        assert_eq!(
            into_error(timeout).to_string(),
            "timeout: handler ran past its timeout of 5 ms"
        );
    }
}
