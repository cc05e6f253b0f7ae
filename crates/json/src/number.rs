//! A JSON number kept as its text.
//!
//! Python's integers have no size limit and JSON numbers are text, so a number
//! is kept exactly as it was written: `18446744073709551616`, `1e+16`, `NaN`,
//! and a decimal with more digits than an `f64` holds all go through untouched.
//! It becomes a Rust number only when asked (`as_u64`, `as_f64`, a typed
//! parameter). Up to 22 characters (every `i64`, `u64` and `f64` written
//! shortest) are stored inline, without an allocation.

use std::cell::RefCell;
use std::fmt;

use serde::de::{self, Deserialize, Deserializer, MapAccess, Visitor};
use serde::ser::{Serialize, Serializer};

use crate::error::{Error, excerpt};

/// A JSON number, as Python FrameX writes it: JSON's grammar, plus `NaN`,
/// `Infinity` and `-Infinity`, of any size and precision.
///
/// ```
/// use framex_json::Number;
///
/// let big: Number = "1000000000000000000000000000000".parse()?;
/// assert_eq!(big.as_str(), "1000000000000000000000000000000");
/// assert_eq!(big.as_u64(), None);
/// assert_eq!(big.as_u128(), Some(10u128.pow(30)));
/// assert!(Number::from(f64::NAN).as_f64().is_nan());
/// assert_eq!(Number::from(f64::NEG_INFINITY).as_str(), "-Infinity");
/// # Ok::<(), framex_json::Error>(())
/// ```
#[derive(Clone)]
pub struct Number {
    text: Text,
}

/// Longest text kept inline: `-2.2250738585072014e-308` is 24 characters, but
/// every `i64`, `u64` and nearly every shortest `f64` fits 22.
const INLINE: usize = 22;

#[derive(Clone)]
enum Text {
    Inline { len: u8, bytes: [u8; INLINE] },
    Heap(Box<str>),
}

/// What a number's text is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// Digits only, with an optional minus sign.
    Integer,
    /// With a fraction or an exponent.
    Float,
    NaN,
    Infinity,
    NegInfinity,
}

/// The name of the newtype a [`Number`] is serialized as: FrameX's serializer
/// writes its text; see `RAW_NUMBER`.
pub(crate) const NUMBER_TOKEN: &str = "$framex_json::private::Number";

thread_local! {
    /// The number being serialized, for FrameX's serializer, which writes its
    /// text exactly. serde has no way to hand a format a number's text, and a
    /// number that is not one of serde's types (an integer past 128 bits, a
    /// decimal past `f64`) would otherwise be rounded or refused.
    pub(crate) static RAW_NUMBER: RefCell<Option<Number>> = const { RefCell::new(None) };
}

impl Number {
    /// The number written as `text`, which must be a JSON number or `NaN`,
    /// `Infinity` or `-Infinity`.
    pub fn from_text(text: &str) -> Result<Number, Error> {
        match scan(text.as_bytes(), 0) {
            Ok((end, _)) if end == text.len() => Ok(Number::from_valid(text)),
            _ => Err(Error::data(format!(
                "`{}` is not a JSON number",
                excerpt(text, 40)
            ))),
        }
    }

    /// `text`, already checked by [`scan`].
    pub(crate) fn from_valid(text: &str) -> Number {
        let text = if text.len() <= INLINE {
            let mut bytes = [0; INLINE];
            bytes[..text.len()].copy_from_slice(text.as_bytes());
            Text::Inline {
                len: text.len() as u8,
                bytes,
            }
        } else {
            Text::Heap(text.into())
        };
        Number { text }
    }

    /// The number's JSON text, exactly as it was read or as it is written.
    pub fn as_str(&self) -> &str {
        std::str::from_utf8(self.as_bytes()).expect("number text is ASCII")
    }

    /// The text's bytes, for the writer.
    pub(crate) fn as_bytes(&self) -> &[u8] {
        match &self.text {
            Text::Inline { len, bytes } => &bytes[..usize::from(*len)],
            Text::Heap(text) => text.as_bytes(),
        }
    }

    pub(crate) fn kind(&self) -> Kind {
        kind_of(self.as_str())
    }

    /// Whether it is written as an integer (no fraction, no exponent).
    pub fn is_integer(&self) -> bool {
        self.kind() == Kind::Integer
    }

    /// The number as an `i64`, if it is an integer in range.
    pub fn as_i64(&self) -> Option<i64> {
        self.integer()?.parse().ok()
    }

    /// The number as a `u64`, if it is an integer in range.
    pub fn as_u64(&self) -> Option<u64> {
        self.integer()?.parse().ok()
    }

    /// The number as an `i128`, if it is an integer in range.
    pub fn as_i128(&self) -> Option<i128> {
        self.integer()?.parse().ok()
    }

    /// The number as a `u128`, if it is an integer in range.
    pub fn as_u128(&self) -> Option<u128> {
        self.integer()?.parse().ok()
    }

    /// The nearest `f64`: `NaN` and the infinities as themselves, a decimal
    /// past `f64`'s range as an infinity (as Python reads it).
    pub fn as_f64(&self) -> f64 {
        match self.kind() {
            Kind::NaN => f64::NAN,
            Kind::Infinity => f64::INFINITY,
            Kind::NegInfinity => f64::NEG_INFINITY,
            Kind::Integer | Kind::Float => self
                .as_str()
                .parse()
                .expect("a JSON number parses as an f64"),
        }
    }

    fn integer(&self) -> Option<&str> {
        self.is_integer().then(|| self.as_str())
    }
}

/// Where an integer's text equals another's: only `-0` differs from `0`.
fn canonical_integer(text: &str) -> &str {
    if text == "-0" { "0" } else { text }
}

impl PartialEq for Number {
    /// Equal when both are integers of the same value, or both are non-integers
    /// of the same `f64` (`NaN` equals `NaN`, `0.0` does not equal `-0.0`);
    /// an integer never equals a float, as in JSON values generally.
    fn eq(&self, other: &Number) -> bool {
        let (a, b) = (self.as_str(), other.as_str());
        if a == b {
            return true;
        }
        match (self.kind(), other.kind()) {
            (Kind::Integer, Kind::Integer) => canonical_integer(a) == canonical_integer(b),
            (Kind::Integer, _) | (_, Kind::Integer) => false,
            _ => {
                let (x, y) = (self.as_f64(), other.as_f64());
                x.to_bits() == y.to_bits() || (x.is_nan() && y.is_nan())
            }
        }
    }
}

impl fmt::Display for Number {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for Number {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Number({})", self.as_str())
    }
}

impl std::str::FromStr for Number {
    type Err = Error;

    fn from_str(text: &str) -> Result<Number, Error> {
        Number::from_text(text)
    }
}

macro_rules! from_integer {
    ($($t:ty)*) => {$(
        impl From<$t> for Number {
            fn from(n: $t) -> Number {
                Number::from_valid(itoa::Buffer::new().format(n))
            }
        }
    )*};
}

from_integer!(i8 i16 i32 i64 i128 isize u8 u16 u32 u64 u128 usize);

impl From<f64> for Number {
    /// The shortest text that reads back as `n`; `NaN`, `Infinity` and
    /// `-Infinity` for those.
    fn from(n: f64) -> Number {
        if n.is_nan() {
            Number::from_valid("NaN")
        } else if n.is_infinite() {
            Number::from_valid(if n > 0.0 { "Infinity" } else { "-Infinity" })
        } else {
            Number::from_valid(zmij::Buffer::new().format_finite(n))
        }
    }
}

impl From<f32> for Number {
    /// The shortest text that reads back as `n` (as an `f32`).
    fn from(n: f32) -> Number {
        if n.is_finite() {
            Number::from_valid(zmij::Buffer::new().format_finite(n))
        } else {
            Number::from(f64::from(n))
        }
    }
}

/// The kind of valid number text.
pub(crate) fn kind_of(text: &str) -> Kind {
    match text {
        "NaN" => Kind::NaN,
        "Infinity" => Kind::Infinity,
        "-Infinity" => Kind::NegInfinity,
        _ if text.bytes().any(|b| matches!(b, b'.' | b'e' | b'E')) => Kind::Float,
        _ => Kind::Integer,
    }
}

/// Reads the number that starts at `at`: where it ends and what it is.
/// Python's dialect: JSON's grammar, and `NaN`, `Infinity`, `-Infinity`.
pub(crate) fn scan(bytes: &[u8], at: usize) -> Result<(usize, Kind), Error> {
    let digit = |i: usize| bytes.get(i).is_some_and(u8::is_ascii_digit);
    let mut i = at;
    let negative = bytes.get(i) == Some(&b'-');
    if negative {
        i += 1;
    }
    match bytes.get(i) {
        Some(b'I') => {
            let end = literal(bytes, i, b"Infinity")?;
            let kind = if negative {
                Kind::NegInfinity
            } else {
                Kind::Infinity
            };
            return Ok((end, kind));
        }
        Some(b'N') if !negative => return Ok((literal(bytes, i, b"NaN")?, Kind::NaN)),
        Some(b'0') => i += 1,
        Some(b'1'..=b'9') => {
            i += 1;
            while digit(i) {
                i += 1;
            }
        }
        _ => return Err(Error::syntax("expected a digit", i)),
    }
    let mut kind = Kind::Integer;
    if bytes.get(i) == Some(&b'.') {
        i += 1;
        if !digit(i) {
            return Err(Error::syntax("expected a digit after `.`", i));
        }
        while digit(i) {
            i += 1;
        }
        kind = Kind::Float;
    }
    if matches!(bytes.get(i), Some(b'e' | b'E')) {
        i += 1;
        if matches!(bytes.get(i), Some(b'+' | b'-')) {
            i += 1;
        }
        if !digit(i) {
            return Err(Error::syntax("expected a digit in the exponent", i));
        }
        while digit(i) {
            i += 1;
        }
        kind = Kind::Float;
    }
    Ok((i, kind))
}

/// The end of `word` at `at`, or an error naming it.
pub(crate) fn literal(bytes: &[u8], at: usize, word: &[u8]) -> Result<usize, Error> {
    match bytes.get(at..at + word.len()) {
        Some(found) if found == word => Ok(at + word.len()),
        _ => Err(Error::syntax(
            format!(
                "expected `{}`",
                std::str::from_utf8(word).expect("literals are ASCII")
            ),
            at,
        )),
    }
}

impl Serialize for Number {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        // Most numbers are integers that a `u64` or an `i64` writes back as
        // the same text (only `-0` would not be); the others go by their text.
        if let Some(n) = self.canonical_integer() {
            return match n {
                Ok(n) => serializer.serialize_u64(n),
                Err(n) => serializer.serialize_i64(n),
            };
        }
        RAW_NUMBER.with(|slot| *slot.borrow_mut() = Some(self.clone()));
        serializer.serialize_newtype_struct(NUMBER_TOKEN, &InOtherFormats(self))
    }
}

impl Number {
    /// The number as a `u64` (`Ok`) or negative `i64` (`Err`) whose text is
    /// exactly this number's text.
    fn canonical_integer(&self) -> Option<Result<u64, i64>> {
        let bytes = self.as_bytes();
        match bytes {
            [b'-', digits @ ..] if digits.len() <= 18 && digits.first() != Some(&b'0') => {
                let mut n: i64 = 0;
                for &digit in digits {
                    if !digit.is_ascii_digit() {
                        return None;
                    }
                    n = n * 10 - i64::from(digit - b'0');
                }
                Some(Err(n))
            }
            digits if !digits.is_empty() && digits.len() <= 19 => {
                let mut n: u64 = 0;
                for &digit in digits {
                    if !digit.is_ascii_digit() {
                        return None;
                    }
                    n = n * 10 + u64::from(digit - b'0');
                }
                Some(Ok(n))
            }
            _ => None,
        }
    }
}

/// A number for a format other than FrameX's JSON: as the serde type that
/// holds it exactly, else the nearest `f64` for a decimal, else an error for
/// an integer past 128 bits.
struct InOtherFormats<'a>(&'a Number);

impl Serialize for InOtherFormats<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        RAW_NUMBER.with(|slot| slot.borrow_mut().take());
        let number = self.0;
        if number.is_integer() {
            if let Some(n) = number.as_u64() {
                serializer.serialize_u64(n)
            } else if let Some(n) = number.as_i64() {
                serializer.serialize_i64(n)
            } else if let Some(n) = number.as_u128() {
                serializer.serialize_u128(n)
            } else if let Some(n) = number.as_i128() {
                serializer.serialize_i128(n)
            } else {
                Err(serde::ser::Error::custom(format!(
                    "integer {} does not fit 128 bits, the largest this format takes",
                    excerpt(number.as_str(), 40)
                )))
            }
        } else {
            serializer.serialize_f64(number.as_f64())
        }
    }
}

/// The name of the newtype that asks FrameX's deserializer for numbers as
/// their text (see `Deserializer::deserialize_newtype_struct`).
pub(crate) const EXACT_TOKEN: &str = "$framex_json::private::Exact";

impl<'de> Deserialize<'de> for Number {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Number, D::Error> {
        deserializer.deserialize_newtype_struct(EXACT_TOKEN, NumberVisitor)
    }
}

struct NumberVisitor;

impl<'de> Visitor<'de> for NumberVisitor {
    type Value = Number;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a number")
    }

    fn visit_newtype_struct<D: Deserializer<'de>>(self, d: D) -> Result<Number, D::Error> {
        d.deserialize_any(self)
    }

    fn visit_i64<E>(self, n: i64) -> Result<Number, E> {
        Ok(n.into())
    }

    fn visit_u64<E>(self, n: u64) -> Result<Number, E> {
        Ok(n.into())
    }

    fn visit_i128<E>(self, n: i128) -> Result<Number, E> {
        Ok(n.into())
    }

    fn visit_u128<E>(self, n: u128) -> Result<Number, E> {
        Ok(n.into())
    }

    fn visit_f64<E>(self, n: f64) -> Result<Number, E> {
        Ok(n.into())
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Number, A::Error> {
        match map.next_key::<NumberKey>()? {
            Some(NumberKey) => map.next_value::<NumberText>().map(|text| text.0),
            None => Err(de::Error::invalid_type(de::Unexpected::Map, &self)),
        }
    }
}

/// The one key of the map FrameX's deserializer hands a number's text in.
pub(crate) struct NumberKey;

impl<'de> Deserialize<'de> for NumberKey {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<NumberKey, D::Error> {
        struct KeyVisitor;
        impl Visitor<'_> for KeyVisitor {
            type Value = NumberKey;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a number")
            }
            fn visit_str<E: de::Error>(self, key: &str) -> Result<NumberKey, E> {
                if key == NUMBER_TOKEN {
                    Ok(NumberKey)
                } else {
                    Err(E::invalid_value(de::Unexpected::Str(key), &self))
                }
            }
        }
        deserializer.deserialize_identifier(KeyVisitor)
    }
}

/// A number's text, checked again: the map could come from elsewhere.
pub(crate) struct NumberText(pub(crate) Number);

impl<'de> Deserialize<'de> for NumberText {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<NumberText, D::Error> {
        struct TextVisitor;
        impl Visitor<'_> for TextVisitor {
            type Value = NumberText;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("the text of a JSON number")
            }
            fn visit_str<E: de::Error>(self, text: &str) -> Result<NumberText, E> {
                Number::from_text(text).map(NumberText).map_err(E::custom)
            }
        }
        deserializer.deserialize_str(TextVisitor)
    }
}
