//! The plugin host: loads WebAssembly components, checks them against the contract, and runs
//! them with limits.
//!
//! Architecture invariant: this is the only module that touches wasmtime. The engine sees a
//! loaded handler only as a [`Transform`].
//!
//! Architecture invariant: limits are always on. Every call runs under an epoch deadline
//! (`timeout_ms`), a memory cap (`memory_mb`), a stack cap (`stack_kb`) and output caps; any
//! trap discards the instance, and the message gets a typed [`Failure`], never a host crash.
//!
//! Architecture invariant: guest code never holds a thread. Every call into a component is
//! `*_async` and yields to the runtime at each epoch tick ([`EPOCH_TICK`]), so a handler that
//! loops until its timeout shares its worker thread instead of blocking it.

mod bindings;
mod cache;
mod clock;
pub mod componentize;
mod convert;
mod guard;
pub mod guest_bindings;
mod handler;
mod inspect;
pub mod packed;
mod settings;
mod state;
pub mod wasi;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use anyhow::{Context as _, anyhow, bail};
use wasmtime::Engine;
use wasmtime::component::{ComponentExportIndex, HasSelf, Linker};

use bindings::HandlerPre;
use state::HostState;

pub use bindings::Contract;
pub use cache::{content_hash, default_cache_dir};
pub use guard::GuardCounts;
pub use handler::WasmHandler;
pub use inspect::Inspection;
pub use settings::{BatchAbi, Grant, Limits};

/// How often the epoch advances: the resolution of `timeout_ms`, and how long guest code runs
/// before it yields to the runtime.
const EPOCH_TICK: Duration = Duration::from_millis(1);

/// Native stack for host functions beside the guest's own (`stack_kb`) on a call's fiber.
const HOST_STACK: usize = 1024 * 1024;

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
        // No wasm backtraces: a trap's reason names the trap and the guest's panic message, and
        // a backtrace would carry function names of any length the guest chose.
        cfg.wasm_backtrace_max_frames(None);
        let wasm_stack = usize::try_from(stack_kb * 1024)?;
        cfg.max_wasm_stack(wasm_stack);
        cfg.async_stack_size(wasm_stack + HOST_STACK);
        cfg.cranelift_opt_level(wasmtime::OptLevel::Speed);
        let engine = Engine::new(&cfg)?;
        engines.insert(stack_kb, engine.clone());
        Ok(engine)
    }

    /// Load the component at `path`: compile (through the cache), check that it implements
    /// `sluice:plugin/handler` in a contract version the host has (0.2.0 or 0.1.0) and imports
    /// nothing the host does not grant.
    pub fn load(&self, path: &Path, limits: &Limits) -> anyhow::Result<Plugin> {
        // As people write it: `pipelines/./p.wasm` (a folder joined with `./p.wasm`) is
        // `pipelines/p.wasm` in every message.
        let path: PathBuf = path.components().collect();
        let path = path.as_path();
        let bytes =
            read_plugin(path).with_context(|| format!("plugin {}: cannot read", path.display()))?;
        self.load_bytes(path, &bytes, limits)
            .with_context(|| format!("plugin {}", path.display()))
    }

    fn load_bytes(&self, path: &Path, bytes: &[u8], limits: &Limits) -> anyhow::Result<Plugin> {
        check_is_component(bytes)?;
        let hash = content_hash(bytes);
        let engine = self.engine(limits.stack_kb)?;
        let started = Instant::now();
        let (component, from_cache) =
            cache::compile(&engine, bytes, &hash, self.inner.cache_dir.as_deref(), path)
                .context("does not compile")?;
        let compile_time = started.elapsed();
        check_resources(&component, limits)?;
        // Name every import that can never be granted, not just the first one the linker trips
        // on. WASI imports that a pipeline may grant are checked when the handler is bound to
        // its pipeline (`into_handler_with`).
        let ty = component.component_type();
        let contract = Contract::of_exports(ty.exports(&engine).map(|(name, _)| name));
        let imports: Vec<String> = ty
            .imports(&engine)
            .map(|(name, _)| name.to_owned())
            .collect();
        // A handler imports its own version's host interfaces; before its version is known (it
        // exports no handler interface, refused below), any version's.
        let granted: Vec<&str> = match contract {
            Some(c) => c.granted_imports().to_vec(),
            None => Contract::ALL
                .iter()
                .flat_map(|c| c.granted_imports().iter().copied())
                .collect(),
        };
        let refused: Vec<String> = imports
            .iter()
            .filter(|name| !granted.contains(&name.as_str()))
            .filter_map(|name| match wasi::grant_for(name) {
                Ok(_) if wasi::is_wasi(name) => None,
                Ok(_) => Some(format!("{name} (not a host interface)")),
                Err(why) => Some(format!("{name} ({why})")),
            })
            .collect();
        if !refused.is_empty() {
            bail!(
                "imports what the host never grants: {} (a handler gets sluice:plugin/log, sluice:plugin/counters, and the WASI clocks, random, stdout, stderr and cli its pipeline grants)",
                refused.join(", ")
            );
        }
        let Some(contract) = contract else {
            let worlds: Vec<&str> = Contract::ALL.iter().map(|c| c.world()).collect();
            let exports: Vec<&str> = Contract::ALL.iter().map(|c| c.handler_export()).collect();
            bail!(
                "does not implement world {}: it exports no {}",
                worlds.join(" nor "),
                exports.join(" nor ")
            );
        };
        let wasi_imports: Vec<String> = imports.into_iter().filter(|n| wasi::is_wasi(n)).collect();
        let mut linker = Linker::<HostState>::new(&engine);
        match contract {
            Contract::V0_1 => bindings::v0_1::Handler::add_to_linker::<
                HostState,
                HasSelf<HostState>,
            >(&mut linker, |s| s)?,
            Contract::V0_2 => bindings::v0_2::Handler::add_to_linker::<
                HostState,
                HasSelf<HostState>,
            >(&mut linker, |s| s)?,
        }
        if !wasi_imports.is_empty() {
            wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
        }
        let pre = linker
            .instantiate_pre(&component)
            .map_err(|e| anyhow!("imports do not match what the host provides: {e:#}"))?;
        let pre = HandlerPre::new(contract, pre)
            .map_err(|e| anyhow!("does not implement world {}: {e:#}", contract.world()))?;
        let export = |interface: &str, func: &str| {
            component
                .get_export_index(None, interface)
                .and_then(|i| component.get_export_index(Some(&i), func))
        };
        let init = export(contract.lifecycle_export(), "init");
        let packed = export(contract.packed_export(), "handle-packed");
        Ok(Plugin {
            path: path.to_path_buf(),
            wasi_imports,
            version: declared_version(bytes),
            hash,
            from_cache,
            compile_time,
            contract,
            engine,
            pre,
            init,
            packed,
            limits: limits.clone(),
        })
    }

    /// Describe a component: the world it implements (if any), its imports and exports.
    pub fn inspect(&self, path: &Path) -> anyhow::Result<Inspection> {
        let bytes = read_plugin(path).with_context(|| format!("cannot read {}", path.display()))?;
        check_is_component(&bytes).with_context(|| format!("plugin {}", path.display()))?;
        let engine = self.engine(Limits::default().stack_kb)?;
        let hash = content_hash(&bytes);
        let (component, _) = cache::compile(
            &engine,
            &bytes,
            &hash,
            self.inner.cache_dir.as_deref(),
            path,
        )
        .with_context(|| format!("plugin {}: does not compile", path.display()))?;
        let conformance = self
            .load_bytes(path, &bytes, &Limits::default())
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

fn read_plugin(path: &Path) -> std::io::Result<Vec<u8>> {
    sluice_core::files::read_bounded(path, sluice_core::files::MAX_PLUGIN_FILE)
}

/// Refuse, before anything is instantiated, a component that declares more memories or tables
/// than a handler may have, or a first memory or table larger than the whole instance's budget.
fn check_resources(
    component: &wasmtime::component::Component,
    limits: &Limits,
) -> anyhow::Result<()> {
    // `None`: the component imports core modules, which the host never provides (refused below).
    let Some(r) = component.resources_required() else {
        return Ok(());
    };
    let budget = limits.memory_mb.saturating_mul(1024 * 1024);
    if r.num_memories > guard::MAX_MEMORIES {
        bail!(
            "defines {} linear memories; a handler may define at most {}",
            r.num_memories,
            guard::MAX_MEMORIES
        );
    }
    if r.num_tables > guard::MAX_TABLES {
        bail!(
            "defines {} tables; a handler may define at most {}",
            r.num_tables,
            guard::MAX_TABLES
        );
    }
    if let Some(pages) = r.max_initial_memory_size
        && pages.saturating_mul(64 * 1024) > budget
    {
        bail!(
            "declares a linear memory of {} MiB at start, over its `memory_mb` of {}",
            pages.saturating_mul(64 * 1024) / (1024 * 1024),
            limits.memory_mb
        );
    }
    if let Some(elements) = r.max_initial_table_size
        && elements.saturating_mul(guard::TABLE_ELEMENT_BYTES as u64) > budget
    {
        bail!(
            "declares a table of {elements} elements at start, over its `memory_mb` of {}",
            limits.memory_mb
        );
    }
    Ok(())
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
    /// The version the component declares, if it declares one.
    pub version: Option<String>,
    /// The WASI interfaces it imports; its pipeline must grant each.
    pub wasi_imports: Vec<String>,
    pub from_cache: bool,
    pub compile_time: Duration,
    /// The contract version it implements.
    pub contract: Contract,
    engine: Engine,
    pre: HandlerPre<HostState>,
    init: Option<ComponentExportIndex>,
    packed: Option<ComponentExportIndex>,
    limits: Limits,
}

/// The version a component declares in its `version` custom section (written by
/// `wasm-tools metadata add --version`, or by toolchains that record the package version).
fn declared_version(bytes: &[u8]) -> Option<String> {
    let payload = wasm_metadata::Payload::from_binary(bytes).ok()?;
    let own = payload.metadata().version.as_ref();
    // A component made from one core module may carry the version on that module.
    let nested = || match &payload {
        wasm_metadata::Payload::Component { children, .. } => {
            children.iter().find_map(|c| c.metadata().version.as_ref())
        }
        wasm_metadata::Payload::Module(_) => None,
    };
    own.or_else(nested)
        .map(|v| guard::cut(&v.to_string(), guard::MAX_VERSION_BYTES))
}
