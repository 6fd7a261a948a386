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
//! Build a core module with `cargo build --release --target wasm32-unknown-unknown`, then make
//! it a component with `sluice plugin componentize <module.wasm> -o <handler.wasm>`.
//!
//! For batches the host calls the packed fast path, which hands [`Handler::handle_view`] a
//! message borrowed from the batch buffer; its default turns the view into an owned [`Message`]
//! for [`Handler::handle`]. Implement `handle_view` as well when every allocation counts.

pub mod json;
pub mod packed;

pub use packed::{HeaderRef, MessageView, MetadataView, OutputRef, Outputs, RawHeaders};

/// The generated bindings for `sluice:plugin@0.2.0` (world `handler-full`).
#[allow(missing_docs, clippy::all, unsafe_code)]
pub mod bindings {
    wit_bindgen::generate!({
        path: "../wit/v0.2",
        world: "handler-full",
        additional_derives: [PartialEq, Eq],
        pub_export_macro: true,
        export_macro_name: "__export_bindings",
        default_bindings_module: "sluice_sdk::bindings",
    });
}

pub use bindings::sluice::plugin::counters;
pub use bindings::sluice::plugin::log::{self, Level};
pub use bindings::sluice::plugin::types::{HandlerError, HeaderValue, Message, Metadata, Output};

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

    /// Handle one message of a packed batch without copying it: read from `msg`, write outputs
    /// to `out` (nothing written means filtered). On `Err`, whatever was written is discarded.
    /// Default: [`MessageView::to_owned`], then [`Handler::handle`].
    fn handle_view(msg: &MessageView<'_>, out: &mut Outputs<'_>) -> Result<(), HandlerError> {
        for o in Self::handle(msg.to_owned())? {
            out.push_owned(&o);
        }
        Ok(())
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

    /// Add a header with a text value.
    #[must_use]
    pub fn with_header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers
            .push((name.into(), HeaderValue::Text(value.into())));
        self
    }

    /// Add a header with a binary value (a Kafka header's bytes, say).
    #[must_use]
    pub fn with_binary_header(
        mut self,
        name: impl Into<String>,
        value: impl Into<Vec<u8>>,
    ) -> Self {
        self.headers
            .push((name.into(), HeaderValue::Bytes(value.into())));
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
    /// The value of the first header called `name` (case-sensitive), if any.
    pub fn header_value(&self, name: &str) -> Option<&HeaderValue> {
        self.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v)
    }

    /// The first header called `name` as text ([`HeaderValue::as_str`]: bytes that are UTF-8
    /// read as text; see [`Message::header_value`] for every value as it is).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.header_value(name).and_then(HeaderValue::as_str)
    }
}

impl HeaderValue {
    /// The value as text: the text, or bytes that are UTF-8 (an AMQP byte array of text);
    /// `None` for null and for bytes that are not UTF-8.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            HeaderValue::Text(text) => Some(text),
            HeaderValue::Bytes(bytes) => std::str::from_utf8(bytes).ok(),
            HeaderValue::Null => None,
        }
    }

    /// The value's bytes: a text's UTF-8, or the bytes; `None` for null.
    pub fn as_bytes(&self) -> Option<&[u8]> {
        match self {
            HeaderValue::Text(text) => Some(text.as_bytes()),
            HeaderValue::Bytes(bytes) => Some(bytes),
            HeaderValue::Null => None,
        }
    }
}

impl From<String> for HeaderValue {
    fn from(text: String) -> Self {
        HeaderValue::Text(text)
    }
}

impl From<&str> for HeaderValue {
    fn from(text: &str) -> Self {
        HeaderValue::Text(text.to_owned())
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

/// The packed fast path (`docs/packed-batch.md`): read views, [`Handler::handle_view`] each,
/// write the results. A batch the host encoded wrongly fails its messages as `fatal`, never the
/// instance.
#[doc(hidden)]
pub fn __handle_packed<H: Handler>(batch: Vec<u8>) -> Vec<u8> {
    let (count, views) = match packed::read_batch(&batch) {
        Ok(v) => v,
        // Not even the count is readable: zero results, which the host reports for every message.
        Err(_) => return packed::ResultWriter::new(0, 4).finish(),
    };
    let mut results = packed::ResultWriter::new(count, batch.len() + 64);
    for (written, view) in views.enumerate() {
        match view {
            Ok(msg) => results.result(|out| H::handle_view(&msg, out)),
            Err(reason) => {
                // The rest of the batch cannot be read: fail it message by message.
                let e = HandlerError::Fatal(format!("malformed packed batch: {reason}"));
                (written..count).for_each(|_| results.error(&e));
                break;
            }
        }
    }
    results.finish()
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
