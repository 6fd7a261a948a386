//! Host-side bindings for `sluice:plugin@0.1.0`, generated from `wit/v0.1`.
//!
//! A later contract version gets its own module (`v0_2`) beside this one; the loader picks by
//! the export names a component carries, so 0.1 components keep loading.

pub mod v0_1 {
    wasmtime::component::bindgen!({
        path: "../../wit/v0.1",
        world: "handler",
        // Called with `call_async`, so that a long call yields to the runtime at every epoch
        // tick instead of holding a worker thread (`handler.rs`).
        exports: { default: async },
    });

    /// Export name of the handler interface; its presence identifies a 0.1 handler.
    pub const HANDLER_EXPORT: &str = "sluice:plugin/message-handler@0.1.0";
    /// Export name of the optional packed fast path.
    pub const PACKED_EXPORT: &str = "sluice:plugin/packed-handler@0.1.0";
    /// Export name of the optional `init` interface.
    pub const LIFECYCLE_EXPORT: &str = "sluice:plugin/lifecycle@0.1.0";
    /// Everything a 0.1 handler may import.
    pub const GRANTED_IMPORTS: &[&str] = &[
        "sluice:plugin/types@0.1.0",
        "sluice:plugin/log@0.1.0",
        "sluice:plugin/counters@0.1.0",
    ];
    /// The world a component must implement.
    pub const WORLD: &str = "sluice:plugin/handler@0.1.0";
}
