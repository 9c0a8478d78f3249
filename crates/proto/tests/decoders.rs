//! Property tests of the wire decoders: whatever bytes or JSON a client sends, decoding answers
//! with a value or an error — it never panics — and what it accepts has the shape the contract
//! promises.

use proptest::prelude::*;
use serde_json::{Map, Value, json};
use switchboard_proto::counter::{Op, SocketRequest};
use switchboard_proto::display::validate_update;

/// Arbitrary JSON values, a few levels deep.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(|f| json!(f)),
        ".{0,20}".prop_map(Value::String),
    ];
    leaf.prop_recursive(3, 32, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map("[a-zA-Z_]{1,10}", inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

proptest! {
    /// Any text is a socket request or an error.
    #[test]
    fn counter_frames_never_panic(text in ".{0,200}") {
        let _ = serde_json::from_str::<SocketRequest>(&text);
    }

    /// Any JSON object with a `type` field decodes as a socket request carrying that type, and
    /// an operation name resolves only to an operation of that name.
    #[test]
    fn counter_requests_keep_their_type(kind in "[a-zA-Z]{1,12}", extra in json_value()) {
        let mut object = json!({"type": kind});
        if let (Value::Object(into), Value::Object(from)) = (&mut object, extra) {
            for (k, v) in from {
                if k != "type" && k != "id" && k != "amount" && k != "value" && k != "limit" && k != "name" {
                    into.insert(k, v);
                }
            }
        }
        let request: SocketRequest = serde_json::from_value(object).unwrap();
        prop_assert_eq!(&request.kind, &kind);
        if let Some(op) = Op::from_name(&kind) {
            prop_assert_eq!(op.name(), kind.as_str());
        }
    }

    /// Any JSON is a display update or an error; an accepted update is an object with a string
    /// `type` and an integer `timestamp`.
    #[test]
    fn display_updates_are_valid_or_refused(value in json_value(), now in 0i64..4_000_000_000_000) {
        if let Ok((update, kind)) = validate_update(value, now) {
            prop_assert_eq!(update["type"].as_str(), Some(kind.as_str()));
            prop_assert!(update["timestamp"].is_i64() || update["timestamp"].is_u64(), "{}", update);
        }
    }
}
