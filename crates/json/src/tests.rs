//! The crate's tests: Python's dialect read and written back unchanged,
//! typed reading that refuses what a type cannot hold, depth, and agreement
//! with serde_json wherever standard JSON is concerned.

use proptest::prelude::*;
use serde::{Deserialize, Serialize};

use crate::{Error, ErrorKind, Map, Number, Value, from_slice, from_str, to_string, to_vec};

/// `text` read as a `Value` and written back, compact.
fn round_trip(text: &str) -> String {
    let value: Value = from_str(text).unwrap_or_else(|e| panic!("{text}: {e}"));
    to_string(&value).unwrap()
}

fn error<T: for<'de> Deserialize<'de> + std::fmt::Debug>(text: &str) -> Error {
    from_str::<T>(text).expect_err(text)
}

#[test]
fn python_dialect_goes_through_a_value_unchanged() {
    for text in [
        "18446744073709551616",
        "-9223372036854775809",
        "1000000000000000000000000000000",
        "-0",
        "NaN",
        "Infinity",
        "-Infinity",
        "1e+16",
        "1e-05",
        "1E400",
        "3.14159265358979323846264338327950288419716939937510",
        r#"{"b":1,"a":2,"c":{"z":[],"y":{}}}"#,
        r#"["héllo ✓ 中文 🚀","\u0000\u001f\"\\"]"#,
        "[]",
        "{}",
        "null",
        "true",
    ] {
        assert_eq!(round_trip(text), text);
    }
}

#[test]
fn whitespace_and_escapes_are_normalized_not_the_values() {
    assert_eq!(round_trip(" { \"a\" : [ 1 , 2 ] }\n"), r#"{"a":[1,2]}"#);
    assert_eq!(
        round_trip(r#""\/\b\f\n\r\t\u00e9\ud83d\ude80""#),
        "\"/\\b\\f\\n\\r\\té🚀\""
    );
}

#[test]
fn a_key_given_twice_keeps_its_place_and_its_last_value() {
    assert_eq!(round_trip(r#"{"a":1,"b":2,"a":3}"#), r#"{"a":3,"b":2}"#);
    let many: String = (0..40).map(|i| format!("\"k{i}\":{i},")).collect();
    assert_eq!(
        round_trip(&format!("{{{many}\"k7\":\"last\"}}")),
        format!(
            "{{{}}}",
            many.trim_end_matches(',')
                .replace("\"k7\":7", "\"k7\":\"last\"")
        )
    );
}

#[test]
fn floats_take_nan_and_the_infinities_and_write_them_as_python_does() {
    let read: Vec<f64> = from_str("[NaN, Infinity, -Infinity, 1E400, 2.5, 3]").unwrap();
    assert!(read[0].is_nan());
    assert_eq!(
        &read[1..],
        [f64::INFINITY, f64::NEG_INFINITY, f64::INFINITY, 2.5, 3.0]
    );
    assert_eq!(
        to_string(&[f64::NAN, f64::INFINITY, f64::NEG_INFINITY, 0.1, 1e16, -0.0]).unwrap(),
        "[NaN,Infinity,-Infinity,0.1,1e+16,-0.0]"
    );
    let single: Option<f32> = from_str("NaN").unwrap();
    assert!(single.unwrap().is_nan());
}

#[test]
fn typed_integers_are_exact_or_refused_naming_the_number() {
    assert_eq!(from_str::<u64>("18446744073709551615").unwrap(), u64::MAX);
    assert_eq!(
        from_str::<i128>("-170141183460469231731687303715884105728").unwrap(),
        i128::MIN
    );
    assert_eq!(
        from_str::<u128>("340282366920938463463374607431768211455").unwrap(),
        u128::MAX
    );
    for (text, message) in [
        (
            "1180591620717411303424",
            "invalid value: integer 1180591620717411303424, expected u64",
        ),
        (
            "-9223372036854775809",
            "invalid value: integer -9223372036854775809, expected u64",
        ),
        ("-1", "invalid value: integer `-1`, expected u64"),
        ("2.5", "invalid type: floating point `2.5`, expected u64"),
        ("NaN", "invalid type: floating point `NaN`, expected u64"),
        ("\"7\"", "invalid type: string \"7\", expected u64"),
    ] {
        assert_eq!(error::<u64>(text).message(), message, "{text}");
    }
    assert_eq!(
        error::<u8>("300").message(),
        "invalid value: integer `300`, expected u8"
    );
    let huge = format!("1{}", "0".repeat(200));
    let message = error::<u128>(&huge).to_string();
    assert!(
        message.starts_with("invalid value: integer 1000000000"),
        "{message}"
    );
    assert!(
        message.contains("(201 bytes)"),
        "a long number is quoted in part: {message}"
    );
}

#[test]
fn types_that_cannot_hold_nan_or_big_numbers_say_so() {
    // serde_json's own value cannot hold them: a clear error, never null.
    let message = error::<serde_json::Value>("[NaN]").to_string();
    assert!(
        message.contains("NaN is not a value of any valid JSON value"),
        "{message}"
    );
    let message = error::<serde_json::Value>("[1e400]").to_string();
    assert!(message.contains("past the range of an f64"), "{message}");
    let message =
        error::<serde_json::Value>("100000000000000000000000000000000000000000").to_string();
    assert!(
        message.starts_with("invalid value: integer 1000000000"),
        "{message}"
    );
    assert!(
        message.contains("(42 bytes), expected any valid JSON value"),
        "{message}"
    );
    // Within 128 bits serde_json refuses it itself.
    assert!(
        error::<serde_json::Value>("18446744073709551616")
            .to_string()
            .contains("out of range")
    );
}

#[test]
fn standard_json_reads_into_serde_json_values_alike() {
    let text = r#"{"a":[1,-2,3.5,true,null,"x"],"b":{"c":18446744073709551615}}"#;
    let ours: serde_json::Value = from_str(text).unwrap();
    let theirs: serde_json::Value = serde_json::from_str(text).unwrap();
    assert_eq!(ours, theirs);
}

fn nested(depth: usize, open: &str, close: &str) -> String {
    format!("{}0{}", open.repeat(depth), close.repeat(depth))
}

#[test]
fn nesting_up_to_the_limit_is_read_and_written_on_a_small_stack() {
    // A thread with a small stack: the reader and writer grow theirs. What it
    // read is dropped here, where dropping 1000 levels (recursive, like any
    // Rust tree) takes under 192 KiB, a tenth of a Tokio worker's stack.
    let read = std::thread::Builder::new()
        .stack_size(128 * 1024)
        .spawn(|| {
            let mut read = Vec::new();
            for (open, close) in [("[", "]"), ("{\"a\":", "}")] {
                let text = nested(crate::MAX_DEPTH, open, close);
                let value: Value = from_str(&text).unwrap();
                assert_eq!(to_string(&value).unwrap(), text);
                let typed: serde_json::Value = from_str(&text).unwrap();
                assert_eq!(to_string(&typed).unwrap(), text);
                let error = error::<Value>(&nested(crate::MAX_DEPTH + 1, open, close));
                assert_eq!(error.kind(), ErrorKind::Depth);
                assert_eq!(
                    error.to_string(),
                    format!(
                        "arrays and objects nest deeper than 1000 levels at byte {}",
                        crate::MAX_DEPTH * open.len()
                    )
                );
                read.push((value, typed));
            }
            read
        })
        .unwrap()
        .join()
        .unwrap();
    drop(read);
}

#[test]
fn a_document_refused_midway_leaves_nothing_for_the_next_one() {
    // The elements of arrays and objects being read wait on a stack of the
    // thread's: those of a document refused midway must not reach the next
    // document read on the thread, whichever reader refused it.
    let good = r#"[[1,2],{"a":[3,{"b":4}],"c":[]},[],{}]"#;
    let waiting = || {
        (
            crate::value::ITEMS.with(|items| items.borrow().len()),
            crate::value::ENTRIES.with(|entries| entries.borrow().len()),
            crate::de::kept_stacks().0,
        )
    };
    for bad in [
        r#"[1, [2, {"a": [3, 4"#,
        r#"{"a": {"b": [1, 2, {"c": x}]}}"#,
        "[[[[1,2,3],[4,",
        r#"[{"k":1,"k2":2},{"k":"#,
        r#"{"a":[1,2],"b":{"c":[3]},"d""#,
    ] {
        assert!(from_str::<Value>(bad).is_err(), "{bad}");
        assert_eq!(waiting(), (0, 0, 0), "{bad}");
        assert!(serde_json::from_str::<Value>(bad).is_err(), "{bad}");
        assert_eq!(waiting(), (0, 0, 0), "{bad}");
        for _ in 0..2 {
            let value: Value = from_str(good).unwrap();
            assert_eq!(to_string(&value).unwrap(), good, "after {bad}");
            let value: Value = serde_json::from_str(good).unwrap();
            assert_eq!(to_string(&value).unwrap(), good, "after {bad}");
        }
    }
    // What a large document needed is given back once it is read.
    let large = format!("[{}0]", "[1,2,3],".repeat(10 * crate::value::KEPT_ON_STACK));
    let _: Value = from_str(&large).unwrap();
    let room = crate::de::kept_stacks().1;
    assert!(room <= crate::value::KEPT_ON_STACK, "{room}");
    let _: Value = serde_json::from_str(&large).unwrap();
    let room = crate::value::ITEMS.with(|items| items.borrow().capacity());
    assert!(room <= crate::value::KEPT_ON_STACK, "{room}");
}

#[test]
fn writing_deeper_than_the_limit_is_an_error() {
    let mut value = Value::Null;
    for _ in 0..=crate::MAX_DEPTH {
        value = Value::Array(vec![value]);
    }
    assert_eq!(to_vec(&value).unwrap_err().kind(), ErrorKind::Depth);
    // Dropping it is no problem either.
    drop(value);
}

#[derive(Debug, PartialEq, Deserialize, Serialize)]
struct User {
    name: String,
    address: Address,
}

#[derive(Debug, PartialEq, Deserialize, Serialize)]
struct Address {
    city: String,
}

/// A pydantic model with another inside, as Python FrameX's encoder writes it.
const MODEL: &str = r#"{"__type__": "dynamic_obj", "__module__": "app.models", "__class__": "User", "data": {"name": "ada", "address": {"__type__": "dynamic_obj", "__module__": "app.models", "__class__": "Address", "data": {"city": "Paris"}}}}"#;

#[test]
fn a_dynamic_obj_reads_into_a_type_as_its_data() {
    let user: User = from_str(MODEL).unwrap();
    assert_eq!(
        user,
        User {
            name: "ada".into(),
            address: Address {
                city: "Paris".into()
            }
        }
    );
    let users: Vec<User> = from_str(&format!("[{MODEL},{MODEL}]")).unwrap();
    assert_eq!(users.len(), 2);
    // serde_json's value is a type too: it gets the data.
    let plain: serde_json::Value = from_str(MODEL).unwrap();
    assert_eq!(
        plain,
        serde_json::json!({"name": "ada", "address": {"city": "Paris"}})
    );
}

#[test]
fn a_value_keeps_a_dynamic_obj_and_can_look_inside() {
    let value: Value = from_str(MODEL).unwrap();
    assert_eq!(
        round_trip(MODEL),
        MODEL.replace(": ", ":").replace(", ", ",")
    );
    let object = value.dynamic_obj().unwrap();
    assert_eq!(
        (object.module, object.class),
        (Some("app.models"), Some("User"))
    );
    assert_eq!(object.data["name"], Value::from("ada"));
    assert_eq!(
        value.unwrap_dynamic_objs(),
        serde_json::json!({"name": "ada", "address": {"city": "Paris"}})
    );
    let user: User = crate::from_value(&from_str(MODEL).unwrap()).unwrap();
    assert_eq!(user.address.city, "Paris");
}

#[test]
fn objects_that_only_look_like_a_dynamic_obj_are_plain() {
    let later: serde_json::Value =
        from_str(r#"{"a":1,"__type__":"dynamic_obj","data":{}}"#).unwrap();
    assert_eq!(later["a"], 1);
    let other: serde_json::Value = from_str(r#"{"__type__":"model","data":{"x":1}}"#).unwrap();
    assert_eq!(other["__type__"], "model");
    let message =
        error::<serde_json::Value>(r#"{"__type__":"dynamic_obj","__class__":"X"}"#).to_string();
    assert_eq!(
        message,
        "an object marked `\"__type__\": \"dynamic_obj\"` has no `data` at byte 0"
    );
}

#[test]
fn bad_input_is_refused_with_where_and_what() {
    for (text, message) in [
        ("", "unexpected end of input, expected a value at byte 0"),
        ("[1,]", "expected a value, found ']' at byte 3"),
        ("[1 2]", "expected `,` or `]`, found '2' at byte 3"),
        ("{\"a\" 1}", "expected `:`, found '1' at byte 5"),
        ("{1:2}", "expected a string key, found '1' at byte 1"),
        ("{\"a\":1,}", "expected a string key, found '}' at byte 7"),
        ("\"abc", "unterminated string at byte 0"),
        (
            "\"a\nb\"",
            "control character 0x0a in a string must be escaped at byte 2",
        ),
        (
            "\"\\x\"",
            "invalid escape in a string (allowed: \\\" \\\\ \\/ \\b \\f \\n \\r \\t \\uXXXX) at byte 1",
        ),
        (
            "\"\\ud800\"",
            "\\ud800 is half of a surrogate pair, which text cannot hold alone at byte 1",
        ),
        (
            "\"\\u12g4\"",
            "expected four hex digits after \\u at byte 3",
        ),
        ("01", "unexpected text after the value at byte 1"),
        ("-", "expected a digit at byte 1"),
        ("1.", "expected a digit after `.` at byte 2"),
        ("1e", "expected a digit in the exponent at byte 2"),
        ("-NaN", "expected a digit at byte 1"),
        ("nul", "expected `null` at byte 0"),
        ("Infinit", "expected `Infinity` at byte 0"),
        ("[1] x", "unexpected text after the value at byte 4"),
        ("\u{feff}1", "expected a value, found '\\u{feff}' at byte 0"),
    ] {
        assert_eq!(error::<Value>(text).to_string(), message, "{text:?}");
    }
    assert_eq!(
        from_slice::<Value>(b"[\"\xff\"]").unwrap_err().to_string(),
        "invalid UTF-8 at byte 2"
    );
}

#[test]
fn object_keys_may_be_numbers_as_python_writes_them() {
    let map: std::collections::BTreeMap<u64, String> = from_str(r#"{"1":"a","20":"b"}"#).unwrap();
    assert_eq!(map.get(&20).map(String::as_str), Some("b"));
    assert_eq!(to_string(&map).unwrap(), r#"{"1":"a","20":"b"}"#);
    let bad = to_vec(&std::collections::BTreeMap::from([(vec![1], 1)])).unwrap_err();
    assert_eq!(
        bad.to_string(),
        "object keys must be strings, numbers or booleans, not an array"
    );
}

#[test]
fn enums_read_and_write_as_serde_json_does() {
    #[derive(Debug, PartialEq, Deserialize, Serialize)]
    enum Shape {
        Dot,
        Circle(f64),
        Rect { w: u32, h: u32 },
        Pair(u8, u8),
    }
    for (shape, text) in [
        (Shape::Dot, r#""Dot""#),
        (Shape::Circle(1.5), r#"{"Circle":1.5}"#),
        (Shape::Rect { w: 2, h: 3 }, r#"{"Rect":{"w":2,"h":3}}"#),
        (Shape::Pair(1, 2), r#"{"Pair":[1,2]}"#),
    ] {
        assert_eq!(to_string(&shape).unwrap(), text);
        assert_eq!(serde_json::to_string(&shape).unwrap(), text);
        assert_eq!(from_str::<Shape>(text).unwrap(), shape);
    }
}

#[test]
fn pretty_output_is_indented() {
    let value: Value = from_str(r#"{"a":[1,{}],"b":{"c":NaN},"d":[]}"#).unwrap();
    assert_eq!(
        crate::to_string_pretty(&value).unwrap(),
        "{\n  \"a\": [\n    1,\n    {}\n  ],\n  \"b\": {\n    \"c\": NaN\n  },\n  \"d\": []\n}"
    );
}

#[test]
fn numbers_compare_by_value_and_kind() {
    let n = |text: &str| Number::from_text(text).unwrap();
    assert_eq!(n("-0"), n("0"));
    assert_eq!(n("1.0"), n("1.00"));
    assert_eq!(n("1e16"), n("1e+16"));
    assert_eq!(n("NaN"), n("NaN"));
    assert_ne!(n("1"), n("1.0"));
    assert_ne!(n("0.0"), n("-0.0"));
    assert_eq!(Number::from(u64::MAX).as_str(), "18446744073709551615");
    assert_eq!(Number::from(0.1f32).as_str(), "0.1");
    assert!(Number::from_text("1.").is_err());
    assert_eq!(
        Number::from_text("+1").unwrap_err().to_string(),
        "`+1` is not a JSON number"
    );
}

#[test]
fn values_serialize_into_other_formats_as_their_numbers() {
    let value: Value = from_str(r#"[1,-2,18446744073709551616,2.5,NaN]"#).unwrap();
    // serde_json writes NaN as null: its own choice, documented there.
    assert_eq!(
        serde_json::to_string(&value).unwrap(),
        "[1,-2,18446744073709551616,2.5,null]"
    );
    let huge: Value = from_str(&format!("1{}", "0".repeat(50))).unwrap();
    let message = serde_json::to_string(&huge).unwrap_err().to_string();
    assert!(message.contains("does not fit 128 bits"), "{message}");
    // And a Value reads from other formats, in their order.
    let from_serde: Value = serde_json::from_str(r#"{"b":[1,2.5],"a":null}"#).unwrap();
    assert_eq!(to_string(&from_serde).unwrap(), r#"{"b":[1,2.5],"a":null}"#);
}

#[test]
fn an_object_reader_reads_entry_by_entry() {
    let mut reader =
        crate::ObjectReader::new(br#" {"a": 1, "b\n": [NaN], "c": {"x": 2}} "#).unwrap();
    assert_eq!(reader.next_key().unwrap().as_deref(), Some("a"));
    assert_eq!(reader.value::<u8>().unwrap(), 1);
    assert_eq!(reader.next_key().unwrap().as_deref(), Some("b\n"));
    assert!(reader.value::<Vec<f64>>().unwrap()[0].is_nan());
    assert_eq!(reader.next_key().unwrap().as_deref(), Some("c"));
    reader.skip_value().unwrap();
    assert_eq!(reader.next_key().unwrap(), None);
    for (text, message) in [
        ("[1]", "expected a JSON object, found an array"),
        ("null", "expected a JSON object, found null"),
        ("7", "expected a JSON object, found a number"),
    ] {
        assert_eq!(
            crate::ObjectReader::new(text.as_bytes())
                .unwrap_err()
                .to_string(),
            message
        );
    }
    let mut trailing = crate::ObjectReader::new(b"{} []").unwrap();
    assert_eq!(
        trailing.next_key().unwrap_err().to_string(),
        "unexpected text after the value at byte 3"
    );
}

#[test]
fn maps_look_up_insert_and_remove_in_order() {
    let mut map = Map::new();
    map.insert("b", 1);
    map.insert("a", 2);
    assert_eq!(map.insert("b", 3), Some(Value::from(1)));
    assert_eq!(
        map.keys().map(String::as_str).collect::<Vec<_>>(),
        ["b", "a"]
    );
    assert_eq!(map.remove("b"), Some(Value::from(3)));
    assert_eq!(map["a"], Value::from(2));
    assert!(map["missing"].is_null());
    let value = Value::Object(map);
    assert_eq!(value["a"].as_u64(), Some(2));
    assert_eq!(value.get("a"), Some(&Value::from(2)));
    assert_eq!(Value::from(vec![1, 2])[1].as_i64(), Some(2));
}

/// JSON integer text: an optional minus, then digits without a leading zero.
fn integer_texts() -> impl Strategy<Value = String> {
    (any::<bool>(), "[1-9][0-9]{0,300}|0").prop_map(|(negative, digits)| {
        if negative {
            format!("-{digits}")
        } else {
            digits
        }
    })
}

/// Any text, and short ASCII text dense with characters that need escapes.
fn texts() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        proptest::collection::vec(0u8..0x80, 0..40)
            .prop_map(|bytes| bytes.into_iter().map(char::from).collect()),
    ]
}

/// serde_json values of every kind.
fn serde_json_values() -> impl Strategy<Value = serde_json::Value> {
    let leaf = prop_oneof![
        1 => Just(serde_json::Value::Null),
        1 => any::<bool>().prop_map(serde_json::Value::Bool),
        1 => any::<i64>().prop_map(serde_json::Value::from),
        1 => any::<u64>().prop_map(serde_json::Value::from),
        1 => any::<f64>().prop_filter("finite", |f| f.is_finite()).prop_map(serde_json::Value::from),
        2 => texts().prop_map(serde_json::Value::String),
    ];
    leaf.prop_recursive(4, 64, 8, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..8).prop_map(serde_json::Value::Array),
            proptest::collection::vec((texts(), inner), 0..8)
                .prop_map(|entries| serde_json::Value::Object(entries.into_iter().collect())),
        ]
    })
}

proptest! {
    #[test]
    fn any_integer_text_round_trips_byte_for_byte(text in integer_texts()) {
        prop_assert_eq!(round_trip(&text), text.clone());
        let in_array = format!("[{text},{{\"n\":{text}}}]");
        prop_assert_eq!(round_trip(&in_array), in_array);
    }

    #[test]
    fn any_f64_round_trips_exactly(float in any::<f64>()) {
        let text = to_string(&float).unwrap();
        let back: f64 = from_str(&text).unwrap();
        prop_assert!(back.to_bits() == float.to_bits() || (back.is_nan() && float.is_nan()));
        prop_assert_eq!(round_trip(&text), text);
    }

    #[test]
    fn key_order_is_kept(keys in proptest::collection::vec("[a-z]{1,6}", 0..20)) {
        let mut unique = keys.clone();
        unique.dedup();
        let mut seen = std::collections::HashSet::new();
        unique.retain(|key| seen.insert(key.clone()));
        let text = format!(
            "{{{}}}",
            unique.iter().enumerate().map(|(i, k)| format!("\"{k}\":{i}")).collect::<Vec<_>>().join(",")
        );
        let value: Value = from_str(&text).unwrap();
        let read: Vec<&String> = value.as_object().unwrap().keys().collect();
        prop_assert_eq!(read, unique.iter().collect::<Vec<_>>());
        prop_assert_eq!(to_string(&value).unwrap(), text);
    }

    #[test]
    fn standard_json_is_written_as_serde_json_writes_it(value in serde_json_values()) {
        // serde_json's map is sorted; ours keeps that order as given.
        prop_assert_eq!(to_vec(&value).unwrap(), serde_json::to_vec(&value).unwrap());
        let ours: Value = from_slice(&serde_json::to_vec(&value).unwrap()).unwrap();
        prop_assert_eq!(&ours, &value);
        let typed: serde_json::Value = from_slice(&serde_json::to_vec(&value).unwrap()).unwrap();
        prop_assert_eq!(typed, value);
    }

    #[test]
    fn any_string_is_escaped_as_serde_json_escapes_it(text in texts()) {
        prop_assert_eq!(to_string(&text).unwrap(), serde_json::to_string(&text).unwrap());
        prop_assert_eq!(from_str::<String>(&serde_json::to_string(&text).unwrap()).unwrap(), text);
    }

    #[test]
    fn any_input_is_read_or_refused_without_panicking(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
        if let Ok(value) = from_slice::<Value>(&bytes) {
            let written = to_vec(&value).unwrap();
            prop_assert_eq!(from_slice::<Value>(&written).unwrap(), value);
        }
    }
}

#[test]
fn unknown_fields_are_skipped_at_any_depth_and_still_checked() {
    #[derive(Debug, Deserialize)]
    struct Call {
        name: String,
    }
    let deep = nested(100_000, "[", "]");
    let call: Call = from_str(&format!(
        r#"{{"extra": {deep}, "name": "f", "more": {{"a": [1, "\u00e9\n", {{}}], "b": NaN}}}}"#
    ))
    .unwrap();
    assert_eq!(call.name, "f");
    for (text, message) in [
        (
            r#"{"name": "f", "x": [1,]}"#,
            "expected a value, found ']' at byte 22",
        ),
        (
            r#"{"name": "f", "x": {"a" 1}}"#,
            "expected `:`, found '1' at byte 24",
        ),
        (
            r#"{"name": "f", "x": "\q"}"#,
            "invalid escape in a string (allowed: \\\" \\\\ \\/ \\b \\f \\n \\r \\t \\uXXXX) at byte 20",
        ),
        (
            r#"{"name": "f", "x": [1}"#,
            "expected `,` or `]`, found '}' at byte 21",
        ),
    ] {
        assert_eq!(error::<Call>(text).to_string(), message, "{text}");
    }
}

#[test]
fn reading_within_a_memory_bound_stops_where_the_bound_is_passed() {
    let zeros = format!("[{}0]", "0,".repeat(9_999));
    // As values: 96 bytes each, the array too.
    assert!(crate::from_slice_limited::<Value>(zeros.as_bytes(), 10_001 * 96).is_ok());
    let error = crate::from_slice_limited::<Value>(zeros.as_bytes(), 10_000 * 96).unwrap_err();
    assert_eq!(error.kind(), ErrorKind::TooLarge);
    assert_eq!(
        error.message(),
        "the value would take more than 960000 bytes of memory once read"
    );
    // As numbers of a type: 24 bytes each.
    assert!(crate::from_slice_limited::<Vec<u8>>(zeros.as_bytes(), 96 + 10_000 * 24).is_ok());
    // Strings cost their length too; skipped fields cost nothing.
    #[derive(Debug, Deserialize)]
    struct Named {
        #[allow(dead_code)]
        name: String,
    }
    let text = format!(r#"{{"name": "{}", "skipped": {zeros}}}"#, "a".repeat(1000));
    // The object, its string and the two keys.
    assert!(crate::from_slice_limited::<Named>(text.as_bytes(), 96 * 2 + 1000 + 11).is_ok());
    assert!(crate::from_slice_limited::<Named>(text.as_bytes(), 96 * 2 + 1000 + 10).is_err());
}

#[test]
fn an_object_keyed_like_a_private_token_of_the_reader_stays_an_object() {
    // A caller's object must arrive as it was sent, whatever its keys: the
    // names under which the reader and `Value` talk to each other are text
    // like any other in a document.
    for text in [
        r#"{"$framex_json::private::Number":"12"}"#,
        r#"{"$framex_json::private::Value":[1]}"#,
        r#"{"$framex_json::private::Exact":null}"#,
    ] {
        let value: Value = from_str(text).unwrap();
        assert!(value.as_object().is_some(), "{text}: {value:?}");
        assert_eq!(to_string(&value).unwrap(), text);
    }
}

#[test]
fn values_inside_typed_types_are_read_as_values() {
    #[derive(Debug, Deserialize)]
    struct Call {
        name: String,
        args: Vec<Value>,
        extra: Option<Value>,
        #[serde(default)]
        by_key: std::collections::BTreeMap<String, Value>,
    }
    let text = r#"{"name": "f", "args": [18446744073709551616, NaN, {"a": [1.50]}],
        "extra": {"__type__": "dynamic_obj", "__module__": "m", "__class__": "C", "data": {"x": 1}},
        "by_key": {"k": -0}}"#;
    let call: Call = from_str(text).unwrap();
    assert_eq!(call.name, "f");
    assert_eq!(
        to_string(&call.args).unwrap(),
        r#"[18446744073709551616,NaN,{"a":[1.50]}]"#
    );
    // A `Value` keeps a dynamic_obj as it came.
    let extra = call.extra.unwrap();
    assert_eq!(extra.dynamic_obj().unwrap().class, Some("C"));
    assert_eq!(to_string(&call.by_key).unwrap(), r#"{"k":-0}"#);
    // An error inside one names where it is.
    let error = error::<Call>(r#"{"name": "f", "args": [1, {"a" 2}]}"#);
    assert_eq!(error.to_string(), "expected `:`, found '2' at byte 31");
}
