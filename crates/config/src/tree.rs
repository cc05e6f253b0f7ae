//! The configuration as a tree of values that remember where they came from: parsed
//! from a TOML file, then overlaid with `FRAMEX__…` environment variables.
//!
//! The tree knows no schema; `walk.rs` gives it meaning.

use std::fmt;

use toml::de::{DeTable, DeValue};

use crate::diagnostic::{Diagnostic, DiagnosticKind, Location, Severity};

/// Where a node came from, cheap to copy around until a diagnostic needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Origin {
    /// A byte offset into the configuration file.
    File(usize),
    /// An environment variable, by name.
    Env(String),
    /// Created to hold an environment override, or the empty document.
    Defaults,
}

#[derive(Debug, Clone)]
pub(crate) struct Node {
    pub(crate) value: Value,
    pub(crate) origin: Origin,
}

#[derive(Debug, Clone)]
pub(crate) enum Value {
    String(String),
    Integer(Option<i64>),
    Float,
    Boolean(bool),
    Datetime,
    Array(Vec<Node>),
    Table(Vec<Entry>),
}

#[derive(Debug, Clone)]
pub(crate) struct Entry {
    pub(crate) key: String,
    pub(crate) key_origin: Origin,
    pub(crate) value: Node,
}

impl Value {
    pub(crate) fn type_name(&self) -> &'static str {
        match self {
            Value::String(_) => "a string",
            Value::Integer(_) => "an integer",
            Value::Float => "a float",
            Value::Boolean(_) => "a boolean",
            Value::Datetime => "a datetime",
            Value::Array(_) => "an array",
            Value::Table(_) => "a table",
        }
    }
}

impl Node {
    pub(crate) fn empty_table() -> Node {
        Node {
            value: Value::Table(Vec::new()),
            origin: Origin::Defaults,
        }
    }

    /// Parses a TOML document; a syntax error is reported at its position.
    pub(crate) fn parse_document(text: &str) -> Result<Node, (String, Origin)> {
        match DeTable::parse(text) {
            Ok(table) => Ok(convert_table(
                table.get_ref(),
                &|span| Origin::File(span),
                table.span().start,
            )),
            Err(error) => {
                let offset = error.span().map_or(0, |span| span.start);
                Err((error.message().trim().to_owned(), Origin::File(offset)))
            }
        }
    }

    /// Parses an environment variable's value as a TOML value, or else takes it as
    /// a string.
    pub(crate) fn parse_env_value(variable: &str, text: &str) -> Node {
        let origin = Origin::Env(variable.to_owned());
        match DeValue::parse(text) {
            Ok(value) => convert(value.get_ref(), &|_| origin.clone(), 0),
            Err(_) => Node {
                value: Value::String(text.to_owned()),
                origin,
            },
        }
    }
}

fn convert_table(table: &DeTable<'_>, origin: &dyn Fn(usize) -> Origin, offset: usize) -> Node {
    let entries = table
        .iter()
        .map(|(key, value)| Entry {
            key: key.get_ref().to_string(),
            key_origin: origin(key.span().start),
            value: convert(value.get_ref(), origin, value.span().start),
        })
        .collect();
    Node {
        value: Value::Table(entries),
        origin: origin(offset),
    }
}

fn convert(value: &DeValue<'_>, origin: &dyn Fn(usize) -> Origin, offset: usize) -> Node {
    let value = match value {
        DeValue::String(s) => Value::String(s.to_string()),
        DeValue::Integer(i) => Value::Integer(i64::from_str_radix(i.as_str(), i.radix()).ok()),
        DeValue::Float(_) => Value::Float,
        DeValue::Boolean(b) => Value::Boolean(*b),
        DeValue::Datetime(_) => Value::Datetime,
        DeValue::Array(items) => Value::Array(
            items
                .iter()
                .map(|item| convert(item.get_ref(), origin, item.span().start))
                .collect(),
        ),
        DeValue::Table(table) => return convert_table(table, origin, offset),
    };
    Node {
        value,
        origin: origin(offset),
    }
}

/// A key path in TOML notation, for messages: `plugins.proxy.proxy_urls."http://a:1"`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct KeyPath(String);

impl KeyPath {
    pub(crate) fn child(&self, key: &str) -> KeyPath {
        let bare = !key.is_empty()
            && key
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
        let mut path = self.0.clone();
        if !path.is_empty() {
            path.push('.');
        }
        if bare {
            path.push_str(key);
        } else {
            path.push('"');
            for c in key.chars() {
                match c {
                    '"' => path.push_str("\\\""),
                    '\\' => path.push_str("\\\\"),
                    c => path.push(c),
                }
            }
            path.push('"');
        }
        KeyPath(path)
    }

    pub(crate) fn index(&self, index: usize) -> KeyPath {
        KeyPath(format!("{}[{index}]", self.0))
    }

    pub(crate) fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for KeyPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Turns origins into user-facing locations and collects diagnostics.
#[derive(Debug)]
pub(crate) struct Reporter<'a> {
    file: Option<(&'a std::path::Path, &'a str)>,
    line_starts: Vec<usize>,
    /// The last offset a column was counted for, and that column: the next
    /// offset on the same line counts on from there. Diagnostics come mostly in
    /// file order, so a long line (a whole table inline) is counted once, not
    /// once per diagnostic on it.
    last_column: std::cell::Cell<(usize, usize)>,
    pub(crate) diagnostics: Vec<Diagnostic>,
}

impl<'a> Reporter<'a> {
    pub(crate) fn new(file: Option<(&'a std::path::Path, &'a str)>) -> Reporter<'a> {
        let line_starts = match file {
            Some((_, text)) => std::iter::once(0)
                .chain(text.match_indices('\n').map(|(i, _)| i + 1))
                .collect(),
            None => Vec::new(),
        };
        Reporter {
            file,
            line_starts,
            last_column: std::cell::Cell::new((0, 1)),
            diagnostics: Vec::new(),
        }
    }

    pub(crate) fn location(&self, origin: &Origin) -> Location {
        match (origin, self.file) {
            (Origin::File(offset), Some((path, text))) => {
                let offset = (*offset).min(text.len());
                let line = self.line_starts.partition_point(|&start| start <= offset);
                let start = self.line_starts[line - 1];
                let (last_offset, last_column) = self.last_column.get();
                let (from, column) = if (start..=offset).contains(&last_offset) {
                    (last_offset, last_column)
                } else {
                    (start, 1)
                };
                let column = column
                    + text
                        .get(from..offset)
                        .map_or(0, |between| between.chars().count());
                self.last_column.set((offset, column));
                Location::File {
                    path: path.to_owned(),
                    line,
                    column,
                }
            }
            (Origin::Env(variable), _) => Location::Env {
                variable: variable.clone(),
            },
            _ => Location::Defaults,
        }
    }

    pub(crate) fn error(
        &mut self,
        kind: DiagnosticKind,
        origin: &Origin,
        key: &KeyPath,
        message: String,
    ) {
        self.push(Severity::Error, kind, origin, key, message);
    }

    pub(crate) fn warn(
        &mut self,
        kind: DiagnosticKind,
        origin: &Origin,
        key: &KeyPath,
        message: String,
    ) {
        self.push(Severity::Warning, kind, origin, key, message);
    }

    fn push(
        &mut self,
        severity: Severity,
        kind: DiagnosticKind,
        origin: &Origin,
        key: &KeyPath,
        message: String,
    ) {
        let location = self.location(origin);
        self.diagnostics.push(Diagnostic::new(
            severity,
            kind,
            location,
            key.as_str(),
            message,
        ));
    }

    pub(crate) fn has_errors(&self) -> bool {
        self.diagnostics
            .iter()
            .any(|d| d.severity() == Severity::Error)
    }
}

/// Applies one `FRAMEX__A__B=value` override to the tree. `segments` are the
/// lowercased parts after the prefix.
pub(crate) fn apply_override(
    root: &mut Node,
    variable: &str,
    segments: &[String],
    value: Node,
    reporter: &mut Reporter<'_>,
) {
    let origin = Origin::Env(variable.to_owned());
    let mut path = KeyPath::default();
    let mut node = root;
    for (depth, segment) in segments.iter().enumerate() {
        let found = node.value.type_name();
        let Value::Table(entries) = &mut node.value else {
            reporter.error(
                DiagnosticKind::InvalidOverride,
                &origin,
                &path,
                format!(
                    "cannot set `{}` inside {found}",
                    segments[depth..].join(".")
                ),
            );
            return;
        };
        path = path.child(segment);
        let position = match entries
            .iter()
            .position(|entry| entry.key.eq_ignore_ascii_case(segment))
        {
            Some(position) => position,
            None => {
                entries.push(Entry {
                    key: segment.clone(),
                    key_origin: origin.clone(),
                    value: Node::empty_table(),
                });
                entries.len() - 1
            }
        };
        let entry = &mut entries[position];
        if depth + 1 == segments.len() {
            entry.key_origin = origin.clone();
            entry.value = value;
            return;
        }
        node = &mut entry.value;
    }
}
