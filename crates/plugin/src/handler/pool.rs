//! The pool of warm instances: instantiating under the handler's limits, arming each call's
//! deadline, taking an instance out and giving it back.

use anyhow::{Context as _, anyhow};
use wasmtime::{Store, Trap, UpdateDeadline};

use crate::guard::{self, InstanceBudget};
use crate::state::HostState;
use crate::wasi;

use super::failure::into_error;
use super::{HandlerCore, Instance};
use crate::clock::{CallClock, Tick, thread_cpu, timed};

impl HandlerCore {
    /// [`WasmHandler::instantiate`] for callers that are not async (loading, a hot swap's
    /// prewarm), blocking the calling thread until guest code is done. The host's own imports
    /// and the WASI a handler may be granted (clocks, random, stdout/stderr as log lines) answer
    /// at once; only a guest that sleeps in `init` would wait on the runtime's timer.
    pub(super) fn instantiate_now(&self) -> anyhow::Result<Instance> {
        futures::executor::block_on(self.instantiate())
    }

    pub(super) async fn instantiate(&self) -> anyhow::Result<Instance> {
        let limits = &self.plugin.limits;
        let state = HostState {
            limiter: InstanceBudget::new(usize::try_from(limits.memory_mb * 1024 * 1024)?),
            pipeline: self.pipeline.clone(),
            plugin: self.plugin_name.clone(),
            message_id: None,
            last_panic: None,
            clock: std::sync::Arc::new(CallClock::new()),
            shared: self.shared.clone(),
            wasi: wasi::context(
                &self.pipeline,
                &self.plugin_name,
                &self.grants,
                &self.shared,
            ),
            table: wasmtime::component::ResourceTable::new(),
        };
        let mut store = Store::new(&self.plugin.engine, state);
        store.limiter(|s| &mut s.limiter);
        // Called at every epoch tick while guest code runs: past the call's budget it traps
        // (`Trap::Interrupt`, reported as a timeout); before it, the call yields to the runtime
        // (`clock.rs`).
        store.epoch_deadline_callback(|store| {
            match store.data().clock.at_tick(thread_cpu(), crate::EPOCH_TICK) {
                Tick::Over => Err(Trap::Interrupt.into()),
                Tick::Yield => Ok(UpdateDeadline::Yield(1)),
                Tick::Continue => Ok(UpdateDeadline::Continue(1)),
            }
        });
        let clock = store.data().clock.clone();
        self.arm(&mut store);
        let instance = timed(
            &clock,
            self.plugin.pre.instance_pre().instantiate_async(&mut store),
        )
        .await
        .map_err(|e| into_error(self.describe_trap(&e, &store)))?;
        let bindings = self.plugin.pre.exports(&mut store, &instance)?;
        if let Some(init) = &self.plugin.init {
            let init = instance.get_typed_func::<(Vec<(String, String)>,), (Result<(), String>,)>(
                &mut store, init,
            )?;
            self.arm(&mut store);
            let (result,) = timed(&clock, init.call_async(&mut store, (self.config.clone(),)))
                .await
                .map_err(|e| into_error(self.describe_trap(&e, &store)))?;
            result.map_err(|reason| {
                let reason = guard::cut(&reason, self.plugin.limits.max_reason_bytes as usize);
                anyhow!("init refused the configuration: {reason}")
            })?;
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

    /// See [`super::WasmHandler::prewarm`].
    pub(super) fn prewarm(&self, n: usize) -> anyhow::Result<()> {
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

    pub(super) async fn take_instance(&self) -> anyhow::Result<Instance> {
        let pooled = self.pool.lock().unwrap_or_else(|e| e.into_inner()).pop();
        match pooled {
            Some(instance) => Ok(instance),
            None => self.instantiate().await,
        }
    }

    /// Back to the pool, unless it holds `instances` already (after a burst of isolation calls,
    /// say): the pool never keeps more warm instances than the handler is allowed.
    pub(super) fn give_back(&self, inst: Instance) {
        let mut pool = self.pool.lock().unwrap_or_else(|e| e.into_inner());
        if pool.len() < self.parallel_calls() {
            pool.push(inst);
        }
    }
}
