//! One rooms connection as a durable object: it joins its own rooms, answers the client's
//! actions, announces its user in the branch room, and tells the backend it closed.

use std::collections::BTreeSet;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use switchboard_proto::time::iso_from_ms;
use switchboard_runtime::{
    AutoResponse, Context, Effect, Frame, HookError, HookResult, HttpRequest, NewSocket, Object, Position, Recovery,
    Runtime, SocketId, SocketRef, Subscription, json_frame,
};

use super::backend::{self, Answer, Route};
use super::rules::{self, Verdict};
use super::{Record, Shared, event};

/// A connection's object; its name is the connection id.
pub struct Connection {
    /// The rooms its socket is in, as this object last set them; read from the runtime after a
    /// wake.
    rooms: Option<BTreeSet<String>>,
}

/// A client frame: `{"action", "data"}`.
#[derive(Deserialize)]
struct Action {
    action: String,
    #[serde(default)]
    data: Value,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SubscribeData {
    room: String,
    offset: Option<u64>,
    epoch: Option<String>,
}

#[derive(Deserialize)]
struct RoomData {
    room: String,
}

#[derive(Deserialize)]
struct OrderData {
    #[serde(rename = "orderId")]
    order_id: Value,
}

const ACTIONS: &str = "ping, getRooms, subscribe, unsubscribe, subscribeToOrder, getStatus";

fn error(message: impl Into<String>) -> Value {
    json!({"action": "error", "error": message.into()})
}

/// What the management API (`/@connections/{id}`, `/api/connections/{id}`) asks of a
/// connection. Called on the connection's object, it runs on the node that holds the socket,
/// wherever the request came in.
#[derive(Debug, Serialize, Deserialize)]
pub enum Manage {
    /// Send these bytes to the socket (a text frame when they are UTF-8).
    Post(Vec<u8>),
    /// When it connected, from where, and when it was last active.
    Get,
    /// Close it (1000).
    Delete,
}

/// Does what `request` asks to the connection `id` if this node holds its socket; `None`: no
/// such live connection here.
pub(crate) fn manage(shared: &Shared, runtime: &Runtime, id: &str, request: Manage) -> Option<Value> {
    let record = shared.connections.get(id)?;
    let socket = record.socket.get().copied().filter(|s| runtime.socket_is_open(*s))?;
    Some(match request {
        Manage::Post(body) => {
            let frame = match String::from_utf8(body) {
                Ok(text) => Frame::text(text),
                Err(e) => Frame::Binary(e.into_bytes().into()),
            };
            if !runtime.send_to_socket(socket, frame) {
                return None;
            }
            record.touch(runtime.now_ms());
            json!({})
        }
        Manage::Get => json!({
            "connectedAt": iso_from_ms(record.connected_at),
            "identity": {"sourceIp": record.source_ip, "userAgent": record.user_agent},
            "lastActiveAt": iso_from_ms(record.last_active.load(std::sync::atomic::Ordering::Relaxed)),
        }),
        Manage::Delete => {
            runtime.close_socket(socket, 1000, "disconnected by the application");
            json!({})
        }
    })
}

impl Object for Connection {
    const CLASS: &'static str = "rooms_connection";
    /// The management API's requests; `None` in reply: the connection is gone.
    type Request = Manage;
    type Reply = Option<Value>;

    /// `{"action":"ping"}` → `{"action":"pong","timestamp":ISO}`, without waking the object.
    fn auto_response() -> Option<AutoResponse> {
        Some(AutoResponse::json(
            json!({"action": "ping"}),
            r#"{"action":"pong","timestamp":"{{now_iso}}"}"#,
        ))
    }

    async fn start(_ctx: &mut Context) -> HookResult<Self> {
        Ok(Connection { rooms: None })
    }

    async fn on_request(&mut self, ctx: &mut Context, request: Manage) -> HookResult<Option<Value>> {
        let shared = shared(ctx)?;
        let Some(runtime) = shared.runtime.get() else {
            return Ok(None);
        };
        Ok(manage(&shared, runtime, ctx.name(), request))
    }

    async fn on_connect(&mut self, ctx: &mut Context, socket: NewSocket) -> HookResult {
        let record = record(ctx)?;
        let socket = ctx.accept(socket, &[])?;
        let _ = record.socket.set(socket.id());
        // A connection does not hear of itself (in a cluster the announcement may come back
        // after it joined), so its branch room has sent it nothing yet when its client
        // resubscribes with the offset it had.
        if let Some(branch) = &record.branch_id {
            let data = json!({"userId": record.user_id, "role": record.role});
            announce(ctx, branch, "user:connected", data, Some(socket.id()))?;
        }
        let rooms = rules::own_rooms(&record.member());
        for room in &rooms {
            let subscription = Subscription {
                user: Some(record.user_id.clone()),
                ..Default::default()
            };
            ctx.subscribe(socket.id(), room, subscription)?;
        }
        self.rooms = Some(rooms.into_iter().collect());
        Ok(())
    }

    async fn on_message(&mut self, ctx: &mut Context, socket: SocketRef, frame: Frame) -> HookResult {
        let record = record(ctx)?;
        record.touch(ctx.now_ms());
        let shared = shared(ctx)?;
        let Some(text) = frame.as_text() else {
            ctx.send_json(&socket, &error("binary frames are not supported; send JSON text"));
            return Ok(());
        };
        let parsed = serde_json::from_str::<Action>(text);
        let reply = match &parsed {
            Ok(Action { action, data }) if is_handled(action) => {
                self.act(ctx, &socket, &shared, &record, action, data, text).await?
            }
            // What the server does not handle is the backend's, as on API Gateway's `$default`.
            _ if shared.backend.is_some() => {
                forward_default(&shared, &record, socket.id(), ctx.now_ms(), text);
                None
            }
            Ok(Action { action, .. }) => Some(error(format!("unknown action {action:?}; actions: {ACTIONS}"))),
            Err(e) => Some(error(format!(
                "invalid message: {e}; expected {{\"action\": …, \"data\": {{…}}}}"
            ))),
        };
        if let Some(reply) = reply {
            ctx.send_json(&socket, &reply);
        }
        Ok(())
    }

    async fn on_close(&mut self, ctx: &mut Context, _socket: SocketRef, code: u16, reason: String) -> HookResult {
        let shared = shared(ctx)?;
        let Some(record) = shared.connections.remove(ctx.name()) else {
            return Ok(());
        };
        let now = ctx.now_ms();
        if let Some(branch) = &record.branch_id {
            let data = json!({"userId": record.user_id, "role": record.role, "duration": now - record.connected_at});
            announce(ctx, branch, "user:disconnected", data, None)?;
        }
        if let Some(backend) = &shared.backend {
            // Unlike API Gateway's best effort: stored with this event, retried until a 2xx.
            let event = backend::with_close(
                backend::event(Route::Disconnect, &record, now, None, None),
                code,
                &reason,
            );
            ctx.enqueue(Effect::Http(HttpRequest::post_json(backend.url(), &event)));
        }
        Ok(())
    }
}

fn is_handled(action: &str) -> bool {
    matches!(
        action,
        "ping" | "getRooms" | "subscribe" | "unsubscribe" | "subscribeToOrder" | "getStatus"
    )
}

fn shared(ctx: &Context) -> HookResult<Arc<Shared>> {
    ctx.setting::<Arc<Shared>>()
        .cloned()
        .ok_or_else(|| HookError::msg("the rooms app is not registered"))
}

fn record(ctx: &Context) -> HookResult<Arc<Record>> {
    shared(ctx)?
        .connections
        .get(ctx.name())
        .ok_or_else(|| HookError::refused(format!("no live connection {}", ctx.name())))
}

/// Publishes a presence event to a branch room.
fn announce(ctx: &mut Context, branch: &str, kind: &'static str, data: Value, except: Option<SocketId>) -> HookResult {
    let timestamp = iso_from_ms(ctx.now_ms());
    let room = format!("branch:{branch}");
    let publication = event(&[room], kind, data, &timestamp);
    ctx.publish(match except {
        Some(socket) => publication.except(socket),
        None => publication,
    })?;
    Ok(())
}

/// Sends a frame the server does not handle to the backend's `$default` route, outside the
/// object's event: the socket goes on while the backend thinks. A `body` in its answer goes
/// back to the socket.
fn forward_default(shared: &Arc<Shared>, record: &Record, socket: SocketId, now: i64, text: &str) {
    let (Some(backend), Some(runtime)) = (shared.backend.clone(), shared.runtime.get().cloned()) else {
        return;
    };
    let event = backend::event(Route::Default, record, now, None, Some(text));
    tokio::spawn(async move {
        let failure = match backend.call(&event).await {
            Answer::Accepted { body: Some(body) } => {
                runtime.send_to_socket(socket, Frame::text(body));
                return;
            }
            Answer::Accepted { body: None } => return,
            Answer::Refused(status) => format!("the backend could not handle the message ({status})"),
            Answer::TimedOut => "the backend did not answer in time".to_string(),
            Answer::Unreachable(e) => {
                tracing::warn!(url = backend.url(), error = %e, "$default: backend unreachable");
                "the backend cannot be reached".to_string()
            }
        };
        runtime.send_to_socket(socket, json_frame(&error(failure)));
    });
}

impl Connection {
    /// Handles one of the server's own actions; the reply, if it is sent now.
    #[allow(clippy::too_many_arguments)]
    async fn act(
        &mut self,
        ctx: &mut Context,
        socket: &SocketRef,
        shared: &Arc<Shared>,
        record: &Record,
        action: &str,
        data: &Value,
        text: &str,
    ) -> HookResult<Option<Value>> {
        let rooms = self
            .rooms
            .get_or_insert_with(|| ctx.socket_topics(socket).into_iter().collect());
        Ok(Some(match action {
            "ping" => json!({"action": "pong", "timestamp": iso_from_ms(ctx.now_ms())}),
            "getRooms" => json!({"action": "getRooms", "rooms": rooms, "count": rooms.len()}),
            "getStatus" => json!({
                "action": "getStatus",
                "connectionId": record.id,
                "userId": record.user_id,
                "role": record.role,
                "branchId": record.branch_id,
                "connectedAt": iso_from_ms(record.connected_at),
                "expiresAt": record.expires_at.map(iso_from_ms),
                "rooms": rooms,
            }),
            "unsubscribe" => match serde_json::from_value::<RoomData>(data.clone()) {
                Err(e) => {
                    json!({"action": "unsubscribe", "success": false, "error": format!("unsubscribe needs data.room: {e}")})
                }
                Ok(RoomData { room }) => {
                    if rooms.remove(&room) {
                        ctx.unsubscribe(socket.id(), &room);
                        json!({"action": "unsubscribe", "success": true, "room": room})
                    } else {
                        json!({"action": "unsubscribe", "success": false, "room": room, "error": format!("not subscribed to {room}")})
                    }
                }
            },
            "subscribeToOrder" => {
                let order = match serde_json::from_value::<OrderData>(data.clone()).map(|d| d.order_id) {
                    Ok(Value::String(id)) if !id.is_empty() => id,
                    Ok(Value::Number(n)) => n.to_string(),
                    _ => {
                        return Ok(Some(json!({
                            "action": "subscribeToOrder", "success": false,
                            "error": "subscribeToOrder needs data.orderId (a string or a number)",
                        })));
                    }
                };
                let room = format!("order:{order}");
                let reply = move |_: Option<&Recovery>| json!({"action": "subscribeToOrder", "success": true, "orderId": order});
                match self.join(ctx, socket, shared, record, &room, None, text, reply).await? {
                    Ok(()) => return Ok(None),
                    Err(e) => {
                        json!({"action": "subscribeToOrder", "success": false, "orderId": room["order:".len()..], "error": e})
                    }
                }
            }
            "subscribe" => {
                let request = match serde_json::from_value::<SubscribeData>(data.clone()) {
                    Ok(r) => r,
                    Err(e) => {
                        return Ok(Some(json!({
                            "action": "subscribe", "success": false,
                            "error": format!("subscribe needs data.room (and offset with epoch to recover): {e}"),
                        })));
                    }
                };
                let since = match (request.offset, request.epoch) {
                    (Some(offset), Some(epoch)) => Some(Position { offset, epoch }),
                    (None, None) => None,
                    _ => {
                        return Ok(Some(json!({
                            "action": "subscribe", "success": false, "room": request.room,
                            "error": "to recover, send both offset and epoch",
                        })));
                    }
                };
                let room = request.room.clone();
                let reply = move |recovery: Option<&Recovery>| {
                    let mut reply = json!({"action": "subscribe", "success": true, "room": room});
                    if let Some(r) = recovery {
                        reply["recovered"] = r.recovered.into();
                        reply["missed"] = r.missed.into();
                    }
                    reply
                };
                match self
                    .join(ctx, socket, shared, record, &request.room, since, text, reply)
                    .await?
                {
                    Ok(()) => return Ok(None),
                    Err(e) => json!({"action": "subscribe", "success": false, "room": request.room, "error": e}),
                }
            }
            _ => unreachable!("is_handled lists the actions"),
        }))
    }

    /// Puts the socket in a room if it may join, and answers with `reply`: with the
    /// subscription's recovery outcome when `since` asks for one (the reply then comes before
    /// what is recovered). `Err` says why it may not join.
    #[allow(clippy::too_many_arguments)]
    async fn join(
        &mut self,
        ctx: &mut Context,
        socket: &SocketRef,
        shared: &Arc<Shared>,
        record: &Record,
        room: &str,
        since: Option<Position>,
        text: &str,
        reply: impl Fn(Option<&Recovery>) -> Value + Send + 'static,
    ) -> HookResult<Result<(), String>> {
        if let Err(e) = switchboard_runtime::valid_topic(room) {
            return Ok(Err(format!("invalid room name: {e}")));
        }
        let verdict = match rules::decide(room, &record.member(), &shared.config.room_rules) {
            Ok(v) => v,
            Err(reason) => return Ok(Err(reason)),
        };
        if verdict == Verdict::Ask {
            let Some(backend) = &shared.backend else {
                return Ok(Err(format!(
                    "{room} needs the backend's approval, and no backend_url is set"
                )));
            };
            let event = backend::event(Route::Subscribe, record, ctx.now_ms(), None, Some(text));
            match backend.call(&event).await {
                Answer::Accepted { .. } => {}
                Answer::Refused(status) => return Ok(Err(format!("the backend refused {room} ({status})"))),
                Answer::TimedOut | Answer::Unreachable(_) => {
                    return Ok(Err(format!("the backend could not be asked about {room}; try again")));
                }
            }
        }
        let rooms = self
            .rooms
            .get_or_insert_with(|| ctx.socket_topics(socket).into_iter().collect());
        let max = shared.config.rooms_max_per_socket;
        if !rooms.contains(room) && rooms.len() >= max {
            return Ok(Err(format!("a connection may be in at most {max} rooms")));
        }
        rooms.insert(room.to_string());
        let mut subscription = Subscription {
            user: Some(record.user_id.clone()),
            ..Default::default()
        };
        if since.is_some() {
            subscription.since = since;
            subscription.reply = Some(Box::new(move |r: &Recovery| Some(json_frame(&reply(Some(r))))));
        } else {
            ctx.send_json(socket, &reply(None));
        }
        ctx.subscribe(socket.id(), room, subscription)?;
        Ok(Ok(()))
    }
}
