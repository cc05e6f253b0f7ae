//! Writing JSON as Python FrameX reads it, straight from the value.
//!
//! Compact (or indented, for people), non-ASCII text as it is, `NaN`,
//! `Infinity` and `-Infinity` for those floats, integers of any size, and a
//! [`crate::Number`] as its own text. Nesting deeper than
//! [`crate::MAX_DEPTH`] is an error, never a stack overflow.

use serde::ser::{self, Serialize};

use crate::error::Error;
use crate::number::{NUMBER_TOKEN, RAW_NUMBER};
use crate::scan::write_str;

type Result<T> = std::result::Result<T, Error>;

/// A `Serialize` impl recurses through the serializer, a level per nested
/// array or object. Every [`GROW_EVERY`] levels the rest of the value is
/// written on a new stack segment if less than this much stack is left.
const RED_ZONE: usize = 256 * 1024;
const STACK_SEGMENT: usize = 2 * 1024 * 1024;
/// How many levels may be written between two checks of the stack: a level
/// takes a few KiB at most, in a debug build.
const GROW_EVERY: usize = 16;

/// Writes JSON; `PRETTY` indents it by two spaces a level.
pub(crate) struct Serializer<'a, const PRETTY: bool> {
    out: &'a mut Vec<u8>,
    depth: usize,
}

impl<'a, const PRETTY: bool> Serializer<'a, PRETTY> {
    pub(crate) fn new(out: &'a mut Vec<u8>) -> Serializer<'a, PRETTY> {
        Serializer { out, depth: 0 }
    }

    /// Writes `value` one level down, on a new stack segment when needed.
    #[inline]
    fn nested<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<()> {
        if self.depth.is_multiple_of(GROW_EVERY) {
            stacker::maybe_grow(RED_ZONE, STACK_SEGMENT, || value.serialize(&mut *self))
        } else {
            value.serialize(self)
        }
    }

    fn open(&mut self, byte: u8) -> Result<()> {
        if self.depth >= crate::MAX_DEPTH {
            return Err(Error::depth(None));
        }
        self.depth += 1;
        self.out.push(byte);
        Ok(())
    }

    #[inline]
    fn new_line(&mut self) {
        if PRETTY {
            self.out.push(b'\n');
            self.out.extend(std::iter::repeat_n(b' ', 2 * self.depth));
        }
    }

    #[inline]
    fn colon(&mut self) {
        self.out.push(b':');
        if PRETTY {
            self.out.push(b' ');
        }
    }

    #[inline]
    fn close(&mut self, byte: u8, empty: bool) {
        self.depth -= 1;
        if !empty {
            self.new_line();
        }
        self.out.push(byte);
    }

    fn write_f64(&mut self, n: f64) {
        if n.is_nan() {
            self.out.extend_from_slice(b"NaN");
        } else if n.is_infinite() {
            self.out
                .extend_from_slice(if n > 0.0 { b"Infinity" } else { b"-Infinity" });
        } else {
            self.out
                .extend_from_slice(zmij::Buffer::new().format_finite(n).as_bytes());
        }
    }

    fn write_integer(&mut self, n: impl itoa::Integer) {
        self.out
            .extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
    }
}

/// An array or object being written.
pub(crate) struct Compound<'s, 'a, const PRETTY: bool> {
    ser: &'s mut Serializer<'a, PRETTY>,
    first: bool,
    close: u8,
    /// For variants: the extra `}` of `{"variant": …}`.
    variant: bool,
}

impl<const PRETTY: bool> Compound<'_, '_, PRETTY> {
    #[inline]
    fn separate(&mut self) {
        if !self.first {
            self.ser.out.push(b',');
        }
        self.first = false;
        self.ser.new_line();
    }

    #[inline]
    fn element<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<()> {
        self.separate();
        self.ser.nested(value)
    }

    #[inline]
    fn entry<T: Serialize + ?Sized>(&mut self, key: &str, value: &T) -> Result<()> {
        self.separate();
        write_str(self.ser.out, key);
        self.ser.colon();
        self.ser.nested(value)
    }

    #[inline]
    fn finish(self) -> Result<()> {
        self.ser.close(self.close, self.first);
        if self.variant {
            self.ser.close(b'}', false);
        }
        Ok(())
    }
}

/// The integer methods of the writer: each writes its integer's digits.
macro_rules! integers {
    ($($method:ident: $t:ty),*) => {$(
        fn $method(self, v: $t) -> Result<()> {
            self.write_integer(v);
            Ok(())
        }
    )*};
}

impl<'s, 'a, const PRETTY: bool> ser::Serializer for &'s mut Serializer<'a, PRETTY> {
    type Ok = ();
    type Error = Error;
    type SerializeSeq = Compound<'s, 'a, PRETTY>;
    type SerializeTuple = Compound<'s, 'a, PRETTY>;
    type SerializeTupleStruct = Compound<'s, 'a, PRETTY>;
    type SerializeTupleVariant = Compound<'s, 'a, PRETTY>;
    type SerializeMap = Compound<'s, 'a, PRETTY>;
    type SerializeStruct = Compound<'s, 'a, PRETTY>;
    type SerializeStructVariant = Compound<'s, 'a, PRETTY>;

    fn serialize_bool(self, v: bool) -> Result<()> {
        self.out
            .extend_from_slice(if v { b"true" } else { b"false" });
        Ok(())
    }

    integers!(
        serialize_i8: i8, serialize_i16: i16, serialize_i32: i32, serialize_i64: i64,
        serialize_i128: i128, serialize_u8: u8, serialize_u16: u16, serialize_u32: u32,
        serialize_u64: u64, serialize_u128: u128
    );

    fn serialize_f32(self, v: f32) -> Result<()> {
        if v.is_finite() {
            self.out
                .extend_from_slice(zmij::Buffer::new().format_finite(v).as_bytes());
        } else {
            self.write_f64(f64::from(v));
        }
        Ok(())
    }

    fn serialize_f64(self, v: f64) -> Result<()> {
        self.write_f64(v);
        Ok(())
    }

    fn serialize_char(self, v: char) -> Result<()> {
        write_str(self.out, v.encode_utf8(&mut [0; 4]));
        Ok(())
    }

    fn serialize_str(self, v: &str) -> Result<()> {
        write_str(self.out, v);
        Ok(())
    }

    fn serialize_bytes(self, v: &[u8]) -> Result<()> {
        use ser::SerializeSeq as _;
        let mut seq = self.serialize_seq(Some(v.len()))?;
        for byte in v {
            seq.serialize_element(byte)?;
        }
        seq.end()
    }

    fn serialize_none(self) -> Result<()> {
        self.serialize_unit()
    }

    fn serialize_some<T: Serialize + ?Sized>(self, value: &T) -> Result<()> {
        value.serialize(self)
    }

    fn serialize_unit(self) -> Result<()> {
        self.out.extend_from_slice(b"null");
        Ok(())
    }

    fn serialize_unit_struct(self, _name: &'static str) -> Result<()> {
        self.serialize_unit()
    }

    fn serialize_unit_variant(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
    ) -> Result<()> {
        write_str(self.out, variant);
        Ok(())
    }

    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        name: &'static str,
        value: &T,
    ) -> Result<()> {
        if name == NUMBER_TOKEN
            && let Some(number) = RAW_NUMBER.with(|slot| slot.borrow_mut().take())
        {
            self.out.extend_from_slice(number.as_bytes());
            return Ok(());
        }
        value.serialize(self)
    }

    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
        value: &T,
    ) -> Result<()> {
        use ser::SerializeMap as _;
        let mut map = self.serialize_map(Some(1))?;
        map.serialize_entry(variant, value)?;
        map.end()
    }

    fn serialize_seq(self, _len: Option<usize>) -> Result<Compound<'s, 'a, PRETTY>> {
        self.open(b'[')?;
        Ok(Compound {
            ser: self,
            first: true,
            close: b']',
            variant: false,
        })
    }

    fn serialize_tuple(self, len: usize) -> Result<Compound<'s, 'a, PRETTY>> {
        self.serialize_seq(Some(len))
    }

    fn serialize_tuple_struct(
        self,
        _name: &'static str,
        len: usize,
    ) -> Result<Compound<'s, 'a, PRETTY>> {
        self.serialize_seq(Some(len))
    }

    fn serialize_tuple_variant(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
        _len: usize,
    ) -> Result<Compound<'s, 'a, PRETTY>> {
        self.open_variant(variant, b'[', b']')
    }

    fn serialize_map(self, _len: Option<usize>) -> Result<Compound<'s, 'a, PRETTY>> {
        self.open(b'{')?;
        Ok(Compound {
            ser: self,
            first: true,
            close: b'}',
            variant: false,
        })
    }

    fn serialize_struct(self, _name: &'static str, len: usize) -> Result<Compound<'s, 'a, PRETTY>> {
        self.serialize_map(Some(len))
    }

    fn serialize_struct_variant(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
        _len: usize,
    ) -> Result<Compound<'s, 'a, PRETTY>> {
        self.open_variant(variant, b'{', b'}')
    }

    fn collect_str<T: std::fmt::Display + ?Sized>(self, value: &T) -> Result<()> {
        write_str(self.out, &value.to_string());
        Ok(())
    }
}

impl<'s, 'a, const PRETTY: bool> Serializer<'a, PRETTY> {
    /// `{"variant": ` and the opening of its value.
    fn open_variant(
        &'s mut self,
        variant: &str,
        open: u8,
        close: u8,
    ) -> Result<Compound<'s, 'a, PRETTY>> {
        self.open(b'{')?;
        self.new_line();
        write_str(self.out, variant);
        self.colon();
        self.open(open)?;
        Ok(Compound {
            ser: self,
            first: true,
            close,
            variant: true,
        })
    }
}

/// The element-by-element traits of arrays: each element written by
/// `Compound::element`, the closing by `Compound::finish`.
macro_rules! array_like {
    ($($trait:ident :: $method:ident),*) => {$(
        impl<const PRETTY: bool> ser::$trait for Compound<'_, '_, PRETTY> {
            type Ok = ();
            type Error = Error;

            fn $method<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<()> {
                self.element(value)
            }

            fn end(self) -> Result<()> {
                self.finish()
            }
        }
    )*};
}

array_like!(
    SerializeSeq::serialize_element,
    SerializeTuple::serialize_element,
    SerializeTupleStruct::serialize_field,
    SerializeTupleVariant::serialize_field
);

impl<const PRETTY: bool> ser::SerializeMap for Compound<'_, '_, PRETTY> {
    type Ok = ();
    type Error = Error;

    fn serialize_key<T: Serialize + ?Sized>(&mut self, key: &T) -> Result<()> {
        self.separate();
        key.serialize(MapKey { out: self.ser.out })
    }

    fn serialize_value<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<()> {
        self.ser.colon();
        self.ser.nested(value)
    }

    fn end(self) -> Result<()> {
        self.finish()
    }
}

/// The field-by-field traits of objects: each field written by
/// `Compound::entry`.
macro_rules! object_like {
    ($($trait:ident),*) => {$(
        impl<const PRETTY: bool> ser::$trait for Compound<'_, '_, PRETTY> {
            type Ok = ();
            type Error = Error;

            fn serialize_field<T: Serialize + ?Sized>(&mut self, key: &'static str, value: &T) -> Result<()> {
                self.entry(key, value)
            }

            fn end(self) -> Result<()> {
                self.finish()
            }
        }
    )*};
}

object_like!(SerializeStruct, SerializeStructVariant);

/// An object's key: text as it is; numbers and booleans as their text, as
/// Python's `json` writes the keys of a `dict[int, …]`.
struct MapKey<'a> {
    out: &'a mut Vec<u8>,
}

impl MapKey<'_> {
    fn quoted(self, text: &str) -> Result<()> {
        write_str(self.out, text);
        Ok(())
    }

    fn refused(kind: &str) -> Error {
        Error::data(format!(
            "object keys must be strings, numbers or booleans, not {kind}"
        ))
    }
}

macro_rules! integer_key {
    ($($method:ident: $t:ty),*) => {$(
        fn $method(self, v: $t) -> Result<()> {
            let text = itoa::Buffer::new().format(v).to_owned();
            self.quoted(&text)
        }
    )*};
}

impl ser::Serializer for MapKey<'_> {
    type Ok = ();
    type Error = Error;
    type SerializeSeq = ser::Impossible<(), Error>;
    type SerializeTuple = ser::Impossible<(), Error>;
    type SerializeTupleStruct = ser::Impossible<(), Error>;
    type SerializeTupleVariant = ser::Impossible<(), Error>;
    type SerializeMap = ser::Impossible<(), Error>;
    type SerializeStruct = ser::Impossible<(), Error>;
    type SerializeStructVariant = ser::Impossible<(), Error>;

    integer_key!(
        serialize_i8: i8, serialize_i16: i16, serialize_i32: i32, serialize_i64: i64,
        serialize_i128: i128, serialize_u8: u8, serialize_u16: u16, serialize_u32: u32,
        serialize_u64: u64, serialize_u128: u128
    );

    fn serialize_bool(self, v: bool) -> Result<()> {
        self.quoted(if v { "true" } else { "false" })
    }

    fn serialize_f32(self, v: f32) -> Result<()> {
        self.serialize_f64(f64::from(v))
    }

    fn serialize_f64(self, v: f64) -> Result<()> {
        let text = crate::Number::from(v);
        self.quoted(text.as_str())
    }

    fn serialize_char(self, v: char) -> Result<()> {
        self.quoted(v.encode_utf8(&mut [0; 4]))
    }

    fn serialize_str(self, v: &str) -> Result<()> {
        self.quoted(v)
    }

    fn serialize_bytes(self, _v: &[u8]) -> Result<()> {
        Err(MapKey::refused("bytes"))
    }

    fn serialize_none(self) -> Result<()> {
        Err(MapKey::refused("null"))
    }

    fn serialize_some<T: Serialize + ?Sized>(self, value: &T) -> Result<()> {
        value.serialize(self)
    }

    fn serialize_unit(self) -> Result<()> {
        Err(MapKey::refused("null"))
    }

    fn serialize_unit_struct(self, _name: &'static str) -> Result<()> {
        Err(MapKey::refused("null"))
    }

    fn serialize_unit_variant(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
    ) -> Result<()> {
        self.quoted(variant)
    }

    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        name: &'static str,
        value: &T,
    ) -> Result<()> {
        if name == NUMBER_TOKEN
            && let Some(number) = RAW_NUMBER.with(|slot| slot.borrow_mut().take())
        {
            return self.quoted(number.as_str());
        }
        value.serialize(self)
    }

    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _name: &'static str,
        _index: u32,
        _variant: &'static str,
        _value: &T,
    ) -> Result<()> {
        Err(MapKey::refused("an enum variant with a value"))
    }

    fn serialize_seq(self, _len: Option<usize>) -> Result<Self::SerializeSeq> {
        Err(MapKey::refused("an array"))
    }

    fn serialize_tuple(self, _len: usize) -> Result<Self::SerializeTuple> {
        Err(MapKey::refused("an array"))
    }

    fn serialize_tuple_struct(
        self,
        _name: &'static str,
        _len: usize,
    ) -> Result<Self::SerializeTupleStruct> {
        Err(MapKey::refused("an array"))
    }

    fn serialize_tuple_variant(
        self,
        _name: &'static str,
        _index: u32,
        _variant: &'static str,
        _len: usize,
    ) -> Result<Self::SerializeTupleVariant> {
        Err(MapKey::refused("an enum variant with values"))
    }

    fn serialize_map(self, _len: Option<usize>) -> Result<Self::SerializeMap> {
        Err(MapKey::refused("an object"))
    }

    fn serialize_struct(self, _name: &'static str, _len: usize) -> Result<Self::SerializeStruct> {
        Err(MapKey::refused("an object"))
    }

    fn serialize_struct_variant(
        self,
        _name: &'static str,
        _index: u32,
        _variant: &'static str,
        _len: usize,
    ) -> Result<Self::SerializeStructVariant> {
        Err(MapKey::refused("an enum variant with fields"))
    }

    fn collect_str<T: std::fmt::Display + ?Sized>(self, value: &T) -> Result<()> {
        self.quoted(&value.to_string())
    }
}
