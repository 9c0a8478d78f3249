//! One device: its one live socket, its scans and repeat window, its config and its outbox.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use switchboard_proto::device::{
    self as wire, BufferedScan, DeviceFrame, MAX_DEVICE_FRAME, Scan, ScanStatus, User, dashboard,
};
use switchboard_runtime::{
    AutoResponse, CallError, Context, Delivery, Effect, Frame, HookResult, HttpRequest, ListOptions, NewSocket, Object,
    Publication, SocketRef, json_frame,
};

use super::directory::{Directory, DirectoryRequest, Summary, Tags, TagsReply, TagsRequest};
use super::{DASHBOARD_TOPIC, DeviceConfig, SINGLETON};
use crate::http::Refusal;

/// Storage key of [`Stored`].
const STATE: &str = "state";
/// Scans, under `s:{timestamp:013}:{number:012}`: newest first is a reverse listing.
const SCANS: &str = "s:";
/// Buffered scans' `seq`s already taken, under `q:{seq:020}`.
const SEQS: &str = "q:";

/// Close code of a socket replaced by a newer one of the same device.
const CLOSE_REPLACED: u16 = 4000;
/// Close code of a socket silent for longer than `heartbeat_timeout_ms`.
const CLOSE_SILENT: u16 = 1001;

/// The storage key of scan number `n`, taken at `timestamp`.
pub(crate) fn scan_key(timestamp: i64, n: u64) -> String {
    format!("{SCANS}{timestamp:013}:{n:012}")
}

/// The first key after every scan taken at `timestamp` or before.
pub(crate) fn scans_after(timestamp: i64) -> String {
    format!("{SCANS}{:013}", timestamp + 1)
}

/// The first key of scans taken at `timestamp`.
pub(crate) fn scans_from(timestamp: i64) -> String {
    format!("{SCANS}{timestamp:013}")
}

/// A scan's id: the device and its number, unique and fixed (the sink's `Idempotency-Key`).
pub(crate) fn scan_id(device_id: &str, n: u64) -> String {
    format!("{device_id}:{n}")
}

/// What a device keeps under [`STATE`].
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
struct Stored {
    /// Scans accepted so far; the next one is number `scans + 1`.
    scans: u64,
    /// Server time of the last accepted live scan: the start of the repeat window.
    last_scan_ms: Option<i64>,
    newest_scan_ms: Option<i64>,
    config: Map<String, Value>,
    config_version: u64,
    config_applied_version: u64,
    key: Option<String>,
    /// Listed in the directory (done once, durably, before anything else is stored).
    listed: bool,
    online: bool,
    last_seen: Option<i64>,
    /// Sockets accepted so far: the newest socket is the device's live one.
    connections: u64,
}

/// What a device's socket carries through hibernation.
#[derive(Clone, Copy, Serialize, Deserialize)]
struct Link {
    connection: u64,
    /// When the object last handled a frame of this socket (auto-responses are counted apart).
    last_frame_ms: i64,
}

/// One RFID reader.
pub struct Device {
    id: String,
    stored: Stored,
}

/// What routes ask a device.
#[derive(Serialize, Deserialize)]
pub enum DeviceRequest {
    /// A live scan from the HTTP fallback.
    Scan {
        tag_id: String,
        location: String,
    },
    /// A dashboard's config change, merged into the stored config.
    Configure(Map<String, Value>),
    SetKey(String),
    /// Whether this key is the device's registered key.
    CheckKey(String),
    /// Scans newest first: keys below `end`, taken at `since` or after, at most `limit`.
    Scans {
        end: Option<String>,
        since: Option<i64>,
        limit: usize,
    },
}

#[derive(Serialize, Deserialize)]
pub enum DeviceReply {
    Scan(ScanOutcome),
    Configured { version: u64 },
    KeySet,
    KeyValid(bool),
    Scans(Vec<Scan>),
}

/// What became of a live scan.
#[derive(Serialize, Deserialize)]
pub enum ScanOutcome {
    Accepted {
        scan: Scan,
        user: Option<User>,
    },
    /// Inside the repeat window: nothing stored.
    TooSoon(String),
    /// The server could not store it now: nothing stored, the device should send it again.
    Unavailable(String),
}

impl ScanOutcome {
    /// The reply body, the same over the socket and HTTP.
    pub fn body(&self) -> Value {
        match self {
            ScanOutcome::Accepted { scan, user } => wire::scan_reply(scan, user.as_ref()),
            ScanOutcome::TooSoon(error) | ScanOutcome::Unavailable(error) => wire::error_reply(error),
        }
    }
}

impl Object for Device {
    const CLASS: &'static str = "device";
    type Request = DeviceRequest;
    type Reply = Result<DeviceReply, Refusal>;

    /// Heartbeats are answered by the gateway, without waking the device: the answer carries
    /// back the device's timestamp, and the socket's last auto-response is its last-seen.
    fn auto_response() -> Option<AutoResponse> {
        Some(AutoResponse::json(
            json!({"action": "heartbeat"}),
            r#"{"action":"heartbeat_ack","timestamp":{{request.timestamp}},"serverTime":{{now_ms}}}"#,
        ))
    }

    async fn start(ctx: &mut Context) -> HookResult<Self> {
        Ok(Device {
            id: ctx.name().to_string(),
            stored: ctx.storage().get(STATE).await?.unwrap_or_default(),
        })
    }

    async fn on_request(&mut self, ctx: &mut Context, request: DeviceRequest) -> HookResult<Self::Reply> {
        Ok(match request {
            DeviceRequest::Scan { tag_id, location } => {
                Ok(DeviceReply::Scan(self.live_scan(ctx, tag_id, location).await?))
            }
            DeviceRequest::Configure(change) => self.configure(ctx, change).await?,
            DeviceRequest::SetKey(key) => {
                self.list_once(ctx).await?;
                self.stored.key = Some(key);
                ctx.storage().put(STATE, &self.stored)?;
                Ok(DeviceReply::KeySet)
            }
            DeviceRequest::CheckKey(given) => {
                Ok(DeviceReply::KeyValid(self.stored.key.as_deref().is_some_and(|key| {
                    crate::http::constant_time_eq(given.as_bytes(), key.as_bytes())
                })))
            }
            DeviceRequest::Scans { end, since, limit } => {
                let options = ListOptions {
                    prefix: Some(SCANS.into()),
                    start: since.map(scans_from),
                    end,
                    limit: Some(limit),
                    reverse: true,
                };
                let scans: Vec<(String, Scan)> = ctx.storage().list(options).await?;
                Ok(DeviceReply::Scans(scans.into_iter().map(|(_, s)| s).collect()))
            }
        })
    }

    /// The newest socket is the device's live one: the older is closed with 4000. A device that
    /// has not acked its latest config gets it now.
    async fn on_connect(&mut self, ctx: &mut Context, socket: NewSocket) -> HookResult {
        self.list_once(ctx).await?;
        let now = ctx.now_ms();
        for older in ctx.sockets(None) {
            ctx.close(&older, CLOSE_REPLACED, "replaced");
        }
        let socket = ctx.accept(socket, &[])?;
        self.stored.connections += 1;
        let link = Link {
            connection: self.stored.connections,
            last_frame_ms: now,
        };
        ctx.set_attachment(&socket, &link)?;
        let was_online = self.stored.online;
        self.stored.online = true;
        self.stored.last_seen = Some(now);
        ctx.storage().put(STATE, &self.stored)?;
        if !was_online {
            self.publish_status(ctx)?;
        }
        self.report(ctx, Some(&socket));
        if self.stored.config_version > self.stored.config_applied_version {
            let frame = wire::config_frame(self.stored.config_version, &self.stored.config);
            send_device(ctx, &socket, &frame);
        }
        ctx.set_alarm(now + heartbeat_timeout(ctx));
        Ok(())
    }

    async fn on_message(&mut self, ctx: &mut Context, socket: SocketRef, frame: Frame) -> HookResult {
        let now = ctx.now_ms();
        if let Some(mut link) = ctx.attachment::<Link>(&socket) {
            link.last_frame_ms = now;
            ctx.set_attachment(&socket, &link)?;
        }
        let parsed = match frame.as_text() {
            Some(text) => wire::parse_device_frame(text),
            None => Err("frames must be JSON text".to_string()),
        };
        let reply = match parsed {
            Err(error) => Some(wire::error_reply(&error)),
            Ok(DeviceFrame::Scan { tag_id, location }) => Some(self.live_scan(ctx, tag_id, location).await?.body()),
            Ok(DeviceFrame::ScanBatch(scans)) => Some(self.batch(ctx, scans).await?),
            Ok(DeviceFrame::Heartbeat { timestamp }) => {
                Some(json!({"action": "heartbeat_ack", "timestamp": timestamp, "serverTime": now}))
            }
            Ok(DeviceFrame::ConfigAck { version }) => self.config_ack(ctx, version)?,
        };
        if let Some(reply) = reply {
            send_device(ctx, &socket, &reply);
        }
        Ok(())
    }

    async fn on_close(&mut self, ctx: &mut Context, socket: SocketRef, _code: u16, _reason: String) -> HookResult {
        // A replaced socket closes after its successor connected: the device stays online.
        if self.live_socket(ctx).is_some_and(|(live, _)| live != socket) {
            return Ok(());
        }
        let last_seen = last_seen(ctx, &socket);
        self.go_offline(ctx, Some(last_seen))?;
        ctx.delete_alarm();
        Ok(())
    }

    /// `heartbeat_timeout_ms` after the last frame: offline, and the silent socket closed.
    async fn on_alarm(&mut self, ctx: &mut Context) -> HookResult {
        let timeout = heartbeat_timeout(ctx);
        match self.live_socket(ctx) {
            // Its socket is gone (a restart): the device is offline since it was last seen.
            None => self.go_offline(ctx, None)?,
            Some((socket, _)) => {
                let last = last_seen(ctx, &socket);
                if ctx.now_ms() - last >= timeout {
                    let reason = format!("no frame for {} s", timeout / 1000);
                    ctx.close(&socket, CLOSE_SILENT, &reason);
                    self.go_offline(ctx, Some(last))?;
                } else {
                    ctx.set_alarm(last + timeout);
                }
            }
        }
        Ok(())
    }
}

fn config(ctx: &Context) -> DeviceConfig {
    ctx.setting::<DeviceConfig>().cloned().unwrap_or_default()
}

fn heartbeat_timeout(ctx: &Context) -> i64 {
    config(ctx).heartbeat_timeout_ms()
}

/// When a socket's device was last heard from: a frame the object handled, or one the gateway
/// answered (a heartbeat or a ping).
fn last_seen(ctx: &Context, socket: &SocketRef) -> i64 {
    let handled = ctx.attachment::<Link>(socket).map_or(0, |l| l.last_frame_ms);
    handled.max(ctx.last_auto_response_ms(socket) as i64)
}

/// Sends a device a frame, never one over [`MAX_DEVICE_FRAME`] (the firmware would close).
fn send_device(ctx: &mut Context, socket: &SocketRef, value: &Value) {
    let frame = json_frame(value);
    if frame.len() > MAX_DEVICE_FRAME {
        tracing::error!(
            bytes = frame.len(),
            "a frame for a device is over 15 KiB; an error is sent instead"
        );
        let error = wire::error_reply("the answer would be larger than a device can take (15 KiB)");
        ctx.send_json(socket, &error);
    } else {
        ctx.send(socket, frame);
    }
}

impl Device {
    /// The live socket and its link: the newest accepted.
    fn live_socket(&self, ctx: &Context) -> Option<(SocketRef, Link)> {
        ctx.sockets(None)
            .into_iter()
            .filter_map(|s| ctx.attachment::<Link>(&s).map(|l| (s, l)))
            .max_by_key(|(_, l)| l.connection)
    }

    /// Lists the device in the directory, durably, the first time it is seen; the caller
    /// stores the state (with `listed`) afterwards.
    async fn list_once(&mut self, ctx: &mut Context) -> Result<(), CallError> {
        if self.stored.listed {
            return Ok(());
        }
        ctx.call::<Directory>(SINGLETON, DirectoryRequest::Report(self.summary(None)))
            .await?;
        self.stored.listed = true;
        Ok(())
    }

    fn summary(&self, socket: Option<&SocketRef>) -> Summary {
        Summary {
            device_id: self.id.clone(),
            online: self.stored.online,
            socket: socket.map(SocketRef::id),
            last_seen: self.stored.last_seen,
            config_version: self.stored.config_version,
            config_applied_version: self.stored.config_applied_version,
            newest_scan_ms: self.stored.newest_scan_ms,
        }
    }

    /// Tells the directory how the device stands now.
    fn report(&self, ctx: &mut Context, socket: Option<&SocketRef>) {
        let live = socket.cloned().or_else(|| self.live_socket(ctx).map(|(s, _)| s));
        let live = live.filter(|_| self.stored.online);
        ctx.tell::<Directory>(SINGLETON, DirectoryRequest::Report(self.summary(live.as_ref())));
    }

    fn publish_status(&self, ctx: &mut Context) -> HookResult {
        let frame = dashboard::device_status(&self.id, self.stored.online, self.stored.last_seen);
        let key = format!("status:{}", self.id);
        ctx.publish(Publication::new(&[DASHBOARD_TOPIC], json_frame(&frame)).delivery(Delivery::Latest(key.into())))?;
        Ok(())
    }

    fn go_offline(&mut self, ctx: &mut Context, last_seen: Option<i64>) -> HookResult {
        if !self.stored.online {
            return Ok(());
        }
        self.stored.online = false;
        self.stored.last_seen = self.stored.last_seen.max(last_seen);
        ctx.storage().put(STATE, &self.stored)?;
        self.publish_status(ctx)?;
        self.report(ctx, None);
        Ok(())
    }

    /// A live scan: refused inside the repeat window, else stored and acknowledged.
    async fn live_scan(&mut self, ctx: &mut Context, tag_id: String, location: String) -> HookResult<ScanOutcome> {
        let interval = config(ctx).scan_interval_ms;
        let now = ctx.now_ms();
        if let Some(last) = self.stored.last_scan_ms
            && now.saturating_sub(last) < interval as i64
        {
            return Ok(ScanOutcome::TooSoon(wire::repeat_error(interval)));
        }
        match self.accept(ctx, vec![(tag_id, location, now)], Some(now)).await? {
            Ok(mut accepted) => {
                let (scan, user) = accepted.pop().expect("one scan in, one out");
                Ok(ScanOutcome::Accepted { scan, user })
            }
            Err(why) => Ok(ScanOutcome::Unavailable(why)),
        }
    }

    /// A `scan_batch`: each `seq` is taken once; the rest are duplicates.
    async fn batch(&mut self, ctx: &mut Context, scans: Vec<BufferedScan>) -> HookResult<Value> {
        let total = scans.len();
        let mut fresh = Vec::new();
        let mut seen = std::collections::HashSet::new();
        for scan in scans {
            let key = format!("{SEQS}{:020}", scan.seq);
            if !seen.insert(scan.seq) || ctx.storage().get::<u64>(&key).await?.is_some() {
                continue;
            }
            fresh.push((key, scan));
        }
        let items = fresh
            .iter()
            .map(|(_, s)| (s.tag_id.clone(), s.location.clone(), s.timestamp))
            .collect();
        let first = self.stored.scans + 1;
        let accepted = match self.accept(ctx, items, None).await? {
            Ok(accepted) => accepted,
            Err(why) => return Ok(wire::error_reply(&why)),
        };
        for (i, (key, _)) in fresh.iter().enumerate() {
            ctx.storage().put(key, &(first + i as u64))?;
        }
        Ok(wire::batch_reply(accepted.len(), total - accepted.len()))
    }

    /// Stores scans, hands them to the sink's outbox and shows them on the dashboard; a live
    /// scan (`live_at`) also starts the repeat window. The reply leaves only once all of it is
    /// durable (the output gate). `Ok(Err)` says why nothing was stored: the directory or the
    /// tag registry could not be reached, and the device should send the scans again.
    async fn accept(
        &mut self,
        ctx: &mut Context,
        scans: Vec<(String, String, i64)>,
        live_at: Option<i64>,
    ) -> HookResult<Result<Vec<(Scan, Option<User>)>, String>> {
        if scans.is_empty() {
            return Ok(Ok(Vec::new()));
        }
        // Both calls come before any change, so a failure leaves nothing half done.
        let unavailable =
            |e: &dyn std::fmt::Display| format!("scans cannot be stored now ({e}); nothing was stored, send again");
        if let Err(e) = self.list_once(ctx).await {
            return Ok(Err(unavailable(&e)));
        }
        let registration = self.stored.config.get("registrationMode") == Some(&Value::Bool(true));
        let lookup = TagsRequest::Lookup {
            tags: scans.iter().map(|(tag, _, _)| tag.clone()).collect(),
            offered_by: registration.then(|| self.id.clone()),
        };
        let users = match ctx.call::<Tags>(SINGLETON, lookup).await {
            Ok(Ok(TagsReply::Users(users))) => users,
            Ok(_) => return Ok(Err(unavailable(&"the tag registry answered out of turn"))),
            Err(e) => return Ok(Err(unavailable(&e))),
        };
        if live_at.is_some() {
            self.stored.last_scan_ms = live_at;
        }
        let sink = config(ctx).scan_sink_url;
        let mut accepted = Vec::with_capacity(scans.len());
        for ((tag_id, location, timestamp), user) in scans.into_iter().zip(users) {
            self.stored.scans += 1;
            let n = self.stored.scans;
            let status = match (&user, registration) {
                (Some(_), _) => ScanStatus::Known,
                (None, true) => ScanStatus::Registration,
                (None, false) => ScanStatus::Unknown,
            };
            let scan = Scan {
                id: scan_id(&self.id, n),
                device_id: self.id.clone(),
                tag_id,
                location,
                timestamp,
                status,
            };
            ctx.storage().put(&scan_key(timestamp, n), &scan)?;
            if let Some(url) = &sink {
                let body = json!({"scan": scan, "user": user});
                ctx.enqueue_keyed(Effect::Http(HttpRequest::post_json(url, &body)), &scan.id);
            }
            let feed = dashboard::scan(&scan, user.as_ref());
            ctx.publish(Publication::new(&[DASHBOARD_TOPIC], json_frame(&feed)))?;
            if status == ScanStatus::Registration {
                let offer = dashboard::pending_registration(&self.id, &scan.tag_id);
                ctx.publish(Publication::new(&[DASHBOARD_TOPIC], json_frame(&offer)))?;
            }
            self.stored.newest_scan_ms = self.stored.newest_scan_ms.max(Some(timestamp));
            accepted.push((scan, user));
        }
        self.stored.last_seen = self.stored.last_seen.max(Some(ctx.now_ms()));
        ctx.storage().put(STATE, &self.stored)?;
        self.report(ctx, None);
        Ok(Ok(accepted))
    }

    /// A `config_ack`: the device applied `version`. Answered only when it names a version
    /// never sent.
    fn config_ack(&mut self, ctx: &mut Context, version: u64) -> HookResult<Option<Value>> {
        if version > self.stored.config_version {
            return Ok(Some(wire::error_reply(&format!(
                "config version {version} was never sent; the latest is {}",
                self.stored.config_version
            ))));
        }
        if version > self.stored.config_applied_version {
            self.stored.config_applied_version = version;
            ctx.storage().put(STATE, &self.stored)?;
            self.report(ctx, None);
        }
        Ok(None)
    }

    async fn configure(
        &mut self,
        ctx: &mut Context,
        change: Map<String, Value>,
    ) -> HookResult<Result<DeviceReply, Refusal>> {
        let mut config = self.stored.config.clone();
        if let Err(e) = wire::merge_config(&mut config, change) {
            return Ok(Err(Refusal::BadRequest(format!("{e}; nothing was changed"))));
        }
        let version = self.stored.config_version + 1;
        let frame = wire::config_frame(version, &config);
        let bytes = json_frame(&frame).len();
        if bytes > MAX_DEVICE_FRAME {
            return Ok(Err(Refusal::TooLarge(format!(
                "the config frame would be {bytes} bytes, over the {MAX_DEVICE_FRAME} a device can take; nothing was changed"
            ))));
        }
        self.list_once(ctx).await?;
        self.stored.config = config;
        self.stored.config_version = version;
        ctx.storage().put(STATE, &self.stored)?;
        if let Some((socket, _)) = self.live_socket(ctx) {
            send_device(ctx, &socket, &frame);
        }
        self.report(ctx, None);
        Ok(Ok(DeviceReply::Configured { version }))
    }
}
