//! Turn a core WebAssembly module that carries its WIT in a custom section (what `wit-bindgen`
//! emits for `wasm32-unknown-unknown`) into a component, like `wasm-tools component new`.

use anyhow::Context as _;

/// Encode `module` as a component, validating the result.
pub fn componentize(module: &[u8]) -> anyhow::Result<Vec<u8>> {
    wit_component::ComponentEncoder::default()
        .module(module)
        .context("reading the core module and its component-type section")?
        .validate(true)
        .encode()
        .context("encoding the component")
}
