//! A batch CSV cell read as a setting: [`cell_overrides`] deserializes the protocol's
//! [`SettingsOverrides`] from one `column = cell` pair, so a column means what the field of the
//! same name means in `kiln.toml` and the API, with no list of columns kept here. The cell's text
//! becomes whatever the field asks for: a whole number, a number, `true` / `false`, a name
//! (`preview`, `glb`), or a list of names separated by `;` or `,` (see [`LIST_SEPARATORS`]).
//! [`settings_fields`] gives the names of the fields, for checking a header.

use serde::de::value::{Error, MapDeserializer, SeqDeserializer};
use serde::de::{Deserialize, Deserializer, Error as _, IntoDeserializer, Visitor};

use crate::SettingsOverrides;

/// What separates the items of a list in one cell: `;` (`glb;usdz`) needs no quoting in a CSV,
/// and `,` (`"glb,usdz"`, quoted) is what a person writes by habit; both are accepted.
pub const LIST_SEPARATORS: [char; 2] = [';', ','];

/// The overrides that `column` set to `text` gives; the error says what is wrong with the value
/// (an unknown column is refused too, as an unknown field).
pub fn cell_overrides(column: &str, text: &str) -> Result<SettingsOverrides, Error> {
    SettingsOverrides::deserialize(MapDeserializer::new(std::iter::once((column, Cell(text)))))
}

/// The names of [`SettingsOverrides`]' fields, as its `Deserialize` implementation declares them.
pub fn settings_fields() -> &'static [&'static str] {
    let mut fields: &'static [&'static str] = &[];
    // The probe only records the names and always ends in an error, which carries nothing more.
    let _ = SettingsOverrides::deserialize(FieldNames(&mut fields));
    fields
}

/// One cell's text as a serde value of the type the visitor asks for.
struct Cell<'a>(&'a str);

impl Cell<'_> {
    fn integer<'de, V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        // Through i64 / u64 so that the field's own type reports a value out of its range
        // (`invalid value: integer `-5`, expected u32`), as TOML and JSON do.
        if let Ok(n) = self.0.parse::<u64>() {
            visitor.visit_u64(n)
        } else if let Ok(n) = self.0.parse::<i64>() {
            visitor.visit_i64(n)
        } else {
            Err(Error::custom(format!("expected a whole number, found {:?}", self.0)))
        }
    }
}

impl<'de> IntoDeserializer<'de, Error> for Cell<'_> {
    type Deserializer = Self;

    fn into_deserializer(self) -> Self {
        self
    }
}

macro_rules! integers {
    ($($method:ident)*) => {
        $(fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
            self.integer(visitor)
        })*
    };
}

impl<'de> Deserializer<'de> for Cell<'_> {
    type Error = Error;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        visitor.visit_str(self.0)
    }

    fn deserialize_bool<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        match self.0.to_ascii_lowercase().as_str() {
            "true" => visitor.visit_bool(true),
            "false" => visitor.visit_bool(false),
            _ => Err(Error::custom(format!("expected true or false, found {:?}", self.0))),
        }
    }

    integers!(deserialize_u8 deserialize_u16 deserialize_u32 deserialize_u64 deserialize_u128
        deserialize_i8 deserialize_i16 deserialize_i32 deserialize_i64 deserialize_i128);

    fn deserialize_f32<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        self.deserialize_f64(visitor)
    }

    fn deserialize_f64<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        match self.0.parse::<f64>() {
            Ok(x) => visitor.visit_f64(x),
            Err(_) => Err(Error::custom(format!("expected a number, found {:?}", self.0))),
        }
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        visitor.visit_some(self)
    }

    fn deserialize_seq<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        let items = self.0.split(LIST_SEPARATORS).map(str::trim).filter(|item| !item.is_empty()).map(Cell);
        let mut items = SeqDeserializer::new(items);
        let list = visitor.visit_seq(&mut items)?;
        items.end()?;
        Ok(list)
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Error> {
        visitor.visit_enum(<&str as IntoDeserializer<'de, Error>>::into_deserializer(self.0))
    }

    serde::forward_to_deserialize_any! {
        char str string bytes byte_buf unit unit_struct newtype_struct tuple tuple_struct map struct
        identifier ignored_any
    }
}

/// A deserializer that only records the field names a struct asks for.
struct FieldNames<'a>(&'a mut &'static [&'static str]);

impl<'de> Deserializer<'de> for FieldNames<'_> {
    type Error = Error;

    fn deserialize_any<V: Visitor<'de>>(self, _visitor: V) -> Result<V::Value, Error> {
        Err(Error::custom("not a struct"))
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        fields: &'static [&'static str],
        _visitor: V,
    ) -> Result<V::Value, Error> {
        *self.0 = fields;
        Err(Error::custom("field names only"))
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf option
        unit unit_struct newtype_struct seq tuple tuple_struct map enum identifier ignored_any
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Device, Format, Preset, Stage};

    #[test]
    fn the_fields_are_the_overrides_fields() {
        let fields = settings_fields();
        for name in ["preset", "formats", "device", "keep_all", "train_steps", "max_side", "seed", "size_mm", "until"] {
            assert!(fields.contains(&name), "{name} in {fields:?}");
        }
        assert!(!fields.contains(&"input"));
    }

    #[test]
    fn each_cell_becomes_its_fields_type() {
        let set = |column, text| cell_overrides(column, text).unwrap();
        assert_eq!(set("preset", "preview").preset, Some(Preset::Preview));
        assert_eq!(set("formats", "glb;usdz").formats, Some(vec![Format::Glb, Format::Usdz]));
        assert_eq!(set("formats", "obj, ply").formats, Some(vec![Format::Obj, Format::Ply]));
        assert_eq!(set("device", "cpu").device, Some(Device::Cpu));
        assert_eq!(set("keep_all", "TRUE").keep_all, Some(true));
        assert_eq!(set("train_steps", "1500").train_steps, Some(1500));
        assert_eq!(set("max_triangles", "20000").max_triangles, Some(20_000));
        assert_eq!(set("seed", "18446744073709551615").seed, Some(u64::MAX));
        assert_eq!(set("size_mm", "142.5").size_mm, Some(142.5));
        assert_eq!(set("until", "poses").until, Some(Stage::Poses));
        assert_eq!(set("formats", ";").formats, Some(vec![]), "empty: SettingsOverrides::validate refuses it");
    }

    #[test]
    fn bad_cells_say_what_was_expected() {
        for (column, text, expected) in [
            ("preset", "ultra", "unknown variant `ultra`, expected one of `preview`"),
            ("formats", "glb;gltf", "unknown variant `gltf`"),
            ("max_side", "big", "expected a whole number, found \"big\""),
            ("max_side", "-5", "invalid value: integer `-5`, expected u32"),
            ("train_steps", "5000000000", "invalid value: integer `5000000000`, expected u32"),
            ("keep_all", "yes", "expected true or false, found \"yes\""),
            ("size_mm", "ten", "expected a number, found \"ten\""),
            ("colour", "red", "unknown field `colour`"),
        ] {
            let error = cell_overrides(column, text).unwrap_err().to_string();
            assert!(error.starts_with(expected), "{column} = {text:?}: {error}");
        }
    }
}
