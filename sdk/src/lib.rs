//! Write Sluice message handlers in Rust.
//!
//! Implement [`Handler`] for a type and export it with [`export_handler!`]:
//!
//! ```ignore
//! use sluice_sdk::{export_handler, Handler, HandlerError, Message, Output};
//!
//! struct Upper;
//!
//! impl Handler for Upper {
//!     fn handle(msg: Message) -> Result<Vec<Output>, HandlerError> {
//!         Ok(vec![Output::from_payload(msg.payload.to_ascii_uppercase())])
//!     }
//! }
//!
//! export_handler!(Upper);
//! ```
//!
//! Build with `cargo build --target wasm32-wasip2 --profile plugin`; the `.wasm` in
//! `target/wasm32-wasip2/plugin/` is the component a pipeline file names.

pub mod json;
#[doc(hidden)]
pub mod packed;

/// The generated bindings for `sluice:plugin@0.1.0` (world `handler-full`).
#[allow(missing_docs, clippy::all, unsafe_code)]
pub mod bindings {
    wit_bindgen::generate!({
        path: "../wit/v0.1",
        world: "handler-full",
        pub_export_macro: true,
        export_macro_name: "__export_bindings",
        default_bindings_module: "sluice_sdk::bindings",
    });
}

pub use bindings::sluice::plugin::counters;
pub use bindings::sluice::plugin::log::{self, Level};
pub use bindings::sluice::plugin::types::{HandlerError, Message, Metadata, Output};

/// A message handler. Only [`Handler::handle`] is required.
pub trait Handler {
    /// One-time set-up with the `config` settings from the pipeline file. An `Err` refuses the
    /// plugin. Default: accept any settings.
    fn init(config: Vec<(String, String)>) -> Result<(), String> {
        let _ = config;
        Ok(())
    }

    /// Handle one message: `Ok(vec![])` filters it, several outputs fan it out.
    fn handle(msg: Message) -> Result<Vec<Output>, HandlerError>;

    /// Handle a batch. Default: [`Handler::handle`] on each message, in order.
    fn handle_batch(msgs: Vec<Message>) -> Vec<Result<Vec<Output>, HandlerError>> {
        msgs.into_iter().map(Self::handle).collect()
    }
}

impl Output {
    /// An output with this payload, no key, no headers, to the default sink.
    pub fn from_payload(payload: impl Into<Vec<u8>>) -> Self {
        Output {
            payload: payload.into(),
            key: None,
            headers: Vec::new(),
            route: None,
        }
    }

    /// Send this output to the sink called `route`.
    #[must_use]
    pub fn with_route(mut self, route: impl Into<String>) -> Self {
        self.route = Some(route.into());
        self
    }

    /// Add a header.
    #[must_use]
    pub fn with_header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// Set the key.
    #[must_use]
    pub fn with_key(mut self, key: impl Into<Vec<u8>>) -> Self {
        self.key = Some(key.into());
        self
    }
}

impl Message {
    /// The first header called `name` (case-sensitive), if any.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Log through the host at `level`. The host adds pipeline, plugin and message id.
pub fn log(level: Level, message: &str) {
    log::log(level, message);
}

/// Routes a Rust panic's message to the host log before the instance traps, so the host can put
/// it in the dead-letter reason. Installed once per instance by [`export_handler!`].
#[doc(hidden)]
pub fn __install_panic_hook() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        std::panic::set_hook(Box::new(|info| {
            log::log(Level::Error, &format!("panic: {info}"));
        }));
    });
}

/// The packed fast path (`docs/packed-batch.md`): decode, [`Handler::handle_batch`], encode.
/// A batch the host encoded wrongly fails every message as `fatal`, never the instance.
#[doc(hidden)]
pub fn __handle_packed<H: Handler>(batch: Vec<u8>) -> Vec<u8> {
    let results = match packed::decode_batch(&batch) {
        Ok(msgs) => {
            drop(batch);
            H::handle_batch(msgs)
        }
        Err(reason) => {
            let count = batch
                .get(..4)
                .map_or(0, |b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize);
            vec![
                Err(HandlerError::Fatal(format!(
                    "malformed packed batch: {reason}"
                )));
                count.min(1 << 16)
            ]
        }
    };
    packed::encode_results(&results)
}

/// Export a [`Handler`] implementation as the component's `message-handler`, `lifecycle` and
/// `packed-handler`.
#[macro_export]
macro_rules! export_handler {
    ($ty:ident) => {
        impl $crate::bindings::exports::sluice::plugin::message_handler::Guest for $ty {
            fn handle(msg: $crate::Message) -> Result<Vec<$crate::Output>, $crate::HandlerError> {
                $crate::__install_panic_hook();
                <$ty as $crate::Handler>::handle(msg)
            }
            fn handle_batch(
                msgs: Vec<$crate::Message>,
            ) -> Vec<Result<Vec<$crate::Output>, $crate::HandlerError>> {
                $crate::__install_panic_hook();
                <$ty as $crate::Handler>::handle_batch(msgs)
            }
        }
        impl $crate::bindings::exports::sluice::plugin::packed_handler::Guest for $ty {
            fn handle_packed(batch: Vec<u8>) -> Vec<u8> {
                $crate::__install_panic_hook();
                $crate::__handle_packed::<$ty>(batch)
            }
        }
        impl $crate::bindings::exports::sluice::plugin::lifecycle::Guest for $ty {
            fn init(config: Vec<(String, String)>) -> Result<(), String> {
                $crate::__install_panic_hook();
                <$ty as $crate::Handler>::init(config)
            }
        }
        $crate::bindings::__export_bindings!($ty);
    };
}
