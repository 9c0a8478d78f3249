//! RFID device gateway (PROTOCOLS.md §1): what devices send, what they and the dashboard are
//! answered, and the checks every field passes.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

/// The largest frame a device is ever sent: the arduinoWebSockets library closes with 1009
/// above 15 KiB.
pub const MAX_DEVICE_FRAME: usize = 15 * 1024;
/// Longest `deviceId`, in bytes.
pub const MAX_DEVICE_ID: usize = 128;
/// Longest `tagId`, in bytes.
pub const MAX_TAG_ID: usize = 128;
/// Longest `location`, user id or user name, in bytes.
pub const MAX_TEXT: usize = 256;
/// Most scans in one `scan_batch`.
pub const MAX_BATCH: usize = 1000;
/// Largest device timestamp (ms) taken: the year 2286, so that stored keys sort as numbers.
pub const MAX_TIMESTAMP: i64 = 9_999_999_999_999;

/// How the tag registry knew a scanned tag.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ScanStatus {
    Known,
    Unknown,
    /// Unknown, scanned in registration mode: offered to the dashboard for assignment.
    Registration,
}

/// An accepted scan, as stored, replied, shown and sent to the sink.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Scan {
    pub id: String,
    pub device_id: String,
    pub tag_id: String,
    pub location: String,
    /// ms: the server's time of a live scan, the device's for a buffered one.
    pub timestamp: i64,
    pub status: ScanStatus,
}

/// Who a tag belongs to (the tag registry's entry).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct User {
    pub user_id: String,
    pub name: String,
}

/// A registered tag, as `POST /api/tags` takes it and `GET /api/tags` lists it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Tag {
    pub tag_id: String,
    pub user_id: String,
    pub name: String,
}

/// A scan the device buffered while offline, in a `scan_batch`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BufferedScan {
    pub tag_id: String,
    #[serde(default)]
    pub location: String,
    pub timestamp: i64,
    pub seq: u64,
}

/// A frame from a device, checked.
#[derive(Clone, Debug, PartialEq)]
pub enum DeviceFrame {
    Scan {
        tag_id: String,
        location: String,
    },
    ScanBatch(Vec<BufferedScan>),
    /// Heartbeats are answered by the gateway; one reaches the object only if the gateway
    /// did not match it (one over 1 KiB). `timestamp` is as sent (`null` if absent).
    Heartbeat {
        timestamp: Value,
    },
    ConfigAck {
        version: u64,
    },
}

/// The HTTP fallback's body (`POST /api/rfid/scan`).
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HttpScan {
    pub device_id: String,
    pub tag_id: String,
    #[serde(default)]
    pub location: Option<String>,
}

/// Parses a device's text frame; `Err` is the sentence its error reply carries.
pub fn parse_device_frame(text: &str) -> Result<DeviceFrame, String> {
    let value: Value = serde_json::from_str(text).map_err(|e| format!("frames must be JSON: {e}"))?;
    let Value::Object(fields) = value else {
        return Err("frames must be JSON objects with an \"action\"".into());
    };
    let action = match fields.get("action") {
        Some(Value::String(a)) => a.as_str(),
        Some(_) => return Err("\"action\" must be a string".into()),
        None => return Err("missing \"action\"; expected scan, scan_batch, heartbeat or config_ack".into()),
    };
    match action {
        "scan" => {
            let tag_id = check_tag_id(fields.get("tagId"))?;
            let location = check_location(fields.get("location"))?;
            Ok(DeviceFrame::Scan { tag_id, location })
        }
        "scan_batch" => {
            let scans: Vec<BufferedScan> = match fields.get("scans") {
                Some(Value::Array(items)) => items
                    .iter()
                    .enumerate()
                    .map(|(i, item)| buffered_scan(item).map_err(|e| format!("scans[{i}]: {e}; nothing was stored")))
                    .collect::<Result<_, _>>()?,
                _ => return Err("scan_batch needs \"scans\": an array of {tagId, location, timestamp, seq}".into()),
            };
            if scans.len() > MAX_BATCH {
                return Err(format!(
                    "a scan_batch carries at most {MAX_BATCH} scans, this one {}; send them in several batches",
                    scans.len()
                ));
            }
            Ok(DeviceFrame::ScanBatch(scans))
        }
        "heartbeat" => Ok(DeviceFrame::Heartbeat {
            timestamp: fields.get("timestamp").cloned().unwrap_or(Value::Null),
        }),
        "config_ack" => match fields.get("version").and_then(Value::as_u64) {
            Some(version) => Ok(DeviceFrame::ConfigAck { version }),
            None => Err("config_ack needs \"version\": the config version applied (a whole number)".into()),
        },
        other => Err(format!(
            "unknown action {other:?}; expected scan, scan_batch, heartbeat or config_ack"
        )),
    }
}

fn buffered_scan(item: &Value) -> Result<BufferedScan, String> {
    let Value::Object(fields) = item else {
        return Err("each scan must be an object".into());
    };
    let tag_id = check_tag_id(fields.get("tagId"))?;
    let location = check_location(fields.get("location"))?;
    let timestamp = fields
        .get("timestamp")
        .and_then(Value::as_i64)
        .filter(|t| (0..=MAX_TIMESTAMP).contains(t))
        .ok_or("\"timestamp\" must be the scan's time in ms since the epoch (a whole number)")?;
    let seq = fields
        .get("seq")
        .and_then(Value::as_u64)
        .ok_or("\"seq\" must be a whole number, unique per scan of this device")?;
    Ok(BufferedScan {
        tag_id,
        location,
        timestamp,
        seq,
    })
}

/// Checks a `tagId`: a string of 1 to [`MAX_TAG_ID`] bytes.
pub fn check_tag_id(value: Option<&Value>) -> Result<String, String> {
    match value {
        Some(Value::String(s)) if !s.is_empty() && s.len() <= MAX_TAG_ID => Ok(s.clone()),
        Some(Value::String(_)) => Err(format!("\"tagId\" must be 1 to {MAX_TAG_ID} bytes long")),
        Some(_) => Err("\"tagId\" must be a string".into()),
        None => Err("missing \"tagId\"".into()),
    }
}

/// Checks a `location`: absent (empty) or a string of at most [`MAX_TEXT`] bytes.
pub fn check_location(value: Option<&Value>) -> Result<String, String> {
    match value {
        None | Some(Value::Null) => Ok(String::new()),
        Some(Value::String(s)) if s.len() <= MAX_TEXT => Ok(s.clone()),
        Some(Value::String(_)) => Err(format!("\"location\" must be at most {MAX_TEXT} bytes long")),
        Some(_) => Err("\"location\" must be a string".into()),
    }
}

/// Checks a device id: 1 to [`MAX_DEVICE_ID`] visible ASCII characters (it is part of URLs,
/// scan ids and `Idempotency-Key` headers).
pub fn check_device_id(id: &str) -> Result<(), String> {
    if id.is_empty() || id.len() > MAX_DEVICE_ID || !id.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(format!(
            "deviceId must be 1 to {MAX_DEVICE_ID} visible ASCII characters (no spaces)"
        ));
    }
    Ok(())
}

/// Checks a tag registration.
pub fn check_tag(tag: &Tag) -> Result<(), String> {
    check_tag_id(Some(&Value::String(tag.tag_id.clone())))?;
    for (name, value) in [("userId", &tag.user_id), ("name", &tag.name)] {
        if value.len() > MAX_TEXT {
            return Err(format!("\"{name}\" must be at most {MAX_TEXT} bytes long"));
        }
    }
    if tag.user_id.is_empty() {
        return Err("\"userId\" must not be empty".into());
    }
    Ok(())
}

/// `{"success":true,"scan":…,"user":…}`.
pub fn scan_reply(scan: &Scan, user: Option<&User>) -> Value {
    json!({ "success": true, "scan": scan, "user": user })
}

/// `{"success":true,"accepted":n,"duplicates":m}`.
pub fn batch_reply(accepted: usize, duplicates: usize) -> Value {
    json!({ "success": true, "accepted": accepted, "duplicates": duplicates })
}

/// `{"success":false,"error":…}`.
pub fn error_reply(error: &str) -> Value {
    json!({ "success": false, "error": error })
}

/// The refusal of a scan inside the repeat window: "Please wait 1 second between scans" at the
/// default of 1000 ms.
pub fn repeat_error(interval_ms: u64) -> String {
    let seconds = interval_ms as f64 / 1000.0;
    let unit = if interval_ms == 1000 { "second" } else { "seconds" };
    format!("Please wait {seconds} {unit} between scans")
}

/// `{"action":"config","version":n,…}`: the device's config with its version.
pub fn config_frame(version: u64, config: &Map<String, Value>) -> Value {
    let mut frame = Map::new();
    frame.insert("action".into(), "config".into());
    frame.insert("version".into(), version.into());
    frame.insert(
        "registrationMode".into(),
        config.get("registrationMode").cloned().unwrap_or(Value::Bool(false)),
    );
    for (key, value) in config {
        frame.entry(key.clone()).or_insert_with(|| value.clone());
    }
    Value::Object(frame)
}

/// Merges a dashboard's config change into `config` (a `null` removes a key); `Err` says why
/// the change is refused.
pub fn merge_config(config: &mut Map<String, Value>, change: Map<String, Value>) -> Result<(), String> {
    for key in ["action", "version"] {
        if change.contains_key(key) {
            return Err(format!("\"{key}\" is set by the server, not in a device's config"));
        }
    }
    if let Some(mode) = change.get("registrationMode")
        && !mode.is_boolean()
    {
        return Err("\"registrationMode\" must be true or false".into());
    }
    for (key, value) in change {
        if value.is_null() {
            config.remove(&key);
        } else {
            config.insert(key, value);
        }
    }
    Ok(())
}

/// Dashboard frames.
pub mod dashboard {
    use super::*;

    /// `{"type":"scan","scan":…,"user":…}`.
    pub fn scan(scan: &Scan, user: Option<&User>) -> Value {
        json!({ "type": "scan", "scan": scan, "user": user })
    }

    /// `{"type":"device_status","deviceId","status","lastSeen"}`.
    pub fn device_status(device_id: &str, online: bool, last_seen: Option<i64>) -> Value {
        json!({
            "type": "device_status",
            "deviceId": device_id,
            "status": if online { "online" } else { "offline" },
            "lastSeen": last_seen,
        })
    }

    /// `{"type":"tag_pending_registration","deviceId","tagId"}`.
    pub fn pending_registration(device_id: &str, tag_id: &str) -> Value {
        json!({ "type": "tag_pending_registration", "deviceId": device_id, "tagId": tag_id })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every action parses; every bad frame names what is wrong.
    #[test]
    fn frames() {
        assert_eq!(
            parse_device_frame(r#"{"action":"scan","tagId":"RFID123","location":"Main Gate"}"#),
            Ok(DeviceFrame::Scan {
                tag_id: "RFID123".into(),
                location: "Main Gate".into()
            })
        );
        assert_eq!(
            parse_device_frame(r#"{"action":"config_ack","version":3}"#),
            Ok(DeviceFrame::ConfigAck { version: 3 })
        );
        let batch = parse_device_frame(
            r#"{"action":"scan_batch","scans":[{"tagId":"A","location":"L","timestamp":5,"seq":1}]}"#,
        );
        assert!(matches!(batch, Ok(DeviceFrame::ScanBatch(s)) if s.len() == 1 && s[0].seq == 1));
        for (frame, says) in [
            ("nope", "JSON"),
            ("[1]", "objects"),
            (r#"{"tagId":"A"}"#, "missing \"action\""),
            (r#"{"action":"dance"}"#, "unknown action \"dance\""),
            (r#"{"action":"scan"}"#, "missing \"tagId\""),
            (r#"{"action":"scan","tagId":""}"#, "1 to 128"),
            (r#"{"action":"scan","tagId":7}"#, "must be a string"),
            (r#"{"action":"scan","tagId":"A","location":3}"#, "\"location\""),
            (r#"{"action":"scan_batch"}"#, "\"scans\""),
            (
                r#"{"action":"scan_batch","scans":[{"tagId":"A","timestamp":1}]}"#,
                "scans[0]: \"seq\"",
            ),
            (
                r#"{"action":"scan_batch","scans":[{"tagId":"A","timestamp":-1,"seq":1}]}"#,
                "timestamp",
            ),
            (r#"{"action":"config_ack"}"#, "version"),
        ] {
            let error = parse_device_frame(frame).expect_err(frame);
            assert!(error.contains(says), "{frame}: {error}");
        }
    }

    #[test]
    fn repeat_errors() {
        assert_eq!(repeat_error(1000), "Please wait 1 second between scans");
        assert_eq!(repeat_error(2500), "Please wait 2.5 seconds between scans");
    }

    /// A config change merges, `null` removes, and the server's own keys are refused.
    #[test]
    fn configs() {
        let mut config = Map::new();
        let change = json!({"registrationMode": true, "beep": 2});
        merge_config(&mut config, change.as_object().unwrap().clone()).unwrap();
        merge_config(&mut config, json!({"beep": null}).as_object().unwrap().clone()).unwrap();
        assert_eq!(
            config_frame(2, &config),
            json!({"action": "config", "version": 2, "registrationMode": true})
        );
        assert!(merge_config(&mut config, json!({"version": 9}).as_object().unwrap().clone()).is_err());
        assert!(
            merge_config(
                &mut config,
                json!({"registrationMode": "yes"}).as_object().unwrap().clone()
            )
            .is_err()
        );
        assert_eq!(config_frame(1, &Map::new())["registrationMode"], false);
    }

    #[test]
    fn device_ids() {
        assert!(check_device_id("TEST001").is_ok());
        assert!(check_device_id("").is_err());
        assert!(check_device_id("has space").is_err());
        assert!(check_device_id(&"x".repeat(MAX_DEVICE_ID + 1)).is_err());
    }
}
