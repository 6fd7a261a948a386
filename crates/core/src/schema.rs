//! What the JSON Schema of a config struct cannot say by itself: the order its fields are
//! declared in. serde_json's maps are sorted (turning on `preserve_order` would reorder every
//! JSON payload the connectors write), so a schema's `properties` come out alphabetically; error
//! messages list the fields a section accepts as the struct declares them, as serde always did.

use schemars::Schema;
use serde::Deserialize;
use serde::de::{self, Visitor};

/// The extension keyword holding a struct's field names in declaration order.
pub const FIELD_ORDER: &str = "x-field-order";

/// `#[schemars(transform = sluice_core::schema::field_order::<Self>)]` on a config struct.
pub fn field_order<T: for<'de> Deserialize<'de>>(schema: &mut Schema) {
    let mut fields: &'static [&'static str] = &[];
    let _ = T::deserialize(FieldsOf(&mut fields));
    if !fields.is_empty() {
        schema.insert(FIELD_ORDER.into(), fields.to_vec().into());
    }
}

/// A deserializer that answers nothing: it only records the field list serde's derive passes to
/// `deserialize_struct`.
struct FieldsOf<'a>(&'a mut &'static [&'static str]);

impl<'de> de::Deserializer<'de> for FieldsOf<'_> {
    type Error = de::value::Error;

    fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Self::Error> {
        Err(de::Error::custom("not a struct"))
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        fields: &'static [&'static str],
        _: V,
    ) -> Result<V::Value, Self::Error> {
        *self.0 = fields;
        Err(de::Error::custom("fields recorded"))
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf
        option unit unit_struct newtype_struct seq tuple tuple_struct map enum identifier
        ignored_any
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Deserialize)]
    #[allow(dead_code)]
    struct Example {
        zebra: u32,
        apple: String,
    }

    #[test]
    fn records_the_declared_order() {
        let mut schema = Schema::default();
        field_order::<Example>(&mut schema);
        assert_eq!(
            schema.get(FIELD_ORDER),
            Some(&serde_json::json!(["zebra", "apple"]))
        );
    }
}
