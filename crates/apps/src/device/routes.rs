//! The device gateway's HTTP and WebSocket routes (PROTOCOLS.md §1).

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, Query, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post, put};
use axum::{Extension, Json, Router};
use serde_json::{Map, Value, json};
use switchboard_proto::device::{self as wire, HttpScan, Scan, Tag};
use switchboard_runtime::{Address, ConnectInfo, Object};
use tokio::task::JoinSet;

use super::directory::{Directory, DirectoryRequest, Summary, Tags, TagsReply, TagsRequest};
use super::object::{Device, DeviceReply, DeviceRequest, ScanOutcome, scan_key, scans_after, scans_from};
use super::{DeviceConfig, SINGLETON};
use crate::http::{ApiError, json_body};
use crate::{Host, SocketOptions};

/// Scans one `GET /api/scans` returns by default, and at most.
const DEFAULT_SCAN_PAGE: usize = 50;
const MAX_SCAN_PAGE: usize = 1000;
/// Longest device key, in bytes.
const MAX_DEVICE_KEY: usize = 256;

type Settings = Extension<Arc<DeviceConfig>>;

pub(super) fn router(config: DeviceConfig) -> Router<Host> {
    Router::new()
        .route("/ws/device", get(device_socket))
        .route("/ws/dashboard", get(dashboard_socket))
        .route("/api/rfid/scan", post(http_scan))
        .route("/api/devices", get(devices))
        .route("/api/devices/{id}", put(set_key))
        .route("/api/devices/{id}/config", post(configure))
        .route("/api/scans", get(scans))
        .route("/api/tags", post(put_tag).get(tags))
        .route("/api/tags/{tag_id}", delete(delete_tag))
        .layer(Extension(Arc::new(config)))
}

/// A device's id from a URL or body, checked.
fn device_id(id: Option<&String>) -> Result<String, ApiError> {
    let id = id.ok_or_else(|| ApiError::bad_request("missing deviceId: connect to /ws/device?deviceId=ID"))?;
    wire::check_device_id(id).map_err(ApiError::bad_request)?;
    Ok(id.clone())
}

/// With `device_keys` on, the device must present its registered key (`?key=` or
/// `Authorization: Bearer`); 401 otherwise.
async fn check_device_key(
    host: &Host,
    config: &DeviceConfig,
    id: &str,
    params: &BTreeMap<String, String>,
    headers: &HeaderMap,
) -> Result<(), ApiError> {
    if !config.device_keys {
        return Ok(());
    }
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim_start().split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, key)| key.trim().to_string());
    let Some(key) = params.get("key").cloned().or(bearer) else {
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "this server requires a device key: pass ?key=DEVICE_KEY or Authorization: Bearer DEVICE_KEY",
        ));
    };
    match host
        .runtime()
        .object::<Device>(id)
        .call(DeviceRequest::CheckKey(key))
        .await??
    {
        DeviceReply::KeyValid(true) => Ok(()),
        _ => Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            format!("the key is not the one registered for device {id:?}"),
        )),
    }
}

async fn device_socket(
    State(host): State<Host>,
    Extension(config): Settings,
    Query(params): Query<BTreeMap<String, String>>,
    req: Request,
) -> Response {
    let id = match device_id(params.get("deviceId")) {
        Ok(id) => id,
        Err(e) => return e.into_response(),
    };
    if let Err(e) = check_device_key(&host, &config, &id, &params, req.headers()).await {
        return e.into_response();
    }
    let stub = host.runtime().object::<Device>(&id);
    let options = SocketOptions {
        subprotocol: Some("arduino".into()),
        ..Default::default()
    };
    let info = ConnectInfo {
        params,
        ..Default::default()
    };
    host.connect(req, stub, info, options)
}

/// The admin key, as `Authorization: Bearer` or (for browsers' sockets) `?token=`.
fn require_admin(host: &Host, headers: &HeaderMap, params: &BTreeMap<String, String>) -> Result<(), ApiError> {
    match params.get("token") {
        Some(token) if !headers.contains_key(header::AUTHORIZATION) => {
            if host.is_api_secret(token) {
                Ok(())
            } else {
                Err(ApiError::new(StatusCode::UNAUTHORIZED, "the token is not valid"))
            }
        }
        _ => host.require_bearer(headers),
    }
}

async fn dashboard_socket(
    State(host): State<Host>,
    Query(params): Query<BTreeMap<String, String>>,
    req: Request,
) -> Response {
    if let Err(e) = require_admin(&host, req.headers(), &params) {
        return e.into_response();
    }
    let stub = host.runtime().object::<Directory>(SINGLETON);
    host.connect(req, stub, ConnectInfo::default(), SocketOptions::default())
}

/// The HTTP fallback: the same object, rules and reply body as a socket's `scan`.
async fn http_scan(
    State(host): State<Host>,
    Extension(config): Settings,
    Query(params): Query<BTreeMap<String, String>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let refused = |e: ApiError| (e.status, Json(wire::error_reply(&e.message))).into_response();
    let scan: HttpScan = match json_body(body) {
        Ok(scan) => scan,
        Err(e) => return refused(e),
    };
    let checked = device_id(Some(&scan.device_id)).and_then(|id| {
        let tag_id = wire::check_tag_id(Some(&Value::String(scan.tag_id.clone()))).map_err(ApiError::bad_request)?;
        let location =
            wire::check_location(scan.location.map(Value::String).as_ref()).map_err(ApiError::bad_request)?;
        Ok((id, tag_id, location))
    });
    let (id, tag_id, location) = match checked {
        Ok(fields) => fields,
        Err(e) => return refused(e),
    };
    if let Err(e) = check_device_key(&host, &config, &id, &params, &headers).await {
        return refused(e);
    }
    let reply = host
        .runtime()
        .object::<Device>(&id)
        .call(DeviceRequest::Scan { tag_id, location })
        .await;
    match reply {
        Ok(Ok(DeviceReply::Scan(outcome))) => {
            let status = match outcome {
                ScanOutcome::Accepted { .. } => StatusCode::OK,
                ScanOutcome::TooSoon(_) => StatusCode::TOO_MANY_REQUESTS,
                ScanOutcome::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            };
            (status, Json(outcome.body())).into_response()
        }
        Ok(Ok(_)) => refused(ApiError::unavailable("the device answered out of turn")),
        Ok(Err(refusal)) => refused(refusal.into()),
        Err(e) => refused(e.into()),
    }
}

async fn devices(State(host): State<Host>, headers: HeaderMap) -> Result<Json<Value>, ApiError> {
    host.require_bearer(&headers)?;
    let runtime = host.runtime();
    let listed = runtime
        .object::<Directory>(SINGLETON)
        .call(DirectoryRequest::List)
        .await?;
    let devices: Vec<Value> = listed
        .into_iter()
        .map(|s| {
            // Online while the socket it reported is open here; a restart ended every socket.
            let socket = s.socket.filter(|id| s.online && runtime.socket_is_open(*id));
            let answered = socket.and_then(|id| runtime.last_auto_response_ms(id)).unwrap_or(0) as i64;
            let last_seen = s.last_seen.max((answered > 0).then_some(answered));
            let outbox = runtime.outbox(&Address::new(Device::CLASS, &s.device_id));
            json!({
                "deviceId": s.device_id,
                "status": if socket.is_some() { "online" } else { "offline" },
                "lastSeen": last_seen,
                "configVersion": s.config_version,
                "configAppliedVersion": s.config_applied_version,
                "outbox": outbox,
            })
        })
        .collect();
    Ok(Json(Value::Array(devices)))
}

async fn set_key(
    State(host): State<Host>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Value>, ApiError> {
    host.require_bearer(&headers)?;
    wire::check_device_id(&id).map_err(ApiError::bad_request)?;
    let body: Map<String, Value> = json_body(body)?;
    let key = match body.get("key") {
        Some(Value::String(k))
            if !k.is_empty() && k.len() <= MAX_DEVICE_KEY && k.bytes().all(|b| b.is_ascii_graphic()) =>
        {
            k.clone()
        }
        _ => {
            return Err(ApiError::bad_request(format!(
                "the body must be {{\"key\": \"…\"}}: 1 to {MAX_DEVICE_KEY} visible ASCII characters"
            )));
        }
    };
    host.runtime()
        .object::<Device>(&id)
        .call(DeviceRequest::SetKey(key))
        .await??;
    Ok(Json(json!({ "deviceId": id })))
}

async fn configure(
    State(host): State<Host>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Value>, ApiError> {
    host.require_bearer(&headers)?;
    wire::check_device_id(&id).map_err(ApiError::bad_request)?;
    let change: Value = json_body(body)?;
    let Value::Object(change) = change else {
        return Err(ApiError::bad_request(
            "the config must be a JSON object, e.g. {\"registrationMode\": true}",
        ));
    };
    match host
        .runtime()
        .object::<Device>(&id)
        .call(DeviceRequest::Configure(change))
        .await??
    {
        DeviceReply::Configured { version } => Ok(Json(json!({ "deviceId": id, "version": version }))),
        _ => Err(ApiError::unavailable("the device answered out of turn")),
    }
}

/// Where a page of scans ends (exclusive), newest first: the last scan of the previous page.
/// Scans are ordered by `(timestamp, deviceId, number)`.
#[derive(Clone, Debug, PartialEq)]
struct Cursor {
    timestamp: i64,
    device_id: String,
    n: u64,
}

impl Cursor {
    fn of(scan: &Scan) -> Option<Self> {
        let (device_id, n) = scan.id.rsplit_once(':')?;
        Some(Cursor {
            timestamp: scan.timestamp,
            device_id: device_id.to_string(),
            n: n.parse().ok()?,
        })
    }

    /// `{timestamp}:{scan id}`.
    fn parse(text: &str) -> Option<Self> {
        let (timestamp, id) = text.split_once(':')?;
        let (device_id, n) = id.rsplit_once(':')?;
        Some(Cursor {
            timestamp: timestamp.parse().ok()?,
            device_id: device_id.to_string(),
            n: n.parse().ok()?,
        })
    }

    fn text(&self) -> String {
        format!("{}:{}:{}", self.timestamp, self.device_id, self.n)
    }

    /// The first key of `device_id`'s storage that this cursor excludes.
    fn end_for(&self, device_id: &str) -> String {
        match device_id.cmp(&self.device_id) {
            std::cmp::Ordering::Less => scans_after(self.timestamp),
            std::cmp::Ordering::Equal => scan_key(self.timestamp, self.n),
            std::cmp::Ordering::Greater => scans_from(self.timestamp),
        }
    }

    fn order(&self) -> (i64, &str, u64) {
        (self.timestamp, &self.device_id, self.n)
    }
}

/// `GET /api/scans?deviceId=&since=ms&before=CURSOR&limit=`: newest first, across every
/// device (each asked for its own page, merged) or one.
async fn scans(
    State(host): State<Host>,
    headers: HeaderMap,
    Query(params): Query<BTreeMap<String, String>>,
) -> Result<Json<Value>, ApiError> {
    host.require_bearer(&headers)?;
    let number = |name: &str| -> Result<Option<i64>, ApiError> {
        params
            .get(name)
            .map(|v| {
                v.parse::<i64>()
                    .map_err(|_| ApiError::bad_request(format!("{name} must be a whole number")))
            })
            .transpose()
    };
    let since = number("since")?;
    let limit = match number("limit")? {
        None => DEFAULT_SCAN_PAGE,
        Some(l) if (1..=MAX_SCAN_PAGE as i64).contains(&l) => l as usize,
        Some(_) => {
            return Err(ApiError::bad_request(format!(
                "limit must be between 1 and {MAX_SCAN_PAGE}"
            )));
        }
    };
    let before = match params.get("before") {
        Some(text) => Some(
            Cursor::parse(text)
                .ok_or_else(|| ApiError::bad_request("before must be the `next` cursor of a previous page"))?,
        ),
        None => None,
    };
    let runtime = host.runtime();
    let devices: Vec<String> = match params.get("deviceId") {
        Some(id) => vec![device_id(Some(id))?],
        None => runtime
            .object::<Directory>(SINGLETON)
            .call(DirectoryRequest::List)
            .await?
            .into_iter()
            .filter(|s: &Summary| s.newest_scan_ms.is_some_and(|t| since.is_none_or(|since| t >= since)))
            .map(|s| s.device_id)
            .collect(),
    };
    let mut pages = JoinSet::new();
    for id in devices {
        let end = before.as_ref().map(|c| c.end_for(&id));
        let device = runtime.object::<Device>(&id);
        // One more than a page: whether a next page exists.
        pages.spawn(async move {
            device
                .call(DeviceRequest::Scans {
                    end,
                    since,
                    limit: limit + 1,
                })
                .await
        });
    }
    let mut all = Vec::new();
    while let Some(page) = pages.join_next().await {
        let page = page.map_err(ApiError::unavailable)?;
        if let DeviceReply::Scans(scans) = page?? {
            all.extend(scans.into_iter().filter_map(|s| Some((Cursor::of(&s)?, s))));
        }
    }
    all.sort_by(|(a, _), (b, _)| b.order().cmp(&a.order()));
    let next = (all.len() > limit).then(|| all[limit - 1].0.text());
    all.truncate(limit);
    let scans: Vec<Scan> = all.into_iter().map(|(_, s)| s).collect();
    Ok(Json(json!({ "scans": scans, "next": next })))
}

async fn put_tag(
    State(host): State<Host>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Value>, ApiError> {
    host.require_bearer(&headers)?;
    let tag: Tag = json_body(body)?;
    wire::check_tag(&tag).map_err(ApiError::bad_request)?;
    match host
        .runtime()
        .object::<Tags>(SINGLETON)
        .call(TagsRequest::Put(tag))
        .await??
    {
        TagsReply::Tag(tag) => Ok(Json(serde_json::to_value(tag).expect("wire types serialize"))),
        _ => Err(ApiError::unavailable("the tag registry answered out of turn")),
    }
}

async fn tags(State(host): State<Host>, headers: HeaderMap) -> Result<Json<Value>, ApiError> {
    host.require_bearer(&headers)?;
    match host
        .runtime()
        .object::<Tags>(SINGLETON)
        .call(TagsRequest::List)
        .await??
    {
        TagsReply::Tags(tags) => Ok(Json(serde_json::to_value(tags).expect("wire types serialize"))),
        _ => Err(ApiError::unavailable("the tag registry answered out of turn")),
    }
}

async fn delete_tag(
    State(host): State<Host>,
    Path(tag_id): Path<String>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    host.require_bearer(&headers)?;
    host.runtime()
        .object::<Tags>(SINGLETON)
        .call(TagsRequest::Delete(tag_id.clone()))
        .await??;
    Ok(Json(json!({ "tagId": tag_id, "deleted": true })))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A cursor reads back as written, and splits every device's keys where the order says.
    #[test]
    fn cursors() {
        let cursor = Cursor::parse("1700000000000:gate:1:42").unwrap();
        assert_eq!(cursor.device_id, "gate:1");
        assert_eq!(cursor.n, 42);
        assert_eq!(Cursor::parse(&cursor.text()), Some(cursor.clone()));
        assert_eq!(cursor.end_for("gate:1"), scan_key(1700000000000, 42));
        assert!(
            cursor.end_for("a") > scan_key(1700000000000, 999_999_999_999),
            "an earlier device keeps that millisecond"
        );
        assert!(
            cursor.end_for("z") <= scan_key(1700000000000, 0),
            "a later device does not"
        );
        assert_eq!(Cursor::parse("nope"), None);
    }
}
