//! Restaurant display sessions (PROTOCOLS.md §5): the session state and its frames.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// A session's state, as `GET state` returns it and `initial_state` carries it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SessionState {
    pub session_id: String,
    /// `null` until the session is initialised.
    pub tenant_id: Option<String>,
    pub current_order: Value,
    pub transcriptions: Vec<Value>,
    pub display_updates: Vec<Value>,
    /// `null` until the session is initialised.
    pub started_at: Option<i64>,
}

impl SessionState {
    /// The state of a session nobody has initialised.
    pub fn empty(session_id: &str) -> Self {
        SessionState {
            session_id: session_id.into(),
            tenant_id: None,
            current_order: Value::Null,
            transcriptions: Vec::new(),
            display_updates: Vec::new(),
            started_at: None,
        }
    }
}

/// Body of `POST init`.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Init {
    pub tenant_id: String,
}

/// Where an update goes in the state, by its `type`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Slot {
    Transcriptions,
    CurrentOrder,
    DisplayUpdates,
}

impl Slot {
    pub fn for_type(kind: &str) -> Slot {
        match kind {
            "transcription" => Slot::Transcriptions,
            "order_summary" => Slot::CurrentOrder,
            _ => Slot::DisplayUpdates,
        }
    }
}

/// Checks an update body: a JSON object with a string `type`. Adds `timestamp` (now, ms) if
/// missing. Returns the update and its type.
pub fn validate_update(mut update: Value, now_ms: i64) -> Result<(Value, String), String> {
    let Value::Object(fields) = &mut update else {
        return Err("an update must be a JSON object".into());
    };
    let kind = match fields.get("type") {
        Some(Value::String(s)) if !s.is_empty() => s.clone(),
        Some(_) => return Err("field `type` must be a non-empty string".into()),
        None => return Err("missing field `type`".into()),
    };
    fields.entry("timestamp").or_insert(Value::from(now_ms));
    Ok((update, kind))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn updates_need_a_type_and_get_a_timestamp() {
        let (u, kind) = validate_update(json!({"type": "dish_card", "x": 1}), 42).unwrap();
        assert_eq!((kind.as_str(), &u["timestamp"]), ("dish_card", &json!(42)));
        let (u, _) = validate_update(json!({"type": "menu", "timestamp": 7}), 42).unwrap();
        assert_eq!(u["timestamp"], 7);
        assert!(validate_update(json!({"x": 1}), 0).unwrap_err().contains("type"));
        assert!(validate_update(json!({"type": 3}), 0).is_err());
        assert!(validate_update(json!([1]), 0).is_err());
    }

    #[test]
    fn slots_by_type() {
        assert_eq!(Slot::for_type("transcription"), Slot::Transcriptions);
        assert_eq!(Slot::for_type("order_summary"), Slot::CurrentOrder);
        assert_eq!(Slot::for_type("menu"), Slot::DisplayUpdates);
    }

    #[test]
    fn state_uses_wire_names() {
        let v = serde_json::to_value(SessionState::empty("s1")).unwrap();
        assert_eq!(
            v,
            json!({"sessionId":"s1","tenantId":null,"currentOrder":null,"transcriptions":[],"displayUpdates":[],"startedAt":null})
        );
    }
}
