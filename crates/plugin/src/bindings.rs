//! Host-side bindings for each contract version the host loads, generated from `wit/v0.N`, and
//! [`Contract`], which picks between them by the export names a component carries: 0.1
//! components keep loading beside 0.2 ones.

/// Bindings for one contract version, with the names that identify it.
macro_rules! contract_bindings {
    ($module:ident, $path:literal, $version:literal) => {
        pub mod $module {
            wasmtime::component::bindgen!({
                path: $path,
                world: "handler",
                // Called with `call_async`, so that a long call yields to the runtime at every
                // epoch tick instead of holding a worker thread (`handler/mod.rs`).
                exports: { default: async },
            });

            /// Export name of the handler interface; its presence identifies the version.
            pub const HANDLER_EXPORT: &str =
                concat!("sluice:plugin/message-handler@", $version);
            /// Export name of the optional packed fast path.
            pub const PACKED_EXPORT: &str = concat!("sluice:plugin/packed-handler@", $version);
            /// Export name of the optional `init` interface.
            pub const LIFECYCLE_EXPORT: &str = concat!("sluice:plugin/lifecycle@", $version);
            /// Everything a handler of this version may import.
            pub const GRANTED_IMPORTS: &[&str] = &[
                concat!("sluice:plugin/types@", $version),
                concat!("sluice:plugin/log@", $version),
                concat!("sluice:plugin/counters@", $version),
            ];
            /// The world a component must implement.
            pub const WORLD: &str = concat!("sluice:plugin/handler@", $version);
        }
    };
}

contract_bindings!(v0_1, "../../wit/v0.1", "0.1.0");
contract_bindings!(v0_2, "../../wit/v0.2", "0.2.0");

/// A version of the handler contract (`wit/v0.N`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Contract {
    /// `sluice:plugin@0.1.0`: header values are strings.
    V0_1,
    /// `sluice:plugin@0.2.0`: header values are text, bytes or null.
    V0_2,
}

impl Contract {
    /// Every version the host loads, newest first.
    pub const ALL: [Contract; 2] = [Contract::V0_2, Contract::V0_1];

    /// The version whose handler interface a component with these export names exports.
    pub fn of_exports<'a>(exports: impl IntoIterator<Item = &'a str>) -> Option<Contract> {
        let names: Vec<&str> = exports.into_iter().collect();
        Contract::ALL
            .into_iter()
            .find(|c| names.contains(&c.handler_export()))
    }

    pub fn world(self) -> &'static str {
        match self {
            Contract::V0_1 => v0_1::WORLD,
            Contract::V0_2 => v0_2::WORLD,
        }
    }

    pub fn handler_export(self) -> &'static str {
        match self {
            Contract::V0_1 => v0_1::HANDLER_EXPORT,
            Contract::V0_2 => v0_2::HANDLER_EXPORT,
        }
    }

    pub fn packed_export(self) -> &'static str {
        match self {
            Contract::V0_1 => v0_1::PACKED_EXPORT,
            Contract::V0_2 => v0_2::PACKED_EXPORT,
        }
    }

    pub fn lifecycle_export(self) -> &'static str {
        match self {
            Contract::V0_1 => v0_1::LIFECYCLE_EXPORT,
            Contract::V0_2 => v0_2::LIFECYCLE_EXPORT,
        }
    }

    pub fn granted_imports(self) -> &'static [&'static str] {
        match self {
            Contract::V0_1 => v0_1::GRANTED_IMPORTS,
            Contract::V0_2 => v0_2::GRANTED_IMPORTS,
        }
    }
}

/// A component ready to instantiate, typed by the contract version it implements.
pub enum HandlerPre<T: 'static> {
    V0_1(v0_1::HandlerPre<T>),
    V0_2(v0_2::HandlerPre<T>),
}

impl<T: 'static> HandlerPre<T> {
    /// Check that `pre`'s component implements `contract`'s world.
    pub fn new(
        contract: Contract,
        pre: wasmtime::component::InstancePre<T>,
    ) -> wasmtime::Result<Self> {
        Ok(match contract {
            Contract::V0_1 => HandlerPre::V0_1(v0_1::HandlerPre::new(pre)?),
            Contract::V0_2 => HandlerPre::V0_2(v0_2::HandlerPre::new(pre)?),
        })
    }

    pub fn instance_pre(&self) -> &wasmtime::component::InstancePre<T> {
        match self {
            HandlerPre::V0_1(pre) => pre.instance_pre(),
            HandlerPre::V0_2(pre) => pre.instance_pre(),
        }
    }

    /// The exports of an instance of this component.
    pub fn exports(
        &self,
        store: impl wasmtime::AsContextMut,
        instance: &wasmtime::component::Instance,
    ) -> wasmtime::Result<Exports> {
        Ok(match self {
            HandlerPre::V0_1(_) => Exports::V0_1(v0_1::Handler::new(store, instance)?),
            HandlerPre::V0_2(_) => Exports::V0_2(v0_2::Handler::new(store, instance)?),
        })
    }
}

/// A live instance's handler exports, in its contract version.
pub enum Exports {
    V0_1(v0_1::Handler),
    V0_2(v0_2::Handler),
}

impl Exports {
    pub fn contract(&self) -> Contract {
        match self {
            Exports::V0_1(_) => Contract::V0_1,
            Exports::V0_2(_) => Contract::V0_2,
        }
    }
}
