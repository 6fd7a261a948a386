//! A header value: the text handlers, codecs and logs see, and, where the source had more than
//! text (an AMQP table, a Kafka value that is not UTF-8, a null), the value as it came, so that
//! a sink of the same kind writes it back unchanged.
//!
//! Why both: contract 0.1 gives handlers headers as strings, and most sinks (files, SQS, Azure)
//! carry strings. A header that reaches a sink with the text it came with — passed through by
//! the pipeline, copied onto a dead-letter message, or returned unchanged by a handler
//! ([`restore_natives`]) — keeps its source form; one whose text changed is the new text.

use std::any::Any;
use std::fmt;
use std::ops::Deref;
use std::sync::Arc;

use bytes::Bytes;
use bytestring::ByteString;

/// A header value as its source had it, beside its text.
#[derive(Clone)]
pub enum Native {
    /// Exactly these bytes (a Kafka header value that is not UTF-8; its text is lossy).
    Bytes(Bytes),
    /// No value at all (a Kafka null, an AMQP void; its text is empty).
    Null,
    /// A typed value in a broker client's own type (for RabbitMQ, `lapin`'s `AMQPValue`: numbers
    /// of every width, decimals, timestamps, nested tables and arrays such as `x-death`). Only a
    /// sink that knows the type writes it back; others write `bytes` if the value is a byte
    /// string (an AMQP byte array), else the text.
    Typed {
        value: Arc<dyn Any + Send + Sync>,
        /// The value's bytes, when it is a byte string whose text would be lossy or would hide
        /// that it is bytes.
        bytes: Option<Bytes>,
    },
}

impl Native {
    /// A typed value of a broker client's own type.
    pub fn typed<T: Any + Send + Sync>(value: T) -> Self {
        Native::Typed {
            value: Arc::new(value),
            bytes: None,
        }
    }

    /// A typed value of a broker client's own type that is a byte string, with its bytes.
    pub fn typed_bytes<T: Any + Send + Sync>(value: T, bytes: Bytes) -> Self {
        Native::Typed {
            value: Arc::new(value),
            bytes: Some(bytes),
        }
    }

    /// The typed value, if it is a `T`.
    pub fn downcast_ref<T: Any>(&self) -> Option<&T> {
        match self {
            Native::Typed { value, .. } => value.downcast_ref(),
            _ => None,
        }
    }
}

impl PartialEq for Native {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (Native::Bytes(a), Native::Bytes(b)) => a == b,
            (Native::Null, Native::Null) => true,
            // The same value when it is the same allocation: copies of a header share it.
            (Native::Typed { value: a, .. }, Native::Typed { value: b, .. }) => Arc::ptr_eq(a, b),
            _ => false,
        }
    }
}

impl Eq for Native {}

impl fmt::Debug for Native {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Native::Bytes(b) => f.debug_tuple("Bytes").field(b).finish(),
            Native::Null => f.write_str("Null"),
            Native::Typed { bytes: None, .. } => f.write_str("Typed(..)"),
            Native::Typed { bytes: Some(b), .. } => f.debug_tuple("Typed").field(b).finish(),
        }
    }
}

/// A header value as a handler of contract 0.2 sees it: text, bytes or null.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ValueRef<'a> {
    Text(&'a str),
    Bytes(&'a [u8]),
    Null,
}

/// A header value: text, and the source's own form when the text is not all of it.
#[derive(Clone, PartialEq, Eq)]
pub struct HeaderValue {
    text: ByteString,
    native: Option<Native>,
}

impl HeaderValue {
    /// A value with its source form beside its text.
    pub fn with_native(text: impl Into<ByteString>, native: Native) -> Self {
        HeaderValue {
            text: text.into(),
            native: Some(native),
        }
    }

    /// The value as text (lossy where the source's value was not text).
    pub fn text(&self) -> &ByteString {
        &self.text
    }

    /// Exactly these bytes (a handler's binary value); its text is their lossy UTF-8 (the same
    /// bytes, not a copy, when they are UTF-8).
    pub fn binary(bytes: Bytes) -> Self {
        let text = ByteString::try_from(bytes.clone())
            .unwrap_or_else(|_| ByteString::from(String::from_utf8_lossy(&bytes).into_owned()));
        HeaderValue::with_native(text, Native::Bytes(bytes))
    }

    /// No value (a Kafka null); its text is empty.
    pub fn null() -> Self {
        HeaderValue::with_native("", Native::Null)
    }

    /// The source's own form, if the text is not all of it.
    pub fn native(&self) -> Option<&Native> {
        self.native.as_ref()
    }

    /// The value as text, bytes or null: bytes where the source had a byte string (a Kafka
    /// value that is not UTF-8, an AMQP byte array), null where it had no value, text otherwise.
    pub fn value(&self) -> ValueRef<'_> {
        match &self.native {
            Some(Native::Bytes(b) | Native::Typed { bytes: Some(b), .. }) => ValueRef::Bytes(b),
            Some(Native::Null) => ValueRef::Null,
            _ => ValueRef::Text(&self.text),
        }
    }

    /// The value's bytes as a byte-oriented sink (Kafka) should write them: the source's bytes
    /// when it had bytes, the text otherwise; `None` for a null value.
    pub fn bytes(&self) -> Option<&[u8]> {
        match self.value() {
            ValueRef::Text(text) => Some(text.as_bytes()),
            ValueRef::Bytes(b) => Some(b),
            ValueRef::Null => None,
        }
    }
}

impl Deref for HeaderValue {
    type Target = str;
    fn deref(&self) -> &str {
        &self.text
    }
}

impl AsRef<str> for HeaderValue {
    fn as_ref(&self) -> &str {
        &self.text
    }
}

impl fmt::Debug for HeaderValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.native {
            None => fmt::Debug::fmt(&*self.text, f),
            Some(native) => write!(f, "{:?} ({native:?})", &*self.text),
        }
    }
}

impl fmt::Display for HeaderValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl From<ByteString> for HeaderValue {
    fn from(text: ByteString) -> Self {
        HeaderValue { text, native: None }
    }
}

impl From<&str> for HeaderValue {
    fn from(text: &str) -> Self {
        ByteString::from(text).into()
    }
}

impl From<String> for HeaderValue {
    fn from(text: String) -> Self {
        ByteString::from(text).into()
    }
}

/// As its text: formats that carry headers as text (JSON lines, envelopes) see the text.
impl serde::Serialize for HeaderValue {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.text)
    }
}

impl<'de> serde::Deserialize<'de> for HeaderValue {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        String::deserialize(deserializer).map(HeaderValue::from)
    }
}

impl PartialEq<str> for HeaderValue {
    fn eq(&self, other: &str) -> bool {
        &*self.text == other
    }
}

impl PartialEq<&str> for HeaderValue {
    fn eq(&self, other: &&str) -> bool {
        &*self.text == *other
    }
}

/// Give `outputs`' headers that a handler returned as they came in (same name, same value)
/// their source form back from `input`, so that a sink of the source's kind writes them
/// unchanged. The same value is, for a text value, the same text as the input's text (a handler
/// that sees text only, contract 0.1) or as an input value that is text (`typed`: one that sees
/// text, bytes and null, 0.2, so a null it made "" on purpose stays ""); for a binary value the
/// same bytes (an AMQP byte array a 0.2 handler passed through as bytes gets its AMQP type back).
/// A header whose value the handler changed, or that it added, stays as the handler wrote it.
/// Each input header gives its form to one output header at most, in order, so repeated names
/// whose different bytes read as the same lossy text keep their own bytes.
pub fn restore_natives(
    input: &[(ByteString, HeaderValue)],
    outputs: &mut [(ByteString, HeaderValue)],
    typed: bool,
) {
    if !input.iter().any(|(_, v)| v.native.is_some()) {
        return;
    }
    let mut given = vec![false; input.len()];
    for (name, value) in outputs.iter_mut() {
        let same = |v: &HeaderValue| match &value.native {
            None if typed => v.value() == ValueRef::Text(&value.text),
            None => v.text == value.text,
            Some(Native::Bytes(b)) => v.value() == ValueRef::Bytes(b),
            // A null has nothing to restore; a typed value came from a source already.
            Some(_) => false,
        };
        let found = input
            .iter()
            .enumerate()
            .find(|(i, (n, v))| !given[*i] && v.native.is_some() && n == name && same(v));
        if let Some((i, (_, original))) = found {
            given[i] = true;
            value.native = original.native.clone();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_header_returned_unchanged_gets_its_source_form_back() {
        let amqp = Native::typed(42_i16);
        let input = vec![
            ("n".into(), HeaderValue::with_native("42", amqp.clone())),
            (
                "b".into(),
                HeaderValue::with_native("\u{fffd}", Native::Bytes(Bytes::from_static(b"\xff"))),
            ),
            ("plain".into(), HeaderValue::from("x")),
        ];
        let mut out: Vec<(ByteString, HeaderValue)> = vec![
            ("n".into(), "42".into()),
            ("b".into(), "changed".into()),
            ("plain".into(), "x".into()),
            ("added".into(), "42".into()),
        ];
        restore_natives(&input, &mut out, false);
        assert_eq!(out[0].1.native(), Some(&amqp));
        assert_eq!(out[0].1.native().unwrap().downcast_ref::<i16>(), Some(&42));
        assert_eq!(out[1].1.native(), None, "its text changed");
        assert_eq!(out[1].1.bytes(), Some(&b"changed"[..]));
        assert_eq!(out[2].1.native(), None);
        assert_eq!(out[3].1.native(), None, "another name");
        assert_eq!(input[1].1.bytes(), Some(&b"\xff"[..]));
    }

    #[test]
    fn repeated_names_with_the_same_lossy_text_keep_their_own_bytes() {
        let bytes = |b: &'static [u8]| {
            HeaderValue::with_native("\u{fffd}", Native::Bytes(Bytes::from_static(b)))
        };
        let input = vec![("b".into(), bytes(b"\xff")), ("b".into(), bytes(b"\xfe"))];
        let mut out: Vec<(ByteString, HeaderValue)> = vec![
            ("b".into(), "\u{fffd}".into()),
            ("b".into(), "\u{fffd}".into()),
        ];
        restore_natives(&input, &mut out, false);
        assert_eq!(out[0].1.bytes(), Some(&b"\xff"[..]));
        assert_eq!(out[1].1.bytes(), Some(&b"\xfe"[..]));
    }

    #[test]
    fn a_byte_string_passed_through_as_bytes_gets_its_typed_form_back() {
        let array = Native::typed_bytes("amqp byte array", Bytes::from_static(b"\x00\x01"));
        let input = vec![(
            "b".into(),
            HeaderValue::with_native("\0\u{1}", array.clone()),
        )];
        assert_eq!(input[0].1.value(), ValueRef::Bytes(b"\x00\x01"));
        let mut out: Vec<(ByteString, HeaderValue)> = vec![
            (
                "b".into(),
                HeaderValue::binary(Bytes::from_static(b"\x00\x01")),
            ),
            (
                "b".into(),
                HeaderValue::binary(Bytes::from_static(b"\x00\x01")),
            ),
        ];
        restore_natives(&input, &mut out, false);
        assert_eq!(out[0].1.native(), Some(&array));
        assert_eq!(
            out[1].1.native(),
            Some(&Native::Bytes(Bytes::from_static(b"\x00\x01"))),
            "each input header gives its form once"
        );
        let mut changed = vec![("b".into(), HeaderValue::binary(Bytes::from_static(b"\x02")))];
        restore_natives(&input, &mut changed, true);
        assert_eq!(changed[0].1.bytes(), Some(&b"\x02"[..]));
    }

    #[test]
    fn a_handler_that_sees_types_keeps_the_text_it_made_of_a_null_or_bytes() {
        let input = vec![
            ("n".into(), HeaderValue::null()),
            ("b".into(), HeaderValue::binary(Bytes::from_static(b"abc"))),
            (
                "i".into(),
                HeaderValue::with_native("42", Native::typed(42_i16)),
            ),
        ];
        let text = || -> Vec<(ByteString, HeaderValue)> {
            vec![
                ("n".into(), "".into()),
                ("b".into(), "abc".into()),
                ("i".into(), "42".into()),
            ]
        };
        let mut typed = text();
        restore_natives(&input, &mut typed, true);
        assert_eq!(
            typed[0].1.value(),
            ValueRef::Text(""),
            "made text on purpose"
        );
        assert_eq!(
            typed[1].1.value(),
            ValueRef::Text("abc"),
            "made text on purpose"
        );
        assert_eq!(
            typed[2].1.native().unwrap().downcast_ref::<i16>(),
            Some(&42)
        );
        let mut untyped = text();
        restore_natives(&input, &mut untyped, false);
        assert_eq!(
            untyped[0].1.value(),
            ValueRef::Null,
            "all a 0.1 handler could return"
        );
        assert_eq!(untyped[1].1.value(), ValueRef::Bytes(b"abc"));
    }

    #[test]
    fn a_null_value_has_no_bytes_and_empty_text() {
        let v = HeaderValue::with_native("", Native::Null);
        assert_eq!(v.bytes(), None);
        assert_eq!(&*v, "");
    }
}
