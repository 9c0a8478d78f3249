//! Restaurant display sessions (PROTOCOLS.md §5): one object per session id; displays get
//! the stored state on connect and every update after it is stored.

use std::collections::VecDeque;

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, Request, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use switchboard_proto::display::{Init, SessionState, Slot, validate_update};
use switchboard_runtime::{
    AutoResponse, CappedLog, ConnectInfo, Context, Frame, HookResult, NewSocket, Object, RuntimeBuilder, SocketRef,
    Stub,
};

use crate::http::{ApiError, Refusal, json_body};
use crate::{App, Host, valid_name};

const META: &str = "meta";
const TRANSCRIPTIONS: &str = "t:";
const DISPLAY_UPDATES: &str = "d:";

/// The restaurant display app (PROTOCOLS.md §5).
pub struct Displays;

/// Settings of the display app.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DisplayConfig {
    /// Entries kept in each session's `transcriptions` and `displayUpdates`. Default: 100.
    pub display_list_limit: usize,
    /// Largest a session's state may grow, in bytes of JSON: an update that would make it
    /// larger is refused (413) and nothing is stored, so `initial_state` always fits a display.
    /// Default: 1 MiB.
    pub display_state_max_bytes: usize,
}

impl Default for DisplayConfig {
    fn default() -> Self {
        DisplayConfig {
            display_list_limit: 100,
            display_state_max_bytes: 1 << 20,
        }
    }
}

impl App for Displays {
    const NAME: &'static str = "displays";
    type Config = DisplayConfig;

    fn register(&self, config: &DisplayConfig, builder: RuntimeBuilder) -> RuntimeBuilder {
        builder.class::<Session>().setting(config.clone())
    }

    /// `/session/{id}/display`, `init`, `update` and `state`.
    fn routes(&self, _config: &DisplayConfig) -> Router<Host> {
        Router::new()
            .route("/session/{id}/display", get(display))
            .route("/session/{id}/init", post(init))
            .route("/session/{id}/update", post(update))
            .route("/session/{id}/state", get(state))
    }
}

/// The stored part of a session besides its lists.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct Meta {
    tenant_id: String,
    started_at: i64,
    current_order: Value,
}

/// A list of the session: in memory for `initial_state`, and in a capped log.
struct List {
    log: CappedLog,
    entries: VecDeque<Value>,
    /// Bytes of JSON of the entries, for the state's size bound.
    bytes: usize,
}

impl List {
    async fn open(ctx: &mut Context, prefix: &str, limit: usize) -> HookResult<Self> {
        let log = CappedLog::open(ctx.storage(), prefix, limit).await?;
        let entries: VecDeque<Value> = log
            .all::<Value>(ctx.storage())
            .await?
            .into_iter()
            .map(|(_, v)| v)
            .collect();
        let bytes = entries.iter().map(json_len).sum();
        Ok(List { log, entries, bytes })
    }

    /// How many bytes the list would grow by with `value` pushed (it may shrink).
    fn growth(&self, value: &Value, limit: usize) -> isize {
        let dropped = if self.entries.len() >= limit {
            self.entries.front().map_or(0, json_len)
        } else {
            0
        };
        json_len(value) as isize - dropped as isize
    }

    fn push(&mut self, ctx: &mut Context, value: Value, limit: usize) -> HookResult {
        self.log.append(ctx.storage(), &value)?;
        self.bytes += json_len(&value);
        self.entries.push_back(value);
        while self.entries.len() > limit {
            let dropped = self.entries.pop_front().expect("longer than the limit");
            self.bytes -= json_len(&dropped);
        }
        Ok(())
    }

    fn clear(&mut self) {
        self.log.reset();
        self.entries.clear();
        self.bytes = 0;
    }
}

/// One display session.
pub struct Session {
    id: String,
    /// `None` until `init`.
    meta: Option<Meta>,
    transcriptions: List,
    display_updates: List,
}

#[derive(Serialize, Deserialize)]
pub enum SessionRequest {
    Init {
        tenant_id: String,
    },
    /// A validated update (a JSON object with a `type` and a `timestamp`).
    Update {
        update: Value,
        kind: String,
    },
    State,
}

/// What a session answers.
#[derive(Serialize, Deserialize)]
pub enum SessionReply {
    Initialised(SessionState),
    Updated,
    State(SessionState),
}

impl Object for Session {
    const CLASS: &'static str = "display";
    type Request = SessionRequest;
    type Reply = Result<SessionReply, Refusal>;

    /// `{"type":"ping"}` → `{"type":"pong","timestamp":ms}`, without waking the session.
    fn auto_response() -> Option<AutoResponse> {
        Some(AutoResponse::json(
            json!({"type": "ping"}),
            r#"{"type":"pong","timestamp":{{now_ms}}}"#,
        ))
    }

    async fn start(ctx: &mut Context) -> HookResult<Self> {
        let limit = list_limit(ctx);
        let meta: Option<Meta> = ctx.storage().get(META).await?;
        Ok(Session {
            id: ctx.name().to_string(),
            meta,
            transcriptions: List::open(ctx, TRANSCRIPTIONS, limit).await?,
            display_updates: List::open(ctx, DISPLAY_UPDATES, limit).await?,
        })
    }

    async fn on_request(&mut self, ctx: &mut Context, request: SessionRequest) -> HookResult<Self::Reply> {
        Ok(match request {
            SessionRequest::Init { tenant_id } => {
                ctx.storage().delete_all();
                let meta = Meta {
                    tenant_id,
                    started_at: ctx.now_ms(),
                    current_order: Value::Null,
                };
                ctx.storage().put(META, &meta)?;
                self.meta = Some(meta);
                self.transcriptions.clear();
                self.display_updates.clear();
                // Displays already open start over from the new state.
                let state = self.state();
                let frame = initial_state(&state, ctx.now_ms());
                ctx.broadcast(frame);
                Ok(SessionReply::Initialised(state))
            }
            SessionRequest::Update { update, kind } => {
                let Some(meta) = self.meta.as_mut() else {
                    return Ok(Err(self.not_initialised()));
                };
                let limit = list_limit(ctx);
                let max = ctx
                    .setting::<DisplayConfig>()
                    .map_or(1 << 20, |c| c.display_state_max_bytes);
                let size = json_len(&meta.current_order) + self.transcriptions.bytes + self.display_updates.bytes;
                let growth = match Slot::for_type(&kind) {
                    Slot::CurrentOrder => json_len(&update) as isize - json_len(&meta.current_order) as isize,
                    Slot::Transcriptions => self.transcriptions.growth(&update, limit),
                    Slot::DisplayUpdates => self.display_updates.growth(&update, limit),
                };
                let after = size.saturating_add_signed(growth);
                if growth > 0 && after > max {
                    return Ok(Err(Refusal::TooLarge(format!(
                        "this update would make the session's state {after} bytes, over its limit of {max}; nothing was stored"
                    ))));
                }
                match Slot::for_type(&kind) {
                    Slot::CurrentOrder => meta.current_order = update.clone(),
                    Slot::Transcriptions => self.transcriptions.push(ctx, update.clone(), limit)?,
                    Slot::DisplayUpdates => self.display_updates.push(ctx, update.clone(), limit)?,
                }
                ctx.storage().put(META, meta)?;
                let frame = json!({"type": "update", "update": update, "timestamp": ctx.now_ms()});
                ctx.broadcast(Frame::text(frame.to_string()));
                Ok(SessionReply::Updated)
            }
            SessionRequest::State => match self.meta {
                Some(_) => Ok(SessionReply::State(self.state())),
                None => Err(self.not_initialised()),
            },
        })
    }

    async fn on_connect(&mut self, ctx: &mut Context, socket: NewSocket) -> HookResult {
        let socket = ctx.accept(socket, &[])?;
        let frame = initial_state(&self.state(), ctx.now_ms());
        ctx.send(&socket, frame);
        Ok(())
    }

    async fn on_message(&mut self, ctx: &mut Context, socket: SocketRef, _frame: Frame) -> HookResult {
        // Displays only listen; pings are answered by the gateway before they get here.
        ctx.send_json(
            &socket,
            &json!({"type": "error", "message": "displays only send {\"type\":\"ping\"}"}),
        );
        Ok(())
    }
}

/// Bytes of `value` as JSON.
fn json_len(value: &Value) -> usize {
    serde_json::to_vec(value).map_or(0, |v| v.len())
}

fn list_limit(ctx: &Context) -> usize {
    ctx.setting::<DisplayConfig>().map_or(100, |c| c.display_list_limit)
}

impl Session {
    fn state(&self) -> SessionState {
        let mut state = SessionState::empty(&self.id);
        if let Some(meta) = &self.meta {
            state.tenant_id = Some(meta.tenant_id.clone());
            state.started_at = Some(meta.started_at);
            state.current_order = meta.current_order.clone();
            state.transcriptions = self.transcriptions.entries.iter().cloned().collect();
            state.display_updates = self.display_updates.entries.iter().cloned().collect();
        }
        state
    }

    fn not_initialised(&self) -> Refusal {
        Refusal::NotFound(format!(
            "session {:?} has not been initialised; POST /session/{}/init first",
            self.id, self.id
        ))
    }
}

fn initial_state(state: &SessionState, now_ms: i64) -> Frame {
    Frame::text(json!({"type": "initial_state", "state": state, "timestamp": now_ms}).to_string())
}

async fn display(State(host): State<Host>, Path(id): Path<String>, req: Request) -> Response {
    if let Err(e) = valid_name("session id", &id) {
        return e.into_response();
    }
    let stub = host.runtime().object::<Session>(&id);
    host.connect(req, stub, ConnectInfo::default(), Default::default())
}

/// The session behind an authorized request for a valid id.
fn authorized(host: &Host, headers: &HeaderMap, id: &str) -> Result<Stub<Session>, ApiError> {
    host.require_bearer(headers)?;
    valid_name("session id", id)?;
    Ok(host.runtime().object::<Session>(id))
}

async fn init(
    State(host): State<Host>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Value>, ApiError> {
    let session = authorized(&host, &headers, &id)?;
    let Init { tenant_id } = json_body(body)?;
    reply_json(session.call(SessionRequest::Init { tenant_id }).await??)
}

async fn update(
    State(host): State<Host>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Value>, ApiError> {
    let session = authorized(&host, &headers, &id)?;
    let now = host.runtime().now_ms();
    let (update, kind) = validate_update(json_body(body)?, now).map_err(ApiError::bad_request)?;
    reply_json(session.call(SessionRequest::Update { update, kind }).await??)
}

async fn state(State(host): State<Host>, Path(id): Path<String>) -> Result<Json<Value>, ApiError> {
    valid_name("session id", &id)?;
    reply_json(
        host.runtime()
            .object::<Session>(&id)
            .call(SessionRequest::State)
            .await??,
    )
}

/// The HTTP body of a session's reply, as the display contract has it.
fn reply_json(reply: SessionReply) -> Result<Json<Value>, ApiError> {
    Ok(Json(match reply {
        SessionReply::Initialised(state) => json!({ "success": true, "state": state }),
        SessionReply::Updated => json!({ "success": true }),
        SessionReply::State(state) => serde_json::to_value(state).expect("wire types serialize"),
    }))
}
