//! The FrameX wire format, as Python FrameX 0.4.2 speaks it.
//!
//! A call is `POST {url}/api/v1/proxy/remote` with `Content-Type: application/json`
//! and the body `{"func_name": E(name), "data": E(kwargs)}`. The answer is an
//! envelope `{"status": 200, "message": "success", "timestamp": "…", "data": E(result)}`.
//!
//! `E(x)` is the standard, padded base64 of the zlib-compressed UTF-8 JSON of `x`,
//! XORed byte by byte with the repeating ASCII key
//! `01234567890abcdefghijklmnopqrstuvwxyz`. This hides nothing: anyone who sees the
//! bytes can decode them, so use TLS where the path is not trusted.

//!
//! The JSON is Python's dialect ([`framex_json`]): numbers of any size,
//! `NaN` and the infinities, keys in order, deep nesting.

use std::cell::RefCell;

use base64_simd::STANDARD;
use flate2::{Compress, Decompress, FlushCompress, FlushDecompress, Status};
use framex_json::Value;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// The route that serves proxy-function calls on every FrameX instance.
pub const PROXY_FUNCTION_PATH: &str = "/api/v1/proxy/remote";

/// The XOR key of the encoding.
const KEY: &[u8] = b"01234567890abcdefghijklmnopqrstuvwxyz";

/// The longest function name, in bytes, that FrameX sends or accepts: names
/// come from callers, and end up in messages, logs and metrics.
pub const MAX_FUNCTION_NAME_BYTES: usize = 256;

/// The default largest inflated payload [`decode`] accepts: 32 MiB.
pub const DEFAULT_MAX_INFLATED_BYTES: usize = 32 * 1024 * 1024;

/// Why a payload could not be encoded or decoded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WireError {
    /// The value could not be written as JSON (a map with non-string keys, say).
    #[error("cannot encode the value as JSON")]
    Encode(#[source] framex_json::Error),
    /// Keyword arguments that are not a JSON object.
    #[error("keyword arguments must be a JSON object, not {found}")]
    NotAnObject {
        /// What they are instead: `an array`, `a string`, `null`…
        found: &'static str,
    },
    /// The text is not standard, padded base64.
    #[error("payload is not valid base64: {detail}")]
    Base64 {
        /// What is wrong with the text, and where.
        detail: String,
    },
    /// The bytes are not a zlib stream once XORed with the key.
    #[error("payload is not a FrameX zlib stream")]
    Zlib(#[source] std::io::Error),
    /// The payload inflates past the limit.
    #[error("payload inflates past the limit of {limit} bytes")]
    TooLarge {
        /// The limit in bytes.
        limit: usize,
    },
    /// The inflated bytes are not UTF-8 JSON of the expected shape.
    #[error("payload is not the expected JSON")]
    Json(#[source] framex_json::Error),
}

/// Payloads up to this size travel as one stored (uncompressed) zlib block
/// whatever the [`Compression`]: compressing them saves a few hundred bytes on
/// the wire and costs more CPU than the rest of the call. Any zlib reader,
/// Python's included, reads them.
const STORED_UP_TO: usize = 8 * 1024;

/// The zlib header (deflate, 32 KiB window, no dictionary, fastest level).
const ZLIB_HEADER: [u8; 2] = [0x78, 0x01];

/// The zlib header and the header of one final stored block.
const STORED_PREFIX: usize = ZLIB_HEADER.len() + 5;

/// How `E(x)` compresses payloads of more than 8 KiB of JSON (smaller ones
/// always travel stored): zlib's level 0 (stored blocks, no compression) to 9.
/// The receiving side reads any of them, Python FrameX included.
///
/// Stored costs the least CPU on both sides and sends the JSON's bytes (a third
/// more once in base64); level 1 sends a sixth of them for records-like JSON,
/// for about 1.3 ms more CPU per MiB on the two sides together; levels past 1
/// buy a little less on the wire for much more CPU. BENCHMARKS.md has the
/// figures (`cargo bench -p framex-transport --bench compression`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Compression(u8);

impl Compression {
    /// Stored blocks: no compression.
    pub const STORED: Compression = Compression(0);
    /// zlib's fastest level.
    pub const FAST: Compression = Compression(1);
    /// What [`encode`], [`encode_kwargs`], [`encode_json`] and
    /// [`CallBody::encode`] write: level 1, so that a request's body stays
    /// well within the body limits of servers and ingresses. A server's
    /// answers are stored by default
    /// (`framex_server::Settings::with_compression`).
    pub const DEFAULT: Compression = Compression::FAST;

    /// zlib level `level`, 0 (stored) to 9; `None` past 9.
    pub const fn level(level: u32) -> Option<Compression> {
        if level <= 9 {
            Some(Compression(level as u8))
        } else {
            None
        }
    }

    /// The zlib level, 0 to 9.
    pub const fn get(self) -> u32 {
        self.0 as u32
    }
}

impl Default for Compression {
    fn default() -> Compression {
        Compression::DEFAULT
    }
}

impl std::fmt::Display for Compression {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            0 => f.write_str("0 (stored)"),
            level => write!(f, "{level}"),
        }
    }
}

/// Encodes a value as `E(value)`.
pub fn encode<T: Serialize + ?Sized>(value: &T) -> Result<String, WireError> {
    encode_written(Compression::DEFAULT, |bytes| {
        framex_json::append(bytes, value).map_err(WireError::Encode)
    })
}

/// Encodes keyword arguments as `E(kwargs)`: `kwargs` must serialize to a
/// JSON object (a struct, a map, an object [`Value`]).
pub fn encode_kwargs<T: Serialize + ?Sized>(kwargs: &T) -> Result<String, WireError> {
    encode_written(Compression::DEFAULT, |bytes| {
        framex_json::append(bytes, kwargs).map_err(WireError::Encode)?;
        match bytes.get(STORED_PREFIX) {
            Some(b'{') => Ok(()),
            first => Err(WireError::NotAnObject {
                found: json_kind(first.copied()),
            }),
        }
    })
}

/// What JSON starting with `first` is, for messages.
fn json_kind(first: Option<u8>) -> &'static str {
    match first {
        Some(b'[') => "an array",
        Some(b'"') => "a string",
        Some(b'n') => "null",
        Some(b't' | b'f') => "a boolean",
        Some(b'{') => "an object",
        _ => "a number",
    }
}

/// `E(json)` of the JSON that `write` appends.
fn encode_written<E>(
    compression: Compression,
    write: impl FnOnce(&mut Vec<u8>) -> Result<(), E>,
) -> Result<String, E> {
    written_xored(compression, write, |xored| STANDARD.encode_to_string(xored))
}

/// `finish` of the zlib stream, XORed with the key, of the JSON that `write`
/// appends. It is written in the thread's reused buffer after room for the
/// stored-block prefix, so that a small payload is framed, checksummed and
/// XORed where it lies.
fn written_xored<E, R>(
    compression: Compression,
    write: impl FnOnce(&mut Vec<u8>) -> Result<(), E>,
    finish: impl FnOnce(&[u8]) -> R,
) -> Result<R, E> {
    let mut bytes = scratch();
    bytes.resize(STORED_PREFIX, 0);
    if let Err(error) = write(&mut bytes) {
        recycle(bytes);
        return Err(error);
    }
    let finished = if bytes.len() - STORED_PREFIX > STORED_UP_TO {
        finish(&large_xored(&bytes[STORED_PREFIX..], compression))
    } else {
        frame_stored(&mut bytes);
        finish(&bytes)
    };
    recycle(bytes);
    Ok(finished)
}

/// `finish` of the zlib stream, XORed with the key, of `json`.
fn json_xored<R>(json: &[u8], compression: Compression, finish: impl FnOnce(&[u8]) -> R) -> R {
    if json.len() > STORED_UP_TO {
        return finish(&large_xored(json, compression));
    }
    let Ok(finished) = written_xored::<std::convert::Infallible, R>(
        compression,
        |bytes| {
            bytes.extend_from_slice(json);
            Ok(())
        },
        finish,
    );
    finished
}

/// Encodes bytes that already hold UTF-8 JSON, large ones compressed at
/// [`Compression::DEFAULT`].
pub fn encode_json(json: &[u8]) -> String {
    encode_json_with(json, Compression::DEFAULT)
}

/// Encodes bytes that already hold UTF-8 JSON, large ones compressed as
/// `compression` says.
pub fn encode_json_with(json: &[u8], compression: Compression) -> String {
    json_xored(json, compression, |xored| STANDARD.encode_to_string(xored))
}

/// The body of a successful answer whose result is the JSON `result`: the
/// bytes of [`Envelope::success`]`(`[`encode_json_with`]`(result,
/// compression)).to_json()`, with the base64 written straight into the body
/// (it needs no escaping) rather than into a string first.
pub fn success_body(result: &[u8], compression: Compression) -> Vec<u8> {
    json_xored(result, compression, |xored| {
        const HEAD: &[u8] = b"{\"status\":200,\"message\":\"success\",\"timestamp\":";
        let mut body = Vec::with_capacity(HEAD.len() + 34 + xored.len().div_ceil(3) * 4);
        body.extend_from_slice(HEAD);
        append_str(&mut body, &timestamp_now());
        body.extend_from_slice(b",\"data\":\"");
        STANDARD.encode_append(xored, &mut body);
        body.extend_from_slice(b"\"}");
        body
    })
}

/// Finishes the zlib stream, XORed with the key, of `bytes` = room for
/// [`STORED_PREFIX`], then the JSON (at most [`STORED_UP_TO`] bytes): one
/// final stored block and the Adler-32.
fn frame_stored(bytes: &mut Vec<u8>) {
    let len = u16::try_from(bytes.len() - STORED_PREFIX)
        .expect("stored payloads fit one block of at most 65535 bytes");
    let checksum = adler32(&bytes[STORED_PREFIX..]);
    let [l0, l1] = len.to_le_bytes();
    let [n0, n1] = (!len).to_le_bytes();
    bytes[..STORED_PREFIX].copy_from_slice(&[ZLIB_HEADER[0], ZLIB_HEADER[1], 0x01, l0, l1, n0, n1]);
    bytes.extend_from_slice(&checksum.to_be_bytes());
    xor(bytes);
}

thread_local! {
    /// A buffer each thread reuses for the bytes between JSON and base64, so
    /// that a call does not allocate and grow them anew. Taken out while in use:
    /// a value's own `Serialize` or `Deserialize` may encode or decode too.
    static SCRATCH: std::cell::Cell<Vec<u8>> = const { std::cell::Cell::new(Vec::new()) };
}

/// The largest buffer kept for reuse.
const MAX_SCRATCH: usize = 64 * 1024;

fn scratch() -> Vec<u8> {
    SCRATCH.take()
}

fn recycle(mut bytes: Vec<u8>) {
    if bytes.capacity() <= MAX_SCRATCH {
        bytes.clear();
        SCRATCH.set(bytes);
    }
}

/// The zlib stream, XORed with the key, of more than [`STORED_UP_TO`] bytes
/// of JSON.
fn large_xored(json: &[u8], compression: Compression) -> Vec<u8> {
    if compression == Compression::STORED {
        let mut bytes = zlib_stored(json);
        xor(&mut bytes);
        return bytes;
    }
    let mut bytes = Vec::with_capacity(json.len() / 2 + 64);
    // The compressor of each level is reused per thread: a fresh one allocates
    // and clears hundreds of KiB, which cost more than compressing a typical
    // call.
    COMPRESSORS.with(|compressors| {
        let mut compressors = compressors.borrow_mut();
        let compressor = compressors[usize::from(compression.0) - 1].get_or_insert_with(|| {
            Compress::new(flate2::Compression::new(compression.get()), true)
        });
        compressor.reset();
        let mut consumed = 0;
        loop {
            if bytes.capacity() - bytes.len() < 64 {
                bytes.reserve(bytes.capacity().max(64));
            }
            let before = compressor.total_in();
            let status = compressor
                .compress_vec(&json[consumed..], &mut bytes, FlushCompress::Finish)
                .expect("compressing into a Vec cannot fail");
            consumed += usize::try_from(compressor.total_in() - before).unwrap_or(0);
            if status == Status::StreamEnd {
                break;
            }
        }
    });
    xor(&mut bytes);
    bytes
}

thread_local! {
    /// One compressor per level 1 to 9, made when first used.
    static COMPRESSORS: RefCell<[Option<Compress>; 9]> = const { RefCell::new([const { None }; 9]) };
    static DECOMPRESSOR: RefCell<Decompress> = RefCell::new(Decompress::new(true));
}

/// Decodes `E(value)` into a value, refusing payloads that inflate past
/// [`DEFAULT_MAX_INFLATED_BYTES`].
pub fn decode<T: DeserializeOwned>(encoded: &str) -> Result<T, WireError> {
    decode_with_limit(encoded, DEFAULT_MAX_INFLATED_BYTES)
}

/// Decodes `E(value)`, refusing payloads that inflate past `max_inflated` bytes
/// without inflating more than that.
pub fn decode_with_limit<T: DeserializeOwned>(
    encoded: &str,
    max_inflated: usize,
) -> Result<T, WireError> {
    let inflated = inflate(encoded, max_inflated)?;
    let value = framex_json::from_slice(inflated.json()).map_err(WireError::Json);
    inflated.recycle();
    value
}

/// Decodes `E(value)` into its JSON bytes.
pub fn decode_json(encoded: &str, max_inflated: usize) -> Result<Vec<u8>, WireError> {
    Ok(inflate(encoded, max_inflated)?.into_json())
}

/// The JSON of a decoded payload: a range of the un-XORed bytes when they were
/// one stored block, else bytes of its own.
enum Inflated {
    InPlace(Vec<u8>, std::ops::Range<usize>),
    Owned(Vec<u8>),
}

impl Inflated {
    fn json(&self) -> &[u8] {
        match self {
            Inflated::InPlace(bytes, range) => &bytes[range.clone()],
            Inflated::Owned(json) => json,
        }
    }

    /// Gives the buffer back for the next decode.
    fn recycle(self) {
        if let Inflated::InPlace(bytes, _) = self {
            recycle(bytes);
        }
    }

    fn into_json(self) -> Vec<u8> {
        match self {
            // Copied out, so that the thread keeps its buffer for the next
            // payload.
            Inflated::InPlace(bytes, range) => {
                let json = bytes[range].to_vec();
                recycle(bytes);
                json
            }
            Inflated::Owned(json) => json,
        }
    }
}

fn inflate(encoded: &str, max_inflated: usize) -> Result<Inflated, WireError> {
    let encoded = encoded.trim();
    let mut bytes = scratch();
    STANDARD
        .decode_append(encoded, &mut bytes)
        .map_err(|_| WireError::Base64 {
            detail: base64_problem(encoded),
        })?;
    xor(&mut bytes);
    match unzlib_stored(&mut bytes, max_inflated) {
        Some(Ok(range)) => return Ok(Inflated::InPlace(bytes, range)),
        Some(Err(error)) => return Err(error),
        None => {}
    }
    // One byte past the limit tells "too large" from "exactly the limit".
    let limit = max_inflated.saturating_add(1);
    let mut json = Vec::with_capacity(bytes.len().saturating_mul(4).clamp(64, limit));
    DECOMPRESSOR.with(|decompressor| {
        let mut decompressor = decompressor.borrow_mut();
        decompressor.reset(true);
        let mut consumed = 0;
        loop {
            if json.len() == json.capacity() {
                if json.len() >= limit {
                    return Err(WireError::TooLarge {
                        limit: max_inflated,
                    });
                }
                json.reserve((json.capacity()).min(limit - json.len()));
            }
            let before = (decompressor.total_in(), json.len());
            let status = decompressor
                .decompress_vec(&bytes[consumed..], &mut json, FlushDecompress::None)
                .map_err(|e| {
                    WireError::Zlib(std::io::Error::new(std::io::ErrorKind::InvalidData, e))
                })?;
            consumed += usize::try_from(decompressor.total_in() - before.0).unwrap_or(0);
            if json.len() > max_inflated {
                return Err(WireError::TooLarge {
                    limit: max_inflated,
                });
            }
            match status {
                Status::StreamEnd => return Ok(()),
                // No progress with room to write: the stream is cut short.
                _ if before == (decompressor.total_in(), json.len())
                    && json.len() < json.capacity() =>
                {
                    return Err(WireError::Zlib(std::io::Error::new(
                        std::io::ErrorKind::UnexpectedEof,
                        "the zlib stream ends early",
                    )));
                }
                _ => {}
            }
        }
    })?;
    recycle(bytes);
    Ok(Inflated::Owned(json))
}

/// What makes `text` not standard, padded base64, for the error message (the
/// decoder itself only says that it is not).
fn base64_problem(text: &str) -> String {
    let padding = text.len() - text.trim_end_matches('=').len();
    let symbols = &text[..text.len() - padding];
    if let Some((offset, symbol)) = symbols
        .char_indices()
        .find(|&(_, c)| !(c.is_ascii_alphanumeric() || c == '+' || c == '/'))
    {
        return format!("invalid symbol {symbol:?} at offset {offset}");
    }
    if !text.len().is_multiple_of(4) {
        return format!("its length {} is not a multiple of 4", text.len());
    }
    if padding > 2 {
        return format!("it ends with {padding} padding symbols, at most 2 are allowed");
    }
    "its last symbol has bits set past the end of the data".to_owned()
}

/// A zlib stream of stored blocks: the 2-byte header (deflate, 32 KiB window,
/// no dictionary), blocks of at most 65535 bytes, and the Adler-32 of the data.
pub(crate) fn zlib_stored(data: &[u8]) -> Vec<u8> {
    let blocks = data.len().div_ceil(0xffff).max(1);
    let mut out = Vec::with_capacity(2 + blocks * 5 + data.len() + 4);
    out.extend_from_slice(&ZLIB_HEADER);
    let mut chunks = data.chunks(0xffff).peekable();
    if chunks.peek().is_none() {
        out.extend_from_slice(&[0x01, 0x00, 0x00, 0xff, 0xff]);
    }
    while let Some(chunk) = chunks.next() {
        let last = chunks.peek().is_none();
        let len = u16::try_from(chunk.len()).expect("chunks are at most 65535 bytes");
        out.push(u8::from(last));
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(&(!len).to_le_bytes());
        out.extend_from_slice(chunk);
    }
    out.extend_from_slice(&adler32(data).to_be_bytes());
    out
}

/// Reads a zlib stream made only of stored blocks, as FrameX for Rust writes
/// small payloads (and large ones at [`Compression::STORED`]), without a
/// decompressor: the blocks are moved together where they lie, and their data
/// is the range returned. `None` when the stream holds another kind of block
/// (or is not one this reader knows, or its checksum is wrong), with `bytes`
/// untouched: the general decompressor then reads it, and reports any error.
pub(crate) fn unzlib_stored(
    bytes: &mut [u8],
    max_inflated: usize,
) -> Option<Result<std::ops::Range<usize>, WireError>> {
    let (&[cmf, flg], mut rest) = bytes.split_first_chunk::<2>()?;
    if cmf & 0x0f != 8 || (u16::from(cmf) << 8 | u16::from(flg)) % 31 != 0 || flg & 0x20 != 0 {
        return None;
    }
    let mut blocks: Vec<std::ops::Range<usize>> = Vec::new();
    let mut total = 0usize;
    let mut adler = simd_adler32::Adler32::new();
    loop {
        let (&header, after) = rest.split_first()?;
        if (header >> 1) & 0b11 != 0 {
            return None;
        }
        let (&[l0, l1, n0, n1], after) = after.split_first_chunk::<4>()?;
        let len = usize::from(u16::from_le_bytes([l0, l1]));
        if u16::from_le_bytes([l0, l1]) != !u16::from_le_bytes([n0, n1]) || after.len() < len {
            return None;
        }
        total += len;
        if total > max_inflated {
            return Some(Err(WireError::TooLarge {
                limit: max_inflated,
            }));
        }
        adler.write(&after[..len]);
        let start = bytes.len() - after.len();
        blocks.push(start..start + len);
        rest = &after[len..];
        if header & 1 == 1 {
            break;
        }
    }
    let checksum = u32::from_be_bytes(<[u8; 4]>::try_from(rest).ok()?);
    if adler.finish() != checksum {
        return None;
    }
    // Each block moves down over the headers before it; blocks are in order,
    // so a move never overwrites data still to be moved.
    let first = blocks.first()?.start;
    let mut end = first;
    for block in blocks {
        let len = block.len();
        bytes.copy_within(block, end);
        end += len;
    }
    Some(Ok(first..end))
}

/// The Adler-32 checksum zlib ends its streams with.
fn adler32(data: &[u8]) -> u32 {
    let mut adler = simd_adler32::Adler32::new();
    adler.write(data);
    adler.finish()
}

/// The key repeated to a length the XOR can take in wide, even steps.
const KEY_BLOCK: [u8; KEY.len() * 32] = {
    let mut block = [0; KEY.len() * 32];
    let mut i = 0;
    while i < block.len() {
        block[i] = KEY[i % KEY.len()];
        i += 1;
    }
    block
};

fn xor(bytes: &mut [u8]) {
    // Whole key blocks: two slices of one length, which the compiler turns into
    // vector instructions; a cycling key iterator costs a branch per byte.
    for chunk in bytes.chunks_mut(KEY_BLOCK.len()) {
        for (byte, key) in chunk.iter_mut().zip(&KEY_BLOCK) {
            *byte ^= key;
        }
    }
}

/// The request body of a call: both fields encoded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CallBody {
    /// `E(function name)`.
    pub func_name: String,
    /// `E(keyword arguments)`, a JSON object.
    pub data: String,
}

impl CallBody {
    /// Encodes a call of `func_name` with keyword arguments `kwargs`, which
    /// must serialize to a JSON object.
    pub fn encode<T: Serialize + ?Sized>(
        func_name: &str,
        kwargs: &T,
    ) -> Result<CallBody, WireError> {
        Ok(CallBody {
            func_name: encode(func_name)?,
            data: encode_kwargs(kwargs)?,
        })
    }

    /// Encodes a call whose keyword arguments are already JSON (an object),
    /// large ones compressed at [`Compression::DEFAULT`].
    pub fn encode_json(func_name: &str, kwargs: &[u8]) -> Result<CallBody, WireError> {
        CallBody::encode_json_with(func_name, kwargs, Compression::DEFAULT)
    }

    /// Encodes a call whose keyword arguments are already JSON (an object),
    /// large ones compressed as `compression` says.
    pub fn encode_json_with(
        func_name: &str,
        kwargs: &[u8],
        compression: Compression,
    ) -> Result<CallBody, WireError> {
        Ok(CallBody {
            func_name: encode(func_name)?,
            data: encode_json_with(kwargs, compression),
        })
    }

    /// The request body as JSON: `{"func_name":…,"data":…}`, written without a
    /// serializer (both fields are long base64 strings).
    pub fn to_json(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.func_name.len() + self.data.len() + 28);
        out.extend_from_slice(b"{\"func_name\":");
        append_str(&mut out, &self.func_name);
        out.extend_from_slice(b",\"data\":");
        append_str(&mut out, &self.data);
        out.push(b'}');
        out
    }
}

/// Appends `text` as a JSON string.
fn append_str(out: &mut Vec<u8>, text: &str) {
    framex_json::append(out, text).expect("a string is always JSON");
}

/// The response envelope of a FrameX instance.
///
/// Success is HTTP 200 with `status` 200 and `data` = `E(result)`. Python FrameX
/// reports some failures with HTTP 200 and another `status` (a wrong key: 401),
/// others with an HTTP error status; `message` says what went wrong.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Envelope {
    /// The status, mirroring an HTTP status code.
    pub status: u16,
    /// `success`, or what went wrong.
    #[serde(default)]
    pub message: String,
    /// When the answer was made, `YYYY-MM-DD HH:MM:SS`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timestamp: Option<String>,
    /// `E(result)` on success; absent on failure.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<Value>,
}

impl Envelope {
    /// A successful answer carrying an encoded result.
    pub fn success(encoded_result: String) -> Envelope {
        Envelope {
            status: 200,
            message: "success".to_owned(),
            timestamp: Some(timestamp_now()),
            data: Some(Value::String(encoded_result)),
        }
    }

    /// A failed answer.
    pub fn failure(status: u16, message: impl Into<String>) -> Envelope {
        Envelope {
            status,
            message: message.into(),
            timestamp: Some(timestamp_now()),
            data: None,
        }
    }

    /// The envelope as JSON, the bytes its `Serialize` gives, written with
    /// less work (`data` is mostly a long base64 string).
    pub fn to_json(&self) -> Vec<u8> {
        let data = match &self.data {
            Some(Value::String(data)) => data.len(),
            _ => 64,
        };
        let mut out = Vec::with_capacity(self.message.len() + data + 80);
        out.extend_from_slice(b"{\"status\":");
        let _ = std::io::Write::write_fmt(&mut out, format_args!("{}", self.status));
        out.extend_from_slice(b",\"message\":");
        append_str(&mut out, &self.message);
        if let Some(timestamp) = &self.timestamp {
            out.extend_from_slice(b",\"timestamp\":");
            append_str(&mut out, timestamp);
        }
        if let Some(data) = &self.data {
            out.extend_from_slice(b",\"data\":");
            // Only a value built by hand deeper than `framex_json::MAX_DEPTH`
            // fails, and no reader would take it: every value read from the
            // wire is within the limit.
            if framex_json::append(&mut out, data).is_err() {
                out.extend_from_slice(b"null");
            }
        }
        out.push(b'}');
        out
    }
}

/// The message Python FrameX gives for a function its registry does not have;
/// FrameX for Rust answers with the same words so either side can recognise it.
pub fn not_registered_message(func_name: &str) -> String {
    format!("Proxy function({func_name}) not registered")
}

/// The function name in a [`not_registered_message`], if `message` is one.
pub fn parse_not_registered(message: &str) -> Option<&str> {
    message
        .strip_prefix("Proxy function(")?
        .strip_suffix(") not registered")
}

/// The current UTC time as `YYYY-MM-DD HH:MM:SS`, the envelope's timestamp format.
pub fn timestamp_now() -> String {
    thread_local! {
        // Every answer carries the time; within a second it is the same text.
        static LAST: RefCell<(u64, String)> = const { RefCell::new((u64::MAX, String::new())) };
    }
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    LAST.with(|last| {
        let mut last = last.borrow_mut();
        if last.0 != secs {
            *last = (secs, format_timestamp(secs));
        }
        last.1.clone()
    })
}

/// Formats seconds since the Unix epoch as `YYYY-MM-DD HH:MM:SS` (UTC).
pub fn format_timestamp(unix_secs: u64) -> String {
    let days = unix_secs / 86_400;
    let rem = unix_secs % 86_400;
    let (year, month, day) = civil_from_days(days);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02}",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Days since 1970-01-01 to a proleptic Gregorian date (Howard Hinnant's algorithm).
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    (year, month, day)
}
