//! Request paths made unambiguous before anything decides on them.
//!
//! The auth rules, the routes and an upstream's enable/disable rules must
//! decide on exactly the path that the route's handler or the upstream will
//! see. A path can be written many ways (`/api/v1/%76ip` is `/api/v1/vip`;
//! `/a/./b/../c` is `/a/c`), and servers differ on some (an encoded `/`, a
//! `\`, an encoding of an encoding), so every request's path is first
//! [`normalize`]d: percent-encodings decoded, dot segments resolved, and what
//! cannot be made unambiguous refused. Decisions use the decoded text; the
//! request goes on with its canonical encoding, which any server decodes back
//! to that same text.
//!
//! tower-http's `NormalizePath` only trims a trailing slash, and the `http`
//! crate does not decode; neither decides what is ambiguous, so this module
//! does it.

use std::fmt;

/// A path made unambiguous.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Normalized {
    decoded: String,
    encoded: String,
}

impl Normalized {
    /// The path as text, percent-encodings decoded: what rules and routes are
    /// matched against (`/api/v1/vip`, `/files/ü`).
    pub fn decoded(&self) -> &str {
        &self.decoded
    }

    /// The same path in its canonical encoding, for the request line: only
    /// what a path cannot carry is percent-encoded (`/files/%C3%BC`).
    pub fn encoded(&self) -> &str {
        &self.encoded
    }
}

/// Why a path was refused: what in it cannot be made unambiguous.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum PathError {
    /// It does not start with `/`.
    NotAbsolute,
    /// A `%` not followed by two hex digits.
    BadPercent,
    /// `%2F`: a `/` inside a segment, which some servers split on and some do not.
    EncodedSlash,
    /// A `\`, raw or encoded, which some servers take for `/`.
    Backslash,
    /// A control character, raw or encoded (`%00`, `%0A`…).
    ControlCharacter,
    /// An encoded `%` followed by two hex digits (`%252F`): a server that
    /// decodes twice would see another path.
    DoubleEncoded,
    /// Bytes that are not UTF-8 once decoded.
    NotUtf8,
    /// An empty segment (`//`), which some servers merge and some do not.
    EmptySegment,
    /// More `..` segments than there are segments to climb.
    AboveRoot,
}

impl fmt::Display for PathError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PathError::NotAbsolute => "it does not start with `/`",
            PathError::BadPercent => "a `%` is not followed by two hex digits",
            PathError::EncodedSlash => "it holds an encoded `/` (`%2F`) inside a segment",
            PathError::Backslash => "it holds a `\\`",
            PathError::ControlCharacter => "it holds a control character",
            PathError::DoubleEncoded => "it holds an encoded percent sign before two hex digits (`%25XX`), an encoding of an encoding",
            PathError::NotUtf8 => "it is not UTF-8 once decoded",
            PathError::EmptySegment => "it holds an empty segment (`//`)",
            PathError::AboveRoot => "its `..` segments climb above the root",
        })
    }
}

impl std::error::Error for PathError {}

/// Makes `raw` (a request line's path, without the query) unambiguous: each
/// segment percent-decoded, `.` and `..` segments resolved, and refused when
/// it holds an encoded `/`, a `\`, a control character, an encoded
/// `%` before two hex digits, bytes that are not UTF-8, or an empty segment
/// inside it. A trailing `/` is kept.
pub fn normalize(raw: &str) -> Result<Normalized, PathError> {
    let Some(rest) = raw.strip_prefix('/') else {
        return Err(PathError::NotAbsolute);
    };
    if raw.contains('\\') {
        return Err(PathError::Backslash);
    }
    let mut segments: Vec<String> = Vec::new();
    let mut raw_segments = rest.split('/').peekable();
    // Whether the path ends with `/`: a last segment that is empty, `.` or `..`.
    let mut trailing_slash = false;
    while let Some(raw_segment) = raw_segments.next() {
        let last = raw_segments.peek().is_none();
        let segment = decode_segment(raw_segment)?;
        match segment.as_str() {
            "" if last => trailing_slash = true,
            "" => return Err(PathError::EmptySegment),
            "." => trailing_slash = last,
            ".." => {
                if segments.pop().is_none() {
                    return Err(PathError::AboveRoot);
                }
                trailing_slash = last;
            }
            _ => {
                trailing_slash = false;
                segments.push(segment);
            }
        }
    }
    let mut decoded = String::with_capacity(raw.len());
    let mut encoded = String::with_capacity(raw.len());
    for segment in &segments {
        decoded.push('/');
        decoded.push_str(segment);
        encoded.push('/');
        encode_segment(segment, &mut encoded);
    }
    if trailing_slash || segments.is_empty() {
        decoded.push('/');
        encoded.push('/');
    }
    Ok(Normalized { decoded, encoded })
}

/// Whether `raw` is already its own normalized form, decoded and encoded
/// alike: segments of bytes that a segment carries as they are, none empty
/// but the last, none `.` or `..`. Most paths are; for them [`normalize`]
/// would only copy.
pub fn is_plain(raw: &str) -> bool {
    let Some(rest) = raw.strip_prefix('/') else {
        return false;
    };
    let mut segments = rest.split('/').peekable();
    while let Some(segment) = segments.next() {
        let last = segments.peek().is_none();
        let plain = match segment {
            "" => last,
            "." | ".." => false,
            _ => segment.bytes().all(is_plain_byte),
        };
        if !plain {
            return false;
        }
    }
    true
}

/// Whether a path segment carries `byte` as it is: letters, digits, `-._~`,
/// `!$&'()*+,=`, `:` and `@`.
///
/// `;` is a byte a segment may carry, but servlet containers and others cut
/// a segment at it before routing (`/vip;x=1` routes as `/vip`), while
/// Starlette and FrameX route the whole text. Sent as `%3B`, it is routed as
/// part of the segment by all of them, as the rules here decided.
pub(crate) fn is_plain_byte(byte: u8) -> bool {
    PLAIN_BYTES[usize::from(byte)]
}

/// [`is_plain_byte`] of every byte, looked up rather than computed: every
/// request's path is checked byte by byte.
const PLAIN_BYTES: [bool; 256] = {
    let mut table = [false; 256];
    let mut byte = 0;
    while byte < 256 {
        let b = byte as u8;
        table[byte] = b.is_ascii_alphanumeric();
        byte += 1;
    }
    let others = b"-._~!$&'()*+,=:@";
    let mut i = 0;
    while i < others.len() {
        table[others[i] as usize] = true;
        i += 1;
    }
    table
};

fn hex(byte: u8) -> Option<u8> {
    match byte {
        b'0'..=b'9' => Some(byte - b'0'),
        b'a'..=b'f' => Some(byte - b'a' + 10),
        b'A'..=b'F' => Some(byte - b'A' + 10),
        _ => None,
    }
}

/// One segment, decoded, refused if ambiguous.
fn decode_segment(raw: &str) -> Result<String, PathError> {
    let bytes = raw.as_bytes();
    // Raw or encoded alike (the http crate lets a few through a request line).
    if bytes.iter().any(|&byte| byte < 0x20 || byte == 0x7f) {
        return Err(PathError::ControlCharacter);
    }
    if !bytes.contains(&b'%') {
        return Ok(raw.to_owned());
    }
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] != b'%' {
            decoded.push(bytes[i]);
            i += 1;
            continue;
        }
        let (Some(high), Some(low)) = (
            bytes.get(i + 1).copied().and_then(hex),
            bytes.get(i + 2).copied().and_then(hex),
        ) else {
            return Err(PathError::BadPercent);
        };
        let byte = high << 4 | low;
        match byte {
            b'/' => return Err(PathError::EncodedSlash),
            b'\\' => return Err(PathError::Backslash),
            0x00..0x20 | 0x7f => return Err(PathError::ControlCharacter),
            b'%' if bytes.get(i + 3).copied().and_then(hex).is_some()
                && bytes.get(i + 4).copied().and_then(hex).is_some() =>
            {
                return Err(PathError::DoubleEncoded);
            }
            _ => decoded.push(byte),
        }
        i += 3;
    }
    String::from_utf8(decoded).map_err(|_| PathError::NotUtf8)
}

/// Appends `segment` percent-encoded where a path segment cannot carry it as
/// it is: everything but letters, digits, `-._~`, `!$&'()*+,=`, `:` and `@`
/// (see [`is_plain_byte`]).
fn encode_segment(segment: &str, out: &mut String) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    for &byte in segment.as_bytes() {
        if is_plain_byte(byte) {
            out.push(char::from(byte));
        } else {
            out.push('%');
            out.push(char::from(HEX[usize::from(byte >> 4)]));
            out.push(char::from(HEX[usize::from(byte & 0xf)]));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[track_caller]
    fn check(raw: &str, expect: Result<(&str, &str), PathError>) {
        let got = normalize(raw);
        let got = got.as_ref().map(|n| (n.decoded(), n.encoded()));
        assert_eq!(got, expect.as_ref().map(|(d, e)| (*d, *e)), "{raw}");
    }

    #[test]
    fn encodings_of_a_path_are_that_path() {
        check("/api/v1/vip", Ok(("/api/v1/vip", "/api/v1/vip")));
        check("/api/v1/%76ip", Ok(("/api/v1/vip", "/api/v1/vip")));
        check("/api/v1/%76%69%70", Ok(("/api/v1/vip", "/api/v1/vip")));
        check("/%61pi/v1/vip", Ok(("/api/v1/vip", "/api/v1/vip")));
        check("/files/%C3%BC", Ok(("/files/ü", "/files/%C3%BC")));
        check("/files/ü", Ok(("/files/ü", "/files/%C3%BC")));
        check("/files/a%20b", Ok(("/files/a b", "/files/a%20b")));
        check("/files/100%25", Ok(("/files/100%", "/files/100%25")));
        check(
            "/q/a:b@c!$&'()*+,=",
            Ok(("/q/a:b@c!$&'()*+,=", "/q/a:b@c!$&'()*+,=")),
        );
        // A `;` is part of its segment, and sent encoded so that no server
        // cuts the segment there.
        check(
            "/api/v1/vip;x=1",
            Ok(("/api/v1/vip;x=1", "/api/v1/vip%3Bx=1")),
        );
        check("/api/v1/vip%3Bx", Ok(("/api/v1/vip;x", "/api/v1/vip%3Bx")));
        check("/", Ok(("/", "/")));
        check("/api/", Ok(("/api/", "/api/")));
    }

    #[test]
    fn dot_segments_are_resolved() {
        check("/a/./b", Ok(("/a/b", "/a/b")));
        check("/a/b/../c", Ok(("/a/c", "/a/c")));
        check(
            "/api/v1/public/%2e%2e/admin/secret",
            Ok(("/api/v1/admin/secret", "/api/v1/admin/secret")),
        );
        check(
            "/api/v1/public/%2E%2E/admin",
            Ok(("/api/v1/admin", "/api/v1/admin")),
        );
        check("/a/b/..", Ok(("/a/", "/a/")));
        check("/a/.", Ok(("/a/", "/a/")));
        check("/..", Err(PathError::AboveRoot));
        check("/a/../..", Err(PathError::AboveRoot));
        // Dots inside a segment are just dots.
        check("/a/..b/c.", Ok(("/a/..b/c.", "/a/..b/c.")));
    }

    #[test]
    fn what_servers_read_differently_is_refused() {
        check(
            "/api/v1/public/..%2Fadmin%2Fsecret",
            Err(PathError::EncodedSlash),
        );
        check("/api/v1/public/%2f", Err(PathError::EncodedSlash));
        check("/api/v1/public/..%5Cadmin", Err(PathError::Backslash));
        check("/api/v1/public/..\\admin", Err(PathError::Backslash));
        check("/api/v1/public/%252F", Err(PathError::DoubleEncoded));
        check("/api/v1/public/%252e%252e", Err(PathError::DoubleEncoded));
        check("/a/%00", Err(PathError::ControlCharacter));
        check("/a/%0a", Err(PathError::ControlCharacter));
        check("/a/%7F", Err(PathError::ControlCharacter));
        // Raw ones too: their canonical encoding would be refused.
        check("/a/\u{1}", Err(PathError::ControlCharacter));
        check("/a/b\tc", Err(PathError::ControlCharacter));
        check("/a/%zz", Err(PathError::BadPercent));
        check("/a/%4", Err(PathError::BadPercent));
        check("/a/%ff", Err(PathError::NotUtf8));
        check("/a//b", Err(PathError::EmptySegment));
        check("//a", Err(PathError::EmptySegment));
        check("a/b", Err(PathError::NotAbsolute));
        check("*", Err(PathError::NotAbsolute));
        // One encoded percent is fine: it is a percent sign.
        check("/a/%25", Ok(("/a/%", "/a/%25")));
    }

    /// Segments of letters, dots, percent signs, non-ASCII and punctuation.
    fn segments() -> impl Strategy<Value = Vec<String>> {
        proptest::collection::vec("[a-z0-9.%é~:@; -]{1,6}", 1..6)
    }

    proptest! {
        #[test]
        fn normalizing_is_idempotent_and_encodings_decode_to_the_decoded_path(segments in segments()) {
            let raw = format!("/{}", segments.join("/"));
            if let Ok(normalized) = normalize(&raw) {
                let again = normalize(normalized.encoded()).unwrap();
                prop_assert_eq!(&again, &normalized);
                let decoded = percent_encoding::percent_decode_str(normalized.encoded()).decode_utf8().unwrap();
                prop_assert_eq!(decoded.as_ref(), normalized.decoded());
            }
        }

        #[test]
        fn a_plain_path_is_its_own_normal_form(raw in "(/[a-z.%:;~-]{0,4}){1,5}") {
            if is_plain(&raw) {
                let normalized = normalize(&raw).unwrap();
                prop_assert_eq!(normalized.decoded(), raw.as_str());
                prop_assert_eq!(normalized.encoded(), raw.as_str());
            } else if let Ok(normalized) = normalize(&raw) {
                // A path that normalizing leaves as it is, is plain: the
                // shortcut misses none.
                prop_assert!(normalized.encoded() != raw || normalized.decoded() != raw, "{}", raw);
            }
        }

        #[test]
        fn any_encoding_of_a_plain_path_normalizes_to_it(
            segments in proptest::collection::vec("[a-zA-Z0-9_~-]{1,8}", 1..6),
            encode in proptest::collection::vec(any::<bool>(), 48),
        ) {
            let plain = format!("/{}", segments.join("/"));
            let mut encoded = String::new();
            for (i, ch) in plain.chars().enumerate() {
                if ch != '/' && encode[i % encode.len()] {
                    encoded.push_str(&format!("%{:02X}", ch as u32));
                } else {
                    encoded.push(ch);
                }
            }
            let normalized = normalize(&encoded).unwrap();
            prop_assert_eq!(normalized.decoded(), plain.as_str());
            prop_assert_eq!(normalized.encoded(), plain.as_str());
        }
    }
}
