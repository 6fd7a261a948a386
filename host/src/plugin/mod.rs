//! The plugin host: loads WebAssembly components, checks them against the contract, and runs
//! them with limits.
//!
//! Architecture invariant: this is the only module that touches wasmtime. The engine sees a
//! loaded handler only as a [`Transform`].
//!
//! Architecture invariant: limits are always on. Every call runs under an epoch deadline
//! (`timeout_ms`), a memory cap (`memory_mb`), a stack cap (`stack_kb`) and output caps; any
//! trap discards the instance, and the message gets a typed [`Failure`], never a host crash.

mod bindings;
mod cache;
pub mod componentize;
mod convert;
mod inspect;
pub mod packed;
mod state;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use anyhow::{Context as _, anyhow, bail};
use wasmtime::component::{ComponentExportIndex, HasSelf, Linker};
use wasmtime::{Engine, Store, Trap};

use crate::config::{BatchAbi, LimitsConfig};
use crate::engine::{ErrorClass, Failure, Outcome, Transform};
use crate::message::Message;
use bindings::v0_1::{self, sluice::plugin::types as wit};
use state::{HostState, MemoryCap};

pub use cache::{content_hash, default_cache_dir};
pub use inspect::Inspection;

/// How often the epoch advances; the resolution of `timeout_ms`.
const EPOCH_TICK: Duration = Duration::from_millis(1);

/// Compiles and instantiates components. One per process is enough; cheap to clone.
#[derive(Clone)]
pub struct PluginHost {
    inner: Arc<HostInner>,
}

struct HostInner {
    /// One engine per stack size (wasmtime sets the stack per engine).
    engines: Mutex<HashMap<u64, Engine>>,
    cache_dir: Option<PathBuf>,
}

impl PluginHost {
    /// A host that caches compiled components in `cache_dir` (`None`: compile every time).
    pub fn new(cache_dir: Option<PathBuf>) -> Self {
        let inner = Arc::new(HostInner {
            engines: Mutex::new(HashMap::new()),
            cache_dir,
        });
        spawn_epoch_ticker(Arc::downgrade(&inner));
        PluginHost { inner }
    }

    fn engine(&self, stack_kb: u64) -> anyhow::Result<Engine> {
        let mut engines = self.inner.engines.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(engine) = engines.get(&stack_kb) {
            return Ok(engine.clone());
        }
        let mut cfg = wasmtime::Config::new();
        cfg.wasm_component_model(true);
        cfg.epoch_interruption(true);
        cfg.max_wasm_stack(usize::try_from(stack_kb * 1024)?);
        cfg.cranelift_opt_level(wasmtime::OptLevel::Speed);
        let engine = Engine::new(&cfg)?;
        engines.insert(stack_kb, engine.clone());
        Ok(engine)
    }

    /// Load the component at `path`: compile (through the cache), check that it implements
    /// `sluice:plugin/handler@0.1.0` and imports nothing the host does not grant.
    pub fn load(&self, path: &Path, limits: &LimitsConfig) -> anyhow::Result<Plugin> {
        let bytes = std::fs::read(path)
            .with_context(|| format!("plugin {}: cannot read", path.display()))?;
        self.load_bytes(path, &bytes, limits)
            .with_context(|| format!("plugin {}", path.display()))
    }

    fn load_bytes(
        &self,
        path: &Path,
        bytes: &[u8],
        limits: &LimitsConfig,
    ) -> anyhow::Result<Plugin> {
        check_is_component(bytes)?;
        let hash = content_hash(bytes);
        let engine = self.engine(limits.stack_kb)?;
        let started = Instant::now();
        let (component, from_cache) =
            cache::compile(&engine, bytes, &hash, self.inner.cache_dir.as_deref())
                .context("does not compile")?;
        let compile_time = started.elapsed();
        // Name every import that is not granted, not just the first one the linker trips on.
        let refused: Vec<String> = component
            .component_type()
            .imports(&engine)
            .map(|(name, _)| name.to_owned())
            .filter(|name| !v0_1::GRANTED_IMPORTS.contains(&name.as_str()))
            .collect();
        if !refused.is_empty() {
            bail!(
                "imports what the host does not grant: {} (a handler gets only sluice:plugin/log and sluice:plugin/counters)",
                refused.join(", ")
            );
        }
        let mut linker = Linker::<HostState>::new(&engine);
        v0_1::Handler::add_to_linker::<HostState, HasSelf<HostState>>(&mut linker, |s| s)?;
        let pre = linker
            .instantiate_pre(&component)
            .map_err(|e| anyhow!("imports do not match what the host provides: {e:#}"))?;
        let pre = v0_1::HandlerPre::new(pre)
            .map_err(|e| anyhow!("does not implement world {}: {e:#}", v0_1::WORLD))?;
        let export = |interface: &str, func: &str| {
            component
                .get_export_index(None, interface)
                .and_then(|i| component.get_export_index(Some(&i), func))
        };
        let init = export(v0_1::LIFECYCLE_EXPORT, "init");
        let packed = export(v0_1::PACKED_EXPORT, "handle-packed");
        Ok(Plugin {
            path: path.to_path_buf(),
            hash,
            from_cache,
            compile_time,
            engine,
            pre,
            init,
            packed,
            limits: limits.clone(),
        })
    }

    /// Describe a component: the world it implements (if any), its imports and exports.
    pub fn inspect(&self, path: &Path) -> anyhow::Result<Inspection> {
        let bytes =
            std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
        check_is_component(&bytes).with_context(|| format!("plugin {}", path.display()))?;
        let engine = self.engine(LimitsConfig::default().stack_kb)?;
        let hash = content_hash(&bytes);
        let (component, _) =
            cache::compile(&engine, &bytes, &hash, self.inner.cache_dir.as_deref())
                .with_context(|| format!("plugin {}: does not compile", path.display()))?;
        let conformance = self
            .load_bytes(path, &bytes, &LimitsConfig::default())
            .err()
            .map(|e| format!("{e:#}"));
        Ok(inspect::inspect(&engine, &component, hash, conformance))
    }
}

fn spawn_epoch_ticker(host: Weak<HostInner>) {
    let spawned = std::thread::Builder::new()
        .name("sluice-epoch".into())
        .spawn(move || {
            loop {
                std::thread::sleep(EPOCH_TICK);
                let Some(host) = host.upgrade() else { return };
                for engine in host
                    .engines
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .values()
                {
                    engine.increment_epoch();
                }
            }
        });
    if let Err(err) = spawned {
        // Without the ticker no call would ever time out: refuse to run rather than run unguarded.
        panic!("cannot start the epoch thread that enforces handler timeouts: {err}");
    }
}

/// The WebAssembly binary format's layer field tells components (1) from core modules (0).
fn check_is_component(bytes: &[u8]) -> anyhow::Result<()> {
    match bytes {
        [0x00, b'a', b's', b'm', _, _, 0x01, 0x00, ..] => Ok(()),
        [0x00, b'a', b's', b'm', _, _, 0x00, 0x00, ..] => bail!(
            "is a core WebAssembly module, not a component; turn it into one with `sluice plugin componentize`"
        ),
        _ => bail!("is not a WebAssembly file"),
    }
}

/// A compiled component that implements the handler world.
pub struct Plugin {
    pub path: PathBuf,
    /// SHA-256 of the component file.
    pub hash: String,
    pub from_cache: bool,
    pub compile_time: Duration,
    engine: Engine,
    pre: v0_1::HandlerPre<HostState>,
    init: Option<ComponentExportIndex>,
    packed: Option<ComponentExportIndex>,
    limits: LimitsConfig,
}

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
        let handler = WasmHandler {
            packed: abi == BatchAbi::Auto && self.packed.is_some(),
            name: name.to_owned(),
            pipeline: pipeline.into(),
            plugin_name: name.into(),
            config,
            deadline_ticks: self
                .limits
                .timeout_ms
                .div_ceil(EPOCH_TICK.as_millis() as u64)
                + 1,
            plugin: self,
            pool: Mutex::new(Vec::new()),
            counters: Arc::default(),
        };
        let first = handler
            .instantiate()
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
    deadline_ticks: u64,
    /// Batches go through `handle-packed` (the component has it and the pipeline allows it).
    packed: bool,
    plugin: Plugin,
    pool: Mutex<Vec<Instance>>,
    counters: Arc<Mutex<HashMap<String, u64>>>,
}

impl WasmHandler {
    /// The plugin's content hash.
    pub fn hash(&self) -> &str {
        &self.plugin.hash
    }

    /// Counters the handler added through `sluice:plugin/counters`.
    pub fn counters(&self) -> HashMap<String, u64> {
        self.counters
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn instantiate(&self) -> anyhow::Result<Instance> {
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
            counters: self.counters.clone(),
        };
        let mut store = Store::new(&self.plugin.engine, state);
        store.limiter(|s| &mut s.limiter);
        store.set_epoch_deadline(self.deadline_ticks);
        let instance = self
            .plugin
            .pre
            .instance_pre()
            .instantiate(&mut store)
            .map_err(|e| self.describe_trap(&e, &store).into_error())?;
        let bindings = v0_1::Handler::new(&mut store, &instance)?;
        if let Some(init) = &self.plugin.init {
            let init = instance.get_typed_func::<(Vec<(String, String)>,), (Result<(), String>,)>(
                &mut store, init,
            )?;
            store.set_epoch_deadline(self.deadline_ticks);
            let (result,) = init
                .call(&mut store, (self.config.clone(),))
                .map_err(|e| self.describe_trap(&e, &store).into_error())?;
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

    fn take_instance(&self) -> anyhow::Result<Instance> {
        let pooled = self.pool.lock().unwrap_or_else(|e| e.into_inner()).pop();
        match pooled {
            Some(instance) => Ok(instance),
            None => self.instantiate(),
        }
    }

    fn prepare(&self, inst: &mut Instance, single_id: Option<&str>) {
        inst.store.set_epoch_deadline(self.deadline_ticks);
        let state = inst.store.data_mut();
        state.message_id = single_id.map(str::to_owned);
        state.last_panic = None;
    }

    /// Through the canonical ABI: `handle` for one message, `handle-batch` for more.
    fn call(
        &self,
        inst: &mut Instance,
        msgs: &[wit::Message],
    ) -> wasmtime::Result<Vec<CallResult>> {
        self.prepare(inst, (msgs.len() == 1).then(|| msgs[0].id.as_str()));
        let exports = inst.bindings.sluice_plugin_message_handler();
        if let [one] = msgs {
            Ok(vec![exports.call_handle(&mut inst.store, one)?])
        } else {
            exports.call_handle_batch(&mut inst.store, msgs)
        }
    }

    /// Through `handle-packed`: one buffer in, one buffer out (`docs/packed-batch.md`).
    fn call_packed(
        &self,
        inst: &mut Instance,
        func: PackedFunc,
        batch: &[Message],
    ) -> wasmtime::Result<Vec<u8>> {
        self.prepare(inst, None);
        let encoded = packed::encode_batch(batch);
        let (results,) = func
            .typed::<(&[u8],), (Vec<u8>,)>(&inst.store)?
            .call(&mut inst.store, (encoded.as_slice(),))?;
        Ok(results)
    }

    /// One message on its own, used to find the culprit after a batch trapped.
    fn process_one(&self, msg: &wit::Message) -> Outcome {
        let mut inst = match self.take_instance() {
            Ok(i) => i,
            Err(e) => return Outcome::Failed(cannot_instantiate(&e)),
        };
        match self.call(&mut inst, std::slice::from_ref(msg)) {
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
    fn isolate(&self, msgs: &[wit::Message]) -> Vec<Outcome> {
        msgs.iter().map(|m| self.process_one(m)).collect()
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

impl Failure {
    fn into_error(self) -> anyhow::Error {
        anyhow!("{}: {}", self.class, self.reason)
    }
}

impl Transform for WasmHandler {
    fn name(&self) -> &str {
        &self.name
    }

    fn process(&self, batch: &[Message]) -> Vec<Outcome> {
        let n = batch.len();
        let mut inst = match self.take_instance() {
            Ok(i) => i,
            Err(e) => return vec![Outcome::Failed(cannot_instantiate(&e)); n],
        };
        if let Some(func) = inst.packed.filter(|_| n > 1) {
            return match self.call_packed(&mut inst, func, batch) {
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
                }
            };
        }
        let msgs: Vec<wit::Message> = batch.iter().map(convert::to_wit).collect();
        match self.call(&mut inst, &msgs) {
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
                self.isolate(&msgs)
            }
        }
    }
}
