//! The HTTP side of rooms for the application's backend (Bearer API key): publish to rooms,
//! users, branches and roles; list and disconnect connections; and API Gateway's management
//! API, `/@connections/{id}`.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Extension, Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};
use switchboard_proto::time::iso_from_ms;
use switchboard_runtime::{PublishError, Runtime};

use super::connection::{Connection, Manage, manage};
use super::{Record, Shared, event};
use crate::Host;
use crate::http::{ApiError, json_body};

/// Rooms one publication may name.
const MAX_ROOMS_PER_PUBLISH: usize = 1000;

/// The routes; their handlers find the rooms' shared state as an extension.
pub(super) fn routes() -> Router<Host> {
    Router::new()
        .route("/api/broadcast", post(broadcast))
        .route("/api/users/{user_id}/send", post(to_named_room))
        .route("/api/branches/{branch_id}/broadcast", post(to_named_room))
        .route("/api/roles/{role}/broadcast", post(to_named_room))
        .route("/api/connections", get(list))
        .route("/api/connections/{id}", delete(disconnect))
        .route(
            "/@connections/{id}",
            post(post_to_connection).get(get_connection).delete(delete_connection),
        )
}

/// An event from the backend: `{"type","data"}` (other fields, such as the seed's
/// `timestamp`, are ignored: the server stamps the event).
#[derive(Deserialize)]
struct Event {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    data: Value,
}

#[derive(Deserialize)]
struct RoomsEvent {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    data: Value,
    rooms: Vec<String>,
}

fn checked_body<T: serde::de::DeserializeOwned>(
    shared: &Shared,
    body: Result<Bytes, BytesRejection>,
) -> Result<T, ApiError> {
    let max = shared.config.rooms_max_message_bytes;
    if let Ok(bytes) = &body
        && bytes.len() > max
    {
        return Err(too_large(max));
    }
    json_body(body)
}

fn too_large(max: usize) -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        format!("the body is larger than {max} bytes, the largest message a connection takes"),
    )
}

/// Publishes an event to rooms; `{"delivered": sockets reached}` once it is stored (in rooms
/// with history) and queued.
async fn publish(runtime: &Runtime, rooms: Vec<String>, event: Event) -> Result<Json<Value>, ApiError> {
    if event.kind.is_empty() || event.kind.len() > 256 {
        return Err(ApiError::bad_request("`type` must be 1 to 256 bytes long"));
    }
    if rooms.is_empty() || rooms.len() > MAX_ROOMS_PER_PUBLISH {
        return Err(ApiError::bad_request(format!(
            "`rooms` must name 1 to {MAX_ROOMS_PER_PUBLISH} rooms"
        )));
    }
    let timestamp = iso_from_ms(runtime.now_ms());
    let Event { kind, data } = event;
    let publication = self::event(&rooms, &kind, data, &timestamp);
    match runtime.publish(publication).await {
        Ok(delivered) => Ok(Json(json!({ "delivered": delivered }))),
        Err(PublishError::Topic(e)) => Err(ApiError::bad_request(format!("invalid room name: {e}"))),
        Err(e) => Err(ApiError::unavailable(e)),
    }
}

async fn broadcast(
    State(host): State<Host>,
    Extension(shared): Extension<Arc<Shared>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Value>, ApiError> {
    host.require_bearer(&headers)?;
    let RoomsEvent { kind, data, rooms } = checked_body(&shared, body)?;
    publish(host.runtime(), rooms, Event { kind, data }).await
}

/// `POST /api/users/{userId}/send`, `/api/branches/{branchId}/broadcast` and
/// `/api/roles/{role}/broadcast?branchId=B`: an event to the one room their path names.
async fn to_named_room(
    State(host): State<Host>,
    Extension(shared): Extension<Arc<Shared>>,
    headers: HeaderMap,
    Path(path): Path<BTreeMap<String, String>>,
    Query(query): Query<BTreeMap<String, String>>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Value>, ApiError> {
    host.require_bearer(&headers)?;
    let room = match (path.get("user_id"), path.get("branch_id"), path.get("role")) {
        (Some(user), _, _) => format!("user:{user}"),
        (_, Some(branch), _) => format!("branch:{branch}"),
        (_, _, Some(role)) => {
            let branch = query
                .get("branchId")
                .filter(|b| !b.is_empty())
                .ok_or_else(|| ApiError::bad_request("a role lives in a branch: add ?branchId=B"))?;
            format!("role:{role}:{branch}")
        }
        _ => unreachable!("the routes name one of them"),
    };
    let event = checked_body(&shared, body)?;
    publish(host.runtime(), vec![room], event).await
}

fn describe(record: &Record, rooms: Vec<String>) -> Value {
    json!({
        "connectionId": record.id,
        "userId": record.user_id,
        "branchId": record.branch_id,
        "role": record.role,
        "connectedAt": iso_from_ms(record.connected_at),
        "rooms": rooms,
    })
}

/// `GET /api/connections?userId=&room=`: the live connections of this node.
async fn list(
    State(host): State<Host>,
    Extension(shared): Extension<Arc<Shared>>,
    headers: HeaderMap,
    Query(query): Query<BTreeMap<String, String>>,
) -> Result<Json<Value>, ApiError> {
    host.require_bearer(&headers)?;
    let runtime = host.runtime();
    let connections: Vec<Value> = shared
        .connections
        .all()
        .into_iter()
        .filter(|r| query.get("userId").is_none_or(|u| *u == r.user_id))
        .filter_map(|r| {
            let rooms = r.socket.get().map(|s| runtime.socket_topics(*s)).unwrap_or_default();
            query
                .get("room")
                .is_none_or(|room| rooms.contains(room))
                .then(|| describe(&r, rooms))
        })
        .collect();
    Ok(Json(json!({"count": connections.len(), "connections": connections})))
}

/// `DELETE /api/connections/{id}`: closes the connection (1000), on whichever node holds it.
async fn disconnect(
    State(host): State<Host>,
    Extension(shared): Extension<Arc<Shared>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    host.require_bearer(&headers)?;
    manage_anywhere(&shared, &host, &id, Manage::Delete)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no live connection {id}")))?;
    Ok(Json(json!({"connectionId": id, "disconnected": true})))
}

/// API Gateway's GoneException: the connection is unknown or closed.
fn gone(id: &str) -> ApiError {
    ApiError::new(StatusCode::GONE, format!("GoneException: connection {id} is gone"))
}

/// Does what `request` asks to connection `id`: here if this node holds its socket, else on
/// the node that does (in a cluster, through the connection's object). `None`: no such live
/// connection anywhere.
async fn manage_anywhere(shared: &Shared, host: &Host, id: &str, request: Manage) -> Result<Option<Value>, ApiError> {
    let runtime = host.runtime();
    if shared.connections.get(id).is_some() || runtime.node_id().is_none() {
        return Ok(manage(shared, runtime, id, request));
    }
    Ok(runtime.object::<Connection>(id).call(request).await?)
}

/// `POST /@connections/{id}`: the body, as it is, to the socket.
async fn post_to_connection(
    State(host): State<Host>,
    Extension(shared): Extension<Arc<Shared>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    host.require_bearer(&headers)?;
    let body = body.map_err(|r| ApiError::new(r.status(), format!("cannot read request body: {}", r.body_text())))?;
    let max = shared.config.rooms_max_message_bytes;
    if body.len() > max {
        return Err(too_large(max));
    }
    manage_anywhere(&shared, &host, &id, Manage::Post(body.to_vec()))
        .await?
        .ok_or_else(|| gone(&id))?;
    Ok(StatusCode::OK.into_response())
}

/// `GET /@connections/{id}`: when it connected, from where, and when it was last active.
async fn get_connection(
    State(host): State<Host>,
    Extension(shared): Extension<Arc<Shared>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    host.require_bearer(&headers)?;
    let info = manage_anywhere(&shared, &host, &id, Manage::Get).await?;
    Ok(Json(info.ok_or_else(|| gone(&id))?))
}

/// `DELETE /@connections/{id}`: closes the connection (1000); 204.
async fn delete_connection(
    State(host): State<Host>,
    Extension(shared): Extension<Arc<Shared>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    host.require_bearer(&headers)?;
    manage_anywhere(&shared, &host, &id, Manage::Delete)
        .await?
        .ok_or_else(|| gone(&id))?;
    Ok(StatusCode::NO_CONTENT)
}
