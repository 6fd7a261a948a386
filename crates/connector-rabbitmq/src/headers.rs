//! AMQP header tables ↔ Sluice headers.

use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};

use sluice_core::message::Headers;

/// AMQP header values as strings: text as is, numbers and booleans printed, binary as lossy
/// UTF-8; nested tables and arrays in their debug form.
pub fn from_table(table: Option<&FieldTable>) -> Headers {
    let Some(table) = table else {
        return Vec::new();
    };
    table
        .inner()
        .iter()
        .map(|(name, value)| {
            let text = match value {
                AMQPValue::LongString(s) => String::from_utf8_lossy(s.as_bytes()).into_owned(),
                AMQPValue::ShortString(s) => s.as_str().to_owned(),
                AMQPValue::Boolean(b) => b.to_string(),
                AMQPValue::ShortShortInt(v) => v.to_string(),
                AMQPValue::ShortShortUInt(v) => v.to_string(),
                AMQPValue::ShortInt(v) => v.to_string(),
                AMQPValue::ShortUInt(v) => v.to_string(),
                AMQPValue::LongInt(v) => v.to_string(),
                AMQPValue::LongUInt(v) => v.to_string(),
                AMQPValue::LongLongInt(v) => v.to_string(),
                AMQPValue::Float(v) => v.to_string(),
                AMQPValue::Double(v) => v.to_string(),
                AMQPValue::Timestamp(v) => v.to_string(),
                AMQPValue::ByteArray(b) => String::from_utf8_lossy(b.as_slice()).into_owned(),
                AMQPValue::Void => String::new(),
                other => format!("{other:?}"),
            };
            (name.as_str().into(), text.into())
        })
        .collect()
}

/// Sluice headers as an AMQP table of long strings.
pub fn to_table(headers: &Headers) -> FieldTable {
    let mut table = FieldTable::default();
    for (name, value) in headers {
        table.insert(
            ShortString::from(&**name),
            AMQPValue::LongString(LongString::from(value.as_bytes().to_vec())),
        );
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
