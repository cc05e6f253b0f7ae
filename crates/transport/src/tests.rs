//! Unit tests for the wire codec: the Python original's vectors, round trips,
//! every way a payload can be malformed, and the envelope's timestamp.

use serde_json::{Value, json};

use crate::wire::{self, WireError};

const VECTORS: &str = include_str!("../tests/fixtures/framex-0.4.2-vectors.json");

fn vectors() -> Vec<(String, Value, String)> {
    let file: Value = serde_json::from_str(VECTORS).unwrap();
    file["vectors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| {
            (
                v["case"].as_str().unwrap().to_owned(),
                v["value"].clone(),
                v["encoded"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

#[test]
fn python_vectors_decode_to_their_values() {
    let vectors = vectors();
    assert!(vectors.len() >= 10);
    for (case, value, encoded) in vectors {
        let decoded: Value = wire::decode(&encoded).unwrap_or_else(|e| panic!("{case}: {e}"));
        assert_eq!(decoded, value, "{case}");
    }
}

#[test]
fn python_vectors_keep_big_integers_exact() {
    let numbers = vectors()
        .into_iter()
        .find(|(case, ..)| case == "numbers")
        .unwrap();
    let decoded: Value = wire::decode(&numbers.2).unwrap();
    assert_eq!(decoded["big"].as_u64(), Some(u64::MAX));
    assert_eq!(decoded["beyond_2_53"].as_u64(), Some(9_007_199_254_740_993));
    assert_eq!(decoded["neg"].as_i64(), Some(-7));
}

const DIALECT_VECTORS: &str = include_str!("../tests/fixtures/framex-0.4.2-dialect-vectors.json");

#[test]
fn python_dialect_vectors_decode_exactly() {
    let file: Value = serde_json::from_str(DIALECT_VECTORS).unwrap();
    for vector in file["vectors"].as_array().unwrap() {
        let case = vector["case"].as_str().unwrap();
        let encoded = vector["encoded"].as_str().unwrap();
        // As Python wrote it, number texts, key order and wrappers included.
        let value: framex_json::Value =
            wire::decode(encoded).unwrap_or_else(|e| panic!("{case}: {e}"));
        assert_eq!(
            value.to_string(),
            vector["json_compact"].as_str().unwrap(),
            "{case}"
        );
        // And encoded again, it decodes to the same text.
        let again: framex_json::Value = wire::decode(&wire::encode(&value).unwrap()).unwrap();
        assert_eq!(again, value, "{case}");
    }
}

#[test]
fn typed_decoding_of_python_values_is_exact_or_refused() {
    let file: Value = serde_json::from_str(DIALECT_VECTORS).unwrap();
    let encoded = |case: &str| {
        file["vectors"]
            .as_array()
            .unwrap()
            .iter()
            .find(|v| v["case"] == case)
            .unwrap()["encoded"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    assert_eq!(wire::decode::<u128>(&encoded("2^64")).unwrap(), 1 << 64);
    let error = wire::decode::<u64>(&encoded("2^64")).unwrap_err();
    assert_eq!(
        std::error::Error::source(&error).unwrap().to_string(),
        "invalid value: integer 18446744073709551616, expected u64 at byte 0"
    );
    let floats: std::collections::BTreeMap<String, f64> =
        wire::decode(&encoded("nan and the infinities")).unwrap();
    assert!(floats["nan"].is_nan());
    assert_eq!(
        (floats["inf"], floats["-inf"]),
        (f64::INFINITY, f64::NEG_INFINITY)
    );
    #[derive(serde::Deserialize)]
    struct Point {
        x: f64,
        y: f64,
    }
    let point: Point = wire::decode(&encoded("a dataclass")).unwrap();
    assert_eq!((point.x, point.y), (1.5, -2.0));
}

#[test]
fn keyword_arguments_must_be_an_object() {
    assert!(wire::encode_kwargs(&json!({"a": 1})).is_ok());
    for (kwargs, found) in [
        (json!([1]), "an array"),
        (json!("a"), "a string"),
        (json!(null), "null"),
        (json!(1), "a number"),
    ] {
        let error = wire::encode_kwargs(&kwargs).unwrap_err();
        assert_eq!(
            error.to_string(),
            format!("keyword arguments must be a JSON object, not {found}")
        );
    }
}

#[test]
fn encode_then_decode_is_identity() {
    let mut cases: Vec<Value> = vectors().into_iter().map(|(_, value, _)| value).collect();
    cases.extend([
        json!(""),
        json!("héllo ✓ 中文 🚀"),
        json!(u64::MAX),
        json!(i64::MIN),
        json!(-0.5),
        json!(1e300),
        json!({"deep": [[[[[[{"x": null}]]]]]]}),
        json!({"big text": "x".repeat(100_000)}),
    ]);
    for value in cases {
        let encoded = wire::encode(&value).unwrap();
        let decoded: Value = wire::decode(&encoded).unwrap();
        assert_eq!(decoded, value);
    }
}

#[test]
fn encoded_text_is_padded_standard_base64() {
    let encoded = wire::encode(&json!({"job_id": "j-1"})).unwrap();
    assert_eq!(encoded.len() % 4, 0);
    assert!(
        encoded
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"+/=".contains(&b))
    );
}

/// Checks that `encoded` fails to decode with the error `expect` describes.
#[track_caller]
fn check_decode_error(encoded: &str, limit: usize, expect: fn(&WireError) -> bool) {
    match wire::decode_with_limit::<Value>(encoded, limit) {
        Ok(value) => panic!("decoded {value} from {encoded:?}"),
        Err(error) => assert!(
            expect(&error),
            "unexpected error for {encoded:?}: {error:?}"
        ),
    }
}

fn xor_zlib(payload: &[u8]) -> String {
    use std::io::Write as _;
    let mut encoder = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::best());
    encoder.write_all(payload).unwrap();
    let mut bytes = encoder.finish().unwrap();
    for (byte, key) in bytes
        .iter_mut()
        .zip(b"01234567890abcdefghijklmnopqrstuvwxyz".iter().cycle())
    {
        *byte ^= key;
    }
    base64_simd::STANDARD.encode_to_string(bytes)
}

#[test]
fn malformed_payloads() {
    let limit = 1024;
    for (text, detail) in [
        ("not base64!", "invalid symbol ' ' at offset 3"),
        ("aGVs\u{e9}G8=", "invalid symbol '\u{e9}' at offset 4"),
        (
            "SK1hef36fWI6OTbZY4g",
            "its length 19 is not a multiple of 4",
        ),
        ("aGVsbG8===", "its length 10 is not a multiple of 4"),
        (
            "aGVsb===",
            "it ends with 3 padding symbols, at most 2 are allowed",
        ),
        (
            "aGVsbG9=",
            "its last symbol has bits set past the end of the data",
        ),
    ] {
        match wire::decode_with_limit::<serde_json::Value>(text, limit) {
            Err(WireError::Base64 { detail: got }) => assert_eq!(got, detail, "{text:?}"),
            other => panic!("{text:?}: expected a base64 error, got {other:?}"),
        }
    }
    check_decode_error("aGVsbG8gd29ybGQ=", limit, |e| {
        matches!(e, WireError::Zlib(_))
    });
    check_decode_error(&xor_zlib(&[0xff, 0xfe, 0x22]), limit, |e| {
        matches!(e, WireError::Json(_))
    });
    check_decode_error(&xor_zlib(b"{\"a\": "), limit, |e| {
        matches!(e, WireError::Json(_))
    });
    let deep = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
    check_decode_error(&xor_zlib(deep.as_bytes()), 1 << 20, |e| {
        matches!(e, WireError::Json(_))
    });
}

#[test]
fn a_decompression_bomb_is_refused_at_the_limit() {
    let bomb = xor_zlib(&vec![b' '; 10 * 1024 * 1024]);
    assert!(
        bomb.len() < 20_000,
        "the bomb compresses well: {} bytes",
        bomb.len()
    );
    check_decode_error(
        &bomb,
        1024 * 1024,
        |e| matches!(e, WireError::TooLarge { limit } if *limit == 1024 * 1024),
    );
    // At or under the limit it decodes.
    let fits = xor_zlib(format!("\"{}\"", "a".repeat(1000)).as_bytes());
    assert!(wire::decode_with_limit::<Value>(&fits, 1002).is_ok());
    check_decode_error(&fits, 1001, |e| matches!(e, WireError::TooLarge { .. }));
}

#[test]
fn not_registered_messages_round_trip() {
    let message = wire::not_registered_message("m.f");
    assert_eq!(message, "Proxy function(m.f) not registered");
    assert_eq!(wire::parse_not_registered(&message), Some("m.f"));
    assert_eq!(wire::parse_not_registered("boom"), None);
}

#[test]
fn timestamps() {
    assert_eq!(wire::format_timestamp(0), "1970-01-01 00:00:00");
    assert_eq!(wire::format_timestamp(951_782_400), "2000-02-29 00:00:00");
    assert_eq!(wire::format_timestamp(1_795_574_246), "2026-11-25 02:37:26");
    assert_eq!(wire::format_timestamp(4_102_444_799), "2099-12-31 23:59:59");
}

#[test]
fn the_current_timestamp_follows_the_clock() {
    let now = || {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs()
    };
    // Across a change of second the remembered text is replaced.
    for _ in 0..2 {
        let before = now();
        let stamp = wire::timestamp_now();
        let after = now();
        assert!(
            (before..=after).any(|secs| wire::format_timestamp(secs) == stamp),
            "{stamp} is not the time between {before} and {after}"
        );
        std::thread::sleep(std::time::Duration::from_millis(1100));
    }
}

#[test]
fn envelopes_serialize_like_python_framex() {
    let success = wire::Envelope::success("abc".into());
    let json = serde_json::to_value(&success).unwrap();
    assert_eq!(json["status"], 200);
    assert_eq!(json["message"], "success");
    assert_eq!(json["data"], "abc");
    assert_eq!(json["timestamp"].as_str().unwrap().len(), 19);

    let failure = serde_json::to_value(wire::Envelope::failure(401, "no")).unwrap();
    assert_eq!(failure.get("data"), None);
}

/// What flate2's own zlib reader inflates `stream` to.
fn standard_inflate(stream: &[u8]) -> Vec<u8> {
    let mut inflated = Vec::new();
    std::io::Read::read_to_end(&mut flate2::read::ZlibDecoder::new(stream), &mut inflated).unwrap();
    inflated
}

#[test]
fn stored_zlib_streams_round_trip_and_are_checked() {
    use crate::wire::{unzlib_stored, zlib_stored};
    for size in [0, 1, 8 * 1024, 65_535, 65_536, 200_000] {
        let data: Vec<u8> = (0..size).map(|i| (i % 251) as u8).collect();
        let stream = zlib_stored(&data);
        assert_eq!(
            standard_inflate(&stream),
            data,
            "a standard zlib reader reads {size} bytes"
        );
        if size > 0 {
            assert!(matches!(
                unzlib_stored(&mut stream.clone(), size - 1),
                Some(Err(wire::WireError::TooLarge { .. }))
            ));
        }
        let mut read = stream.clone();
        let range = unzlib_stored(&mut read, usize::MAX).unwrap().unwrap();
        assert_eq!(
            &read[range], data,
            "the stored-block reader reads {size} bytes"
        );
    }
    // A wrong checksum is left to the general decoder, which refuses it, with
    // the bytes as they were, also when the stream spans several blocks.
    for size in [2, 200_000] {
        let mut stream = zlib_stored(&vec![b'7'; size]);
        let last = stream.len() - 1;
        stream[last] ^= 1;
        let before = stream.clone();
        assert!(unzlib_stored(&mut stream, usize::MAX).is_none());
        assert_eq!(stream, before);
    }
    // So is a compressed stream.
    let mut encoder = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::fast());
    std::io::Write::write_all(&mut encoder, b"{\"a\": 1}").unwrap();
    assert!(unzlib_stored(&mut encoder.finish().unwrap(), 1024).is_none());
}

/// The zlib bytes of `E(x)`: base64 decoded and the key XORed away.
fn unxored(encoded: &str) -> Vec<u8> {
    let key = b"01234567890abcdefghijklmnopqrstuvwxyz";
    let mut bytes = base64_simd::STANDARD.decode_to_vec(encoded).unwrap();
    for (i, byte) in bytes.iter_mut().enumerate() {
        *byte ^= key[i % key.len()];
    }
    bytes
}

#[test]
fn every_compression_level_writes_a_stream_any_zlib_reader_reads() {
    use crate::wire::Compression;
    // Repetitive JSON, as records are: compression has something to win.
    let mut json = b"[".to_vec();
    for i in 0..12_000 {
        json.extend_from_slice(format!(r#"{{"id":{i},"name":"record {i}"}},"#).as_bytes());
    }
    json.extend_from_slice(b"null]");
    assert!(json.len() > 3 * 65_535, "spans several stored blocks");
    let mut sizes = Vec::new();
    for level in 0..=9 {
        let compression = Compression::level(level).unwrap();
        assert_eq!(compression.get(), level);
        let encoded = wire::encode_json_with(&json, compression);
        let zlib = unxored(&encoded);
        assert_eq!(
            standard_inflate(&zlib),
            json,
            "a standard zlib reader reads level {level}"
        );
        assert_eq!(
            wire::decode_json(&encoded, json.len()).unwrap(),
            json,
            "FrameX reads level {level}"
        );
        assert!(matches!(
            wire::decode_json(&encoded, json.len() - 1),
            Err(wire::WireError::TooLarge { .. })
        ));
        sizes.push(zlib.len());
    }
    // Stored: the JSON, a 5-byte header per block of 65535, the zlib header
    // and checksum.
    assert_eq!(sizes[0], json.len() + json.len().div_ceil(65_535) * 5 + 6);
    assert!(sizes[1] < json.len() / 4, "level 1 compresses: {sizes:?}");
    assert!(
        sizes[9] <= sizes[1],
        "level 9 is no larger than 1: {sizes:?}"
    );
    assert_eq!(Compression::level(10), None);
    assert_eq!(Compression::default(), Compression::DEFAULT);
    assert_eq!(Compression::STORED.to_string(), "0 (stored)");

    // Up to 8 KiB, every level writes one stored block, the default's too.
    let small = br#"{"a":"small"}"#;
    for compression in [
        Compression::STORED,
        Compression::FAST,
        Compression::level(9).unwrap(),
    ] {
        let zlib = unxored(&wire::encode_json_with(small, compression));
        assert_eq!(zlib.len(), small.len() + 11);
        assert_eq!(zlib[2], 0x01, "one final stored block");
    }
}

#[test]
fn a_success_body_is_the_success_envelope_as_json() {
    use crate::wire::Compression;
    let large = format!("[{}0]", r#"{"a":"b\u00e9"},"#.repeat(5000));
    for result in [&b"null"[..], br#"{"k":[1,2.5,"\n"]}"#, large.as_bytes()] {
        for compression in [Compression::STORED, Compression::FAST] {
            let body = wire::success_body(result, compression);
            let mut envelope: wire::Envelope = serde_json::from_slice(&body).unwrap();
            // The timestamp is the clock's: checked for its form, then set
            // aside, so that the rest compares byte for byte.
            let timestamp = envelope.timestamp.take().unwrap();
            assert_eq!(timestamp.len(), 19, "{timestamp}");
            let mut expected = wire::Envelope::success(wire::encode_json_with(result, compression));
            expected.timestamp = Some(timestamp);
            assert_eq!(
                String::from_utf8(body).unwrap(),
                String::from_utf8(expected.to_json()).unwrap()
            );
        }
    }
}

#[tokio::test]
async fn the_host_header_leaves_out_the_default_port_and_keeps_others() {
    let client = crate::Client::default();
    for (url, host) in [
        ("http://remote-framex:8080", "remote-framex:8080"),
        ("http://remote-framex:80", "remote-framex"),
        ("http://remote-framex", "remote-framex"),
        ("https://remote-framex:443", "remote-framex"),
        ("https://remote-framex:8443", "remote-framex:8443"),
        ("http://[::1]:9000", "[::1]:9000"),
    ] {
        let upstream = client.upstream(url).unwrap();
        assert_eq!(upstream.inner.host, host, "{url}");
        assert_eq!(upstream.inner.path, "/api/v1/proxy/remote", "{url}");
    }
    for url in [
        "remote-framex:8080",
        "ftp://remote-framex",
        "http://",
        "http://user:secret@remote-framex",
    ] {
        assert_eq!(
            *client.upstream(url).unwrap_err().kind(),
            crate::ErrorKind::InvalidUrl,
            "{url}"
        );
    }
}
