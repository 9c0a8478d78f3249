//! The WebSocket opening handshake (RFC 6455 §4.2) on a hyper request.
//!
//! Switchboard upgrades with tokio-tungstenite directly rather than through axum's wrapper so
//! that the runtime and the gateway share one frame type (`tungstenite::Utf8Bytes`): a
//! broadcast's bytes go from the object to every socket without a copy or a re-validation.

use axum::body::Body;
use axum::extract::Request;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use hyper_util::rt::TokioIo;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};

use switchboard_apps::http::ApiError;

/// The server side of an upgraded connection.
pub type ServerSocket = WebSocketStream<TokioIo<hyper::upgrade::Upgraded>>;

/// Bytes read from a socket at a time. Every socket holds a buffer this big for its whole life,
/// so it is small: client frames are mostly small, and a larger frame gets room for its whole
/// payload once its header is read.
const READ_BUFFER: usize = 512;

/// Bytes of frames gathered before a write: a batch of queued frames goes out in one write (the
/// writer flushes at the end of each batch) instead of one write per frame.
const WRITE_COALESCE: usize = 16 * 1024;

/// WebSocket settings for sockets served with at most `max_frame` bytes per frame and
/// `max_message` per message.
pub fn socket_config(max_frame: usize, max_message: usize) -> WebSocketConfig {
    WebSocketConfig::default()
        .max_message_size(Some(max_message))
        .max_frame_size(Some(max_frame.min(max_message)))
        .read_buffer_size(READ_BUFFER)
        .write_buffer_size(WRITE_COALESCE)
}

/// Checks that `headers` ask for a WebSocket upgrade; returns the client's key.
fn client_key(method: &Method, headers: &HeaderMap) -> Result<HeaderValue, ApiError> {
    let has_token = |name: header::HeaderName, token: &str| {
        headers
            .get_all(name)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case(token))
    };
    if method != Method::GET {
        return Err(ApiError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "a WebSocket upgrade must be a GET request",
        ));
    }
    if !has_token(header::CONNECTION, "upgrade") || !has_token(header::UPGRADE, "websocket") {
        return Err(ApiError::new(
            StatusCode::UPGRADE_REQUIRED,
            "this endpoint speaks WebSocket: send Connection: Upgrade and Upgrade: websocket",
        ));
    }
    if headers.get(header::SEC_WEBSOCKET_VERSION).map(|v| v.as_bytes()) != Some(b"13") {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "unsupported Sec-WebSocket-Version: only 13 is spoken",
        ));
    }
    headers
        .get(header::SEC_WEBSOCKET_KEY)
        .cloned()
        .ok_or_else(|| ApiError::new(StatusCode::BAD_REQUEST, "missing Sec-WebSocket-Key header"))
}

/// The subprotocol to answer with: `wanted` if the client offered it.
pub fn chosen_protocol(headers: &HeaderMap, wanted: Option<&str>) -> Option<HeaderValue> {
    let wanted = wanted?;
    headers
        .get_all(header::SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|p| p.trim() == wanted)
        .then(|| HeaderValue::from_str(wanted).ok())
        .flatten()
}

/// Answers `req` with 101 Switching Protocols (echoing `protocol`, if any) and runs `on_socket`
/// on the upgraded connection, or answers with a JSON error if `req` is not a valid upgrade.
pub fn upgrade<F, Fut>(
    mut req: Request,
    config: WebSocketConfig,
    protocol: Option<HeaderValue>,
    on_socket: F,
) -> Response
where
    F: FnOnce(ServerSocket) -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let key = match client_key(req.method(), req.headers()) {
        Ok(key) => key,
        Err(e) => return e.into_response(),
    };
    let on_upgrade = hyper::upgrade::on(&mut req);
    tokio::spawn(async move {
        match on_upgrade.await {
            Ok(upgraded) => {
                let ws = WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Server, Some(config)).await;
                on_socket(ws).await;
            }
            Err(e) => tracing::debug!(error = %e, "upgrade failed"),
        }
    });
    let mut response = Response::builder()
        .status(StatusCode::SWITCHING_PROTOCOLS)
        .header(header::CONNECTION, "upgrade")
        .header(header::UPGRADE, "websocket")
        .header(header::SEC_WEBSOCKET_ACCEPT, derive_accept_key(key.as_bytes()));
    if let Some(protocol) = protocol {
        response = response.header(header::SEC_WEBSOCKET_PROTOCOL, protocol);
    }
    response.body(Body::empty()).expect("static response parts are valid")
}
