//! Auto-responses: a request the gateway answers for an object without waking it.
//!
//! A request matches either exactly (the frame's text) or by JSON fields (the frame is a JSON
//! object carrying each given field with the given value, whatever the key order, whitespace
//! or other fields). The response is a template in which `{{now_ms}}` and `{{now_iso}}` become
//! the server's time when it is sent, and `{{request.NAME}}` the JSON of the request's field
//! `NAME` (`null` when it has none), so an answer can carry back what the client sent.

use serde_json::{Map, Value};

/// Frames longer than this are never parsed for a JSON match: pings are small.
const MAX_JSON_MATCH_LEN: usize = 1024;

#[derive(Clone, Debug, PartialEq)]
pub enum RequestMatch {
    /// The frame's text, byte for byte.
    Exact(String),
    /// A JSON object containing all these fields with these values.
    Fields(Map<String, Value>),
}

#[derive(Clone, Debug, PartialEq)]
enum Part {
    Literal(String),
    NowMs,
    NowIso,
    /// The JSON of a field of the request.
    Field(String),
}

/// A `(request, response)` pair answered by the gateway.
#[derive(Clone, Debug, PartialEq)]
pub struct AutoResponse {
    request: RequestMatch,
    response: Vec<Part>,
}

impl AutoResponse {
    /// Answers `request` with `response` (a template: `{{now_ms}}`, `{{now_iso}}`,
    /// `{{request.NAME}}`).
    pub fn new(request: RequestMatch, response: &str) -> Self {
        let mut parts = Vec::new();
        let mut rest = response;
        while let Some(start) = rest.find("{{") {
            let (before, after) = rest.split_at(start);
            let field = after
                .strip_prefix("{{request.")
                .and_then(|f| f.split_once("}}"))
                .filter(|(name, _)| !name.is_empty() && !name.contains('{'));
            let (part, len) = if after.starts_with("{{now_ms}}") {
                (Part::NowMs, "{{now_ms}}".len())
            } else if after.starts_with("{{now_iso}}") {
                (Part::NowIso, "{{now_iso}}".len())
            } else if let Some((name, _)) = field {
                (Part::Field(name.to_string()), "{{request.}}".len() + name.len())
            } else {
                parts.push(Part::Literal(format!("{before}{{{{")));
                rest = &after[2..];
                continue;
            };
            parts.push(Part::Literal(before.to_string()));
            parts.push(part);
            rest = &after[len..];
        }
        parts.push(Part::Literal(rest.to_string()));
        parts.retain(|p| !matches!(p, Part::Literal(s) if s.is_empty()));
        AutoResponse {
            request,
            response: parts,
        }
    }

    /// Matches a JSON object with the fields of `fields` (which must be a JSON object).
    pub fn json(fields: Value, response: &str) -> Self {
        let map = match fields {
            Value::Object(map) => map,
            other => panic!("AutoResponse::json needs a JSON object, got {other}"),
        };
        Self::new(RequestMatch::Fields(map), response)
    }

    /// The response for `text` if it matches, with the time `now_ms` substituted.
    pub fn respond(&self, text: &str, now_ms: i64) -> Option<String> {
        let request = match &self.request {
            RequestMatch::Exact(s) => (s == text).then(Map::new)?,
            RequestMatch::Fields(fields) => {
                if text.len() > MAX_JSON_MATCH_LEN {
                    return None;
                }
                match serde_json::from_str::<Value>(text) {
                    Ok(Value::Object(obj)) if fields.iter().all(|(k, v)| obj.get(k) == Some(v)) => obj,
                    _ => return None,
                }
            }
        };
        let mut out = String::new();
        for part in &self.response {
            match part {
                Part::Literal(s) => out.push_str(s),
                Part::NowMs => out.push_str(&now_ms.to_string()),
                Part::NowIso => out.push_str(&switchboard_proto::time::iso_from_ms(now_ms)),
                Part::Field(name) => out.push_str(&request.get(name).unwrap_or(&Value::Null).to_string()),
            }
        }
        Some(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// A JSON match ignores key order, whitespace and extra fields; the time is substituted.
    #[test]
    fn json_match_and_template() {
        let ar = AutoResponse::json(json!({"type": "ping"}), r#"{"type":"pong","timestamp":{{now_ms}}}"#);
        assert_eq!(
            ar.respond(r#"{ "id": 3,  "type" : "ping" }"#, 42).as_deref(),
            Some(r#"{"type":"pong","timestamp":42}"#)
        );
        assert_eq!(ar.respond(r#"{"type":"pong"}"#, 42), None);
        assert_eq!(ar.respond("not json", 42), None);
        let iso = AutoResponse::json(json!({"type": "ping"}), r#"{"type":"pong","timestamp":"{{now_iso}}"}"#);
        assert_eq!(
            iso.respond(r#"{"type":"ping"}"#, 0).as_deref(),
            Some(r#"{"type":"pong","timestamp":"1970-01-01T00:00:00.000Z"}"#)
        );
    }

    /// `{{request.NAME}}` carries back the request's field as JSON, `null` when it is absent.
    #[test]
    fn request_fields() {
        let ar = AutoResponse::json(
            json!({"action": "heartbeat"}),
            r#"{"action":"heartbeat_ack","timestamp":{{request.timestamp}},"serverTime":{{now_ms}}}"#,
        );
        assert_eq!(
            ar.respond(r#"{"action":"heartbeat","timestamp":1699000000}"#, 5)
                .as_deref(),
            Some(r#"{"action":"heartbeat_ack","timestamp":1699000000,"serverTime":5}"#)
        );
        assert_eq!(
            ar.respond(r#"{"action":"heartbeat","timestamp":"x\"y"}"#, 5).as_deref(),
            Some(r#"{"action":"heartbeat_ack","timestamp":"x\"y","serverTime":5}"#)
        );
        assert_eq!(
            ar.respond(r#"{"action":"heartbeat"}"#, 5).as_deref(),
            Some(r#"{"action":"heartbeat_ack","timestamp":null,"serverTime":5}"#)
        );
    }

    /// An exact match is byte for byte; unknown placeholders stay as they are.
    #[test]
    fn exact_match() {
        let ar = AutoResponse::new(RequestMatch::Exact("ping".into()), "pong {{x}} {{now_ms}}");
        assert_eq!(ar.respond("ping", 7).as_deref(), Some("pong {{x}} 7"));
        assert_eq!(ar.respond("ping ", 7), None);
    }
}
