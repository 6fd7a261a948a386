//! `sluice plugin inspect`: what a component is, imports and exports.

use std::fmt;

use wasmtime::Engine;
use wasmtime::component::Component;
use wasmtime::component::types::ComponentItem;

use super::bindings::Contract;

/// A description of a component.
#[derive(Debug, Clone)]
pub struct Inspection {
    pub hash: String,
    /// `Some(world)` when the component implements a Sluice handler world.
    pub world: Option<String>,
    /// Why the component cannot be loaded as a handler, when it cannot.
    pub problem: Option<String>,
    pub has_init: bool,
    pub imports: Vec<String>,
    pub exports: Vec<String>,
}

pub fn inspect(
    engine: &Engine,
    component: &Component,
    hash: String,
    problem: Option<String>,
) -> Inspection {
    let ty = component.component_type();
    let describe = |name: &str, item: ComponentItem| -> Vec<String> {
        match item {
            ComponentItem::ComponentInstance(inst) => {
                let mut lines = vec![format!("{name} (instance)")];
                lines.extend(
                    inst.exports(engine)
                        .map(|(n, i)| format!("  {n}: {}", kind(&i.ty))),
                );
                lines
            }
            other => vec![format!("{name}: {}", kind(&other))],
        }
    };
    let imports: Vec<String> = ty
        .imports(engine)
        .flat_map(|(n, i)| describe(n, i.ty))
        .collect();
    let exports: Vec<String> = ty
        .exports(engine)
        .flat_map(|(n, i)| describe(n, i.ty))
        .collect();
    let contract = Contract::of_exports(ty.exports(engine).map(|(n, _)| n));
    let has_init =
        contract.is_some_and(|c| ty.exports(engine).any(|(n, _)| n == c.lifecycle_export()));
    let world = contract
        .filter(|_| problem.is_none())
        .map(|c| c.world().to_owned());
    Inspection {
        hash,
        world,
        problem,
        has_init,
        imports,
        exports,
    }
}

fn kind(item: &ComponentItem) -> &'static str {
    match item {
        ComponentItem::ComponentFunc(_) => "func",
        ComponentItem::CoreFunc(_) => "core func",
        ComponentItem::Module(_) => "core module",
        ComponentItem::Component(_) => "component",
        ComponentItem::ComponentInstance(_) => "instance",
        ComponentItem::Type(_) => "type",
        ComponentItem::Resource(_) => "resource",
    }
}

impl fmt::Display for Inspection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "sha256:  {}", self.hash)?;
        match (&self.world, &self.problem) {
            (Some(world), _) => writeln!(
                f,
                "world:   {world}{}",
                if self.has_init {
                    " (with lifecycle.init)"
                } else {
                    ""
                }
            )?,
            (None, Some(problem)) => writeln!(f, "world:   not a Sluice handler: {problem}")?,
            (None, None) => writeln!(f, "world:   not a Sluice handler")?,
        }
        writeln!(f, "imports:")?;
        if self.imports.is_empty() {
            writeln!(f, "  (none)")?;
        }
        for line in &self.imports {
            writeln!(f, "  {line}")?;
        }
        writeln!(f, "exports:")?;
        for line in &self.exports {
            writeln!(f, "  {line}")?;
        }
        Ok(())
    }
}
