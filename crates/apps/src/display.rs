//! Restaurant display sessions (PROTOCOLS.md §5): one object per session id; displays get
//! the stored state on connect and every update after it is stored.

use std::collections::VecDeque;
use std::sync::{Arc, LazyLock};

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
use switchboard_proto::time::now_ms;
use switchboard_runtime::{
    AutoResponse, ConnectInfo, Context, Frame, ListOptions, NewSocket, Object, SocketRef, StorageError, Stub,
};

use crate::http::{ApiError, json_body, require_bearer};
use crate::{Host, Settings, valid_name};

/// `{"type":"ping"}` → `{"type":"pong","timestamp":ms}`, answered without waking the session;
/// one for all sessions.
static PING: LazyLock<Arc<AutoResponse>> = LazyLock::new(|| {
    Arc::new(AutoResponse::json(
        json!({"type": "ping"}),
        r#"{"type":"pong","timestamp":{{now_ms}}}"#,
    ))
});

const META: &str = "meta";
const TRANSCRIPTIONS: &str = "t:";
const DISPLAY_UPDATES: &str = "d:";

/// The stored part of a session besides its lists.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct Meta {
    tenant_id: String,
    started_at: i64,
    current_order: Value,
    next_seq: u64,
}

/// One display session.
pub struct Session {
    id: String,
    /// `None` until `init`.
    meta: Option<Meta>,
    /// Each list with the sequence number its entries are stored under.
    transcriptions: VecDeque<(u64, Value)>,
    display_updates: VecDeque<(u64, Value)>,
}

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

impl Object for Session {
    const CLASS: &'static str = "display";
    type Request = SessionRequest;
    type Reply = Result<Value, ApiError>;

    async fn start(ctx: &mut Context) -> Result<Self, StorageError> {
        ctx.set_auto_response(Some(PING.clone()));
        let storage = ctx.storage();
        let meta: Option<Meta> = storage.get(META).await?;
        let mut session = Session {
            id: ctx.name().to_string(),
            meta,
            transcriptions: VecDeque::new(),
            display_updates: VecDeque::new(),
        };
        if session.meta.is_some() {
            session.transcriptions = load(ctx, TRANSCRIPTIONS).await?;
            session.display_updates = load(ctx, DISPLAY_UPDATES).await?;
        }
        Ok(session)
    }

    async fn on_request(&mut self, ctx: &mut Context, request: SessionRequest) -> Self::Reply {
        match request {
            SessionRequest::Init { tenant_id } => {
                let storage = ctx.storage();
                storage.delete_all();
                let meta = Meta {
                    tenant_id,
                    started_at: now_ms(),
                    current_order: Value::Null,
                    next_seq: 0,
                };
                storage.put(META, &meta)?;
                self.meta = Some(meta);
                self.transcriptions.clear();
                self.display_updates.clear();
                // Displays already open start over from the new state.
                let state = self.state();
                ctx.broadcast(initial_state(&state));
                Ok(json!({ "success": true, "state": state }))
            }
            SessionRequest::Update { update, kind } => {
                let Some(meta) = self.meta.as_mut() else {
                    return Err(self.not_initialised());
                };
                let limit = ctx.setting::<Settings>().map_or(100, |s| s.display_list_limit);
                let storage = ctx.storage();
                let (list, prefix) = match Slot::for_type(&kind) {
                    Slot::CurrentOrder => {
                        meta.current_order = update.clone();
                        (None, "")
                    }
                    Slot::Transcriptions => (Some(&mut self.transcriptions), TRANSCRIPTIONS),
                    Slot::DisplayUpdates => (Some(&mut self.display_updates), DISPLAY_UPDATES),
                };
                if let Some(list) = list {
                    let seq = meta.next_seq;
                    meta.next_seq += 1;
                    storage.put(&format!("{prefix}{seq:020}"), &update)?;
                    list.push_back((seq, update.clone()));
                    while list.len() > limit {
                        let (old, _) = list.pop_front().expect("longer than the limit");
                        storage.delete(&format!("{prefix}{old:020}"));
                    }
                }
                storage.put(META, meta)?;
                let frame = json!({"type": "update", "update": update, "timestamp": now_ms()});
                ctx.broadcast(Frame::text(frame.to_string()));
                Ok(json!({ "success": true }))
            }
            SessionRequest::State => match self.meta {
                Some(_) => Ok(serde_json::to_value(self.state()).expect("wire types serialize")),
                None => Err(self.not_initialised()),
            },
        }
    }

    async fn on_connect(&mut self, ctx: &mut Context, socket: NewSocket) {
        let Ok(socket) = ctx.accept(socket, &[]) else {
            return;
        };
        let frame = initial_state(&self.state());
        ctx.send(&socket, frame);
    }

    async fn on_message(&mut self, ctx: &mut Context, socket: SocketRef, _frame: Frame) {
        // Displays only listen; pings are answered by the gateway before they get here.
        ctx.send_json(
            &socket,
            &json!({"type": "error", "message": "displays only send {\"type\":\"ping\"}"}),
        );
    }
}

impl Session {
    fn state(&self) -> SessionState {
        let mut state = SessionState::empty(&self.id);
        if let Some(meta) = &self.meta {
            state.tenant_id = Some(meta.tenant_id.clone());
            state.started_at = Some(meta.started_at);
            state.current_order = meta.current_order.clone();
            state.transcriptions = self.transcriptions.iter().map(|(_, v)| v.clone()).collect();
            state.display_updates = self.display_updates.iter().map(|(_, v)| v.clone()).collect();
        }
        state
    }

    fn not_initialised(&self) -> ApiError {
        ApiError::not_found(format!(
            "session {:?} has not been initialised; POST /session/{}/init first",
            self.id, self.id
        ))
    }
}

fn initial_state(state: &SessionState) -> Frame {
    Frame::text(json!({"type": "initial_state", "state": state, "timestamp": now_ms()}).to_string())
}

async fn load(ctx: &mut Context, prefix: &str) -> Result<VecDeque<(u64, Value)>, StorageError> {
    let rows: Vec<(String, Value)> = ctx.storage().list(ListOptions::prefix(prefix)).await?;
    Ok(rows
        .into_iter()
        .filter_map(|(key, value)| key[prefix.len()..].parse().ok().map(|seq| (seq, value)))
        .collect())
}

/// `/session/{id}/display`, `init`, `update` and `state`.
pub fn routes<H: Host>() -> Router<H> {
    Router::new()
        .route("/session/{id}/display", get(display::<H>))
        .route("/session/{id}/init", post(init::<H>))
        .route("/session/{id}/update", post(update::<H>))
        .route("/session/{id}/state", get(state::<H>))
}

async fn display<H: Host>(State(host): State<H>, Path(id): Path<String>, req: Request) -> Response {
    if let Err(e) = valid_name("session id", &id) {
        return e.into_response();
    }
    let stub = host.runtime().object::<Session>(&id);
    host.connect(req, stub, ConnectInfo::default())
}

/// The session behind an authorized request for a valid id.
fn authorized<H: Host>(host: &H, headers: &HeaderMap, id: &str) -> Result<Stub<Session>, ApiError> {
    require_bearer(headers, host.auth_secret())?;
    valid_name("session id", id)?;
    Ok(host.runtime().object::<Session>(id))
}

async fn init<H: Host>(
    State(host): State<H>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Value>, ApiError> {
    let session = authorized(&host, &headers, &id)?;
    let Init { tenant_id } = json_body(body)?;
    Ok(Json(session.call(SessionRequest::Init { tenant_id }).await??))
}

async fn update<H: Host>(
    State(host): State<H>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Value>, ApiError> {
    let session = authorized(&host, &headers, &id)?;
    let (update, kind) = validate_update(json_body(body)?, now_ms()).map_err(ApiError::bad_request)?;
    Ok(Json(session.call(SessionRequest::Update { update, kind }).await??))
}

async fn state<H: Host>(State(host): State<H>, Path(id): Path<String>) -> Result<Json<Value>, ApiError> {
    valid_name("session id", &id)?;
    Ok(Json(
        host.runtime()
            .object::<Session>(&id)
            .call(SessionRequest::State)
            .await??,
    ))
}
