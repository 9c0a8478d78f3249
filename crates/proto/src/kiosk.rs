//! The NFC kiosk's Socket.IO events (PROTOCOLS.md §4): what a client emits, checked into typed
//! requests, and the envelope of every event the server emits.
//!
//! A client emits `(event, {"timestamp": ISO, "data": {…}})`; the server emits
//! `(event, {"type": event, "timestamp": ISO, "data": {…}})`. A payload that is not what its
//! event needs is a [`WireError`], which the server answers with an `error` event.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Longest registration timeout a client may ask for, in seconds (an hour).
pub const MAX_TIMEOUT_SECS: u64 = 3600;
/// Registration timeout when the client names none, in seconds.
pub const DEFAULT_TIMEOUT_SECS: u64 = 30;
/// Longest LED pattern duration a client may ask for (a day).
pub const MAX_LED_DURATION_MS: u64 = 24 * 3600 * 1000;

/// The entry a tag is registered to: the page's own id, a string or an integer, echoed back in
/// the type it was sent.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(untagged)]
pub enum EntryId {
    Number(i64),
    Text(String),
}

impl EntryId {
    /// A storage key part that keeps `1` and `"1"` apart.
    pub fn key(&self) -> String {
        match self {
            EntryId::Number(n) => format!("n:{n}"),
            EntryId::Text(t) => format!("s:{t}"),
        }
    }
}

impl std::fmt::Display for EntryId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            EntryId::Number(n) => write!(f, "{n}"),
            EntryId::Text(t) => write!(f, "{t:?}"),
        }
    }
}

/// An LED pattern.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Pattern {
    Off,
    Solid,
    Blink,
    Pulse,
    Rainbow,
}

impl Pattern {
    pub const ALL: &[&str] = &["off", "solid", "blink", "pulse", "rainbow"];

    /// Whether the pattern changes over time (needs frames after the first).
    pub fn animated(self) -> bool {
        matches!(self, Pattern::Blink | Pattern::Pulse | Pattern::Rainbow)
    }
}

/// A colour as the wire writes it: `#RRGGBB`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Color(pub [u8; 3]);

impl Color {
    pub const WHITE: Color = Color([255, 255, 255]);
    pub const BLACK: Color = Color([0, 0, 0]);

    /// Parses `#RRGGBB` (or `RRGGBB`), any case.
    pub fn parse(s: &str) -> Option<Color> {
        let hex = s.strip_prefix('#').unwrap_or(s);
        if hex.len() != 6 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        let byte = |i: usize| u8::from_str_radix(&hex[i..i + 2], 16).ok();
        Some(Color([byte(0)?, byte(2)?, byte(4)?]))
    }
}

impl std::fmt::Display for Color {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let [r, g, b] = self.0;
        write!(f, "#{r:02X}{g:02X}{b:02X}")
    }
}

impl Serialize for Color {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Color {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Color::parse(&s).ok_or_else(|| serde::de::Error::custom(format!("{s:?} is not a colour like #FF8800")))
    }
}

/// What the LEDs show: `led_state`'s data.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LedState {
    pub pattern: Pattern,
    pub color: Color,
}

impl Default for LedState {
    fn default() -> Self {
        LedState {
            pattern: Pattern::Off,
            color: Color::BLACK,
        }
    }
}

/// A client's request, checked.
#[derive(Clone, Debug, PartialEq)]
pub enum Request {
    RegisterStart { entry_id: EntryId, timeout: u64 },
    RegisterCancel,
    LedSet { led: LedState, duration_ms: Option<u64> },
    GetStatus,
}

/// Why a client's event was refused: the `error` event's `{message, code}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("{message}")]
pub struct WireError {
    pub message: String,
    pub code: String,
}

impl WireError {
    pub fn new(code: &str, message: impl Into<String>) -> Self {
        WireError {
            message: message.into(),
            code: code.into(),
        }
    }

    fn invalid(message: impl Into<String>) -> Self {
        Self::new(codes::INVALID_PAYLOAD, message)
    }
}

/// The `code`s of `error` events.
pub mod codes {
    /// The payload is not what the event needs.
    pub const INVALID_PAYLOAD: &str = "invalid_payload";
    /// The event is not one the kiosk knows.
    pub const UNKNOWN_EVENT: &str = "unknown_event";
    /// The tag presented is registered to another entry; the registration keeps waiting.
    pub const TAG_IN_USE: &str = "tag_in_use";
    /// Another entry's registration is running.
    pub const REGISTRATION_IN_PROGRESS: &str = "registration_in_progress";
    /// `register_tag_cancel` with no registration running.
    pub const NO_REGISTRATION: &str = "no_registration";
}

/// The events a client may emit.
pub const CLIENT_EVENTS: &[&str] = &["register_tag_start", "register_tag_cancel", "led_set", "get_status"];

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct StartData {
    entry_id: EntryId,
    #[serde(default)]
    timeout: Option<u64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LedData {
    pattern: Pattern,
    #[serde(default)]
    color: Option<Color>,
    #[serde(default)]
    duration_ms: Option<u64>,
}

/// Checks what a client emitted: `payload` is the event's first argument (`Null` if none).
pub fn parse_request(event: &str, payload: &Value) -> Result<Request, WireError> {
    let request = match event {
        "register_tag_start" => {
            let start: StartData = data_of(event, payload)?;
            if let EntryId::Text(t) = &start.entry_id
                && (t.is_empty() || t.len() > 256)
            {
                return Err(WireError::invalid(format!(
                    "{event}: entry_id must be 1 to 256 bytes long"
                )));
            }
            let timeout = start.timeout.unwrap_or(DEFAULT_TIMEOUT_SECS);
            if timeout == 0 || timeout > MAX_TIMEOUT_SECS {
                return Err(WireError::invalid(format!(
                    "{event}: timeout must be a whole number of seconds from 1 to {MAX_TIMEOUT_SECS}"
                )));
            }
            Request::RegisterStart {
                entry_id: start.entry_id,
                timeout,
            }
        }
        "register_tag_cancel" => {
            envelope_of(event, payload)?;
            Request::RegisterCancel
        }
        "get_status" => {
            envelope_of(event, payload)?;
            Request::GetStatus
        }
        "led_set" => {
            let led: LedData = data_of(event, payload)?;
            if led.duration_ms.is_some_and(|d| d == 0 || d > MAX_LED_DURATION_MS) {
                return Err(WireError::invalid(format!(
                    "{event}: duration_ms must be from 1 to {MAX_LED_DURATION_MS}"
                )));
            }
            let color = match (led.pattern, led.color) {
                (Pattern::Off, _) => Color::BLACK,
                (_, Some(color)) => color,
                (_, None) => Color::WHITE,
            };
            Request::LedSet {
                led: LedState {
                    pattern: led.pattern,
                    color,
                },
                duration_ms: led.duration_ms,
            }
        }
        _ => {
            return Err(WireError::new(
                codes::UNKNOWN_EVENT,
                format!("unknown event {event:?}; events: {}", CLIENT_EVENTS.join(", ")),
            ));
        }
    };
    Ok(request)
}

/// The envelope's `data` (an object; absent or `null` counts as `{}` for events without
/// fields). A payload that is not an envelope is refused.
fn envelope_of<'a>(event: &str, payload: &'a Value) -> Result<Option<&'a Value>, WireError> {
    match payload {
        Value::Null => Ok(None),
        Value::Object(fields) => {
            if let Some(ts) = fields.get("timestamp")
                && !ts.is_string()
            {
                return Err(WireError::invalid(format!(
                    "{event}: timestamp must be an ISO 8601 string"
                )));
            }
            match fields.get("data") {
                None | Some(Value::Null) => Ok(None),
                Some(data @ Value::Object(_)) => Ok(Some(data)),
                Some(_) => Err(WireError::invalid(format!("{event}: data must be an object"))),
            }
        }
        _ => Err(WireError::invalid(format!(
            "{event}: the payload must be an object {{\"timestamp\", \"data\"}}"
        ))),
    }
}

fn data_of<T: DeserializeOwned>(event: &str, payload: &Value) -> Result<T, WireError> {
    let empty = Value::Object(Default::default());
    let data = envelope_of(event, payload)?.unwrap_or(&empty);
    T::deserialize(data).map_err(|e| {
        let hint = match event {
            "register_tag_start" => "{entry_id, timeout?}",
            _ => "{pattern, color?, duration_ms?}",
        };
        WireError::invalid(format!("{event}: data must be {hint}: {e}"))
    })
}

/// An event the server emits, in the seed's envelope.
#[derive(Serialize)]
pub struct Outgoing<'a, T: Serialize> {
    #[serde(rename = "type")]
    pub kind: &'a str,
    pub timestamp: String,
    pub data: T,
}

/// The Socket.IO event array `[event, envelope]`, as JSON text.
pub fn event_json<T: Serialize>(event: &str, timestamp_ms: i64, data: &T) -> String {
    let outgoing = Outgoing {
        kind: event,
        timestamp: crate::time::iso_from_ms(timestamp_ms),
        data,
    };
    serde_json::to_string(&(event, outgoing)).expect("wire types serialize")
}

/// Normalises a tag uid: hex bytes, with or without `:` between them, 4 to 10 bytes, written
/// upper case with `:` (`04:11:5D:22:2C:65:80`, the seed's form).
pub fn normalize_uid(uid: &str) -> Option<String> {
    let hex: String = uid.trim().chars().filter(|c| *c != ':').collect();
    if !hex.len().is_multiple_of(2) || !(8..=20).contains(&hex.len()) || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let bytes: Vec<String> = hex
        .as_bytes()
        .chunks(2)
        .map(|pair| String::from_utf8_lossy(pair).to_ascii_uppercase())
        .collect();
    Some(bytes.join(":"))
}

/// A uid read from a tag, in the wire's form.
pub fn uid_from_bytes(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02X}")).collect::<Vec<_>>().join(":")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn envelope(data: Value) -> Value {
        json!({"timestamp": "2025-01-15T12:00:00.000Z", "data": data})
    }

    #[test]
    fn requests_parse_as_the_seed_sends_them() {
        assert_eq!(
            parse_request("register_tag_start", &envelope(json!({"entry_id": 7}))),
            Ok(Request::RegisterStart {
                entry_id: EntryId::Number(7),
                timeout: 30
            })
        );
        assert_eq!(
            parse_request("register_tag_start", &envelope(json!({"entry_id": "a", "timeout": 5}))),
            Ok(Request::RegisterStart {
                entry_id: EntryId::Text("a".into()),
                timeout: 5
            })
        );
        assert_eq!(
            parse_request("register_tag_cancel", &envelope(json!({}))),
            Ok(Request::RegisterCancel)
        );
        assert_eq!(parse_request("get_status", &Value::Null), Ok(Request::GetStatus));
        assert_eq!(
            parse_request("led_set", &envelope(json!({"pattern": "solid", "color": "#ff8800"}))),
            Ok(Request::LedSet {
                led: LedState {
                    pattern: Pattern::Solid,
                    color: Color([255, 136, 0])
                },
                duration_ms: None
            })
        );
    }

    /// Every malformed payload is a `WireError` with a code and a sentence, never a panic.
    #[test]
    fn bad_payloads_are_errors() {
        let cases = [
            ("register_tag_start", json!("nope")),
            ("register_tag_start", envelope(json!({}))),
            ("register_tag_start", envelope(json!({"entry_id": true}))),
            ("register_tag_start", envelope(json!({"entry_id": 1, "timeout": 0}))),
            ("register_tag_start", envelope(json!({"entry_id": 1, "timeout": -3}))),
            ("register_tag_start", envelope(json!({"entry_id": 1, "timeout": 1.5}))),
            ("register_tag_start", envelope(json!({"entry_id": ""}))),
            ("register_tag_start", json!({"data": [1]})),
            ("register_tag_start", json!({"timestamp": 5, "data": {"entry_id": 1}})),
            ("led_set", envelope(json!({"pattern": "disco"}))),
            ("led_set", envelope(json!({"pattern": "solid", "color": "red"}))),
            ("led_set", envelope(json!({"pattern": "solid", "duration_ms": 0}))),
            ("get_status", json!(42)),
        ];
        for (event, payload) in cases {
            let e = parse_request(event, &payload).unwrap_err();
            assert_eq!(e.code, codes::INVALID_PAYLOAD, "{event} {payload}");
            assert!(e.message.starts_with(event), "{}", e.message);
        }
        assert_eq!(
            parse_request("dance", &Value::Null).unwrap_err().code,
            codes::UNKNOWN_EVENT
        );
    }

    #[test]
    fn events_use_the_seed_envelope() {
        let text = event_json(
            "awaiting_tag",
            1_736_942_400_000,
            &json!({"entry_id": 7, "timeout": 30}),
        );
        assert_eq!(
            text,
            r#"["awaiting_tag",{"type":"awaiting_tag","timestamp":"2025-01-15T12:00:00.000Z","data":{"entry_id":7,"timeout":30}}]"#
        );
    }

    #[test]
    fn uids_normalise() {
        assert_eq!(normalize_uid("04115d222c6580").as_deref(), Some("04:11:5D:22:2C:65:80"));
        assert_eq!(normalize_uid("04:11:5d:22").as_deref(), Some("04:11:5D:22"));
        for bad in ["", "04:11", "0411zz22", "041", "00112233445566778899AA"] {
            assert_eq!(normalize_uid(bad), None, "{bad}");
        }
        assert_eq!(uid_from_bytes(&[4, 0x11, 0x5d, 0x22]), "04:11:5D:22");
    }
}
