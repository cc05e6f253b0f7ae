//! Reading JSON as Python FrameX writes it, straight into the type asked for.
//!
//! The dialect is Python's `json`: JSON, plus `NaN`, `Infinity` and
//! `-Infinity`, integers of any size, and no depth limit short of its
//! recursion limit. Numbers are read for the type that asks: an `f64` takes
//! `NaN`, a `u64` refuses `2^64` naming it, a [`crate::Value`] keeps the text.
//! An object written by Python FrameX as a `dynamic_obj` (a pydantic model or
//! a dataclass) is read as the object it wraps, unless a `Value` asks for it.

use std::borrow::Cow;

use serde::de::{self, DeserializeSeed, Deserializer as _, IntoDeserializer, Visitor};

use crate::error::{Error, excerpt};
use crate::number::{self, EXACT_TOKEN, Kind, NUMBER_TOKEN, Number};
use crate::scan::find_special;
use crate::value::{KEPT_ON_STACK, Map, READ_VALUE, VALUE_TOKEN, Value};

type Result<T> = std::result::Result<T, Error>;

/// Every [`GROW_EVERY`] levels of arrays and objects, the rest of the value
/// is read on a new stack segment of [`STACK_SEGMENT`] bytes if less than
/// [`RED_ZONE`] bytes of stack are left: a visitor recurses through the
/// reader, and may be anyone's.
const RED_ZONE: usize = 256 * 1024;
const STACK_SEGMENT: usize = 2 * 1024 * 1024;
/// A level takes a few KiB at most, in a debug build.
const GROW_EVERY: usize = 16;

pub(crate) struct Deserializer<'de> {
    text: &'de str,
    bytes: &'de [u8],
    pos: usize,
    depth: usize,
    /// The next value is read for a `Number` (`EXACT_TOKEN`): numbers as
    /// their text, `dynamic_obj`s as they are. A `Value` is read by
    /// [`Deserializer::read_value`], which keeps both without it.
    exact: bool,
    scratch: String,
    /// What reading may still cost, in bytes, when it is bounded (see
    /// [`Deserializer::charge`]).
    budget: Option<usize>,
    /// The bound it started with, for the message.
    budget_limit: usize,
    /// While a [`Value`] is read: where its containers are built.
    stacks: Stacks,
}

/// What a value read for a visitor that takes any value may cost: a `Value`
/// is 32 bytes, and an array growing by doubling may hold as much again and
/// its previous buffer at once.
const ANY_VALUE_COST: usize = 96;
/// What a number read for a numeric type may cost: the number and the spare
/// room of the vector it goes into.
const TYPED_NUMBER_COST: usize = 24;

impl<'de> Deserializer<'de> {
    pub(crate) fn new(text: &'de str) -> Deserializer<'de> {
        Deserializer {
            text,
            bytes: text.as_bytes(),
            pos: 0,
            depth: 0,
            exact: false,
            scratch: String::new(),
            budget: None,
            budget_limit: 0,
            stacks: Stacks::default(),
        }
    }

    /// Bounds what reading may allocate to about `bytes`: each value costs
    /// what the most expensive representation of it would (a `Value`, with
    /// its array's spare room), each string its length; past the bound,
    /// reading stops with an [`ErrorKind::TooLarge`](crate::ErrorKind) error.
    pub(crate) fn limit_memory(&mut self, bytes: usize) {
        self.budget = Some(bytes);
        self.budget_limit = bytes;
    }

    #[inline]
    fn charge(&mut self, cost: usize) -> Result<()> {
        if let Some(left) = &mut self.budget {
            match left.checked_sub(cost) {
                Some(rest) => *left = rest,
                None => return Err(Error::too_large(self.budget_limit, self.pos)),
            }
        }
        Ok(())
    }

    /// The position, for errors.
    pub(crate) fn pos(&self) -> usize {
        self.pos
    }

    /// Fails unless only whitespace is left.
    pub(crate) fn end(&mut self) -> Result<()> {
        self.skip_ws();
        if self.pos < self.bytes.len() {
            return Err(Error::syntax("unexpected text after the value", self.pos));
        }
        Ok(())
    }

    fn skip_ws(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.bytes.get(self.pos) {
            self.pos += 1;
        }
    }

    /// The next byte that is not whitespace, not consumed.
    fn peek(&mut self) -> Result<u8> {
        self.skip_ws();
        self.bytes
            .get(self.pos)
            .copied()
            .ok_or_else(|| Error::syntax("unexpected end of input, expected a value", self.pos))
    }

    fn expect(&mut self, byte: u8, what: &str) -> Result<()> {
        if self.peek().ok() == Some(byte) {
            self.pos += 1;
            Ok(())
        } else {
            Err(self.unexpected(what))
        }
    }

    /// An error for what is at the position, which is not `what` was expected.
    fn unexpected(&self, expected: &str) -> Error {
        match self.text[self.pos..].chars().next() {
            None => Error::syntax(
                format!("unexpected end of input, expected {expected}"),
                self.pos,
            ),
            Some(found) => Error::syntax(format!("expected {expected}, found {found:?}"), self.pos),
        }
    }

    /// Reads an array or object one level deeper: refused past
    /// [`crate::MAX_DEPTH`], and on a new stack segment when this one runs
    /// low, so that deep input cannot overflow the stack whatever the visitor.
    fn nest<T>(&mut self, read: impl FnOnce(&mut Self) -> Result<T>) -> Result<T> {
        if self.depth >= crate::MAX_DEPTH {
            return Err(Error::depth(Some(self.pos)));
        }
        self.depth += 1;
        let result = if self.depth.is_multiple_of(GROW_EVERY) {
            stacker::maybe_grow(RED_ZONE, STACK_SEGMENT, || read(self))
        } else {
            read(self)
        };
        self.depth -= 1;
        result
    }

    /// Reads the string whose opening quote is at the position: `Some` when it
    /// is a slice of the input, `None` when its escapes were decoded into
    /// `scratch`.
    fn read_str(&mut self) -> Result<Option<&'de str>> {
        let start = self.pos + 1;
        let at = find_special(self.bytes, start);
        match self.bytes.get(at) {
            Some(b'"') => {
                self.pos = at + 1;
                Ok(Some(&self.text[start..at]))
            }
            Some(b'\\') => {
                self.scratch.clear();
                self.scratch.push_str(&self.text[start..at]);
                self.pos = at;
                self.read_escaped()?;
                Ok(None)
            }
            Some(_) => Err(control_character(self.bytes[at], at)),
            None => Err(Error::syntax("unterminated string", start - 1)),
        }
    }

    /// Decodes the rest of a string into `scratch`, from the backslash at the
    /// position to the closing quote.
    fn read_escaped(&mut self) -> Result<()> {
        loop {
            match self.bytes.get(self.pos) {
                Some(b'"') => {
                    self.pos += 1;
                    return Ok(());
                }
                Some(b'\\') => self.read_escape()?,
                Some(&byte) => return Err(control_character(byte, self.pos)),
                None => return Err(Error::syntax("unterminated string", self.pos)),
            }
            let at = find_special(self.bytes, self.pos);
            self.scratch.push_str(&self.text[self.pos..at]);
            self.pos = at;
        }
    }

    /// Decodes the escape at the position into `scratch`.
    fn read_escape(&mut self) -> Result<()> {
        let at = self.pos;
        let decoded = match self.bytes.get(at + 1) {
            Some(b'"') => '"',
            Some(b'\\') => '\\',
            Some(b'/') => '/',
            Some(b'b') => '\u{8}',
            Some(b'f') => '\u{c}',
            Some(b'n') => '\n',
            Some(b'r') => '\r',
            Some(b't') => '\t',
            Some(b'u') => {
                let first = self.hex4(at + 2)?;
                self.pos = at + 6;
                let code = match first {
                    0xd800..=0xdbff => {
                        let low = match self.bytes.get(self.pos..self.pos + 2) {
                            Some(b"\\u") => self.hex4(self.pos + 2)?,
                            _ => return Err(lone_surrogate(first, at)),
                        };
                        if !(0xdc00..=0xdfff).contains(&low) {
                            return Err(lone_surrogate(first, at));
                        }
                        self.pos += 6;
                        0x10000 + ((first - 0xd800) << 10) + (low - 0xdc00)
                    }
                    0xdc00..=0xdfff => return Err(lone_surrogate(first, at)),
                    code => code,
                };
                self.scratch
                    .push(char::from_u32(code).expect("a valid scalar value"));
                return Ok(());
            }
            _ => {
                return Err(Error::syntax(
                    "invalid escape in a string (allowed: \\\" \\\\ \\/ \\b \\f \\n \\r \\t \\uXXXX)",
                    at,
                ));
            }
        };
        self.scratch.push(decoded);
        self.pos = at + 2;
        Ok(())
    }

    fn hex4(&self, at: usize) -> Result<u32> {
        let digits = self
            .bytes
            .get(at..at + 4)
            .and_then(|d| std::str::from_utf8(d).ok())
            .and_then(|d| {
                u32::from_str_radix(d, 16)
                    .ok()
                    .filter(|_| !d.starts_with('+'))
            });
        digits.ok_or_else(|| Error::syntax("expected four hex digits after \\u", at))
    }

    /// Reads a value and forgets it: checked as JSON, but without a visitor,
    /// recursion or a depth limit (a stack of one byte per open level).
    fn skip_value(&mut self) -> Result<()> {
        let mut open: Vec<u8> = Vec::new();
        loop {
            // One value, or the opening of an array or object.
            match self.peek()? {
                b'[' => {
                    self.pos += 1;
                    if self.peek()? != b']' {
                        open.push(b'[');
                        continue;
                    }
                    self.pos += 1;
                }
                b'{' => {
                    self.pos += 1;
                    if self.peek()? != b'}' {
                        self.skip_key()?;
                        open.push(b'{');
                        continue;
                    }
                    self.pos += 1;
                }
                b'"' => self.skip_str()?,
                b'n' => self.pos = number::literal(self.bytes, self.pos, b"null")?,
                b't' => self.pos = number::literal(self.bytes, self.pos, b"true")?,
                b'f' => self.pos = number::literal(self.bytes, self.pos, b"false")?,
                b'-' | b'0'..=b'9' | b'I' | b'N' => {
                    self.read_number()?;
                }
                _ => return Err(self.unexpected("a value")),
            }
            // After a whole value: close what it ended, or go on to the next.
            loop {
                let Some(&level) = open.last() else {
                    return Ok(());
                };
                match (self.peek()?, level) {
                    (b',', b'[') => {
                        self.pos += 1;
                        break;
                    }
                    (b',', _) => {
                        self.pos += 1;
                        self.skip_key()?;
                        break;
                    }
                    (b']', b'[') | (b'}', b'{') => {
                        self.pos += 1;
                        open.pop();
                    }
                    (_, b'[') => return Err(self.unexpected("`,` or `]`")),
                    _ => return Err(self.unexpected("`,` or `}`")),
                }
            }
        }
    }

    /// Skips an object's key and the colon after it.
    fn skip_key(&mut self) -> Result<()> {
        if self.peek()? != b'"' {
            return Err(self.unexpected("a string key"));
        }
        self.skip_str()?;
        self.expect(b':', "`:`")
    }

    /// Skips the string whose opening quote is at the position, checking its
    /// escapes and that it has no raw control characters.
    fn skip_str(&mut self) -> Result<()> {
        let start = self.pos;
        self.pos += 1;
        loop {
            let at = find_special(self.bytes, self.pos);
            match self.bytes.get(at) {
                Some(b'"') => {
                    self.pos = at + 1;
                    return Ok(());
                }
                Some(b'\\') => {
                    self.pos = at;
                    self.scratch.clear();
                    self.read_escape()?;
                }
                Some(&byte) => return Err(control_character(byte, at)),
                None => return Err(Error::syntax("unterminated string", start)),
            }
        }
    }

    /// Reads a whole string, for a visitor.
    fn visit_string<V: Visitor<'de>>(&mut self, visitor: V) -> Result<V::Value> {
        match self.read_str()? {
            Some(borrowed) => {
                self.charge(borrowed.len())?;
                visitor.visit_borrowed_str(borrowed)
            }
            None => {
                self.charge(self.scratch.len())?;
                visitor.visit_str(&self.scratch)
            }
        }
    }

    fn read_number(&mut self) -> Result<(&'de str, Kind)> {
        let (end, kind) = number::scan(self.bytes, self.pos)?;
        let text = &self.text[self.pos..end];
        self.pos = end;
        Ok((text, kind))
    }

    /// A number for a visitor that takes any value: integers as the smallest
    /// serde integer that holds them, decimals as `f64`s, and, for a `Value`,
    /// the text itself.
    fn visit_number<V: Visitor<'de>>(&mut self, visitor: V, exact: bool) -> Result<V::Value> {
        let (text, kind) = self.read_number()?;
        if exact {
            return visitor.visit_map(NumberAccess { text: Some(text) });
        }
        match kind {
            Kind::Integer => visit_integer(text, visitor),
            Kind::Float => match text.parse::<f64>() {
                Ok(float) if float.is_finite() => visitor.visit_f64(float),
                _ => Err(Error::data(format!(
                    "number {} is past the range of an f64 ({}); an `f64` parameter reads it as infinity, a `Value` keeps it",
                    excerpt(text, 40),
                    Expecting(&visitor),
                ))),
            },
            Kind::NaN | Kind::Infinity | Kind::NegInfinity => Err(Error::data(format!(
                "{text} is not a value of {}; an `f64` parameter takes it, and so does a `Value`",
                Expecting(&visitor)
            ))),
        }
    }

    /// A number for a visitor of one numeric type: integers exactly (the
    /// visitor refuses what its type cannot hold, and past `width` this
    /// refuses it naming the number), the rest as `f64`.
    fn visit_typed_number<V: Visitor<'de>>(
        &mut self,
        visitor: V,
        width: Width,
    ) -> Result<V::Value> {
        match self.peek()? {
            b'-' | b'0'..=b'9' | b'I' | b'N' => {}
            _ => return self.deserialize_any(visitor),
        }
        let start = self.pos;
        self.charge(TYPED_NUMBER_COST)?;
        let (text, kind) = self.read_number()?;
        let result = match (kind, width) {
            (Kind::Integer, Width::Bits64) => match text.parse::<u64>() {
                Ok(n) => visitor.visit_u64(n),
                Err(_) => match text.parse::<i64>() {
                    Ok(n) => visitor.visit_i64(n),
                    Err(_) => Err(too_large(text, &visitor)),
                },
            },
            (Kind::Integer, _) => visit_integer(text, visitor),
            _ => visitor.visit_f64(as_f64(text, kind)),
        };
        result.map_err(|e| e.at(start))
    }

    fn visit_array<V: Visitor<'de>>(&mut self, visitor: V) -> Result<V::Value> {
        self.nest(|de| {
            de.pos += 1;
            let value = visitor.visit_seq(SeqAccess { de, first: true })?;
            de.expect(b']', "`,` or `]`")?;
            Ok(value)
        })
    }

    fn visit_object<V: Visitor<'de>>(&mut self, visitor: V, exact: bool) -> Result<V::Value> {
        let open = self.pos;
        if !exact && self.dynamic_obj()? {
            return self.nest(|de| de.visit_dynamic_obj(visitor, open));
        }
        self.nest(|de| {
            de.pos += 1;
            let value = visitor.visit_map(MapAccess { de, first: true })?;
            de.expect(b'}', "`,` or `}`")?;
            Ok(value)
        })
    }

    /// Whether the object at the position begins with `"__type__":
    /// "dynamic_obj"`, as Python FrameX writes a pydantic model or dataclass;
    /// when it does, the position is past that entry, else unchanged.
    fn dynamic_obj(&mut self) -> Result<bool> {
        let open = self.pos;
        self.pos += 1;
        self.skip_ws();
        if self.bytes[self.pos..].starts_with(QUOTED_TYPE_KEY) {
            self.pos += QUOTED_TYPE_KEY.len();
            if self.expect(b':', "`:`").is_ok()
                && self.peek().is_ok()
                && self.bytes[self.pos..].starts_with(QUOTED_DYNAMIC_OBJ)
            {
                self.pos += QUOTED_DYNAMIC_OBJ.len();
                return Ok(true);
            }
        }
        self.pos = open;
        Ok(false)
    }

    /// Reads the `data` of a `dynamic_obj` for `visitor`, skipping its other
    /// entries; the position is past its first entry.
    fn visit_dynamic_obj<V: Visitor<'de>>(&mut self, visitor: V, open: usize) -> Result<V::Value> {
        let mut visitor = Some(visitor);
        let mut value = None;
        loop {
            match self.peek()? {
                b'}' => {
                    self.pos += 1;
                    break;
                }
                b',' => self.pos += 1,
                _ => return Err(self.unexpected("`,` or `}`")),
            }
            if self.peek()? != b'"' {
                return Err(self.unexpected("a string key"));
            }
            let is_data = self.read_str()? == Some("data");
            self.expect(b':', "`:`")?;
            match (is_data, visitor.take()) {
                (true, Some(visitor)) => value = Some(self.deserialize_any(visitor)?),
                (_, unused) => {
                    visitor = unused;
                    self.skip_value()?;
                }
            }
        }
        value.ok_or_else(|| {
            Error::data("an object marked `\"__type__\": \"dynamic_obj\"` has no `data`").at(open)
        })
    }
}

/// Reading a [`Value`] without a visitor.
///
/// Through serde, every value of a tree costs a visitor call and every number
/// a map of one entry that hands its text over and checks it again; reading
/// records of a few fields that way took twice what building the tree needs.
/// [`Value`]'s `Deserialize` asks this reader for its tree under
/// [`VALUE_TOKEN`], and the tree comes back built here (see [`READ_VALUE`]).
/// The rules are the visitor's: each value is charged [`ANY_VALUE_COST`] and
/// each string its length, a key given twice keeps its first place and its
/// last value, and a `dynamic_obj` is kept as it came.
impl Deserializer<'_> {
    pub(crate) fn read_value(&mut self) -> Result<Value> {
        self.charge(ANY_VALUE_COST)?;
        Ok(match self.peek()? {
            b'"' => Value::String(self.read_string()?),
            b'[' => return self.nest(Deserializer::read_array),
            b'{' => return self.nest(Deserializer::read_object),
            b'n' => {
                self.pos = number::literal(self.bytes, self.pos, b"null")?;
                Value::Null
            }
            b't' => {
                self.pos = number::literal(self.bytes, self.pos, b"true")?;
                Value::Bool(true)
            }
            b'f' => {
                self.pos = number::literal(self.bytes, self.pos, b"false")?;
                Value::Bool(false)
            }
            b'-' | b'0'..=b'9' | b'I' | b'N' => {
                Value::Number(Number::from_valid(self.read_number()?.0))
            }
            _ => return Err(self.unexpected("a value")),
        })
    }

    /// A string value, charged its length before it is allocated.
    fn read_string(&mut self) -> Result<String> {
        match self.read_str()? {
            Some(borrowed) => {
                self.charge(borrowed.len())?;
                Ok(borrowed.to_owned())
            }
            None => {
                self.charge(self.scratch.len())?;
                Ok(self.scratch.as_str().to_owned())
            }
        }
    }

    /// The array whose `[` is at the position.
    fn read_array(&mut self) -> Result<Value> {
        self.pos += 1;
        if self.peek()? == b']' {
            self.pos += 1;
            return Ok(Value::Array(Vec::new()));
        }
        let start = self.stacks.items.len();
        loop {
            let item = self.read_value()?;
            self.stacks.items.push(item);
            match self.peek()? {
                b',' => self.pos += 1,
                b']' => break,
                _ => return Err(self.unexpected("`,` or `]`")),
            }
        }
        self.pos += 1;
        Ok(Value::Array(self.stacks.items.drain(start..).collect()))
    }

    /// The object whose `{` is at the position.
    fn read_object(&mut self) -> Result<Value> {
        self.pos += 1;
        if self.peek()? == b'}' {
            self.pos += 1;
            return Ok(Value::Object(Map::new()));
        }
        let start = self.stacks.entries.len();
        loop {
            if self.peek()? != b'"' {
                return Err(self.unexpected("a string key"));
            }
            // Keys are not charged, as the visitor did not charge them: a key
            // comes with its value, which is.
            let key = match self.read_str()? {
                Some(borrowed) => borrowed.to_owned(),
                None => self.scratch.as_str().to_owned(),
            };
            self.expect(b':', "`:`")?;
            let value = self.read_value()?;
            self.stacks.entries.push((key, value));
            match self.peek()? {
                b',' => self.pos += 1,
                b'}' => break,
                _ => return Err(self.unexpected("`,` or `}`")),
            }
        }
        self.pos += 1;
        let entries = self.stacks.entries.drain(start..).collect();
        Ok(Value::Object(Map::from_read(entries)))
    }

    /// Reads a whole [`Value`] on this thread's stacks, which it gives back
    /// empty (and no larger than [`KEPT_ON_STACK`] elements) whatever the
    /// outcome.
    fn read_whole_value(&mut self) -> Result<Value> {
        self.stacks = STACKS.with(|stacks| stacks.take());
        let value = self.read_value();
        let mut stacks = std::mem::take(&mut self.stacks);
        stacks.empty();
        STACKS.with(|kept| kept.set(stacks));
        value
    }
}

/// The elements of the arrays being read into a [`Value`], of every level at
/// once, and the entries of the objects: a container's own are the top of
/// the stack, moved out into one allocation of exactly their number when it
/// ends. Grown in its own `Vec`, each container would reallocate and copy at
/// every doubling and keep up to twice the room it needs; records of a few
/// keys each made that a third of reading them.
#[derive(Default)]
pub(crate) struct Stacks {
    items: Vec<Value>,
    entries: Vec<(String, Value)>,
}

impl Stacks {
    /// Takes off what a failed read left, and gives back what a large
    /// document needed.
    fn empty(&mut self) {
        self.items.clear();
        self.entries.clear();
        self.items.shrink_to(KEPT_ON_STACK);
        self.entries.shrink_to(KEPT_ON_STACK);
    }
}

thread_local! {
    /// This thread's [`Stacks`], kept between reads: a reader takes them for
    /// the time it reads a `Value`, which calls no code but its own.
    static STACKS: std::cell::Cell<Stacks> = std::cell::Cell::new(Stacks::default());
}

/// This thread's kept stacks: elements waiting on them, and their room.
#[cfg(test)]
pub(crate) fn kept_stacks() -> (usize, usize) {
    let stacks = STACKS.take();
    let waiting = stacks.items.len() + stacks.entries.len();
    let room = stacks.items.capacity().max(stacks.entries.capacity());
    STACKS.set(stacks);
    (waiting, room)
}

/// What hands a [`Value`] to its `Deserialize` when this reader asks for one
/// under [`VALUE_TOKEN`]: the tree is in [`READ_VALUE`], and nothing is left
/// to read. Any other visitor that asks with the token gets an error.
struct ReadValue;

impl<'de> de::Deserializer<'de> for ReadValue {
    type Error = Error;

    fn deserialize_any<V: Visitor<'de>>(self, _visitor: V) -> Result<V::Value> {
        Err(Error::data(
            "a JSON value was read for framex_json::Value by a type that is not one",
        ))
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes
        byte_buf option unit unit_struct newtype_struct seq tuple tuple_struct map
        struct enum identifier ignored_any
    }
}

/// `"__type__"`, the first key of a `dynamic_obj`, as it is written.
const QUOTED_TYPE_KEY: &[u8] = b"\"__type__\"";
/// `"dynamic_obj"`, its value.
const QUOTED_DYNAMIC_OBJ: &[u8] = b"\"dynamic_obj\"";

/// Names what the visitor expected, for messages.
struct Expecting<'a, V>(&'a V);

impl<'de, V: Visitor<'de>> std::fmt::Display for Expecting<'_, V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.expecting(f)
    }
}

fn as_f64(text: &str, kind: Kind) -> f64 {
    match kind {
        Kind::NaN => f64::NAN,
        Kind::Infinity => f64::INFINITY,
        Kind::NegInfinity => f64::NEG_INFINITY,
        Kind::Integer | Kind::Float => text.parse().expect("a JSON number parses as an f64"),
    }
}

/// An integer's text for a visitor, as the smallest serde integer that holds
/// it; past 128 bits, an error that names it.
/// The widest integers a typed number is read as.
#[derive(Clone, Copy)]
enum Width {
    Bits64,
    Bits128,
}

fn too_large<'de, V: Visitor<'de>>(text: &str, visitor: &V) -> Error {
    de::Error::invalid_value(
        de::Unexpected::Other(&format!("integer {}", excerpt(text, 40))),
        visitor,
    )
}

fn visit_integer<'de, V: Visitor<'de>>(text: &str, visitor: V) -> Result<V::Value> {
    if text.starts_with('-') {
        if let Ok(n) = text.parse::<i64>() {
            return visitor.visit_i64(n);
        }
        if let Ok(n) = text.parse::<i128>() {
            return visitor.visit_i128(n);
        }
    } else {
        if let Ok(n) = text.parse::<u64>() {
            return visitor.visit_u64(n);
        }
        if let Ok(n) = text.parse::<u128>() {
            return visitor.visit_u128(n);
        }
    }
    Err(too_large(text, &visitor))
}

fn control_character(byte: u8, at: usize) -> Error {
    Error::syntax(
        format!("control character {byte:#04x} in a string must be escaped"),
        at,
    )
}

fn lone_surrogate(code: u32, at: usize) -> Error {
    Error::syntax(
        format!("\\u{code:04x} is half of a surrogate pair, which text cannot hold alone"),
        at,
    )
}

/// The numeric methods of the reader: each reads a number for its type.
macro_rules! typed_numbers {
    ($($method:ident: $width:ident),* $(,)?) => {$(
        fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
            self.visit_typed_number(visitor, Width::$width)
        }
    )*};
}

impl<'de> de::Deserializer<'de> for &mut Deserializer<'de> {
    type Error = Error;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        let exact = std::mem::take(&mut self.exact);
        let start = self.pos;
        self.charge(ANY_VALUE_COST)?;
        let result = match self.peek()? {
            b'n' => {
                self.pos = number::literal(self.bytes, self.pos, b"null")?;
                visitor.visit_unit()
            }
            b't' => {
                self.pos = number::literal(self.bytes, self.pos, b"true")?;
                visitor.visit_bool(true)
            }
            b'f' => {
                self.pos = number::literal(self.bytes, self.pos, b"false")?;
                visitor.visit_bool(false)
            }
            b'"' => self.visit_string(visitor),
            b'[' => self.visit_array(visitor),
            b'{' => self.visit_object(visitor, exact),
            b'-' | b'0'..=b'9' | b'I' | b'N' => self.visit_number(visitor, exact),
            _ => Err(self.unexpected("a value")),
        };
        result.map_err(|e| e.at(start))
    }

    typed_numbers!(
        deserialize_i8: Bits64, deserialize_i16: Bits64, deserialize_i32: Bits64,
        deserialize_i64: Bits64, deserialize_u8: Bits64, deserialize_u16: Bits64,
        deserialize_u32: Bits64, deserialize_u64: Bits64, deserialize_i128: Bits128,
        deserialize_u128: Bits128, deserialize_f32: Bits128, deserialize_f64: Bits128
    );

    fn deserialize_bytes<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        match self.peek()? {
            b'"' => match self.read_str()? {
                Some(borrowed) => visitor.visit_borrowed_bytes(borrowed.as_bytes()),
                None => visitor.visit_bytes(self.scratch.as_bytes()),
            },
            _ => self.deserialize_any(visitor),
        }
    }

    fn deserialize_byte_buf<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        self.deserialize_bytes(visitor)
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        if self.peek()? == b'n' {
            self.pos = number::literal(self.bytes, self.pos, b"null")?;
            visitor.visit_none()
        } else {
            visitor.visit_some(self)
        }
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        visitor: V,
    ) -> Result<V::Value> {
        if name == EXACT_TOKEN {
            self.exact = true;
            return self.deserialize_any(visitor);
        }
        if name == VALUE_TOKEN {
            let start = self.pos;
            let value = self.read_whole_value().map_err(|e| e.at(start))?;
            READ_VALUE.with(|slot| *slot.borrow_mut() = Some(value));
            let result = visitor.visit_newtype_struct(ReadValue);
            // Taken by `Value`'s visitor; a visitor that is not one left it.
            READ_VALUE.with(|slot| slot.borrow_mut().take());
            return result;
        }
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value> {
        let start = self.pos;
        let result = match self.peek()? {
            b'"' => visitor.visit_enum(UnitVariant { de: self }),
            b'{' => self.nest(|de| {
                de.pos += 1;
                let value = visitor.visit_enum(VariantAccess { de })?;
                de.expect(b'}', "`}` after the one entry of an enum")?;
                Ok(value)
            }),
            _ => Err(self.unexpected("a string or an object of one entry (an enum)")),
        };
        result.map_err(|e| e.at(start))
    }

    fn deserialize_ignored_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        // Checked and skipped, whatever its depth and its numbers.
        self.exact = false;
        self.skip_value()?;
        visitor.visit_unit()
    }

    // The value decides what it is: a visitor that wants something else
    // refuses it, naming what it got.
    serde::forward_to_deserialize_any! {
        bool char str string unit unit_struct seq tuple tuple_struct map struct identifier
    }
}

struct SeqAccess<'a, 'de> {
    de: &'a mut Deserializer<'de>,
    first: bool,
}

impl<'de> de::SeqAccess<'de> for SeqAccess<'_, 'de> {
    type Error = Error;

    fn next_element_seed<T: DeserializeSeed<'de>>(&mut self, seed: T) -> Result<Option<T::Value>> {
        match self.de.peek()? {
            b']' => return Ok(None),
            b',' if !self.first => self.de.pos += 1,
            _ if self.first => {}
            _ => return Err(self.de.unexpected("`,` or `]`")),
        }
        self.first = false;
        seed.deserialize(&mut *self.de).map(Some)
    }
}

struct MapAccess<'a, 'de> {
    de: &'a mut Deserializer<'de>,
    first: bool,
}

impl<'de> de::MapAccess<'de> for MapAccess<'_, 'de> {
    type Error = Error;

    fn next_key_seed<K: DeserializeSeed<'de>>(&mut self, seed: K) -> Result<Option<K::Value>> {
        match self.de.peek()? {
            b'}' => return Ok(None),
            b',' if !self.first => self.de.pos += 1,
            _ if self.first => {}
            _ => return Err(self.de.unexpected("`,` or `}`")),
        }
        self.first = false;
        if self.de.peek()? != b'"' {
            return Err(self.de.unexpected("a string key"));
        }
        seed.deserialize(MapKey { de: &mut *self.de }).map(Some)
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value> {
        self.de.expect(b':', "`:`")?;
        seed.deserialize(&mut *self.de)
    }
}

/// A number's text, handed to a `Value` or `Number` as a map of one entry
/// under [`NUMBER_TOKEN`].
struct NumberAccess<'de> {
    text: Option<&'de str>,
}

impl<'de> de::MapAccess<'de> for NumberAccess<'de> {
    type Error = Error;

    fn next_key_seed<K: DeserializeSeed<'de>>(&mut self, seed: K) -> Result<Option<K::Value>> {
        match self.text {
            Some(_) => seed
                .deserialize(de::value::BorrowedStrDeserializer::new(NUMBER_TOKEN))
                .map(Some),
            None => Ok(None),
        }
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value> {
        let text = self.text.take().expect("the value follows its key");
        seed.deserialize(de::value::BorrowedStrDeserializer::new(text))
    }
}

/// An object's key, for the key's type: text, or a number or boolean written
/// as text, as Python's `json` writes the keys of a `dict[int, …]`.
struct MapKey<'a, 'de> {
    de: &'a mut Deserializer<'de>,
}

impl<'de> MapKey<'_, 'de> {
    fn key(&mut self) -> Result<Cow<'de, str>> {
        Ok(match self.de.read_str()? {
            Some(borrowed) => Cow::Borrowed(borrowed),
            None => Cow::Owned(self.de.scratch.clone()),
        })
    }

    fn parsed<V: Visitor<'de>>(mut self, visitor: V) -> Result<V::Value> {
        let key = self.key()?;
        let text = key.as_ref();
        match number::scan(text.as_bytes(), 0) {
            Ok((end, Kind::Integer)) if end == text.len() => visit_integer(text, visitor),
            Ok((end, kind)) if end == text.len() => visitor.visit_f64(as_f64(text, kind)),
            _ => visitor.visit_str(text),
        }
    }
}

macro_rules! parsed_key {
    ($($method:ident)*) => {$(
        fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
            self.parsed(visitor)
        }
    )*};
}

impl<'de> de::Deserializer<'de> for MapKey<'_, 'de> {
    type Error = Error;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        self.de.visit_string(visitor)
    }

    parsed_key!(
        deserialize_i8 deserialize_i16 deserialize_i32 deserialize_i64 deserialize_i128
        deserialize_u8 deserialize_u16 deserialize_u32 deserialize_u64 deserialize_u128
        deserialize_f32 deserialize_f64
    );

    fn deserialize_bool<V: Visitor<'de>>(mut self, visitor: V) -> Result<V::Value> {
        match self.key()?.as_ref() {
            "true" => visitor.visit_bool(true),
            "false" => visitor.visit_bool(false),
            other => visitor.visit_str(other),
        }
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        visitor.visit_some(self)
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value> {
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_enum<V: Visitor<'de>>(
        mut self,
        _name: &'static str,
        _variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value> {
        let key = self.key()?;
        match key {
            Cow::Borrowed(key) => visitor.visit_enum(key.into_deserializer()),
            Cow::Owned(key) => visitor.visit_enum(key.into_deserializer()),
        }
    }

    serde::forward_to_deserialize_any! {
        char str string bytes byte_buf unit unit_struct seq tuple tuple_struct map struct
        identifier ignored_any
    }
}

/// An enum written as its variant's name.
struct UnitVariant<'a, 'de> {
    de: &'a mut Deserializer<'de>,
}

impl<'de> de::EnumAccess<'de> for UnitVariant<'_, 'de> {
    type Error = Error;
    type Variant = Self;

    fn variant_seed<V: DeserializeSeed<'de>>(self, seed: V) -> Result<(V::Value, Self)> {
        let variant = seed.deserialize(&mut *self.de)?;
        Ok((variant, self))
    }
}

impl<'de> de::VariantAccess<'de> for UnitVariant<'_, 'de> {
    type Error = Error;

    fn unit_variant(self) -> Result<()> {
        Ok(())
    }

    fn newtype_variant_seed<T: DeserializeSeed<'de>>(self, _seed: T) -> Result<T::Value> {
        Err(de::Error::invalid_type(
            de::Unexpected::UnitVariant,
            &"a variant with a value, written as an object of one entry",
        ))
    }

    fn tuple_variant<V: Visitor<'de>>(self, _len: usize, _visitor: V) -> Result<V::Value> {
        Err(de::Error::invalid_type(
            de::Unexpected::UnitVariant,
            &"a tuple variant, written as an object of one entry",
        ))
    }

    fn struct_variant<V: Visitor<'de>>(
        self,
        _fields: &'static [&'static str],
        _visitor: V,
    ) -> Result<V::Value> {
        Err(de::Error::invalid_type(
            de::Unexpected::UnitVariant,
            &"a struct variant, written as an object of one entry",
        ))
    }
}

/// An enum written as an object of one entry: the variant's name, its value.
struct VariantAccess<'a, 'de> {
    de: &'a mut Deserializer<'de>,
}

impl<'de> de::EnumAccess<'de> for VariantAccess<'_, 'de> {
    type Error = Error;
    type Variant = Self;

    fn variant_seed<V: DeserializeSeed<'de>>(self, seed: V) -> Result<(V::Value, Self)> {
        if self.de.peek()? != b'"' {
            return Err(self.de.unexpected("the variant's name"));
        }
        let variant = seed.deserialize(MapKey { de: &mut *self.de })?;
        self.de.expect(b':', "`:`")?;
        Ok((variant, self))
    }
}

impl<'de> de::VariantAccess<'de> for VariantAccess<'_, 'de> {
    type Error = Error;

    fn unit_variant(self) -> Result<()> {
        de::Deserialize::deserialize(&mut *self.de)
    }

    fn newtype_variant_seed<T: DeserializeSeed<'de>>(self, seed: T) -> Result<T::Value> {
        seed.deserialize(&mut *self.de)
    }

    fn tuple_variant<V: Visitor<'de>>(self, _len: usize, visitor: V) -> Result<V::Value> {
        self.de.deserialize_any(visitor)
    }

    fn struct_variant<V: Visitor<'de>>(
        self,
        _fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value> {
        self.de.deserialize_any(visitor)
    }
}

/// Reads a JSON object's entries one at a time, each value straight into its
/// own type: how a function's keyword arguments are read, so that an error
/// can name the argument.
///
/// ```
/// use framex_json::ObjectReader;
///
/// let mut reader = ObjectReader::new(br#"{"job_id": "j-1", "copies": 3}"#)?;
/// let (mut job_id, mut copies) = (None, None);
/// while let Some(key) = reader.next_key()? {
///     match key.as_ref() {
///         "job_id" => job_id = Some(reader.value::<String>()?),
///         "copies" => copies = Some(reader.value::<u32>()?),
///         _ => reader.skip_value()?,
///     }
/// }
/// assert_eq!((job_id.as_deref(), copies), (Some("j-1"), Some(3)));
/// # Ok::<(), framex_json::Error>(())
/// ```
pub struct ObjectReader<'de> {
    de: Deserializer<'de>,
    first: bool,
}

impl std::fmt::Debug for ObjectReader<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ObjectReader")
            .field("at", &self.de.pos)
            .finish()
    }
}

impl<'de> ObjectReader<'de> {
    /// A reader of the object that `bytes` holds; an error when they hold
    /// something else, naming what.
    pub fn new(bytes: &'de [u8]) -> std::result::Result<ObjectReader<'de>, Error> {
        let text = crate::utf8(bytes)?;
        let mut de = Deserializer::new(text);
        let found = match de.peek()? {
            b'{' => None,
            b'[' => Some("an array"),
            b'"' => Some("a string"),
            b'n' => Some("null"),
            b't' | b'f' => Some("a boolean"),
            b'-' | b'0'..=b'9' | b'I' | b'N' => Some("a number"),
            _ => return Err(de.unexpected("a JSON object")),
        };
        if let Some(found) = found {
            return Err(Error::data(format!(
                "expected a JSON object, found {found}"
            )));
        }
        de.pos += 1;
        de.depth = 1;
        Ok(ObjectReader { de, first: true })
    }

    /// Bounds what reading the values may allocate to about `bytes` (see
    /// [`crate::from_slice_limited`]).
    pub fn limit_memory(&mut self, bytes: usize) {
        self.de.limit_memory(bytes);
    }

    /// The next key, or `None` after the last one (the rest of the input is
    /// then checked to be only whitespace).
    pub fn next_key(&mut self) -> std::result::Result<Option<Cow<'de, str>>, Error> {
        match self.de.peek()? {
            b'}' => {
                self.de.pos += 1;
                self.de.end()?;
                return Ok(None);
            }
            b',' if !self.first => self.de.pos += 1,
            _ if self.first => {}
            _ => return Err(self.de.unexpected("`,` or `}`")),
        }
        self.first = false;
        if self.de.peek()? != b'"' {
            return Err(self.de.unexpected("a string key"));
        }
        let key = match self.de.read_str()? {
            Some(borrowed) => Cow::Borrowed(borrowed),
            None => Cow::Owned(self.de.scratch.clone()),
        };
        self.de.expect(b':', "`:`")?;
        Ok(Some(key))
    }

    /// The value of the key just read, as a `T`.
    pub fn value<T: de::Deserialize<'de>>(&mut self) -> std::result::Result<T, Error> {
        let start = self.de.pos;
        T::deserialize(&mut self.de).map_err(|e| e.at(start))
    }

    /// Skips the value of the key just read.
    pub fn skip_value(&mut self) -> std::result::Result<(), Error> {
        self.de.skip_value()
    }
}
