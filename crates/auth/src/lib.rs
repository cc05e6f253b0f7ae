//! Proxy-key rules, for both sides of a FrameX call.
//!
//! A [`Rules`] value maps route paths to the keys that may call them, with the
//! precedence of Python FrameX:
//!
//! * a rule equal to the path wins;
//! * otherwise the longest rule ending in `/*` whose prefix (the rule without its
//!   final `*`) starts the path wins;
//! * a path that no rule matches is public.
//!
//! The server side ([`Rules::check`]) compares the `Authorization` header against
//! the winning rule's keys in constant time: SHA-256 digests of the same length
//! are compared, so not even a key's length shows in the time taken. The header
//! carries the raw key, as Python FrameX sends it; `Bearer <key>` is accepted
//! too; a request with two `Authorization` headers is refused. The client side
//! ([`Rules::key_for`]) picks the key to send: the first key of the winning rule.
//!
//! A rule is an exact path or a prefix ending in `/*`; a `*` anywhere else is
//! refused, since Python FrameX would take it as part of an exact path. Keys are
//! printable ASCII without leading or trailing spaces, what a header carries.
//!
//! Keys never appear in `Debug` output, `Display` output or errors.
//!
//! [`RequireProxyKeyLayer`] applies the server side to every request of a tower
//! service.
//!
//! ```
//! use framex_auth::{Decision, Rules};
//!
//! let rules = Rules::new([
//!     ("/api/v1/proxy/remote", vec!["proxy-key"]),
//!     ("/api/v1/*", vec!["api-key"]),
//! ])?;
//! assert_eq!(rules.key_for("/api/v1/proxy/remote").map(|k| k.expose()), Some("proxy-key"));
//! assert!(matches!(rules.check("/api/v1/jobs", Some(b"Bearer api-key")), Decision::Allowed { .. }));
//! assert!(matches!(rules.check("/health", None), Decision::Public));
//! # Ok::<(), framex_auth::Error>(())
//! ```

use std::collections::HashMap;
use std::fmt;

use http::HeaderMap;
use http::header::AUTHORIZATION;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

mod layer;
#[cfg(test)]
mod tests;

pub use layer::{Denial, RequireProxyKey, RequireProxyKeyLayer, ResponseFuture};

/// Why a set of rules could not be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A rule's path is the empty string.
    #[error("an auth rule path must not be empty")]
    EmptyPath,
    /// A rule's path does not start with `/`.
    #[error("auth rule path `{path}` must start with `/`")]
    RelativePath {
        /// The path as written.
        path: String,
    },
    /// A rule's path has a `*` that is not its whole last segment.
    #[error(
        "auth rule path `{path}`: `*` may only be a rule's whole last segment (`/api/v1/*` covers \
         every path under `/api/v1/`); any other rule is an exact path"
    )]
    MisplacedWildcard {
        /// The path as written.
        path: String,
    },
    /// A rule lists no key, so nobody could call its routes.
    #[error("auth rule `{path}` lists no key; remove the rule to make the path public")]
    NoKeys {
        /// The rule's path.
        path: String,
    },
    /// A rule lists a key that an `Authorization` header cannot carry as it is.
    #[error("auth rule `{path}`: the key at position {index} {problem}")]
    InvalidKey {
        /// The rule's path.
        path: String,
        /// The key's position in the list, from 0.
        index: usize,
        /// What is wrong with it (never the key itself).
        problem: KeyProblem,
    },
}

/// What is wrong with a key; see [`Error::InvalidKey`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum KeyProblem {
    /// It is empty.
    Empty,
    /// It starts or ends with a space, which a server trims from the header.
    SurroundingSpace,
    /// It holds a character that is not printable ASCII (a newline, a tab, a
    /// non-ASCII letter).
    NotPrintableAscii,
}

impl fmt::Display for KeyProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            KeyProblem::Empty => "is empty",
            KeyProblem::SurroundingSpace => {
                "starts or ends with a space, which the server trims from the header"
            }
            KeyProblem::NotPrintableAscii => {
                "holds a character that is not printable ASCII, which an Authorization header cannot carry"
            }
        })
    }
}

/// What is wrong with `key`, if anything.
fn key_problem(key: &str) -> Option<KeyProblem> {
    if key.is_empty() {
        Some(KeyProblem::Empty)
    } else if !key.bytes().all(|b| (0x20..0x7f).contains(&b)) {
        Some(KeyProblem::NotPrintableAscii)
    } else if key.starts_with(' ') || key.ends_with(' ') {
        Some(KeyProblem::SurroundingSpace)
    } else {
        None
    }
}

/// A proxy key. Its value is shown only through [`Key::expose`].
#[derive(Clone, PartialEq, Eq)]
pub struct Key {
    text: String,
    digest: [u8; 32],
}

impl Key {
    /// The key's value, to put in a request header. Never log it.
    pub fn expose(&self) -> &str {
        &self.text
    }

    /// Whether `presented` is this key, in time that depends on neither.
    fn ct_eq(&self, presented: &[u8; 32]) -> bool {
        self.digest.ct_eq(presented).into()
    }
}

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Key(<redacted>)")
    }
}

/// One path rule and its accepted keys.
#[derive(Debug, Clone)]
pub struct Rule {
    path: String,
    keys: Vec<Key>,
}

impl Rule {
    /// A rule for `path` accepting `keys`: an exact path or a `/prefix/*`,
    /// and at least one key, each printable ASCII without surrounding spaces.
    pub fn new<P, K, S>(path: P, keys: K) -> Result<Rule, Error>
    where
        P: Into<String>,
        K: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let path = path.into();
        if path.is_empty() {
            return Err(Error::EmptyPath);
        }
        if !path.starts_with('/') {
            return Err(Error::RelativePath { path });
        }
        let body = path.strip_suffix("/*").unwrap_or(&path);
        if body.contains('*') {
            return Err(Error::MisplacedWildcard { path });
        }
        let mut collected = Vec::new();
        for (index, key) in keys.into_iter().enumerate() {
            let key = key.into();
            if let Some(problem) = key_problem(&key) {
                return Err(Error::InvalidKey {
                    path,
                    index,
                    problem,
                });
            }
            collected.push(Key {
                digest: Sha256::digest(key.as_bytes()).into(),
                text: key,
            });
        }
        if collected.is_empty() {
            return Err(Error::NoKeys { path });
        }
        Ok(Rule {
            path,
            keys: collected,
        })
    }

    /// The rule's path as written, for example `/api/v1/proxy/remote` or `/api/*`.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// The accepted keys, in configuration order.
    pub fn keys(&self) -> &[Key] {
        &self.keys
    }

    fn accepts(&self, presented: &[u8]) -> bool {
        let presented: [u8; 32] = Sha256::digest(presented).into();
        // Compare against every key, so the time taken does not say which one matched.
        self.keys
            .iter()
            .fold(false, |found, key| key.ct_eq(&presented) | found)
    }
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "auth rule `{}`", self.path)
    }
}

/// The server-side decision for one request.
#[derive(Debug, Clone, Copy)]
pub enum Decision<'a> {
    /// No rule covers the path.
    Public,
    /// The presented key is one of the rule's keys.
    Allowed {
        /// The rule that protects the path.
        rule: &'a Rule,
    },
    /// The request may not call the path.
    Denied {
        /// The rule that protects the path.
        rule: &'a Rule,
        /// Why the request was refused.
        reason: DenyReason,
    },
}

impl Decision<'_> {
    /// Whether the request may proceed.
    pub fn is_allowed(&self) -> bool {
        !matches!(self, Decision::Denied { .. })
    }
}

impl fmt::Display for Decision<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Decision::Public => f.write_str("public: no auth rule covers the path"),
            Decision::Allowed { rule } => write!(f, "allowed by {rule}"),
            Decision::Denied { rule, reason } => write!(f, "denied by {rule}: {reason}"),
        }
    }
}

/// Why a request was denied. Never carries the presented key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum DenyReason {
    /// The request has no `Authorization` header.
    MissingHeader,
    /// The header is present but holds no key (empty, or `Bearer` alone).
    EmptyKey,
    /// The header holds a key that the rule does not accept.
    WrongKey,
    /// The request has more than one `Authorization` header, so which one
    /// counts would depend on who reads it.
    DuplicateHeader,
}

impl fmt::Display for DenyReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            DenyReason::MissingHeader => "missing Authorization header",
            DenyReason::EmptyKey => "empty key in Authorization header",
            DenyReason::WrongKey => "wrong key",
            DenyReason::DuplicateHeader => "more than one Authorization header",
        })
    }
}

/// A set of proxy-key rules.
#[derive(Debug, Clone, Default)]
pub struct Rules {
    exact: HashMap<String, Rule>,
    /// Rules ending in `/*`, longest prefix first.
    prefixes: Vec<Rule>,
}

impl Rules {
    /// Builds the rules from `(path, keys)` pairs (see [`Rule::new`]).
    pub fn new<I, P, K, S>(rules: I) -> Result<Rules, Error>
    where
        I: IntoIterator<Item = (P, K)>,
        P: Into<String>,
        K: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let rules: Result<Vec<Rule>, Error> = rules
            .into_iter()
            .map(|(path, keys)| Rule::new(path, keys))
            .collect();
        Ok(Rules::from_rules(rules?))
    }

    /// Builds the rules from rules already made; a later rule for the same
    /// path replaces an earlier one.
    pub fn from_rules(rules: impl IntoIterator<Item = Rule>) -> Rules {
        let mut built = Rules::default();
        for rule in rules {
            if rule.path.ends_with("/*") {
                built.prefixes.retain(|other| other.path != rule.path);
                built.prefixes.push(rule);
            } else {
                built.exact.insert(rule.path.clone(), rule);
            }
        }
        built.prefixes.sort_by(|a, b| {
            b.path
                .len()
                .cmp(&a.path.len())
                .then_with(|| a.path.cmp(&b.path))
        });
        built
    }

    /// Whether there are no rules, so every path is public.
    pub fn is_empty(&self) -> bool {
        self.exact.is_empty() && self.prefixes.is_empty()
    }

    /// The rule that governs `path`: the exact rule, else the longest matching
    /// `/*` prefix, else none (the path is public).
    pub fn rule_for(&self, path: &str) -> Option<&Rule> {
        self.exact.get(path).or_else(|| {
            self.prefixes
                .iter()
                .find(|rule| path.starts_with(&rule.path[..rule.path.len() - 1]))
        })
    }

    /// Client side: the key to send when calling `path` on an upstream, the first key
    /// of the rule that governs it.
    pub fn key_for(&self, path: &str) -> Option<&Key> {
        self.rule_for(path).and_then(|rule| rule.keys.first())
    }

    /// Server side: decides whether a request to `path` whose `Authorization` header
    /// holds `authorization` (raw bytes, `None` when absent) may proceed.
    pub fn check(&self, path: &str, authorization: Option<&[u8]>) -> Decision<'_> {
        let Some(rule) = self.rule_for(path) else {
            return Decision::Public;
        };
        let Some(header) = authorization else {
            return Decision::Denied {
                rule,
                reason: DenyReason::MissingHeader,
            };
        };
        let header = header.trim_ascii();
        let bearer = strip_bearer(header);
        if header.is_empty() || bearer.is_some_and(<[u8]>::is_empty) {
            return Decision::Denied {
                rule,
                reason: DenyReason::EmptyKey,
            };
        }
        // The raw header is tried as a key too, so a key that itself starts with
        // `Bearer ` still works when sent raw.
        let accepted = rule.accepts(header) | bearer.is_some_and(|key| rule.accepts(key));
        if accepted {
            Decision::Allowed { rule }
        } else {
            Decision::Denied {
                rule,
                reason: DenyReason::WrongKey,
            }
        }
    }

    /// [`Rules::check`] for a request's headers; more than one `Authorization`
    /// header on a protected path is refused.
    pub fn check_headers(&self, path: &str, headers: &HeaderMap) -> Decision<'_> {
        let mut values = headers.get_all(AUTHORIZATION).iter();
        let first = values.next();
        if values.next().is_some()
            && let Some(rule) = self.rule_for(path)
        {
            return Decision::Denied {
                rule,
                reason: DenyReason::DuplicateHeader,
            };
        }
        self.check(path, first.map(|value| value.as_bytes()))
    }

    /// Every rule: exact rules by path, then prefix rules, longest first.
    pub fn iter(&self) -> impl Iterator<Item = &Rule> {
        let mut exact: Vec<&Rule> = self.exact.values().collect();
        exact.sort_by(|a, b| a.path.cmp(&b.path));
        exact.into_iter().chain(self.prefixes.iter())
    }
}

/// The key after a case-insensitive `Bearer` scheme, trimmed; `None` without one.
fn strip_bearer(header: &[u8]) -> Option<&[u8]> {
    const SCHEME: &[u8] = b"bearer";
    if header.len() < SCHEME.len() || !header[..SCHEME.len()].eq_ignore_ascii_case(SCHEME) {
        return None;
    }
    let rest = &header[SCHEME.len()..];
    match rest.first() {
        None => Some(rest),
        Some(b' ' | b'\t') => Some(rest.trim_ascii()),
        Some(_) => None,
    }
}
