//! Finding the bytes of a string that need attention, eight at a time: the
//! reader stops at them (end of string, escape, invalid control character) and
//! the writer escapes them.

const ONES: u64 = u64::from_ne_bytes([0x01; 8]);
const HIGHS: u64 = u64::from_ne_bytes([0x80; 8]);

/// Whether any byte of `word` is below 0x20, a quote or a backslash.
///
/// A byte of `x - ONES * n & !x & HIGHS` is set where the byte of `x` is below
/// `n`, and possibly at later bytes after a borrow, which only sends the word
/// to the byte-by-byte path: there are no false negatives.
#[inline]
fn word_is_special(word: u64) -> bool {
    let below_space = word.wrapping_sub(ONES * 0x20) & !word;
    let quote = word ^ (ONES * u64::from(b'"'));
    let backslash = word ^ (ONES * u64::from(b'\\'));
    let is_quote = quote.wrapping_sub(ONES) & !quote;
    let is_backslash = backslash.wrapping_sub(ONES) & !backslash;
    (below_space | is_quote | is_backslash) & HIGHS != 0
}

/// Whether `byte` ends a run of plain string bytes.
#[inline]
pub(crate) fn is_special(byte: u8) -> bool {
    byte < 0x20 || byte == b'"' || byte == b'\\'
}

/// The index of the first byte at or after `from` that is a quote, a backslash
/// or a control character, or `bytes.len()` when there is none.
#[inline]
pub(crate) fn find_special(bytes: &[u8], mut at: usize) -> usize {
    loop {
        while let Some(word) = bytes.get(at..at + 8) {
            let word = u64::from_ne_bytes(word.try_into().expect("eight bytes"));
            if word_is_special(word) {
                break;
            }
            at += 8;
        }
        let end = (at + 8).min(bytes.len());
        while at < end {
            if is_special(bytes[at]) {
                return at;
            }
            at += 1;
        }
        if at >= bytes.len() {
            return bytes.len();
        }
    }
}

/// Appends `text` as a JSON string: quotes, backslashes and control
/// characters escaped as Python's `json.dumps` and serde_json escape them,
/// everything else (non-ASCII included) as it is.
pub(crate) fn write_str(out: &mut Vec<u8>, text: &str) {
    let bytes = text.as_bytes();
    out.reserve(bytes.len() + 2);
    out.push(b'"');
    let mut start = 0;
    loop {
        let at = find_special(bytes, start);
        out.extend_from_slice(&bytes[start..at]);
        let Some(&byte) = bytes.get(at) else { break };
        let escape: &[u8] = match byte {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            0x08 => b"\\b",
            0x0c => b"\\f",
            _ => {
                const HEX: &[u8; 16] = b"0123456789abcdef";
                out.extend_from_slice(&[
                    b'\\',
                    b'u',
                    b'0',
                    b'0',
                    HEX[usize::from(byte >> 4)],
                    HEX[usize::from(byte & 0xf)],
                ]);
                start = at + 1;
                continue;
            }
        };
        out.extend_from_slice(escape);
        start = at + 1;
    }
    out.push(b'"');
}
