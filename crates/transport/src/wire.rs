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

use std::io::{Read, Write};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use flate2::Compression;
use flate2::read::ZlibDecoder;
use flate2::write::ZlibEncoder;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// The route that serves proxy-function calls on every FrameX instance.
pub const PROXY_FUNCTION_PATH: &str = "/api/v1/proxy/remote";

/// The XOR key of the encoding.
const KEY: &[u8] = b"01234567890abcdefghijklmnopqrstuvwxyz";

/// The default largest inflated payload [`decode`] accepts: 32 MiB.
pub const DEFAULT_MAX_INFLATED_BYTES: usize = 32 * 1024 * 1024;

/// Why a payload could not be encoded or decoded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WireError {
    /// The value could not be written as JSON (a map with non-string keys, say).
    #[error("cannot encode the value as JSON")]
    Encode(#[source] serde_json::Error),
    /// The text is not standard, padded base64.
    #[error("payload is not valid base64")]
    Base64(#[source] base64::DecodeError),
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
    Json(#[source] serde_json::Error),
}

/// Encodes a value as `E(value)`.
pub fn encode<T: Serialize + ?Sized>(value: &T) -> Result<String, WireError> {
    let json = serde_json::to_vec(value).map_err(WireError::Encode)?;
    Ok(encode_json(&json))
}

/// Encodes bytes that already hold UTF-8 JSON.
pub fn encode_json(json: &[u8]) -> String {
    // Level 1: the receiving side inflates any level, and the fastest level keeps
    // the codec a small part of a call's cost.
    let mut encoder =
        ZlibEncoder::new(Vec::with_capacity(json.len() / 2 + 16), Compression::fast());
    encoder
        .write_all(json)
        .expect("writing to a Vec cannot fail");
    let mut bytes = encoder.finish().expect("writing to a Vec cannot fail");
    xor(&mut bytes);
    STANDARD.encode(bytes)
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
    let json = decode_json(encoded, max_inflated)?;
    serde_json::from_slice(&json).map_err(WireError::Json)
}

/// Decodes `E(value)` into its JSON bytes.
pub fn decode_json(encoded: &str, max_inflated: usize) -> Result<Vec<u8>, WireError> {
    let mut bytes = STANDARD.decode(encoded.trim()).map_err(WireError::Base64)?;
    xor(&mut bytes);
    let limit = u64::try_from(max_inflated)
        .unwrap_or(u64::MAX)
        .saturating_add(1);
    let mut json = Vec::with_capacity(bytes.len().saturating_mul(4).min(max_inflated));
    ZlibDecoder::new(bytes.as_slice())
        .take(limit)
        .read_to_end(&mut json)
        .map_err(WireError::Zlib)?;
    if json.len() > max_inflated {
        return Err(WireError::TooLarge {
            limit: max_inflated,
        });
    }
    Ok(json)
}

fn xor(bytes: &mut [u8]) {
    for (byte, key) in bytes.iter_mut().zip(KEY.iter().cycle()) {
        *byte ^= key;
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
    /// Encodes a call of `func_name` with keyword arguments `kwargs`.
    pub fn encode(
        func_name: &str,
        kwargs: &serde_json::Map<String, serde_json::Value>,
    ) -> Result<CallBody, WireError> {
        Ok(CallBody {
            func_name: encode(func_name)?,
            data: encode(kwargs)?,
        })
    }
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
    pub data: Option<serde_json::Value>,
}

impl Envelope {
    /// A successful answer carrying an encoded result.
    pub fn success(encoded_result: String) -> Envelope {
        Envelope {
            status: 200,
            message: "success".to_owned(),
            timestamp: Some(timestamp_now()),
            data: Some(serde_json::Value::String(encoded_result)),
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
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    format_timestamp(secs)
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
