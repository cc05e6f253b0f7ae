//! Compact JSON for `serde_json::Value`, byte for byte what `serde_json::to_vec`
//! writes, with strings escaped eight bytes at a time.
//!
//! Keyword arguments and results are mostly text, and serde_json looks at each
//! byte of a string on its own: for a 1 KiB argument that was the largest part
//! of encoding a call.

use serde_json::Value;

/// Appends the compact JSON of `value` to `out`.
pub(crate) fn write_value(out: &mut Vec<u8>, value: &Value) {
    match value {
        Value::Null => out.extend_from_slice(b"null"),
        Value::Bool(true) => out.extend_from_slice(b"true"),
        Value::Bool(false) => out.extend_from_slice(b"false"),
        Value::Number(number) => {
            serde_json::to_writer(&mut *out, number).expect("a JSON number always serializes");
        }
        Value::String(text) => write_str(out, text),
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_value(out, item);
            }
            out.push(b']');
        }
        Value::Object(map) => write_map(out, map),
    }
}

/// Appends the compact JSON of an object to `out`.
pub(crate) fn write_map(out: &mut Vec<u8>, map: &serde_json::Map<String, Value>) {
    out.push(b'{');
    for (i, (key, item)) in map.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        write_str(out, key);
        out.push(b':');
        write_value(out, item);
    }
    out.push(b'}');
}

const ONES: u64 = u64::from_ne_bytes([0x01; 8]);
const HIGHS: u64 = u64::from_ne_bytes([0x80; 8]);

/// Whether any byte of `word` is below 0x20, a quote or a backslash.
///
/// A byte of `x - ONES * n & !x & HIGHS` is set where the byte of `x` is below
/// `n`, and possibly at later bytes after a borrow, which only sends the word
/// to the byte-by-byte path: there are no false negatives.
#[inline]
fn needs_escape(word: u64) -> bool {
    let below_space = word.wrapping_sub(ONES * 0x20) & !word;
    let quote = word ^ (ONES * u64::from(b'"'));
    let backslash = word ^ (ONES * u64::from(b'\\'));
    let is_quote = quote.wrapping_sub(ONES) & !quote;
    let is_backslash = backslash.wrapping_sub(ONES) & !backslash;
    (below_space | is_quote | is_backslash) & HIGHS != 0
}

/// Appends `text` as a JSON string, escaped as serde_json escapes it.
pub(crate) fn write_str(out: &mut Vec<u8>, text: &str) {
    let bytes = text.as_bytes();
    out.reserve(bytes.len() + 2);
    out.push(b'"');
    let mut start = 0;
    let mut at = 0;
    while at < bytes.len() {
        // Skip whole words with nothing to escape.
        at += bytes[at..]
            .chunks_exact(8)
            .take_while(|word| {
                !needs_escape(u64::from_ne_bytes(
                    (*word).try_into().expect("chunks of eight bytes"),
                ))
            })
            .count()
            * 8;
        let end = (at + 8).min(bytes.len());
        for i in at..end {
            let escape: &[u8] = match bytes[i] {
                b'"' => b"\\\"",
                b'\\' => b"\\\\",
                b'\n' => b"\\n",
                b'\r' => b"\\r",
                b'\t' => b"\\t",
                0x08 => b"\\b",
                0x0c => b"\\f",
                byte @ 0x00..0x20 => {
                    out.extend_from_slice(&bytes[start..i]);
                    const HEX: &[u8; 16] = b"0123456789abcdef";
                    out.extend_from_slice(&[
                        b'\\',
                        b'u',
                        b'0',
                        b'0',
                        HEX[usize::from(byte >> 4)],
                        HEX[usize::from(byte & 0xf)],
                    ]);
                    start = i + 1;
                    continue;
                }
                _ => continue,
            };
            out.extend_from_slice(&bytes[start..i]);
            out.extend_from_slice(escape);
            start = i + 1;
        }
        at = end;
    }
    out.extend_from_slice(&bytes[start..]);
    out.push(b'"');
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    fn written(value: &Value) -> Vec<u8> {
        let mut out = Vec::new();
        write_value(&mut out, value);
        out
    }

    #[test]
    fn every_byte_that_needs_an_escape_is_escaped_as_serde_json_does() {
        for byte in 0u8..0x80 {
            let ch = char::from(byte);
            for text in [
                ch.to_string(),
                format!("abcdefg{ch}"),
                format!("{ch}bcdefghijklmnop"),
                format!("abcdefghij{ch}{ch}klmnopqrstuvw"),
            ] {
                let value = Value::String(text);
                assert_eq!(
                    String::from_utf8(written(&value)).unwrap(),
                    serde_json::to_string(&value).unwrap(),
                    "byte {byte:#04x}"
                );
            }
        }
    }

    #[test]
    fn documents_match_serde_json() {
        let value = json!({
            "job_id": "j-1", "count": 42, "neg": -7, "big": u64::MAX, "ratio": 0.1,
            "exp": 1.5e300, "flags": [true, false, null], "nested": {"a": [], "b": {}},
            "text": "tab\there \"quoted\" back\\slash \u{1} é 🎉 \u{7f}",
        });
        assert_eq!(written(&value), serde_json::to_vec(&value).unwrap());
    }

    /// Any text, and short ASCII text dense with characters that need escapes.
    fn texts() -> impl Strategy<Value = String> {
        prop_oneof![
            any::<String>(),
            proptest::collection::vec(0u8..0x80, 0..40)
                .prop_map(|bytes| bytes.into_iter().map(char::from).collect()),
        ]
    }

    fn values() -> impl Strategy<Value = Value> {
        // Strings weigh two: both kinds of text, as often as before.
        let leaf = prop_oneof![
            1 => Just(Value::Null),
            1 => any::<bool>().prop_map(Value::Bool),
            1 => any::<i64>().prop_map(Value::from),
            1 => any::<u64>().prop_map(Value::from),
            1 => any::<f64>().prop_map(Value::from),
            2 => texts().prop_map(Value::String),
        ];
        leaf.prop_recursive(4, 64, 8, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..8).prop_map(Value::Array),
                proptest::collection::btree_map(any::<String>(), inner, 0..8)
                    .prop_map(|map| Value::Object(map.into_iter().collect())),
            ]
        })
    }

    proptest! {
        #[test]
        fn any_value_is_written_as_serde_json_writes_it(value in values()) {
            prop_assert_eq!(written(&value), serde_json::to_vec(&value).unwrap());
        }

        #[test]
        fn any_call_body_is_written_as_serde_json_writes_it(
            func_name in texts(),
            data in texts(),
        ) {
            let body = crate::wire::CallBody { func_name, data };
            prop_assert_eq!(body.to_json(), serde_json::to_vec(&body).unwrap());
        }

        #[test]
        fn any_envelope_is_written_as_serde_json_writes_it(
            status in any::<u16>(),
            message in texts(),
            timestamp in proptest::option::of(texts()),
            data in proptest::option::of(values()),
        ) {
            let envelope = crate::wire::Envelope { status, message, timestamp, data };
            prop_assert_eq!(envelope.to_json(), serde_json::to_vec(&envelope).unwrap());
        }
    }
}
