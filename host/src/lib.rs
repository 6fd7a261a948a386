//! Sluice: a stream processor whose message handlers are WebAssembly components.
//!
//! This crate is the top of the workspace: the runtime that turns loaded pipeline files into
//! running pipelines and applies reloads, the admin server, telemetry exposition, `sluice new`,
//! `sluice test` and the CLI. The parts below it are crates of their own, re-exported here
//! under the module names the rest of the project uses. See `ARCHITECTURE.md` for the code map
//! and the invariants each crate wall keeps.

pub mod admin;
pub mod runtime;
pub mod scaffold;
pub mod telemetry;
pub mod testing;

/// `sluice --version`'s text: the version, and the commit the binary was built from (build.rs).
pub const VERSION: &str = concat!(env!("CARGO_PKG_VERSION"), " (", env!("SLUICE_BUILD"), ")");

pub use sluice_config as config;
pub use sluice_connectors as connector;
pub use sluice_core::{ack, deadline, message};
pub use sluice_engine as engine;
pub use sluice_plugin as plugin;
