//! Rooms for dashboards (PROTOCOLS.md §2): sockets that sign in with a JWT and sit in rooms,
//! a publish API for the application's backend, recovery from room history, and the API
//! Gateway surface (`$connect`/`$default`/`$disconnect` events, `@connections`) that the
//! seed's Lambda handlers were written against.
//!
//! Each connection is an object of its own (its name is the connection id), so one client's
//! slow backend question never holds up another's frames; rooms are runtime topics, so a
//! publish is encoded once per room and reaches a socket in several of the rooms once.

mod api;
mod backend;
mod connection;
pub mod rules;

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use axum::extract::{Query, Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Extension, Router};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use switchboard_runtime::{
    ConnectInfo, Frame, HistoryLimits, Publication, Runtime, RuntimeBuilder, SocketId, StampFields, TopicOptions,
};
use tokio_util::sync::CancellationToken;

use crate::http::ApiError;
use crate::{App, Host, Lifetime, PeerAddr, RateLimit, SocketOptions};
use backend::{Answer, Backend, Route};
pub use connection::Connection;
use rules::{Member, RoomRule, Verdict};

/// The rooms app.
#[derive(Default)]
pub struct Rooms {
    shared: OnceLock<Arc<Shared>>,
}

/// The rooms app's settings.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RoomsConfig {
    /// Where `$connect`, `$default` and `$disconnect` events are POSTed (and `subscribe` for rooms
    /// whose rule is `ask`). Default: none.
    pub backend_url: Option<HttpUrl>,
    /// How long the backend has to answer `$connect`, `$default` or `subscribe`. Default 10000.
    pub rooms_backend_timeout_ms: u64,
    /// Rooms that keep a durable history for recovery: names, or prefixes ending in `*`.
    /// Default: `branch:*`, `order:*`, `user:*`.
    pub history_rooms: Vec<String>,
    /// Events each history room keeps. Default 1000.
    pub room_history_limit: usize,
    /// How long a history room keeps an event, in ms. Default 600000 (10 minutes).
    pub room_history_ms: u64,
    /// Who may subscribe to rooms other than the token's own user, branch and role rooms:
    /// `pattern=allow|deny|ask`, the first match wins, a room no rule matches is denied.
    /// Default: `order:*=allow`.
    pub room_rules: Vec<RoomRule>,
    /// Rooms one connection may be in. Default 100.
    pub rooms_max_per_socket: usize,
    /// How long a connection lives (then close 4002, with a `reconnect` frame a minute
    /// before), in ms; 0: no limit. Default 7200000 (2 hours).
    pub rooms_lifetime_ms: u64,
    /// A connection with no frame from its client for this long is closed (1001), in ms; 0: no
    /// limit. Default 600000 (10 minutes).
    pub rooms_idle_timeout_ms: u64,
    /// Largest frame a client may send (else close 1009). Default 32768.
    pub rooms_max_frame_bytes: usize,
    /// Largest message a client may send, and largest body of `POST /@connections/{id}`.
    /// Default 131072.
    pub rooms_max_message_bytes: usize,
    /// Frames per second a client may send, sustained; 0: no limit. Default 20.
    pub rooms_rate_per_second: u32,
    /// Frames a client may send at once above that rate. Default 40.
    pub rooms_rate_burst: u32,
}

impl Default for RoomsConfig {
    fn default() -> Self {
        RoomsConfig {
            backend_url: None,
            rooms_backend_timeout_ms: 10_000,
            history_rooms: vec!["branch:*".into(), "order:*".into(), "user:*".into()],
            room_history_limit: 1000,
            room_history_ms: 600_000,
            room_rules: vec![RoomRule::new("order:*", Verdict::Allow)],
            rooms_max_per_socket: 100,
            rooms_lifetime_ms: 2 * 3600 * 1000,
            rooms_idle_timeout_ms: 600_000,
            rooms_max_frame_bytes: 32 * 1024,
            rooms_max_message_bytes: 128 * 1024,
            rooms_rate_per_second: 20,
            rooms_rate_burst: 40,
        }
    }
}

/// An `http://` or `https://` URL.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct HttpUrl(String);

impl TryFrom<String> for HttpUrl {
    type Error = String;

    fn try_from(text: String) -> Result<Self, String> {
        match reqwest::Url::parse(&text) {
            Ok(url) if matches!(url.scheme(), "http" | "https") && url.has_host() => Ok(HttpUrl(text)),
            _ => Err(format!("{text:?} is not an http:// or https:// URL")),
        }
    }
}

impl From<HttpUrl> for String {
    fn from(url: HttpUrl) -> String {
        url.0
    }
}

/// What the routes and the connection objects share.
pub(crate) struct Shared {
    config: RoomsConfig,
    connections: Connections,
    backend: Option<Arc<Backend>>,
    /// For answers that arrive after the event that asked (`$default`); set at start.
    runtime: OnceLock<Runtime>,
}

impl Rooms {
    fn shared(&self, config: &RoomsConfig) -> Arc<Shared> {
        self.shared
            .get_or_init(|| {
                let timeout = Duration::from_millis(config.rooms_backend_timeout_ms);
                Arc::new(Shared {
                    config: config.clone(),
                    connections: Connections::default(),
                    backend: config
                        .backend_url
                        .as_ref()
                        .map(|url| Arc::new(Backend::new(&url.0, timeout))),
                    runtime: OnceLock::new(),
                })
            })
            .clone()
    }
}

impl App for Rooms {
    const NAME: &'static str = "rooms";
    type Config = RoomsConfig;

    fn register(&self, config: &RoomsConfig, builder: RuntimeBuilder) -> RuntimeBuilder {
        let history = TopicOptions {
            history: Some(HistoryLimits {
                max_entries: config.room_history_limit.max(1),
                max_age: Duration::from_millis(config.room_history_ms),
            }),
            presence: None,
        };
        let mut builder = builder.class::<Connection>().setting(self.shared(config));
        for pattern in &config.history_rooms {
            builder = builder.topics(pattern, history.clone());
        }
        builder
    }

    fn routes(&self, config: &RoomsConfig) -> Router<Host> {
        Router::new()
            .route("/ws", get(connect))
            .merge(api::routes())
            .layer(Extension(self.shared(config)))
    }

    fn start(&self, config: &RoomsConfig, host: Host, _shutdown: CancellationToken) {
        let _ = self.shared(config).runtime.set(host.runtime().clone());
    }
}

/// A live connection of this node, as the management API and the backend events see it.
pub(crate) struct Record {
    pub id: String,
    pub socket: OnceLock<SocketId>,
    pub user_id: String,
    pub branch_id: Option<String>,
    pub role: Option<String>,
    pub claims: Value,
    pub connected_at: i64,
    /// When its lifetime ends; `None` without a limit.
    pub expires_at: Option<i64>,
    pub source_ip: String,
    pub user_agent: String,
    pub last_active: AtomicI64,
}

impl Record {
    pub fn member(&self) -> Member<'_> {
        Member {
            user_id: &self.user_id,
            branch_id: self.branch_id.as_deref(),
            role: self.role.as_deref(),
        }
    }

    pub fn touch(&self, now_ms: i64) {
        self.last_active.fetch_max(now_ms, Ordering::Relaxed);
    }
}

/// The live connections of this node, by connection id.
#[derive(Default)]
pub(crate) struct Connections {
    live: Mutex<HashMap<String, Arc<Record>>>,
}

impl Connections {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<Record>>> {
        self.live.lock().expect("connections lock poisoned")
    }

    pub fn insert(&self, record: Arc<Record>) {
        self.lock().insert(record.id.clone(), record);
    }

    pub fn get(&self, id: &str) -> Option<Arc<Record>> {
        self.lock().get(id).cloned()
    }

    pub fn remove(&self, id: &str) -> Option<Arc<Record>> {
        self.lock().remove(id)
    }

    pub fn all(&self) -> Vec<Arc<Record>> {
        let mut all: Vec<Arc<Record>> = self.lock().values().cloned().collect();
        all.sort_by(|a, b| (a.connected_at, &a.id).cmp(&(b.connected_at, &b.id)));
        all
    }
}

/// A connection id: unique across restarts and nodes (time and 64 random bits), like API
/// Gateway's opaque ids.
fn new_connection_id(now_ms: i64) -> String {
    let mut random = [0u8; 8];
    getrandom::fill(&mut random).expect("the system's random source works");
    format!("{now_ms:011x}{:016x}", u64::from_le_bytes(random))
}

/// An event as clients receive it: `{"type","data","timestamp"}`, and in a room with history
/// its `room`, `offset` and `epoch`.
pub(crate) fn event(rooms: &[String], kind: &str, data: Value, timestamp: &str) -> Publication {
    let mut event = Map::new();
    event.insert("type".into(), kind.into());
    event.insert("data".into(), data);
    event.insert("timestamp".into(), timestamp.into());
    // As data, not a closure: in a cluster the node that numbers histories renders it.
    let fields = StampFields {
        topic: "room".into(),
        offset: "offset".into(),
        epoch: "epoch".into(),
    };
    Publication::json_stamped(rooms, event, fields)
}

fn unauthorized(message: impl Into<String>) -> Response {
    ApiError::new(StatusCode::UNAUTHORIZED, message).into_response()
}

/// `GET /ws?token=JWT`: verifies the token, asks the backend's `$connect` when there is one,
/// then upgrades to a connection object of its own.
async fn connect(
    State(host): State<Host>,
    Extension(shared): Extension<Arc<Shared>>,
    Query(query): Query<BTreeMap<String, String>>,
    req: Request,
) -> Response {
    let bearer = crate::http::bearer_token(req.headers()).map(str::to_string);
    let Some(token) = query.get("token").cloned().or(bearer) else {
        return unauthorized("missing token: pass ?token=JWT or Authorization: Bearer JWT");
    };
    let claims = match host.verify_token(&token) {
        Ok(claims) => claims,
        Err(e) => return unauthorized(e.to_string()),
    };
    let text_claim = |name: &str| claims.get(name).and_then(Value::as_str).map(str::to_string);
    let Some(user_id) = text_claim("sub").filter(|s| !s.is_empty()) else {
        return unauthorized("the token has no `sub` claim (the user id)");
    };
    let config = &shared.config;
    let now = host.runtime().now_ms();
    let peer = req.extensions().get::<PeerAddr>().map(|p| p.0);
    let headers = crate::host::request_headers(req.headers());
    let record = Arc::new(Record {
        id: new_connection_id(now),
        socket: OnceLock::new(),
        user_id,
        branch_id: text_claim("branchId"),
        role: text_claim("role"),
        claims: claims.clone(),
        connected_at: now,
        expires_at: (config.rooms_lifetime_ms > 0).then(|| now + config.rooms_lifetime_ms as i64),
        source_ip: peer.map(|p| p.ip().to_string()).unwrap_or_default(),
        user_agent: headers.get("user-agent").cloned().unwrap_or_default(),
        last_active: AtomicI64::new(now),
    });
    if let Some(backend) = &shared.backend {
        let request = backend::Request {
            query: &query,
            headers: &headers,
        };
        let event = backend::event(Route::Connect, &record, now, Some(request), None);
        let refused = match backend.call(&event).await {
            Answer::Accepted { .. } => None,
            Answer::Refused(status) => Some((
                StatusCode::from_u16(status).unwrap_or(StatusCode::FORBIDDEN),
                format!("the backend refused the connection ({status})"),
            )),
            Answer::TimedOut => Some((
                StatusCode::BAD_GATEWAY,
                "the backend did not answer $connect in time".into(),
            )),
            Answer::Unreachable(e) => {
                tracing::warn!(url = backend.url(), error = %e, "$connect: backend unreachable");
                Some((
                    StatusCode::SERVICE_UNAVAILABLE,
                    "the backend cannot be reached to accept the connection".into(),
                ))
            }
        };
        if let Some((status, message)) = refused {
            return ApiError::new(status, message).into_response();
        }
    }
    let id = record.id.clone();
    shared.connections.insert(record);
    let info = ConnectInfo {
        params: query,
        peer,
        claims: Some(claims),
        ..Default::default()
    };
    let response = host.connect(
        req,
        host.runtime().object::<Connection>(&id),
        info,
        socket_options(config),
    );
    if response.status() != StatusCode::SWITCHING_PROTOCOLS {
        shared.connections.remove(&id);
    }
    response
}

/// The limits of a rooms socket, from the settings.
fn socket_options(config: &RoomsConfig) -> SocketOptions {
    let ms = |ms: u64| (ms > 0).then(|| Duration::from_millis(ms));
    SocketOptions {
        max_frame_bytes: Some(config.rooms_max_frame_bytes),
        max_message_bytes: Some(config.rooms_max_message_bytes),
        rate_limit: (config.rooms_rate_per_second > 0).then(|| RateLimit {
            per_second: f64::from(config.rooms_rate_per_second),
            burst: config.rooms_rate_burst,
            reply: Some(Frame::text(
                serde_json::json!({
                    "action": "error",
                    "error": format!(
                        "rate limit exceeded: at most {} messages per second; this one was dropped",
                        config.rooms_rate_per_second
                    ),
                })
                .to_string(),
            )),
            close_after: config.rooms_rate_burst.max(10),
        }),
        lifetime: ms(config.rooms_lifetime_ms).map(|after| {
            // A minute before the end (half the lifetime, for short ones).
            let warning = Duration::from_secs(60).min(after / 2);
            Lifetime {
                after,
                warning: Some((
                    warning,
                    Frame::text(
                        serde_json::json!({
                            "type": "reconnect",
                            "data": {"reason": "lifetime", "in": warning.as_millis() as u64},
                        })
                        .to_string(),
                    ),
                )),
            }
        }),
        idle_timeout: ms(config.rooms_idle_timeout_ms),
        ..Default::default()
    }
}
