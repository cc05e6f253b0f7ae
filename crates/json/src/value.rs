//! `Value`, a JSON value as Python FrameX sends it, and `Map`, its objects.
//!
//! Numbers keep their text ([`Number`]), objects keep their keys in order
//! ([`Map`]), and a `dynamic_obj` (a pydantic model or dataclass that Python
//! FrameX wrapped on the way) stays wrapped, so that a value passed on reaches
//! the next instance as it left the first. [`Value::dynamic_obj`] and
//! [`Value::unwrap_dynamic_objs`] look inside; typed reading
//! ([`crate::from_value`]) unwraps it.

use std::cell::RefCell;
use std::fmt;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::ser::{Serialize, SerializeMap, SerializeSeq, Serializer};

use crate::number::Number;

/// A JSON value.
///
/// ```
/// use framex_json::Value;
///
/// let value: Value = r#"{"b": 18446744073709551616, "a": NaN, "c": [1.5e+16]}"#.parse()?;
/// assert_eq!(value["b"].as_number().unwrap().as_str(), "18446744073709551616");
/// assert!(value["a"].as_f64().unwrap().is_nan());
/// // Keys in the order they came, numbers as they were written.
/// assert_eq!(value.to_string(), r#"{"b":18446744073709551616,"a":NaN,"c":[1.5e+16]}"#);
/// # Ok::<(), framex_json::Error>(())
/// ```
#[derive(Clone, Debug, Default, PartialEq)]
pub enum Value {
    /// `null` (Python's `None`).
    #[default]
    Null,
    /// `true` or `false`.
    Bool(bool),
    /// A number of any size or precision, `NaN` and the infinities included.
    Number(Number),
    /// A string.
    String(String),
    /// An array (a Python list).
    Array(Vec<Value>),
    /// An object (a Python dict), its keys in order.
    Object(Map),
}

/// A JSON object: keys in the order they were read or inserted.
///
/// A key read twice is kept once, at its first place, with its last value,
/// as Python's `json` reads it. Lookups compare keys one by one: objects that
/// carry calls are small.
#[derive(Clone, Default)]
pub struct Map {
    entries: Vec<(String, Value)>,
}

static NULL: Value = Value::Null;

impl Value {
    /// Whether it is `null`.
    pub fn is_null(&self) -> bool {
        matches!(self, Value::Null)
    }

    /// The boolean, if it is one.
    pub fn as_bool(&self) -> Option<bool> {
        match self {
            Value::Bool(b) => Some(*b),
            _ => None,
        }
    }

    /// The number, if it is one.
    pub fn as_number(&self) -> Option<&Number> {
        match self {
            Value::Number(n) => Some(n),
            _ => None,
        }
    }

    /// The number as an `i64`, if it is an integer in range.
    pub fn as_i64(&self) -> Option<i64> {
        self.as_number()?.as_i64()
    }

    /// The number as a `u64`, if it is an integer in range.
    pub fn as_u64(&self) -> Option<u64> {
        self.as_number()?.as_u64()
    }

    /// The number as the nearest `f64`, if it is a number.
    pub fn as_f64(&self) -> Option<f64> {
        Some(self.as_number()?.as_f64())
    }

    /// The string, if it is one.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::String(s) => Some(s),
            _ => None,
        }
    }

    /// The array, if it is one.
    pub fn as_array(&self) -> Option<&Vec<Value>> {
        match self {
            Value::Array(items) => Some(items),
            _ => None,
        }
    }

    /// The array, mutably, if it is one.
    pub fn as_array_mut(&mut self) -> Option<&mut Vec<Value>> {
        match self {
            Value::Array(items) => Some(items),
            _ => None,
        }
    }

    /// The object, if it is one.
    pub fn as_object(&self) -> Option<&Map> {
        match self {
            Value::Object(map) => Some(map),
            _ => None,
        }
    }

    /// The object, mutably, if it is one.
    pub fn as_object_mut(&mut self) -> Option<&mut Map> {
        match self {
            Value::Object(map) => Some(map),
            _ => None,
        }
    }

    /// The value under `key` of an object, or at index `key` of an array.
    pub fn get<I: Index>(&self, key: I) -> Option<&Value> {
        key.index_into(self)
    }

    /// Takes the value out, leaving `null`.
    pub fn take(&mut self) -> Value {
        std::mem::take(self)
    }

    /// What kind of value it is, as messages name it: `null`, `a boolean`,
    /// `a number`, `a string`, `an array` or `an object`.
    pub fn kind(&self) -> &'static str {
        match self {
            Value::Null => "null",
            Value::Bool(_) => "a boolean",
            Value::Number(_) => "a number",
            Value::String(_) => "a string",
            Value::Array(_) => "an array",
            Value::Object(_) => "an object",
        }
    }

    /// The object a Python FrameX `dynamic_obj` wraps, if this is one: an
    /// object whose first key is `__type__` with the value `"dynamic_obj"`
    /// and that has `data`, as Python FrameX writes a pydantic model or a
    /// dataclass.
    pub fn dynamic_obj(&self) -> Option<DynamicObj<'_>> {
        let map = self.as_object()?;
        if !map.is_dynamic_obj() {
            return None;
        }
        Some(DynamicObj {
            module: map.get("__module__").and_then(Value::as_str),
            class: map.get("__class__").and_then(Value::as_str),
            data: map.get("data")?,
        })
    }

    /// The value with every `dynamic_obj`, at any depth, replaced by the
    /// object it wraps: what a reader of the data wants to see.
    pub fn unwrap_dynamic_objs(self) -> Value {
        match self {
            Value::Object(mut map) if map.is_dynamic_obj() => {
                map.remove("data").unwrap_or_default().unwrap_dynamic_objs()
            }
            Value::Object(map) => Value::Object(
                map.into_iter()
                    .map(|(key, value)| (key, value.unwrap_dynamic_objs()))
                    .collect(),
            ),
            Value::Array(items) => {
                Value::Array(items.into_iter().map(Value::unwrap_dynamic_objs).collect())
            }
            other => other,
        }
    }
}

/// The first key of a `dynamic_obj`.
const DYNAMIC_TYPE_KEY: &str = "__type__";
/// Its value.
const DYNAMIC_OBJ: &str = "dynamic_obj";

/// A pydantic model or dataclass as Python FrameX sends it (see
/// [`Value::dynamic_obj`]).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DynamicObj<'a> {
    /// The Python module of its class (`__module__`), if given.
    pub module: Option<&'a str>,
    /// Its class name (`__class__`), if given.
    pub class: Option<&'a str>,
    /// Its fields (`data`).
    pub data: &'a Value,
}

impl fmt::Display for Value {
    /// Compact JSON, as FrameX writes it on the wire.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match crate::to_vec(self) {
            Ok(bytes) => f.write_str(std::str::from_utf8(&bytes).map_err(|_| fmt::Error)?),
            Err(_) => Err(fmt::Error),
        }
    }
}

impl std::str::FromStr for Value {
    type Err = crate::Error;

    fn from_str(text: &str) -> Result<Value, crate::Error> {
        crate::from_str(text)
    }
}

/// What [`Value::get`] and indexing take: a key of an object or an index of
/// an array.
pub trait Index: private::Sealed {
    #[doc(hidden)]
    fn index_into(self, value: &Value) -> Option<&Value>;
}

mod private {
    pub trait Sealed {}
    impl Sealed for usize {}
    impl Sealed for &str {}
    impl Sealed for &String {}
}

impl Index for usize {
    fn index_into(self, value: &Value) -> Option<&Value> {
        value.as_array()?.get(self)
    }
}

impl Index for &str {
    fn index_into(self, value: &Value) -> Option<&Value> {
        value.as_object()?.get(self)
    }
}

impl Index for &String {
    fn index_into(self, value: &Value) -> Option<&Value> {
        value.as_object()?.get(self)
    }
}

impl<I: Index> std::ops::Index<I> for Value {
    type Output = Value;

    /// The value under a key or at an index; `null` when there is none.
    fn index(&self, key: I) -> &Value {
        key.index_into(self).unwrap_or(&NULL)
    }
}

impl Map {
    /// An empty object.
    pub fn new() -> Map {
        Map::default()
    }

    /// An empty object with room for `capacity` entries.
    pub fn with_capacity(capacity: usize) -> Map {
        Map {
            entries: Vec::with_capacity(capacity),
        }
    }

    /// The number of entries.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether it has no entries.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Whether it is a `dynamic_obj` (see [`Value::dynamic_obj`]).
    fn is_dynamic_obj(&self) -> bool {
        matches!(self.entries.first(), Some((key, Value::String(kind)))
            if key == DYNAMIC_TYPE_KEY && kind == DYNAMIC_OBJ)
            && self.contains_key("data")
    }

    fn position(&self, key: &str) -> Option<usize> {
        self.entries.iter().position(|(k, _)| k == key)
    }

    /// The value under `key`.
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.position(key).map(|at| &self.entries[at].1)
    }

    /// The value under `key`, mutably.
    pub fn get_mut(&mut self, key: &str) -> Option<&mut Value> {
        self.position(key).map(|at| &mut self.entries[at].1)
    }

    /// Whether `key` is present.
    pub fn contains_key(&self, key: &str) -> bool {
        self.position(key).is_some()
    }

    /// Sets `key` to `value`, in its place if present (returning the value it
    /// had), else at the end.
    pub fn insert(&mut self, key: impl Into<String>, value: impl Into<Value>) -> Option<Value> {
        let key = key.into();
        let value = value.into();
        match self.position(&key) {
            Some(at) => Some(std::mem::replace(&mut self.entries[at].1, value)),
            None => {
                self.entries.push((key, value));
                None
            }
        }
    }

    /// Removes `key`, keeping the order of the others.
    pub fn remove(&mut self, key: &str) -> Option<Value> {
        let at = self.position(key)?;
        Some(self.entries.remove(at).1)
    }

    /// The entries, in order.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = (&String, &Value)> {
        self.entries.iter().map(|(k, v)| (k, v))
    }

    /// The entries, in order, values mutably.
    pub fn iter_mut(&mut self) -> impl ExactSizeIterator<Item = (&String, &mut Value)> {
        self.entries.iter_mut().map(|(k, v)| (&*k, v))
    }

    /// The keys, in order.
    pub fn keys(&self) -> impl ExactSizeIterator<Item = &String> {
        self.entries.iter().map(|(k, _)| k)
    }

    /// The values, in the order of their keys.
    pub fn values(&self) -> impl ExactSizeIterator<Item = &Value> {
        self.entries.iter().map(|(_, v)| v)
    }

    /// Builds an object from entries as read: a key given twice keeps its
    /// first place and its last value, as Python's `json` does.
    pub(crate) fn from_read(mut entries: Vec<(String, Value)>) -> Map {
        if has_duplicates(&entries) {
            let mut kept: Vec<(String, Value)> = Vec::with_capacity(entries.len());
            let mut first: std::collections::HashMap<String, usize> =
                std::collections::HashMap::new();
            for (key, value) in entries.drain(..) {
                match first.get(&key) {
                    Some(&at) => kept[at].1 = value,
                    None => {
                        first.insert(key.clone(), kept.len());
                        kept.push((key, value));
                    }
                }
            }
            entries = kept;
        }
        Map { entries }
    }
}

/// Whether any key appears twice: pairwise for small objects, hashed for
/// large ones.
fn has_duplicates(entries: &[(String, Value)]) -> bool {
    if entries.len() <= 16 {
        return entries
            .iter()
            .enumerate()
            .any(|(i, (key, _))| entries[..i].iter().any(|(k, _)| k == key));
    }
    let mut seen = std::collections::HashSet::with_capacity(entries.len());
    !entries.iter().all(|(key, _)| seen.insert(key.as_str()))
}

impl PartialEq for Map {
    /// Equal when both have the same keys with equal values, in any order, as
    /// Python compares dicts.
    fn eq(&self, other: &Map) -> bool {
        self.len() == other.len()
            && self
                .entries
                .iter()
                .all(|(key, value)| other.get(key) == Some(value))
    }
}

impl fmt::Debug for Map {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

impl std::ops::Index<&str> for Map {
    type Output = Value;

    fn index(&self, key: &str) -> &Value {
        self.get(key).unwrap_or(&NULL)
    }
}

impl IntoIterator for Map {
    type Item = (String, Value);
    type IntoIter = std::vec::IntoIter<(String, Value)>;

    fn into_iter(self) -> Self::IntoIter {
        self.entries.into_iter()
    }
}

impl<K: Into<String>, V: Into<Value>> FromIterator<(K, V)> for Map {
    fn from_iter<I: IntoIterator<Item = (K, V)>>(entries: I) -> Map {
        let mut map = Map::new();
        map.extend(entries);
        map
    }
}

impl<K: Into<String>, V: Into<Value>> Extend<(K, V)> for Map {
    fn extend<I: IntoIterator<Item = (K, V)>>(&mut self, entries: I) {
        for (key, value) in entries {
            self.insert(key, value);
        }
    }
}

macro_rules! from_number {
    ($($t:ty)*) => {$(
        impl From<$t> for Value {
            fn from(n: $t) -> Value {
                Value::Number(n.into())
            }
        }
    )*};
}

from_number!(i8 i16 i32 i64 i128 isize u8 u16 u32 u64 u128 usize f32 f64);

impl From<bool> for Value {
    fn from(b: bool) -> Value {
        Value::Bool(b)
    }
}

impl From<Number> for Value {
    fn from(n: Number) -> Value {
        Value::Number(n)
    }
}

impl From<&str> for Value {
    fn from(s: &str) -> Value {
        Value::String(s.to_owned())
    }
}

impl From<String> for Value {
    fn from(s: String) -> Value {
        Value::String(s)
    }
}

impl From<Map> for Value {
    fn from(map: Map) -> Value {
        Value::Object(map)
    }
}

impl<T: Into<Value>> From<Vec<T>> for Value {
    fn from(items: Vec<T>) -> Value {
        Value::Array(items.into_iter().map(Into::into).collect())
    }
}

impl<T: Into<Value>> From<Option<T>> for Value {
    fn from(value: Option<T>) -> Value {
        value.map_or(Value::Null, Into::into)
    }
}

impl From<()> for Value {
    fn from((): ()) -> Value {
        Value::Null
    }
}

impl From<serde_json::Value> for Value {
    /// The same value: numbers keep serde_json's text, objects their order.
    fn from(value: serde_json::Value) -> Value {
        match value {
            serde_json::Value::Null => Value::Null,
            serde_json::Value::Bool(b) => Value::Bool(b),
            serde_json::Value::Number(n) => Value::Number(
                Number::from_text(&n.to_string()).expect("serde_json writes JSON numbers"),
            ),
            serde_json::Value::String(s) => Value::String(s),
            serde_json::Value::Array(items) => {
                Value::Array(items.into_iter().map(Value::from).collect())
            }
            serde_json::Value::Object(map) => Value::Object(
                map.into_iter()
                    .map(|(key, value)| (key, Value::from(value)))
                    .collect(),
            ),
        }
    }
}

impl PartialEq<str> for Value {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == Some(other)
    }
}

impl PartialEq<&str> for Value {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == Some(*other)
    }
}

impl PartialEq<String> for Value {
    fn eq(&self, other: &String) -> bool {
        self.as_str() == Some(other.as_str())
    }
}

impl PartialEq<bool> for Value {
    fn eq(&self, other: &bool) -> bool {
        self.as_bool() == Some(*other)
    }
}

macro_rules! eq_integer {
    ($($t:ty)*) => {$(
        impl PartialEq<$t> for Value {
            /// Equal to an integer of the same value.
            fn eq(&self, other: &$t) -> bool {
                self.as_number().is_some_and(|n| n.is_integer() && n.as_i128() == Some(i128::from(*other)))
            }
        }
    )*};
}

eq_integer!(i8 i16 i32 i64 u8 u16 u32 u64);

impl PartialEq<f64> for Value {
    /// Equal to a number whose nearest `f64` is `other`.
    fn eq(&self, other: &f64) -> bool {
        self.as_f64() == Some(*other)
    }
}

impl PartialEq<serde_json::Value> for Value {
    /// Equal as JSON values: numbers of the same kind and value, objects with
    /// the same entries in any order.
    fn eq(&self, other: &serde_json::Value) -> bool {
        use serde_json::Value as Json;
        match (self, other) {
            (Value::Null, Json::Null) => true,
            (Value::Bool(a), Json::Bool(b)) => a == b,
            (Value::Number(a), Json::Number(b)) => match (b.as_u64(), b.as_i64()) {
                (Some(b), _) => a.is_integer() && a.as_u64() == Some(b),
                (_, Some(b)) => a.is_integer() && a.as_i64() == Some(b),
                _ => !a.is_integer() && b.as_f64() == Some(a.as_f64()),
            },
            (Value::String(a), Json::String(b)) => a == b,
            (Value::Array(a), Json::Array(b)) => {
                a.len() == b.len() && a.iter().zip(b).all(|(a, b)| a == b)
            }
            (Value::Object(a), Json::Object(b)) => {
                a.len() == b.len() && a.iter().all(|(key, a)| b.get(key).is_some_and(|b| a == b))
            }
            _ => false,
        }
    }
}

impl PartialEq<Value> for serde_json::Value {
    fn eq(&self, other: &Value) -> bool {
        other == self
    }
}

impl Serialize for Value {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Value::Null => serializer.serialize_unit(),
            Value::Bool(b) => serializer.serialize_bool(*b),
            Value::Number(n) => n.serialize(serializer),
            Value::String(s) => serializer.serialize_str(s),
            Value::Array(items) => {
                let mut seq = serializer.serialize_seq(Some(items.len()))?;
                for item in items {
                    seq.serialize_element(item)?;
                }
                seq.end()
            }
            Value::Object(map) => map.serialize(serializer),
        }
    }
}

impl Serialize for Map {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut out = serializer.serialize_map(Some(self.len()))?;
        for (key, value) in &self.entries {
            out.serialize_entry(key, value)?;
        }
        out.end()
    }
}

/// The name of the newtype a [`Value`] asks its deserializer for: FrameX's
/// reader builds the tree itself and hands it over in [`READ_VALUE`]; other
/// formats call the visitor as for any newtype.
pub(crate) const VALUE_TOKEN: &str = "$framex_json::private::Value";

thread_local! {
    /// The tree FrameX's reader has just read for a [`Value`], taken by the
    /// visitor it then calls. serde has no way to hand a visitor a value that
    /// is already built, and building it through the visitor, one call per
    /// value and a map per number, cost twice as much.
    pub(crate) static READ_VALUE: RefCell<Option<Value>> = const { RefCell::new(None) };
}

impl<'de> Deserialize<'de> for Value {
    /// From FrameX's reader, the tree as it reads it (numbers as their text,
    /// `dynamic_obj`s as they came); from other formats, with the numbers
    /// those formats have.
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Value, D::Error> {
        deserializer.deserialize_newtype_struct(VALUE_TOKEN, ValueVisitor)
    }
}

impl<'de> Deserialize<'de> for Map {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Map, D::Error> {
        match Value::deserialize(deserializer)? {
            Value::Object(map) => Ok(map),
            other => Err(de::Error::invalid_type(
                unexpected(&other),
                &"a JSON object",
            )),
        }
    }
}

fn unexpected(value: &Value) -> de::Unexpected<'_> {
    match value {
        Value::Null => de::Unexpected::Unit,
        Value::Bool(b) => de::Unexpected::Bool(*b),
        Value::Number(_) => de::Unexpected::Other("a number"),
        Value::String(s) => de::Unexpected::Str(s),
        Value::Array(_) => de::Unexpected::Seq,
        Value::Object(_) => de::Unexpected::Map,
    }
}

struct ValueVisitor;

impl<'de> Visitor<'de> for ValueVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_newtype_struct<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        match READ_VALUE.with(|slot| slot.borrow_mut().take()) {
            Some(value) => Ok(value),
            None => d.deserialize_any(self),
        }
    }

    fn visit_bool<E>(self, b: bool) -> Result<Value, E> {
        Ok(Value::Bool(b))
    }

    fn visit_i64<E>(self, n: i64) -> Result<Value, E> {
        Ok(n.into())
    }

    fn visit_u64<E>(self, n: u64) -> Result<Value, E> {
        Ok(n.into())
    }

    fn visit_i128<E>(self, n: i128) -> Result<Value, E> {
        Ok(n.into())
    }

    fn visit_u128<E>(self, n: u128) -> Result<Value, E> {
        Ok(n.into())
    }

    fn visit_f64<E>(self, n: f64) -> Result<Value, E> {
        Ok(n.into())
    }

    fn visit_str<E>(self, s: &str) -> Result<Value, E> {
        Ok(Value::String(s.to_owned()))
    }

    fn visit_string<E>(self, s: String) -> Result<Value, E> {
        Ok(Value::String(s))
    }

    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        Value::deserialize(d)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let open = Open::new(&ITEMS);
        while let Some(item) = seq.next_element()? {
            open.push(item);
        }
        Ok(Value::Array(open.finish()))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let open = Open::new(&ENTRIES);
        while let Some(key) = map.next_key::<String>()? {
            let value = map.next_value()?;
            open.push((key, value));
        }
        Ok(Value::Object(Map::from_read(open.finish())))
    }
}

thread_local! {
    /// The elements of the arrays being read on this thread, of every level at
    /// once, and the entries of the objects: a container's own are the top of
    /// the stack, moved out into one allocation of exactly their number when
    /// it ends. Grown in its own `Vec`, each container would reallocate and
    /// copy at every doubling and keep up to twice the room it needs; records
    /// of a few keys each made that a third of reading them.
    pub(crate) static ITEMS: RefCell<Vec<Value>> = const { RefCell::new(Vec::new()) };
    pub(crate) static ENTRIES: RefCell<Vec<(String, Value)>> = const { RefCell::new(Vec::new()) };
}

/// The most elements a thread's stack keeps room for once the outermost
/// container is read: what a large document needed is given back.
pub(crate) const KEPT_ON_STACK: usize = 4096;

/// A container being read: its elements are the stack's from `start` on.
/// Dropped unfinished (an error, or a panic, in an element), it takes them off.
struct Open<T: 'static> {
    stack: &'static std::thread::LocalKey<RefCell<Vec<T>>>,
    start: usize,
}

impl<T: 'static> Open<T> {
    fn new(stack: &'static std::thread::LocalKey<RefCell<Vec<T>>>) -> Open<T> {
        let start = stack.with(|stack| stack.borrow().len());
        Open { stack, start }
    }

    /// Adds an element. The stack is borrowed only while it is pushed: reading
    /// the element, which may open containers of its own, is done by then.
    fn push(&self, item: T) {
        self.stack.with(|stack| stack.borrow_mut().push(item));
    }

    /// The container's elements, in one allocation of their number; dropping
    /// `self` then gives back the room of a large document.
    fn finish(self) -> Vec<T> {
        self.stack
            .with(|stack| stack.borrow_mut().drain(self.start..).collect())
    }
}

impl<T: 'static> Drop for Open<T> {
    /// Takes off what an unfinished container left (nothing once finished),
    /// and past the outermost container shrinks the stack.
    fn drop(&mut self) {
        let start = self.start;
        // During a thread's teardown the stack may be gone already.
        let _ = self.stack.try_with(|stack| {
            if let Ok(mut stack) = stack.try_borrow_mut() {
                stack.truncate(start);
                if start == 0 && stack.capacity() > KEPT_ON_STACK {
                    stack.shrink_to(KEPT_ON_STACK);
                }
            }
        });
    }
}
