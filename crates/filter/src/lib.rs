//! Per-upstream enable/disable rules for FrameX route forwarding.
//!
//! A [`Rules`] value is compiled once from the `enable` and `disable` lists of one
//! `[plugins.proxy.proxy_urls."URL"]` table and then answers, for any route path,
//! whether that upstream's route is forwarded, together with the rule that decided.
//!
//! The semantics are those of Python FrameX, extended with globs:
//!
//! * a `disable` rule that matches wins over every `enable` rule;
//! * a path that matches no `enable` rule is not forwarded;
//! * `"*"` and `"/*"` match every path;
//! * a rule ending in `/*` matches every path under that prefix, nested segments
//!   included (`/api/v1/*` matches `/api/v1/a/b/c`, not `/api/v1`);
//! * a rule equal to the path matches it, even when the rule contains glob
//!   metacharacters (OpenAPI templates such as `/users/{id}` are literal paths);
//! * beyond that, a rule is a glob: `*` and `?` stay within one path segment, `**`
//!   crosses segments, and `{a,b}` and `[abc]` work as usual; a final `/*` still
//!   reaches into nested segments (`/api/{v1,v2}/*` matches `/api/v2/a/b`).
//!
//! Matching does no IO and allocates nothing.
//!
//! ```
//! use framex_filter::{Decision, Rules};
//!
//! let rules = Rules::new(["/api/v1/*"], ["/api/v1/internal/*"])?;
//! assert!(rules.decide("/api/v1/users/42").is_enabled());
//! match rules.decide("/api/v1/internal/jobs") {
//!     Decision::Disabled(rule) => assert_eq!(rule.pattern(), "/api/v1/internal/*"),
//!     other => panic!("unexpected decision {other:?}"),
//! }
//! assert!(matches!(rules.decide("/health"), Decision::Unmatched));
//! # Ok::<(), framex_filter::Error>(())
//! ```

use std::fmt;

use globset::{GlobBuilder, GlobMatcher};

#[cfg(test)]
mod tests;

/// Why a rule could not be compiled.
#[derive(Debug, thiserror::Error)]
#[error("invalid rule `{pattern}`: {kind}")]
pub struct Error {
    pattern: String,
    kind: ErrorKind,
    #[source]
    source: Option<globset::Error>,
}

/// The kind of an [`Error`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The rule is the empty string, which matches no route.
    Empty,
    /// The rule is not a valid glob.
    InvalidGlob,
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ErrorKind::Empty => f.write_str("a rule must not be empty"),
            ErrorKind::InvalidGlob => f.write_str("not a valid glob"),
        }
    }
}

impl Error {
    /// The rule as written in the configuration.
    pub fn pattern(&self) -> &str {
        &self.pattern
    }

    /// What is wrong with it.
    pub fn kind(&self) -> &ErrorKind {
        &self.kind
    }
}

/// Whether a rule came from the `enable` or the `disable` list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RuleKind {
    /// From `enable`.
    Enable,
    /// From `disable`.
    Disable,
}

/// One compiled enable or disable rule.
#[derive(Debug, Clone)]
pub struct Rule {
    pattern: String,
    kind: RuleKind,
    shape: Shape,
    glob: GlobMatcher,
}

/// How the Python-compatible part of a rule matches.
#[derive(Debug, Clone)]
enum Shape {
    /// `*` or `/*`: every path.
    Everything,
    /// `prefix/*`: every path starting with `prefix/`; holds the length of `prefix/`.
    Prefix(usize),
    /// Any other rule: the path equal to it.
    Exact,
}

impl Rule {
    fn compile(pattern: &str, kind: RuleKind) -> Result<Rule, Error> {
        if pattern.is_empty() {
            return Err(Error {
                pattern: String::new(),
                kind: ErrorKind::Empty,
                source: None,
            });
        }
        // A final `/*` reaches into nested segments, as in FrameX's own rule, so it
        // becomes the recursive `/**` in the glob as well.
        let glob_source = match pattern.strip_suffix("/*") {
            Some(prefix) => format!("{prefix}/**"),
            None => pattern.to_owned(),
        };
        let glob = GlobBuilder::new(&glob_source)
            .literal_separator(true)
            .backslash_escape(true)
            .build()
            .map_err(|source| Error {
                pattern: pattern.to_owned(),
                kind: ErrorKind::InvalidGlob,
                source: Some(source),
            })?;
        let shape = if pattern == "*" || pattern == "/*" {
            Shape::Everything
        } else if pattern.ends_with("/*") {
            Shape::Prefix(pattern.len() - 1)
        } else {
            Shape::Exact
        };
        Ok(Rule {
            pattern: pattern.to_owned(),
            kind,
            shape,
            glob: glob.compile_matcher(),
        })
    }

    /// The rule as written in the configuration.
    pub fn pattern(&self) -> &str {
        &self.pattern
    }

    /// Whether the rule came from `enable` or `disable`.
    pub fn kind(&self) -> RuleKind {
        self.kind
    }

    /// Whether this rule matches `path`.
    pub fn matches(&self, path: &str) -> bool {
        let literal = match self.shape {
            Shape::Everything => true,
            Shape::Prefix(len) => path.starts_with(&self.pattern[..len]),
            Shape::Exact => path == self.pattern,
        };
        literal || self.glob.is_match(path)
    }
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let list = match self.kind {
            RuleKind::Enable => "enable",
            RuleKind::Disable => "disable",
        };
        write!(f, "{list} rule `{}`", self.pattern)
    }
}

/// The decision for one path, carrying the rule that made it.
#[derive(Debug, Clone, Copy)]
pub enum Decision<'a> {
    /// No rule matched: the route is not forwarded.
    Unmatched,
    /// An enable rule matched and no disable rule did.
    Enabled(&'a Rule),
    /// A disable rule matched; it wins over any enable rule.
    Disabled(&'a Rule),
}

impl<'a> Decision<'a> {
    /// Whether the route is forwarded.
    pub fn is_enabled(&self) -> bool {
        matches!(self, Decision::Enabled(_))
    }

    /// The rule that decided, if any matched.
    pub fn rule(&self) -> Option<&'a Rule> {
        match *self {
            Decision::Unmatched => None,
            Decision::Enabled(rule) | Decision::Disabled(rule) => Some(rule),
        }
    }
}

impl fmt::Display for Decision<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Decision::Unmatched => f.write_str("disabled: no enable rule matches"),
            Decision::Enabled(rule) => write!(f, "enabled by {rule}"),
            Decision::Disabled(rule) => write!(f, "disabled by {rule}"),
        }
    }
}

/// The compiled enable and disable rules of one upstream.
#[derive(Debug, Clone)]
pub struct Rules {
    enable: Vec<Rule>,
    disable: Vec<Rule>,
}

impl Rules {
    /// Compiles the `enable` and `disable` lists of one upstream.
    ///
    /// Fails on the first rule that is empty or not a valid glob; use
    /// [`Rules::compile_all`] to collect every invalid rule.
    pub fn new<E, D>(enable: E, disable: D) -> Result<Rules, Error>
    where
        E: IntoIterator,
        E::Item: AsRef<str>,
        D: IntoIterator,
        D::Item: AsRef<str>,
    {
        Rules::compile_all(enable, disable).map_err(|mut errors| errors.swap_remove(0))
    }

    /// Like [`Rules::new`], but reports every invalid rule, in list order
    /// (enable first).
    pub fn compile_all<E, D>(enable: E, disable: D) -> Result<Rules, Vec<Error>>
    where
        E: IntoIterator,
        E::Item: AsRef<str>,
        D: IntoIterator,
        D::Item: AsRef<str>,
    {
        let mut errors = Vec::new();
        let mut compile = |patterns: Vec<String>, kind| {
            patterns
                .iter()
                .filter_map(|pattern| {
                    Rule::compile(pattern, kind)
                        .map_err(|e| errors.push(e))
                        .ok()
                })
                .collect::<Vec<_>>()
        };
        let enable = compile(collect(enable), RuleKind::Enable);
        let disable = compile(collect(disable), RuleKind::Disable);
        if errors.is_empty() {
            Ok(Rules { enable, disable })
        } else {
            Err(errors)
        }
    }

    /// Rules that forward every route: the default `enable = ["*"]`.
    pub fn allow_all() -> Rules {
        Rules::new(["*"], [] as [&str; 0]).expect("`*` is a valid rule")
    }

    /// Decides whether the route `path` is forwarded.
    ///
    /// A matching disable rule wins; otherwise the first matching enable rule
    /// enables; otherwise the path is [`Decision::Unmatched`].
    pub fn decide(&self, path: &str) -> Decision<'_> {
        if let Some(rule) = self.disable.iter().find(|rule| rule.matches(path)) {
            return Decision::Disabled(rule);
        }
        match self.enable.iter().find(|rule| rule.matches(path)) {
            Some(rule) => Decision::Enabled(rule),
            None => Decision::Unmatched,
        }
    }

    /// The enable rules, in configuration order.
    pub fn enable(&self) -> &[Rule] {
        &self.enable
    }

    /// The disable rules, in configuration order.
    pub fn disable(&self) -> &[Rule] {
        &self.disable
    }
}

fn collect<I>(patterns: I) -> Vec<String>
where
    I: IntoIterator,
    I::Item: AsRef<str>,
{
    patterns
        .into_iter()
        .map(|p| p.as_ref().to_owned())
        .collect()
}
