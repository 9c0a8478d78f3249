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
/// Storage: the reader's last reported state.
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
    /// The reader's state changed.
    Reader(ReaderState),
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

impl Default for ReaderState {
    fn default() -> Self {
        ReaderState {
            driver: "mock".into(),
            connected: true,
        }
    }
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
        let window = ctx.setting::<KioskConfig>().map_or(3000, |c| c.kiosk_debounce_ms);
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
            reader: storage.get(READER).await?.unwrap_or_default(),
            debounce: Debounce::new(window as i64),
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
            KioskRequest::Reader(reader) => {
                if reader != self.reader {
                    ctx.storage().put(READER, &reader)?;
                    self.reader = reader;
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
