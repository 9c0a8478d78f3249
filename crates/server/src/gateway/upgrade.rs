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

use super::origin::OriginPolicy;

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

/// Why a handshake is refused.
#[derive(Debug)]
enum Refusal {
    Invalid(ApiError),
    /// §4.4: the answer names the version the server speaks, so a client can retry with it.
    Version,
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        match self {
            Refusal::Invalid(e) => e.into_response(),
            Refusal::Version => {
                let mut answer = ApiError::new(
                    StatusCode::UPGRADE_REQUIRED,
                    "unsupported Sec-WebSocket-Version: only 13 is spoken",
                )
                .into_response();
                answer
                    .headers_mut()
                    .insert(header::SEC_WEBSOCKET_VERSION, HeaderValue::from_static("13"));
                answer
            }
        }
    }
}

/// Checks that `headers` ask for a WebSocket upgrade (RFC 6455 §4.2.1); returns the client's key.
fn client_key(method: &Method, headers: &HeaderMap) -> Result<HeaderValue, Refusal> {
    let has_token = |name: header::HeaderName, token: &str| {
        headers
            .get_all(name)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case(token))
    };
    let refuse = |status, message: &str| Err(Refusal::Invalid(ApiError::new(status, message)));
    if method != Method::GET {
        return refuse(
            StatusCode::METHOD_NOT_ALLOWED,
            "a WebSocket upgrade must be a GET request",
        );
    }
    if !has_token(header::CONNECTION, "upgrade") || !has_token(header::UPGRADE, "websocket") {
        return refuse(
            StatusCode::UPGRADE_REQUIRED,
            "this endpoint speaks WebSocket: send Connection: Upgrade and Upgrade: websocket",
        );
    }
    if headers.get(header::SEC_WEBSOCKET_VERSION).map(|v| v.as_bytes()) != Some(b"13") {
        return Err(Refusal::Version);
    }
    match headers.get(header::SEC_WEBSOCKET_KEY) {
        Some(key) if is_nonce(key.as_bytes()) => Ok(key.clone()),
        Some(_) => refuse(
            StatusCode::BAD_REQUEST,
            "Sec-WebSocket-Key must be 16 random bytes in base64 (24 characters)",
        ),
        None => refuse(StatusCode::BAD_REQUEST, "missing Sec-WebSocket-Key header"),
    }
}

/// True if `key` is base64 of 16 bytes, as §4.1 requires of a client's nonce: 22 base64
/// characters and `==`.
fn is_nonce(key: &[u8]) -> bool {
    let is_b64 = |c: &u8| c.is_ascii_alphanumeric() || *c == b'+' || *c == b'/';
    key.len() == 24 && key[..22].iter().all(is_b64) && &key[22..] == b"=="
}

/// Refuses, with 403, an upgrade from a browser page the origin policy does not allow. The
/// policy comes with the request (see [`OriginPolicy`]).
fn check_origin(req: &Request) -> Result<(), ApiError> {
    match req.extensions().get::<OriginPolicy>() {
        Some(policy) => policy.check(req.headers()),
        None => OriginPolicy::default().check(req.headers()),
    }
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
/// on the upgraded connection, or answers with a JSON error if `req` is not a valid upgrade or
/// comes from a page the origin policy refuses.
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
        Err(refusal) => return refusal.into_response(),
    };
    if let Err(e) = check_origin(&req) {
        return e.into_response();
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Keys must be base64 of exactly 16 bytes.
    #[test]
    fn nonces() {
        assert!(is_nonce(b"dGhlIHNhbXBsZSBub25jZQ=="));
        assert!(!is_nonce(b"dGhlIHNhbXBsZSBub25jZQ"));
        assert!(!is_nonce(b"not base64 at all!!!!!=="));
        assert!(!is_nonce(b"dGhlIHNhbXBsZSBub25jZQ==dGhl"));
        assert!(!is_nonce(b""));
    }
}
