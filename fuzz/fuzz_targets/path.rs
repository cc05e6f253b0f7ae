//! Request paths against the decisions made on them: for any path the server
//! accepts, the auth rule and the enable/disable decision made on its
//! normalized form are the decisions for every other encoding of that path
//! (percent-encoded bytes in either case, `.` and `x/..` segments), and the
//! canonical form the server forwards is what an upstream that decodes once
//! and resolves dot segments routes.
//!
//! Input: line 1 holds auth rule paths, line 2 enable patterns, line 3
//! disable patterns (each separated by spaces), the rest request paths. A
//! path's first byte also seeds the variants made of it.
#![no_main]

use framex_server::path::{is_plain, normalize};
use libfuzzer_sys::fuzz_target;

/// What the server decides on a path: which auth rule covers it, and whether
/// an upstream's route there is forwarded (and by which rule).
fn decide(
    auth: &framex_auth::Rules,
    filter: &framex_filter::Rules,
    path: &str,
) -> (Option<String>, String) {
    let rule = auth.rule_for(path).map(|rule| rule.path().to_owned());
    let forwarded = match filter.decide(path) {
        framex_filter::Decision::Unmatched => "unmatched".to_owned(),
        framex_filter::Decision::Enabled(rule) => format!("enabled by {}", rule.pattern()),
        framex_filter::Decision::Disabled(rule) => format!("disabled by {}", rule.pattern()),
    };
    (rule, forwarded)
}

/// The path an upstream routes when it percent-decodes the request line's
/// path once and resolves its dot segments, as RFC 3986 says.
fn upstream_view(encoded: &str) -> String {
    let decoded = percent_encoding::percent_decode_str(encoded)
        .decode_utf8()
        .expect("the canonical encoding decodes to UTF-8");
    let mut segments: Vec<&str> = Vec::new();
    let parts: Vec<&str> = decoded[1..].split('/').collect();
    let mut trailing = false;
    for (index, part) in parts.iter().enumerate() {
        let last = index + 1 == parts.len();
        match *part {
            "" | "." => trailing = last,
            ".." => {
                segments.pop();
                trailing = last;
            }
            segment => {
                trailing = false;
                segments.push(segment);
            }
        }
    }
    let mut path = String::new();
    for segment in &segments {
        path.push('/');
        path.push_str(segment);
    }
    if trailing || segments.is_empty() {
        path.push('/');
    }
    path
}

/// Another way to write `decoded`: bytes percent-encoded (upper or lower
/// case hex) or not, `.` and `x/..` segments put in, chosen by `seed`.
fn variant(decoded: &str, seed: &mut u64) -> String {
    let mut next = || {
        *seed ^= *seed << 13;
        *seed ^= *seed >> 7;
        *seed ^= *seed << 17;
        *seed
    };
    let mut out = String::new();
    for segment in decoded[1..].split('/') {
        out.push('/');
        match next() % 8 {
            0 => out.push_str("./"),
            1 => out.push_str("x/../"),
            2 => out.push_str("%2e/"),
            3 => out.push_str("y/%2E%2e/"),
            _ => {}
        }
        for &byte in segment.as_bytes() {
            let must = !(byte.is_ascii_alphanumeric() || b"-._~!$&'()*+,=:@".contains(&byte));
            if must || next() % 3 == 0 {
                let hex = if next() % 2 == 0 {
                    format!("%{byte:02X}")
                } else {
                    format!("%{byte:02x}")
                };
                out.push_str(&hex);
            } else {
                out.push(char::from(byte));
            }
        }
    }
    out
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let mut lines = text.lines();
    let words = |line: Option<&str>| -> Vec<String> {
        line.unwrap_or_default()
            .split(' ')
            .filter(|word| !word.is_empty())
            .map(str::to_owned)
            .collect()
    };
    let (auth, enable, disable) = (
        words(lines.next()),
        words(lines.next()),
        words(lines.next()),
    );
    let Ok(auth) = framex_auth::Rules::new(auth.iter().map(|path| (path.as_str(), ["key"]))) else {
        return;
    };
    let enable = if enable.is_empty() {
        vec!["/*".to_owned()]
    } else {
        enable
    };
    let Ok(filter) = framex_filter::Rules::new(&enable, &disable) else {
        return;
    };
    for raw in lines {
        let Ok(normalized) = normalize(raw) else {
            assert!(!is_plain(raw), "{raw} is plain, yet refused");
            continue;
        };
        // The server's shortcut: a plain path is its own normal form, and
        // only a plain path is.
        let unchanged = normalized.decoded() == raw && normalized.encoded() == raw;
        assert_eq!(is_plain(raw), unchanged, "{raw}");
        let decoded = normalized.decoded();
        let decision = decide(&auth, &filter, decoded);
        // The canonical form is a fixed point, and what the server forwards
        // is what an upstream routes.
        let again = normalize(normalized.encoded()).expect("the canonical form is accepted");
        assert_eq!(again, normalized, "{raw}");
        assert_eq!(upstream_view(normalized.encoded()), decoded, "{raw}");
        let mut seed = u64::from(raw.as_bytes().first().copied().unwrap_or(1)) | 1 << 40;
        for _ in 0..4 {
            let other = variant(decoded, &mut seed);
            let normalized_other = normalize(&other).unwrap_or_else(|error| {
                panic!("{other} (a way to write {decoded}) refused: {error}")
            });
            assert_eq!(normalized_other.decoded(), decoded, "{other}");
            assert_eq!(
                decide(&auth, &filter, normalized_other.decoded()),
                decision,
                "{other}"
            );
        }
    }
});
