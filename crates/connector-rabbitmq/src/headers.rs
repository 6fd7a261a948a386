//! AMQP header tables ↔ Sluice headers.
//!
//! Every value keeps its AMQP form beside its text ([`Native::Typed`] holding the `AMQPValue`,
//! with the bytes of a byte array or of a long string that is not UTF-8), except a long string
//! that is UTF-8, whose text is all of it, and void, which is [`Native::Null`] (what a Kafka null
//! is too). A RabbitMQ sink writes back a header that still has the value it came with exactly
//! as it came (type, width, nested tables and arrays such as `x-death`), so a message RabbitMQ
//! dead-letters again keeps its history.

use std::fmt::Write as _;

use bytes::Bytes;
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};

use sluice_core::message::{HeaderValue, Headers, Native};

/// Headers RabbitMQ acts on when a message is published or delivered, rather than facts about
/// the message: written back typed, a republished message would start with the delivery count of
/// the queue it left (its attempts miscounted by a source reading it again) or be copied to the
/// queues its `CC`/`BCC` name once more. They keep their text only.
const BROKER_STATE: &[&str] = &["x-delivery-count", "CC", "BCC"];

/// AMQP header values as Sluice headers: text for handlers and text sinks (numbers and booleans
/// printed, byte strings as lossy UTF-8, tables and arrays as JSON, decimals as decimals), with
/// the AMQP value itself kept beside the text.
pub fn from_table(table: Option<&FieldTable>) -> Headers {
    let Some(table) = table else {
        return Vec::new();
    };
    table
        .inner()
        .iter()
        .map(|(name, value)| {
            let value = match value {
                AMQPValue::LongString(s) if std::str::from_utf8(s.as_bytes()).is_ok() => {
                    HeaderValue::from(String::from_utf8_lossy(s.as_bytes()).into_owned())
                }
                other if BROKER_STATE.contains(&name.as_str()) => HeaderValue::from(text(other)),
                AMQPValue::Void => HeaderValue::null(),
                AMQPValue::LongString(s) => HeaderValue::with_native(
                    text(value),
                    Native::typed_bytes(value.clone(), Bytes::copy_from_slice(s.as_bytes())),
                ),
                AMQPValue::ByteArray(b) => HeaderValue::with_native(
                    text(value),
                    Native::typed_bytes(value.clone(), Bytes::copy_from_slice(b.as_slice())),
                ),
                other => HeaderValue::with_native(text(other), Native::typed(other.clone())),
            };
            (name.as_str().into(), value)
        })
        .collect()
}

/// The text of an AMQP value.
fn text(value: &AMQPValue) -> String {
    let mut out = String::new();
    write_text(&mut out, value, false);
    out
}

/// `value` as text; inside a table or array (`nested`), strings are JSON strings.
fn write_text(out: &mut String, value: &AMQPValue, nested: bool) {
    let string = |out: &mut String, s: &str| {
        if nested {
            let _ = write!(out, "{}", serde_json::Value::from(s));
        } else {
            out.push_str(s);
        }
    };
    let _ = match value {
        AMQPValue::LongString(s) => {
            string(out, &String::from_utf8_lossy(s.as_bytes()));
            Ok(())
        }
        AMQPValue::ShortString(s) => {
            string(out, s.as_str());
            Ok(())
        }
        AMQPValue::ByteArray(b) => {
            string(out, &String::from_utf8_lossy(b.as_slice()));
            Ok(())
        }
        AMQPValue::Boolean(b) => write!(out, "{b}"),
        AMQPValue::ShortShortInt(v) => write!(out, "{v}"),
        AMQPValue::ShortShortUInt(v) => write!(out, "{v}"),
        AMQPValue::ShortInt(v) => write!(out, "{v}"),
        AMQPValue::ShortUInt(v) => write!(out, "{v}"),
        AMQPValue::LongInt(v) => write!(out, "{v}"),
        AMQPValue::LongUInt(v) => write!(out, "{v}"),
        AMQPValue::LongLongInt(v) => write!(out, "{v}"),
        AMQPValue::Float(v) => float(out, v, v.is_finite(), nested),
        AMQPValue::Double(v) => float(out, v, v.is_finite(), nested),
        AMQPValue::Timestamp(v) => write!(out, "{v}"),
        AMQPValue::DecimalValue(d) => {
            out.push_str(&decimal(d.value, d.scale));
            Ok(())
        }
        AMQPValue::Void => {
            if nested {
                out.push_str("null");
            }
            Ok(())
        }
        AMQPValue::FieldArray(items) => {
            out.push('[');
            for (i, item) in items.as_slice().iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_text(out, item, true);
            }
            out.push(']');
            Ok(())
        }
        AMQPValue::FieldTable(table) => {
            out.push('{');
            for (i, (name, item)) in table.inner().iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                let _ = write!(out, "{}:", serde_json::Value::from(name.as_str()));
                write_text(out, item, true);
            }
            out.push('}');
            Ok(())
        }
    };
}

/// A float; inside a table or array one that JSON cannot hold (NaN, infinities) is a string.
fn float(
    out: &mut String,
    v: impl std::fmt::Display,
    finite: bool,
    nested: bool,
) -> std::fmt::Result {
    if nested && !finite {
        write!(out, "\"{v}\"")
    } else {
        write!(out, "{v}")
    }
}

/// An AMQP decimal (`value` × 10^-`scale`) as decimal text. The value is signed on the wire
/// (RabbitMQ and its clients send it so), though lapin types it unsigned.
fn decimal(value: u32, scale: u8) -> String {
    let value = value.cast_signed();
    let sign = if value < 0 { "-" } else { "" };
    let digits = value.unsigned_abs().to_string();
    let scale = usize::from(scale);
    if scale == 0 {
        return format!("{sign}{digits}");
    }
    let digits = format!("{digits:0>width$}", width = scale + 1);
    let (int, frac) = digits.split_at(digits.len() - scale);
    format!("{sign}{int}.{frac}")
}

/// Sluice headers as an AMQP table: a value that still has its AMQP form is written as it came;
/// bytes from another source (Kafka, a handler's binary value) as a long string of those bytes
/// (AMQP long strings are bytes; clients read them as such); a null (a Kafka null, an AMQP void)
/// as void; text as a long string.
pub fn to_table(headers: &Headers) -> FieldTable {
    let mut table = FieldTable::default();
    for (name, value) in headers {
        let amqp = match value.native() {
            Some(native) if native.downcast_ref::<AMQPValue>().is_some() => native
                .downcast_ref::<AMQPValue>()
                .cloned()
                .unwrap_or(AMQPValue::Void),
            Some(Native::Bytes(b)) => AMQPValue::LongString(LongString::from(b.to_vec())),
            Some(Native::Null) => AMQPValue::Void,
            _ => AMQPValue::LongString(LongString::from(value.as_bytes().to_vec())),
        };
        table.insert(ShortString::from(&**name), amqp);
    }
    table
}

/// The delivery count RabbitMQ reports (quorum queues' `x-delivery-count`, 0 on the first
/// delivery), or 1 for a redelivered message of a classic queue.
pub fn redeliveries(table: Option<&FieldTable>, redelivered: bool) -> u32 {
    let counted = table
        .and_then(|t| t.inner().get("x-delivery-count"))
        .and_then(|v| match v {
            AMQPValue::LongLongInt(n) => u32::try_from(*n).ok(),
            AMQPValue::LongInt(n) => u32::try_from(*n).ok(),
            AMQPValue::LongUInt(n) => Some(*n),
            _ => None,
        });
    counted.unwrap_or(u32::from(redelivered))
}

#[cfg(test)]
mod tests {
    use super::*;
    use lapin::types::{ByteArray, DecimalValue, FieldArray};

    fn every_type() -> FieldTable {
        let mut inner = FieldTable::default();
        inner.insert("inner".into(), AMQPValue::LongString("x\"y".into()));
        let mut t = FieldTable::default();
        t.insert("bool".into(), AMQPValue::Boolean(true));
        t.insert("i8".into(), AMQPValue::ShortShortInt(-8));
        t.insert("u8".into(), AMQPValue::ShortShortUInt(8));
        t.insert("i16".into(), AMQPValue::ShortInt(-16));
        t.insert("u16".into(), AMQPValue::ShortUInt(16));
        t.insert("i32".into(), AMQPValue::LongInt(-32));
        t.insert("u32".into(), AMQPValue::LongUInt(32));
        t.insert("i64".into(), AMQPValue::LongLongInt(-64));
        t.insert("f32".into(), AMQPValue::Float(1.5));
        t.insert("f64".into(), AMQPValue::Double(2.25));
        t.insert(
            "decimal".into(),
            AMQPValue::DecimalValue(DecimalValue {
                scale: 3,
                value: 12,
            }),
        );
        t.insert("short".into(), AMQPValue::ShortString("s".into()));
        t.insert("text".into(), AMQPValue::LongString("plain".into()));
        t.insert(
            "binary".into(),
            AMQPValue::LongString(LongString::from(vec![0xff, 0, 1])),
        );
        t.insert(
            "array".into(),
            AMQPValue::FieldArray(FieldArray::from(vec![
                AMQPValue::LongInt(1),
                AMQPValue::LongString("two".into()),
            ])),
        );
        t.insert("timestamp".into(), AMQPValue::Timestamp(1_700_000_000));
        t.insert("table".into(), AMQPValue::FieldTable(inner));
        t.insert(
            "bytes".into(),
            AMQPValue::ByteArray(ByteArray::from(vec![1_u8, 2, 3])),
        );
        t.insert("void".into(), AMQPValue::Void);
        t
    }

    #[test]
    fn every_amqp_type_comes_back_as_it_came() {
        let table = every_type();
        let headers = from_table(Some(&table));
        assert_eq!(to_table(&headers), table);
    }

    #[test]
    fn values_read_as_text_a_person_can_use() {
        let headers = from_table(Some(&every_type()));
        let text = |name: &str| {
            headers
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| v.to_string())
                .unwrap()
        };
        assert_eq!(text("bool"), "true");
        assert_eq!(text("i8"), "-8");
        assert_eq!(text("decimal"), "0.012");
        assert_eq!(text("array"), r#"[1,"two"]"#);
        assert_eq!(text("table"), r#"{"inner":"x\"y"}"#);
        assert_eq!(text("text"), "plain");
        assert_eq!(text("void"), "");
        let plain = headers.iter().find(|(n, _)| n == "text").unwrap();
        assert!(plain.1.native().is_none(), "UTF-8 text needs no AMQP form");
    }

    #[test]
    fn byte_strings_read_as_bytes_and_void_as_null() {
        use sluice_core::message::ValueRef;
        let headers = from_table(Some(&every_type()));
        let value = |name: &str| headers.iter().find(|(n, _)| n == name).unwrap().1.value();
        assert_eq!(value("bytes"), ValueRef::Bytes(&[1, 2, 3]));
        assert_eq!(value("binary"), ValueRef::Bytes(&[0xff, 0, 1]));
        assert_eq!(value("void"), ValueRef::Null);
        assert_eq!(value("i8"), ValueRef::Text("-8"));
        assert_eq!(value("text"), ValueRef::Text("plain"));
    }

    #[test]
    fn a_changed_value_is_written_as_text_and_kafka_bytes_as_they_were() {
        let mut headers = from_table(Some(&every_type()));
        for (name, value) in &mut headers {
            if name == "i16" {
                *value = "changed".into();
            }
        }
        headers.push((
            "kafka".into(),
            HeaderValue::with_native(
                "\u{fffd}",
                Native::Bytes(bytes::Bytes::from_static(b"\xfe")),
            ),
        ));
        let table = to_table(&headers);
        assert_eq!(
            table.inner().get("i16"),
            Some(&AMQPValue::LongString("changed".into()))
        );
        assert_eq!(
            table.inner().get("kafka"),
            Some(&AMQPValue::LongString(LongString::from(vec![0xfe])))
        );
    }

    #[test]
    fn decimals_read_as_decimals() {
        assert_eq!(decimal(12345, 2), "123.45");
        assert_eq!(decimal(5, 3), "0.005");
        assert_eq!(decimal(7, 0), "7");
        assert_eq!(decimal((-15_i32).cast_unsigned(), 1), "-1.5");
    }

    #[test]
    fn delivery_state_keeps_its_text_only() {
        let mut t = FieldTable::default();
        t.insert("x-delivery-count".into(), AMQPValue::LongLongInt(3));
        t.insert(
            "CC".into(),
            AMQPValue::FieldArray(FieldArray::from(vec![AMQPValue::LongString("q".into())])),
        );
        let table = to_table(&from_table(Some(&t)));
        assert_eq!(
            table.inner().get("x-delivery-count"),
            Some(&AMQPValue::LongString("3".into()))
        );
        assert_eq!(
            table.inner().get("CC"),
            Some(&AMQPValue::LongString(r#"["q"]"#.into()))
        );
    }

    #[test]
    fn floats_json_cannot_hold_are_strings_inside_tables() {
        let mut inner = FieldTable::default();
        inner.insert("nan".into(), AMQPValue::Double(f64::NAN));
        let mut t = FieldTable::default();
        t.insert("t".into(), AMQPValue::FieldTable(inner));
        let headers = from_table(Some(&t));
        assert_eq!(headers[0].1.to_string(), r#"{"nan":"NaN"}"#);
    }
}
