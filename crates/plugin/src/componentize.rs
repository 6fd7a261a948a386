//! Turn a core WebAssembly module into a component, like `wasm-tools component embed` followed by
//! `wasm-tools component new`: the module either carries its WIT in a custom section already (what
//! `wit-bindgen` emits) or gets the world of a WIT folder embedded here first (hand-written ABIs
//! such as AssemblyScript's, or C built without the bindings' object file).

use std::path::Path;

use anyhow::Context as _;
use wit_component::StringEncoding;
use wit_parser::Resolve;

/// Encode `module` as a component, validating the result.
pub fn componentize(module: &[u8]) -> anyhow::Result<Vec<u8>> {
    wit_component::ComponentEncoder::default()
        .module(module)
        .context("reading the core module and its component-type section")?
        .validate(true)
        .encode()
        .context("encoding the component")
}

/// Embed the world `world` of the WIT folder `wit` (with its `deps/`) into `module` as a
/// component-type section, strings in UTF-8, then encode the component.
pub fn componentize_with_world(module: &[u8], wit: &Path, world: &str) -> anyhow::Result<Vec<u8>> {
    let mut resolve = Resolve::default();
    let (package, _) = resolve
        .push_path(wit)
        .with_context(|| format!("reading the WIT in {}", wit.display()))?;
    let world = resolve
        .select_world(&[package], Some(world))
        .with_context(|| format!("choosing the world in {}", wit.display()))?;
    let mut module = module.to_vec();
    wit_component::embed_component_metadata(&mut module, &resolve, world, StringEncoding::UTF8)
        .context("embedding the world into the core module")?;
    componentize(&module)
}
