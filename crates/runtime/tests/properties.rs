//! Property tests of the runtime's own decoders: socket ids, auto-response matching.

use proptest::prelude::*;
use serde_json::{Map, Value, json};
use switchboard_runtime::{AutoResponse, SocketId};

proptest! {
    /// An id prints as 16 hex digits and parses back to itself, keeping its node's tag.
    #[test]
    fn socket_ids_round_trip(tag in any::<u32>(), seq in any::<u64>()) {
        let id = SocketId::new(tag, seq);
        let text = id.to_string();
        prop_assert_eq!(text.len(), 16);
        prop_assert_eq!(text.parse::<SocketId>(), Ok(id));
        prop_assert_eq!(id.node_tag(), tag & 0xFF_FFFF);
    }

    /// Any text is an id or an error.
    #[test]
    fn socket_id_parsing_never_panics(text in ".{0,40}") {
        let _ = text.parse::<SocketId>();
    }

    /// A JSON match answers any small object carrying its fields, whatever else it holds and in
    /// whatever order, and nothing that lacks them; arbitrary text never panics it.
    #[test]
    fn auto_responses_match_by_fields(
        extra in prop::collection::btree_map("[a-z]{1,8}", "[a-z0-9 ]{0,16}", 0..8),
        other in "[a-z]{1,8}",
        text in ".{0,300}",
    ) {
        let ping = AutoResponse::json(json!({"type": "ping"}), "pong {{now_ms}}");
        let mut object: Map<String, Value> = extra.into_iter().map(|(k, v)| (k, Value::String(v))).collect();
        object.insert("type".into(), json!("ping"));
        let answer = ping.respond(&Value::Object(object.clone()).to_string(), 7);
        prop_assert_eq!(answer.as_deref(), Some("pong 7"));
        if other != "ping" {
            object.insert("type".into(), json!(other));
            prop_assert_eq!(ping.respond(&Value::Object(object).to_string(), 7), None);
        }
        let _ = ping.respond(&text, 7);
    }
}
