//! The kiosk as a durable object: the entry ↔ tag registrations, the registration in progress,
//! the reader's and the LEDs' state, and the §4 events that change them.
//!
//! Its sockets are Socket.IO clients (adopted by the bridge) and the LED driver. Frames in are
//! `{"event","payload"}` from the bridge; frames out are Socket.IO event arrays
//! `[event, envelope]`, which the bridge emits as they are.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use switchboard_proto::kiosk::{EntryId, LedState, Request, WireError, codes, event_json, parse_request};
use switchboard_proto::time::iso_from_ms;
use switchboard_runtime::{Context, Frame, HookResult, NewSocket, Object, SocketId, SocketRef};

use super::KioskConfig;
use super::debounce::Debounce;

/// Storage: `tag:{uid}` → the entry it is registered to.
const TAG: &str = "tag:";
/// Storage: the registration in progress.
const PENDING: &str = "pending";
/// Storage: what the LEDs show, and until when.
const LED: &str = "led";
/// Storage: whether the reader answered when it last reported.
const READER: &str = "reader";

/// Socket tag of Socket.IO clients (the LED driver's socket has none).
pub const CLIENT: &str = "client";

/// Progress steps sent while a tag is registered, before `tag_registered`.
const PROGRESS: [u8; 4] = [25, 50, 75, 100];

/// A frame from the bridge: what a Socket.IO client emitted.
#[derive(Serialize, Deserialize)]
pub struct Inbound {
    pub event: String,
    /// The event's first argument; `null` if none.
    #[serde(default)]
    pub payload: Value,
}

/// A call to the kiosk.
#[derive(Serialize, Deserialize)]
pub enum KioskRequest {
    /// A tag was presented (by the reader, or simulated); the uid is normalised.
    Present { uid: String },
    /// The reader started or stopped answering.
    Reader { connected: bool },
    /// The `status` payload.
    Status,
}

/// What a call returns.
#[derive(Debug, Serialize, Deserialize, PartialEq)]
pub enum KioskReply {
    Accepted,
    /// The same uid was accepted less than the debounce window ago: nothing happened.
    Debounced,
    Status(Value),
    Done,
}

/// The reader, as `status` shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReaderState {
    pub driver: String,
    pub connected: bool,
}

/// The registration in progress. It belongs to the kiosk, not to the socket that asked.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct Pending {
    entry_id: EntryId,
    timeout: u64,
    started_ms: i64,
    deadline_ms: i64,
    /// The socket that asked; its events go to every client once it is gone.
    asker: SocketId,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
struct Led {
    state: LedState,
    /// When a timed pattern ends (the LEDs go off).
    until_ms: Option<i64>,
}

/// The kiosk.
pub struct Kiosk {
    /// uid → entry.
    tags: BTreeMap<String, EntryId>,
    pending: Option<Pending>,
    led: Led,
    reader: ReaderState,
    /// Kept in memory only: losing it (a restart) lets one repeat scan through, nothing more.
    debounce: Debounce,
}

impl Object for Kiosk {
    const CLASS: &'static str = "kiosk";
    type Request = KioskRequest;
    type Reply = KioskReply;

    async fn start(ctx: &mut Context) -> HookResult<Self> {
        let config = ctx.setting::<KioskConfig>().cloned().unwrap_or_default();
        let storage = ctx.storage();
        let tags = storage
            .list::<EntryId>(switchboard_runtime::ListOptions::prefix(TAG))
            .await?
            .into_iter()
            .map(|(key, entry)| (key[TAG.len()..].to_string(), entry))
            .collect();
        Ok(Kiosk {
            tags,
            pending: storage.get(PENDING).await?,
            led: storage.get(LED).await?.unwrap_or_default(),
            reader: ReaderState {
                driver: config.kiosk_reader.name().into(),
                connected: storage.get(READER).await?.unwrap_or(true),
            },
            debounce: Debounce::new(config.kiosk_debounce_ms as i64),
        })
    }

    /// Every socket gets `status` first, so a page that lost its socket sees where it stands.
    async fn on_connect(&mut self, ctx: &mut Context, socket: NewSocket) -> HookResult {
        let tags: &[&str] = if socket.info.params.contains_key("led") {
            &[]
        } else {
            &[CLIENT]
        };
        let socket = ctx.accept(socket, tags)?;
        let status = self.event(ctx, "status", &self.status(ctx));
        ctx.send(&socket, status);
        Ok(())
    }

    async fn on_request(&mut self, ctx: &mut Context, request: KioskRequest) -> HookResult<KioskReply> {
        Ok(match request {
            KioskRequest::Present { uid } => self.present(ctx, uid)?,
            KioskRequest::Reader { connected } => {
                if connected != self.reader.connected {
                    self.reader.connected = connected;
                    ctx.storage().put(READER, &self.reader.connected)?;
                    self.broadcast_status(ctx);
                }
                KioskReply::Done
            }
            KioskRequest::Status => KioskReply::Status(self.status(ctx)),
        })
    }

    async fn on_message(&mut self, ctx: &mut Context, socket: SocketRef, frame: Frame) -> HookResult {
        let inbound = frame.as_text().and_then(|t| serde_json::from_str::<Inbound>(t).ok());
        let Some(inbound) = inbound else {
            // Only the bridge writes to these sockets; this would be a bug of ours.
            return Err(switchboard_runtime::HookError::msg(
                "a kiosk frame that is not an event",
            ));
        };
        match parse_request(&inbound.event, &inbound.payload) {
            Ok(request) => self.handle(ctx, &socket, request)?,
            Err(e) => self.refuse(ctx, socket.id(), e),
        }
        Ok(())
    }

    async fn on_alarm(&mut self, ctx: &mut Context) -> HookResult {
        let now = ctx.now_ms();
        if let Some(pending) = self.pending.clone().filter(|p| p.deadline_ms <= now) {
            ctx.storage().delete(PENDING);
            self.pending = None;
            let frame = self.event(ctx, "registration_timeout", &json!({"entry_id": pending.entry_id}));
            self.to_asker(ctx, pending.asker, frame);
            self.broadcast_status(ctx);
        }
        if self.led.until_ms.is_some_and(|until| until <= now) {
            self.set_led(ctx, LedState::default(), None)?;
        }
        self.rearm(ctx);
        Ok(())
    }
}

impl Kiosk {
    fn handle(&mut self, ctx: &mut Context, socket: &SocketRef, request: Request) -> HookResult {
        match request {
            Request::GetStatus => {
                let status = self.event(ctx, "status", &self.status(ctx));
                ctx.send(socket, status);
            }
            Request::RegisterStart { entry_id, timeout } => {
                if let Some(running) = self.pending.as_ref().filter(|p| p.entry_id != entry_id) {
                    let message = format!(
                        "a registration for entry {} is in progress; cancel it first",
                        running.entry_id
                    );
                    self.refuse(
                        ctx,
                        socket.id(),
                        WireError::new(codes::REGISTRATION_IN_PROGRESS, message),
                    );
                    return Ok(());
                }
                // The same entry again (a page that reconnected) takes the registration over.
                let now = ctx.now_ms();
                let pending = Pending {
                    entry_id: entry_id.clone(),
                    timeout,
                    started_ms: now,
                    deadline_ms: now + timeout as i64 * 1000,
                    asker: socket.id(),
                };
                ctx.storage().put(PENDING, &pending)?;
                self.pending = Some(pending);
                self.rearm(ctx);
                let awaiting = self.event(ctx, "awaiting_tag", &json!({"entry_id": entry_id, "timeout": timeout}));
                ctx.send(socket, awaiting);
                self.broadcast_status(ctx);
            }
            Request::RegisterCancel => match self.pending.take() {
                Some(pending) => {
                    ctx.storage().delete(PENDING);
                    self.rearm(ctx);
                    let cancelled = self.event(ctx, "registration_cancelled", &json!({"entry_id": pending.entry_id}));
                    if pending.asker != socket.id() {
                        self.to_asker(ctx, pending.asker, cancelled.clone());
                    }
                    ctx.send(socket, cancelled);
                    self.broadcast_status(ctx);
                }
                None => self.refuse(
                    ctx,
                    socket.id(),
                    WireError::new(codes::NO_REGISTRATION, "no registration is in progress"),
                ),
            },
            Request::LedSet { led, duration_ms } => {
                let until = duration_ms.map(|d| ctx.now_ms() + d as i64);
                self.set_led(ctx, led, until)?;
                self.rearm(ctx);
            }
        }
        Ok(())
    }

    /// A tag was presented: debounced per uid, then registered or announced.
    fn present(&mut self, ctx: &mut Context, uid: String) -> HookResult<KioskReply> {
        if !self.debounce.accept(&uid, ctx.now_ms()) {
            return Ok(KioskReply::Debounced);
        }
        let Some(pending) = self.pending.clone() else {
            let data = match self.tags.get(&uid) {
                Some(entry) => json!({"tag_uid": uid, "registered": true, "entry_id": entry}),
                None => json!({"tag_uid": uid, "registered": false}),
            };
            let scanned = self.event(ctx, "nfc_tag_scanned", &data);
            ctx.broadcast_to(Some(CLIENT), scanned, &[]);
            return Ok(KioskReply::Accepted);
        };
        if let Some(owner) = self.tags.get(&uid).filter(|owner| **owner != pending.entry_id) {
            let message = format!("tag {uid} is already registered to entry {owner}; present another tag");
            self.refuse(ctx, pending.asker, WireError::new(codes::TAG_IN_USE, message));
            return Ok(KioskReply::Accepted);
        }
        // An entry has one tag: a new one replaces the old.
        let storage = ctx.storage();
        self.tags.retain(|old, entry| {
            let replaced = *entry == pending.entry_id && *old != uid;
            if replaced {
                storage.delete(&format!("{TAG}{old}"));
            }
            !replaced
        });
        // Stored before `tag_registered` leaves: the output gate holds the events until then.
        storage.put(&format!("{TAG}{uid}"), &pending.entry_id)?;
        storage.delete(PENDING);
        self.tags.insert(uid.clone(), pending.entry_id.clone());
        self.pending = None;
        self.rearm(ctx);
        for progress in PROGRESS {
            let step = self.event(
                ctx,
                "tag_write_progress",
                &json!({"entry_id": pending.entry_id, "progress": progress}),
            );
            self.to_asker(ctx, pending.asker, step);
        }
        let registered = self.event(
            ctx,
            "tag_registered",
            &json!({"entry_id": pending.entry_id, "tag_uid": uid}),
        );
        self.to_asker(ctx, pending.asker, registered);
        self.broadcast_status(ctx);
        Ok(KioskReply::Accepted)
    }

    fn set_led(&mut self, ctx: &mut Context, state: LedState, until_ms: Option<i64>) -> HookResult {
        self.led = Led { state, until_ms };
        ctx.storage().put(LED, &self.led)?;
        // To every socket: the clients and the LED driver.
        let frame = self.event(ctx, "led_state", &state);
        ctx.broadcast(frame);
        Ok(())
    }

    /// One alarm serves both deadlines: the registration's and the timed LED pattern's.
    fn rearm(&self, ctx: &mut Context) {
        let deadlines = [self.pending.as_ref().map(|p| p.deadline_ms), self.led.until_ms];
        match deadlines.into_iter().flatten().min() {
            Some(at) => ctx.set_alarm(at),
            None => ctx.delete_alarm(),
        }
    }

    fn status(&self, ctx: &Context) -> Value {
        let registration = self.pending.as_ref().map(|p| {
            json!({
                "entry_id": p.entry_id,
                "timeout": p.timeout,
                "started_at": iso_from_ms(p.started_ms),
                "expires_at": iso_from_ms(p.deadline_ms),
                "remaining_ms": (p.deadline_ms - ctx.now_ms()).max(0),
            })
        });
        json!({
            "reader": self.reader,
            "registration": registration,
            "led": self.led.state,
            "registered_tags": self.tags.len(),
        })
    }

    fn broadcast_status(&self, ctx: &mut Context) {
        let status = self.event(ctx, "status", &self.status(ctx));
        ctx.broadcast_to(Some(CLIENT), status, &[]);
    }

    /// An event for the socket that asked, or for every client once that socket is gone (the
    /// page reconnected with another socket, or the server restarted in between).
    fn to_asker(&self, ctx: &mut Context, asker: SocketId, frame: Frame) {
        match ctx.socket(asker) {
            Some(socket) => ctx.send(&socket, frame),
            None => ctx.broadcast_to(Some(CLIENT), frame, &[]),
        }
    }

    fn refuse(&self, ctx: &mut Context, to: SocketId, error: WireError) {
        let frame = self.event(ctx, "error", &error);
        self.to_asker(ctx, to, frame);
    }

    fn event<T: Serialize>(&self, ctx: &Context, name: &str, data: &T) -> Frame {
        Frame::text(event_json(name, ctx.now_ms(), data))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use switchboard_runtime::storage::memory::MemoryBackend;
    use switchboard_runtime::{ConnectInfo, QueueLimits, Runtime, RuntimeConfig};

    use super::*;
    use crate::kiosk::{KIOSK, KioskConfig};

    async fn kiosk() -> Runtime {
        Runtime::builder(RuntimeConfig::default(), Arc::new(MemoryBackend::new()))
            .class::<Kiosk>()
            .setting(KioskConfig::default())
            .start()
            .await
            .unwrap()
    }

    async fn present(rt: &Runtime, uid: &str) -> KioskReply {
        rt.object::<Kiosk>(KIOSK)
            .call(KioskRequest::Present { uid: uid.into() })
            .await
            .unwrap()
    }

    /// The kiosk's debounce runs on the runtime's clock: a uid is one scan for 3 s from its
    /// accepted presentation, per uid, whatever else is presented meanwhile.
    #[tokio::test(start_paused = true)]
    async fn debounce_is_three_seconds_per_uid() {
        let rt = kiosk().await;
        let (a, b) = ("04:00:00:0A", "04:00:00:0B");
        assert_eq!(present(&rt, a).await, KioskReply::Accepted);
        tokio::time::advance(Duration::from_millis(1000)).await;
        assert_eq!(present(&rt, b).await, KioskReply::Accepted);
        assert_eq!(present(&rt, a).await, KioskReply::Debounced);
        tokio::time::advance(Duration::from_millis(1999)).await;
        assert_eq!(present(&rt, a).await, KioskReply::Debounced, "2999 ms after");
        tokio::time::advance(Duration::from_millis(1)).await;
        assert_eq!(present(&rt, a).await, KioskReply::Accepted, "3000 ms after");
        assert_eq!(present(&rt, b).await, KioskReply::Debounced, "B's window is its own");
        rt.shutdown().await;
    }

    /// A registration's timeout is an alarm: it fires on the runtime's clock, durably.
    #[tokio::test(start_paused = true)]
    async fn registration_times_out_on_the_alarm() {
        let rt = kiosk().await;
        let conn = rt.new_socket(QueueLimits::default());
        let socket = rt
            .object::<Kiosk>(KIOSK)
            .connect(conn.clone(), ConnectInfo::default())
            .await
            .unwrap()
            .unwrap();
        let start = r#"{"event":"register_tag_start","payload":{"data":{"entry_id":9,"timeout":5}}}"#;
        socket.frame(Frame::text(start)).await;
        let mut seen = Vec::new();
        let started = tokio::time::Instant::now();
        while !seen.iter().any(|e: &String| e == "registration_timeout") {
            for frame in conn.next_batch().await.frames {
                let (event, _): (String, Value) = serde_json::from_str(frame.as_text().unwrap()).unwrap();
                seen.push(event);
            }
        }
        assert_eq!(
            seen,
            ["status", "awaiting_tag", "status", "registration_timeout", "status"]
        );
        assert_eq!(started.elapsed(), Duration::from_secs(5));
        rt.shutdown().await;
    }
}
