//! JSON as Python FrameX writes and reads it, with serde.
//!
//! Python FrameX encodes keyword arguments and results with Python's `json`,
//! whose dialect differs from what serde_json accepts, and a value must cross
//! between Rust and Python unchanged:
//!
//! - **numbers** are text of any size: Python sends `2**64` and `10**30` as
//!   they are. A [`Number`] keeps its text; a typed parameter that cannot hold
//!   the number is an error that names it, never a rounded value;
//! - **`NaN`, `Infinity`, `-Infinity`** are read and written for `f64`s and
//!   kept in [`Value`]s (other JSON readers refuse them: see the README);
//! - **key order** is kept: [`Map`] is ordered;
//! - **nesting** up to [`MAX_DEPTH`] levels, on a stack that grows as needed,
//!   deeper input refused with an error that names the limit;
//! - **`dynamic_obj`**: Python FrameX sends a pydantic model or a dataclass as
//!   `{"__type__": "dynamic_obj", "__module__": …, "__class__": …, "data": {…}}`;
//!   reading it into a Rust type reads the `data`, a [`Value`] keeps it all.
//!
//! Nothing established does this: serde_json refuses `NaN` and has no number
//! that keeps it; crates that read Python's dialect either replace `NaN` with
//! `0` (json-forensics) or have no serde `Deserializer` to read straight into a
//! type (jiter). So this crate reads and writes it itself.
//!
//! ```
//! use serde::Deserialize;
//!
//! #[derive(Debug, Deserialize, PartialEq)]
//! struct Reading { id: u128, level: f64 }
//!
//! let text = br#"{"id": 340282366920938463463374607431768211455, "level": NaN}"#;
//! let reading: Reading = framex_json::from_slice(text)?;
//! assert_eq!(reading.id, u128::MAX);
//! assert!(reading.level.is_nan());
//!
//! // A type that cannot hold the number is told so, with the number.
//! let error = framex_json::from_slice::<u64>(b"1180591620717411303424").unwrap_err();
//! assert_eq!(error.to_string(), "invalid value: integer 1180591620717411303424, expected u64 at byte 0");
//!
//! // A Value keeps everything as it came.
//! let value: framex_json::Value = framex_json::from_slice(text)?;
//! assert_eq!(framex_json::to_vec(&value)?, br#"{"id":340282366920938463463374607431768211455,"level":NaN}"#);
//! # Ok::<(), framex_json::Error>(())
//! ```

mod de;
mod error;
mod number;
mod scan;
mod ser;
mod value;

#[cfg(test)]
mod tests;

pub use de::ObjectReader;
pub use error::{Error, ErrorKind};
pub use number::Number;
pub use value::{DynamicObj, Index, Map, Value};

use serde::de::{Deserialize, DeserializeOwned};
use serde::ser::Serialize;

/// How deep arrays and objects may nest, reading or writing: twice what
/// Python FrameX itself handles (about 495 levels).
pub const MAX_DEPTH: usize = 1000;

/// Reads a `T` from UTF-8 JSON bytes.
pub fn from_slice<'de, T: Deserialize<'de>>(bytes: &'de [u8]) -> Result<T, Error> {
    from_str(utf8(bytes)?)
}

/// Reads a `T` from UTF-8 JSON bytes, allocating about `max_memory` bytes at
/// most: each value is charged what its most expensive representation costs
/// (a `Value` of 32 bytes with the spare room of the array it is in: 96
/// bytes; a number read for a numeric type: 24), each string its length, and
/// reading stops with an [`ErrorKind::TooLarge`] error once the charges pass
/// the bound. For reading what a caller sent: `[0,0,0,…]` is two bytes a
/// value and 96 bytes a value as a `Value`.
pub fn from_slice_limited<'de, T: Deserialize<'de>>(
    bytes: &'de [u8],
    max_memory: usize,
) -> Result<T, Error> {
    let mut de = de::Deserializer::new(utf8(bytes)?);
    de.limit_memory(max_memory);
    let value = T::deserialize(&mut de).map_err(|e| e.at(de.pos()))?;
    de.end()?;
    Ok(value)
}

/// Reads a `T` from JSON text.
pub fn from_str<'de, T: Deserialize<'de>>(text: &'de str) -> Result<T, Error> {
    let mut de = de::Deserializer::new(text);
    let value = T::deserialize(&mut de).map_err(|e| e.at(de.pos()))?;
    de.end()?;
    Ok(value)
}

pub(crate) fn utf8(bytes: &[u8]) -> Result<&str, Error> {
    std::str::from_utf8(bytes).map_err(|e| Error::syntax("invalid UTF-8", e.valid_up_to()))
}

/// Writes `value` as compact JSON.
pub fn to_vec<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, Error> {
    let mut out = Vec::with_capacity(128);
    append(&mut out, value)?;
    Ok(out)
}

/// Writes `value` as compact JSON after what `out` holds. On an error `out`
/// holds part of the value after its earlier bytes.
pub fn append<T: Serialize + ?Sized>(out: &mut Vec<u8>, value: &T) -> Result<(), Error> {
    value.serialize(&mut ser::Serializer::<false>::new(out))
}

/// Writes `value` as compact JSON text.
pub fn to_string<T: Serialize + ?Sized>(value: &T) -> Result<String, Error> {
    Ok(String::from_utf8(to_vec(value)?).expect("the writer writes UTF-8"))
}

/// Writes `value` as JSON indented by two spaces, for people to read.
pub fn to_string_pretty<T: Serialize + ?Sized>(value: &T) -> Result<String, Error> {
    let mut out = Vec::with_capacity(128);
    value.serialize(&mut ser::Serializer::<true>::new(&mut out))?;
    Ok(String::from_utf8(out).expect("the writer writes UTF-8"))
}

/// `value` as a [`Value`], as if written and read back.
pub fn to_value<T: Serialize + ?Sized>(value: &T) -> Result<Value, Error> {
    from_slice(&to_vec(value)?)
}

/// A `T` read from a [`Value`], as if it were written and read back: with
/// the same rules as [`from_slice`], `dynamic_obj`s unwrapped.
pub fn from_value<T: DeserializeOwned>(value: &Value) -> Result<T, Error> {
    from_slice(&to_vec(value)?)
}
