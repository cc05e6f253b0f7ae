//! What a handler takes and gives: keyword arguments and a result, each as
//! the JSON text it travels as, read into Rust types only where they are used.
//!
//! A call that arrives over the wire hands its decoded bytes to the handler,
//! which reads each parameter straight into its type; a handler writes its
//! result straight into bytes that go on the wire. No JSON tree is built on
//! the way unless a function asks for one ([`framex_transport::Value`]).

use std::borrow::Cow;
use std::fmt;

use framex_transport::json::{self, ErrorKind, ObjectReader};
use serde::Serialize;
use serde::de::{Deserialize, DeserializeOwned};

use crate::HandlerError;

/// A call's keyword arguments: the JSON text of an object, in Python
/// FrameX's dialect (see `framex_json`).
#[derive(Clone, PartialEq, Eq)]
pub struct Kwargs {
    json: Vec<u8>,
    /// What reading them may allocate, when bounded.
    max_memory: Option<usize>,
}

impl fmt::Debug for Kwargs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Kwargs")
            .field("bytes", &self.json.len())
            .finish()
    }
}

impl Default for Kwargs {
    /// No keyword arguments: `{}`.
    fn default() -> Kwargs {
        Kwargs {
            json: b"{}".to_vec(),
            max_memory: None,
        }
    }
}

impl Kwargs {
    /// Keyword arguments written from `kwargs`, which must serialize to a JSON
    /// object (a struct, a map, an object value).
    pub fn new<T: Serialize + ?Sized>(kwargs: &T) -> Result<Kwargs, KwargsError> {
        let json = json::to_vec(kwargs).map_err(KwargsError::Json)?;
        match json.first() {
            Some(b'{') => Ok(Kwargs {
                json,
                max_memory: None,
            }),
            _ => Err(KwargsError::NotAnObject {
                found: json::from_slice::<json::Value>(&json)
                    .map_or("a value", |value| value.kind()),
            }),
        }
    }

    /// Keyword arguments as they arrived, decoded from the wire; a handler
    /// refuses them if they are not a JSON object.
    pub fn from_json(json: Vec<u8>) -> Kwargs {
        Kwargs {
            json,
            max_memory: None,
        }
    }

    /// Bounds what reading them may allocate to about `bytes` (see
    /// `framex_json::from_slice_limited`): a caller's small payload of
    /// `[0,0,0,…]` must not become gigabytes of values.
    pub fn limit_memory(mut self, bytes: usize) -> Kwargs {
        self.max_memory = Some(bytes);
        self
    }

    /// No keyword arguments: `{}`.
    pub fn empty() -> Kwargs {
        Kwargs::default()
    }

    /// The JSON text.
    pub fn as_json(&self) -> &[u8] {
        &self.json
    }

    /// Reads all the arguments into a `T` (a struct of the parameters, a map, a
    /// `Value`).
    pub fn parse<'a, T: Deserialize<'a>>(&'a self) -> Result<T, HandlerError> {
        let read = match self.max_memory {
            Some(bytes) => json::from_slice_limited(&self.json, bytes),
            None => json::from_slice(&self.json),
        };
        read.map_err(|e| match e.kind() {
            ErrorKind::TooLarge => HandlerError::TooLarge(e.to_string()),
            _ => HandlerError::Arguments(e.to_string()),
        })
    }

    /// Reads the arguments one by one, each into the type of its parameter.
    pub fn reader(&self) -> Result<KwargsReader<'_>, HandlerError> {
        let mut reader = ObjectReader::new(&self.json)
            .map_err(|e| HandlerError::Arguments(format!("keyword arguments: {}", problem(&e))))?;
        if let Some(bytes) = self.max_memory {
            reader.limit_memory(bytes);
        }
        Ok(KwargsReader {
            reader,
            unexpected: Vec::new(),
        })
    }
}

/// Why keyword arguments could not be written.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KwargsError {
    /// They do not serialize as JSON.
    #[error("keyword arguments are not JSON")]
    Json(#[source] json::Error),
    /// They are not a JSON object.
    #[error("keyword arguments must be a JSON object, not {found}")]
    NotAnObject {
        /// What they are: `an array`, `a string`, `null`…
        found: &'static str,
    },
}

/// Reads keyword arguments one at a time into the types of the parameters,
/// so that an error names the argument; what `#[on_proxy]` handlers use.
#[derive(Debug)]
pub struct KwargsReader<'a> {
    reader: ObjectReader<'a>,
    unexpected: Vec<String>,
}

impl<'a> KwargsReader<'a> {
    /// The next argument's name, or `None` after the last.
    pub fn next_name(&mut self) -> Result<Option<Cow<'a, str>>, HandlerError> {
        self.reader
            .next_key()
            .map_err(|e| HandlerError::Arguments(format!("keyword arguments: {e}")))
    }

    /// The value of the argument just named, as the parameter `name`'s type.
    pub fn value<T: Deserialize<'a>>(&mut self, name: &str) -> Result<T, HandlerError> {
        self.reader.value().map_err(|e| match e.kind() {
            ErrorKind::TooLarge => {
                HandlerError::TooLarge(format!("keyword argument `{name}`: {e}"))
            }
            _ => HandlerError::Arguments(format!("keyword argument `{name}`: {}", problem(&e))),
        })
    }

    /// Notes that the argument just named is none of the function's; its
    /// value is skipped, and [`KwargsReader::finish`] refuses the call.
    pub fn unexpected(&mut self, name: &str) -> Result<(), HandlerError> {
        self.unexpected.push(name.to_owned());
        self.reader
            .skip_value()
            .map_err(|e| HandlerError::Arguments(format!("keyword argument `{name}`: {e}")))
    }

    /// Refuses the call if any argument was none of the function's, naming them.
    pub fn finish(self) -> Result<(), HandlerError> {
        if self.unexpected.is_empty() {
            return Ok(());
        }
        let names: Vec<String> = self
            .unexpected
            .iter()
            .map(|name| format!("`{name}`"))
            .collect();
        Err(HandlerError::Arguments(format!(
            "unexpected keyword argument{} {}",
            if names.len() == 1 { "" } else { "s" },
            names.join(", ")
        )))
    }
}

/// What is wrong, for a message: a value that does not fit names itself; bad
/// JSON says where it is.
fn problem(error: &json::Error) -> String {
    match error.kind() {
        ErrorKind::Data => error.message().to_owned(),
        _ => error.to_string(),
    }
}

/// The value of a parameter that may be left out: what it was given, else
/// `None` for an `Option`, else an error naming the missing argument.
pub fn required<T: DeserializeOwned>(given: Option<T>, name: &str) -> Result<T, HandlerError> {
    match given {
        Some(value) => Ok(value),
        None => T::deserialize(Missing)
            .map_err(|_| HandlerError::Arguments(format!("missing keyword argument `{name}`"))),
    }
}

/// A value that is not there: an `Option` reads it as `None`, anything else
/// refuses it.
struct Missing;

impl<'de> serde::Deserializer<'de> for Missing {
    type Error = serde::de::value::Error;

    fn deserialize_any<V: serde::de::Visitor<'de>>(
        self,
        _visitor: V,
    ) -> Result<V::Value, Self::Error> {
        Err(serde::de::Error::custom("missing"))
    }

    fn deserialize_option<V: serde::de::Visitor<'de>>(
        self,
        visitor: V,
    ) -> Result<V::Value, Self::Error> {
        visitor.visit_none()
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf
        unit unit_struct newtype_struct seq tuple tuple_struct map struct enum identifier
        ignored_any
    }
}

/// A handler's result: the JSON text of a value.
#[derive(Clone, PartialEq, Eq)]
pub struct Output {
    json: Vec<u8>,
}

impl fmt::Debug for Output {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Output")
            .field("bytes", &self.json.len())
            .finish()
    }
}

impl Output {
    /// The result `value`, written as JSON; a value that is not JSON (a map
    /// with keys that are not text, nesting past the limit) fails the call.
    pub fn new<T: Serialize + ?Sized>(value: &T) -> Result<Output, HandlerError> {
        json::to_vec(value)
            .map(|json| Output { json })
            .map_err(|e| HandlerError::Failed(format!("the result is not JSON: {e}")))
    }

    /// A result that is already JSON text.
    pub fn from_json(json: Vec<u8>) -> Output {
        Output { json }
    }

    /// The JSON text.
    pub fn as_json(&self) -> &[u8] {
        &self.json
    }

    /// The JSON text, owned.
    pub fn into_json(self) -> Vec<u8> {
        self.json
    }

    /// Reads the result into a `T`; a `dynamic_obj` from Python FrameX is read
    /// as the object it wraps.
    pub fn parse<T: DeserializeOwned>(&self) -> Result<T, json::Error> {
        json::from_slice(&self.json)
    }
}
