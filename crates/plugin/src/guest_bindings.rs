//! `sluice plugin bindings`: guest-side bindings for languages whose toolchain has no generator
//! of its own on a Sluice machine. C (and Zig, which imports the same C) uses wit-bindgen's C
//! generator as a library, so writing a C handler needs no `wit-bindgen` CLI install.

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use clap::ValueEnum;
use wit_bindgen_core::Files;
use wit_bindgen_core::wit_parser::Resolve;

/// A language `sluice plugin bindings` writes bindings for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum BindingsLang {
    /// `<world>.h`, `<world>.c` and `<world>_component_type.o`, as `wit-bindgen c` writes them.
    C,
}

/// Write the bindings of world `world` from the WIT folder `wit` into `out`; returns the paths
/// written.
pub fn generate(
    lang: BindingsLang,
    wit: &Path,
    world: &str,
    out: &Path,
) -> anyhow::Result<Vec<PathBuf>> {
    let mut resolve = Resolve::default();
    let (package, _) = resolve
        .push_path(wit)
        .with_context(|| format!("reading the WIT in {}", wit.display()))?;
    let world = resolve
        .select_world(&[package], Some(world))
        .with_context(|| format!("choosing the world in {}", wit.display()))?;
    let mut generator = match lang {
        BindingsLang::C => wit_bindgen_c::Opts::default().build(),
    };
    let mut files = Files::default();
    generator
        .generate(&mut resolve, world, &mut files)
        .context("generating the bindings")?;
    std::fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))?;
    let mut written = Vec::new();
    for (name, contents) in files.iter() {
        let path = out.join(name);
        std::fs::write(&path, contents)
            .with_context(|| format!("cannot write {}", path.display()))?;
        written.push(path);
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn c_bindings_for_the_handler_world() {
        let wit = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../wit/v0.1");
        let out = tempfile::tempdir().unwrap();
        let written = generate(BindingsLang::C, &wit, "handler", out.path()).unwrap();
        let names: Vec<_> = written
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        for expected in ["handler.h", "handler.c", "handler_component_type.o"] {
            assert!(names.iter().any(|n| n == expected), "{names:?}");
        }
        let header = std::fs::read_to_string(out.path().join("handler.h")).unwrap();
        assert!(
            header.contains("exports_sluice_plugin_message_handler_handle"),
            "the export a C handler implements"
        );
    }
}
