//! The two kinds of object the scenarios load, spoken as any client would speak them
//! (PROTOCOLS.md §3 live counters, §5 display sessions), through `switchboard_proto` types.
//!
//! One exception, for speed: a subscriber reads the few fields it needs from each delivered
//! frame with a scan instead of a full JSON parse. The bench shares the machine with the server
//! it measures, so a delivery must cost the client as little as possible; the tests below tie
//! the scan to the proto types.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, bail};
use futures_util::{SinkExt, StreamExt};
use serde::Serialize;
use serde_json::{Value, json};
use switchboard_proto::counter::Mutation;
use switchboard_proto::display::SessionState;
use tokio_tungstenite::tungstenite::Message;

use crate::client::Ws;
use crate::target::Target;

/// How long a socket may take to be accepted by its object.
const READY_TIMEOUT: Duration = Duration::from_secs(15);

/// What the scenarios publish to and subscribe at.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ObjectKind {
    /// Display sessions: `/session/{id}/display`, published with `POST /session/{id}/update`.
    Display,
    /// Live counters: `/ws/counter/{name}`, published with `POST /rpc/counter.increment`.
    Counter,
}

/// One broadcast a subscriber received, as far as the bench cares.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Delivery {
    /// A bench update to a display: its sequence number and scheduled send time.
    Display { seq: u64, sent_ns: u64 },
    /// A counter's increment: the value it produced.
    Counter { value: i64 },
}

impl ObjectKind {
    /// The WebSocket path of object `name`.
    pub fn socket_path(self, name: &str) -> String {
        match self {
            ObjectKind::Display => format!("/session/{name}/display"),
            ObjectKind::Counter => format!("/ws/counter/{name}"),
        }
    }

    /// Makes object `name` ready to publish to: a display session is initialised.
    pub async fn prepare(
        self,
        http: &reqwest::Client,
        target: &Target,
        name: &str,
        secret: &str,
    ) -> anyhow::Result<()> {
        if self == ObjectKind::Counter {
            return Ok(());
        }
        let response = http
            .post(target.http(&format!("/session/{name}/init")))
            .bearer_auth(secret)
            .json(&json!({"tenantId": "bench"}))
            .send()
            .await?;
        let status = response.status();
        if !status.is_success() {
            let body = response.text().await.unwrap_or_default();
            bail!("POST /session/{name}/init: {status} {body} (is --secret / SWITCHBOARD_AUTH_SECRET right?)");
        }
        Ok(())
    }

    /// Waits until the object has accepted `ws`: a display's first frame is its
    /// `initial_state`; a counter answers `{"type":"ping"}` once the socket is its own (an
    /// auto-response, which does not keep the object awake).
    pub async fn ready(self, ws: &mut Ws, name: &str) -> anyhow::Result<()> {
        let wait = async {
            if self == ObjectKind::Counter {
                ws.send(Message::text(r#"{"type":"ping"}"#)).await?;
            }
            loop {
                let text = next_text(ws).await?;
                let frame: Value = serde_json::from_str(&text).context("a frame that is not JSON")?;
                match (self, frame["type"].as_str()) {
                    (ObjectKind::Display, Some("initial_state")) => {
                        // The baseline server has no state to send; Switchboard's must be ours.
                        if !frame["state"].is_null() {
                            let state: SessionState = serde_json::from_value(frame["state"].clone())?;
                            if state.session_id != name {
                                bail!("initial_state of session {:?}, expected {name:?}", state.session_id);
                            }
                        }
                        return Ok(());
                    }
                    (ObjectKind::Counter, Some("pong")) => return Ok(()),
                    _ => continue,
                }
            }
        };
        tokio::time::timeout(READY_TIMEOUT, wait)
            .await
            .context("the object did not accept the socket in time")?
    }

    /// Reads a successful publish reply: for a counter, the value the increment produced.
    pub fn published_value(self, body: &[u8]) -> anyhow::Result<Option<i64>> {
        match self {
            ObjectKind::Display => Ok(None),
            ObjectKind::Counter => Ok(Some(serde_json::from_slice::<Mutation>(body)?.value)),
        }
    }

    /// The delivery in a frame a subscriber received, if it is one of ours.
    pub fn delivery(self, text: &str) -> Option<Delivery> {
        match self {
            ObjectKind::Display => {
                if !text.contains(r#""type":"bench""#) || text.contains(r#""type":"initial_state""#) {
                    return None;
                }
                Some(Delivery::Display {
                    seq: scan_u64(text, r#""seq":"#)?,
                    sent_ns: scan_u64(text, r#""sentNs":"#)?,
                })
            }
            ObjectKind::Counter => {
                if !text.contains(r#""type":"increment""#) {
                    return None;
                }
                // The top-level `value` comes first; the metadata's repeats it anyway.
                let value = scan_i64(text, r#""value":"#)?;
                Some(Delivery::Counter { value })
            }
        }
    }
}

/// What a publish request needs besides the object and the update's number and time.
#[derive(Clone, Debug)]
pub struct Publisher {
    pub kind: ObjectKind,
    pub http: reqwest::Client,
    pub target: Target,
    /// Bearer secret (display updates).
    pub secret: String,
    /// Fills a display update to the payload size asked for; counters have no payload.
    pub pad: Arc<str>,
}

impl Publisher {
    /// The request that publishes update number `seq` of object `name`, scheduled at `sent_ns`.
    pub fn request(&self, name: &str, seq: u64, sent_ns: u64) -> reqwest::RequestBuilder {
        match self.kind {
            ObjectKind::Display => self
                .http
                .post(self.target.http(&format!("/session/{name}/update")))
                .bearer_auth(&self.secret)
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(display_update(seq, sent_ns, &self.pad)),
            ObjectKind::Counter => self
                .http
                .post(self.target.http("/rpc/counter.increment"))
                .json(&json!({"name": name})),
        }
    }

    /// Sends update `seq` of `name`; on success returns the reply body.
    pub async fn send(&self, name: &str, seq: u64, sent_ns: u64) -> anyhow::Result<bytes::Bytes> {
        let response = self.request(name, seq, sent_ns).send().await?;
        let status = response.status();
        let body = response.bytes().await?;
        anyhow::ensure!(
            status.is_success(),
            "publish answered {status}: {}",
            String::from_utf8_lossy(&body)
        );
        Ok(body)
    }
}

/// The body of a bench display update: `{"type":"bench","seq":n,"sentNs":t,"pad":"xx…"}`.
pub fn display_update(seq: u64, sent_ns: u64, pad: &str) -> String {
    format!(r#"{{"type":"bench","seq":{seq},"sentNs":{sent_ns},"pad":"{pad}"}}"#)
}

/// Padding that makes a display update about `bytes` long.
pub fn pad_for(bytes: usize) -> String {
    let overhead = display_update(u32::MAX as u64, u64::MAX / 1000, "").len();
    "x".repeat(bytes.saturating_sub(overhead))
}

/// A counter's current value, over HTTP RPC.
pub async fn counter_value(http: &reqwest::Client, target: &Target, name: &str) -> anyhow::Result<i64> {
    let response = http
        .post(target.http("/rpc/counter.getValue"))
        .json(&json!({"name": name}))
        .send()
        .await?;
    let status = response.status();
    let body: Value = response.json().await?;
    body["value"]
        .as_i64()
        .with_context(|| format!("counter.getValue answered {status} {body}"))
}

/// The next text frame on `ws` (skipping control frames).
pub async fn next_text(ws: &mut Ws) -> anyhow::Result<String> {
    loop {
        match ws.next().await {
            Some(Ok(Message::Text(t))) => return Ok(t.to_string()),
            Some(Ok(Message::Close(frame))) => bail!("the server closed the socket: {frame:?}"),
            Some(Ok(_)) => continue,
            Some(Err(e)) => return Err(e.into()),
            None => bail!("the socket ended"),
        }
    }
}

/// The unsigned integer right after the first `key` in `text`.
fn scan_u64(text: &str, key: &str) -> Option<u64> {
    let at = text.find(key)? + key.len();
    let digits = text[at..].trim_start();
    let end = digits.find(|c: char| !c.is_ascii_digit()).unwrap_or(digits.len());
    digits[..end].parse().ok()
}

/// The integer right after the first `key` in `text`.
fn scan_i64(text: &str, key: &str) -> Option<i64> {
    let at = text.find(key)? + key.len();
    let rest = text[at..].trim_start();
    let end = rest
        .char_indices()
        .find(|&(i, c)| !(c.is_ascii_digit() || (i == 0 && c == '-')))
        .map_or(rest.len(), |(i, _)| i);
    rest[..end].parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use switchboard_proto::counter::{Metadata, Update};

    #[test]
    fn display_deliveries_are_read_from_the_update_frame() {
        let update: Value = serde_json::from_str(&display_update(42, 123_456_789, "xxx")).unwrap();
        // As Switchboard broadcasts it (keys sorted by serde_json) and as the baseline does.
        let sorted = json!({"type": "update", "update": update, "timestamp": 1}).to_string();
        let baseline = format!(r#"{{"type":"update","update":{update},"timestamp":1}}"#);
        for frame in [sorted, baseline] {
            assert_eq!(
                ObjectKind::Display.delivery(&frame),
                Some(Delivery::Display {
                    seq: 42,
                    sent_ns: 123_456_789
                }),
                "{frame}"
            );
        }
        let initial = json!({"type": "initial_state", "state": {"displayUpdates": [update]}}).to_string();
        assert_eq!(ObjectKind::Display.delivery(&initial), None);
        assert_eq!(ObjectKind::Display.delivery(r#"{"type":"pong","timestamp":1}"#), None);
    }

    #[test]
    fn counter_deliveries_are_read_from_the_proto_update() {
        let metadata = Metadata {
            id: 1,
            name: "c".into(),
            value: -7,
            created_at: "2025-01-15T12:00:00.000Z".into(),
            updated_at: "2025-01-15T12:00:00.000Z".into(),
            operation_count: 3,
        };
        let update = Update {
            kind: "increment".into(),
            value: -7,
            previous_value: -8,
            metadata,
            timestamp: "2025-01-15T12:00:00.000Z".into(),
        };
        let frame = serde_json::to_string(&update).unwrap();
        assert_eq!(
            ObjectKind::Counter.delivery(&frame),
            Some(Delivery::Counter { value: -7 })
        );
        assert_eq!(
            ObjectKind::Counter.delivery(r#"{"type":"result","id":1,"value":3}"#),
            None
        );
    }

    #[test]
    fn padding_reaches_the_size_asked_for() {
        let pad = pad_for(200);
        let body = display_update(1, 1, &pad);
        assert!((150..=200).contains(&body.len()), "{}", body.len());
        assert_eq!(pad_for(10), "");
    }
}
