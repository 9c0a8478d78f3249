//! HTTP pieces every app shares: JSON errors, JSON bodies, Bearer auth, CORS.

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::de::DeserializeOwned;
use tower_http::cors::{AllowOrigin, CorsLayer};

/// An HTTP error as the wire contract wants it: `{"error": "<human sentence>"}` and a status.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
}

impl ApiError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        ApiError {
            status,
            message: message.into(),
        }
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, message)
    }

    /// For failures of the server itself: the caller learns nothing was done.
    pub fn unavailable(message: impl std::fmt::Display) -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("temporarily unavailable, nothing was changed: {message}"),
        )
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, Json(serde_json::json!({ "error": self.message }))).into_response()
    }
}

/// A request an object refused, as its typed reply carries it; the route answers it with its
/// HTTP status.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize, thiserror::Error)]
pub enum Refusal {
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    TooLarge(String),
    #[error("{0}")]
    TooMany(String),
}

impl From<Refusal> for ApiError {
    fn from(r: Refusal) -> Self {
        match r {
            Refusal::BadRequest(m) => ApiError::bad_request(m),
            Refusal::NotFound(m) => ApiError::not_found(m),
            Refusal::Conflict(m) => ApiError::new(StatusCode::CONFLICT, m),
            Refusal::TooLarge(m) => ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, m),
            Refusal::TooMany(m) => ApiError::new(StatusCode::TOO_MANY_REQUESTS, m),
        }
    }
}

impl From<switchboard_runtime::CallError> for ApiError {
    fn from(e: switchboard_runtime::CallError) -> Self {
        match e {
            // Not "nothing was changed": the caller must check before trying again.
            switchboard_runtime::CallError::TimedOut(_) => ApiError::new(StatusCode::GATEWAY_TIMEOUT, e.to_string()),
            e => ApiError::unavailable(e),
        }
    }
}

impl From<switchboard_runtime::StorageError> for ApiError {
    fn from(e: switchboard_runtime::StorageError) -> Self {
        ApiError::unavailable(e)
    }
}

/// Parses a request body as JSON of type `T`, with a clear error for each way it can be wrong.
pub fn json_body<T: DeserializeOwned>(body: Result<Bytes, BytesRejection>) -> Result<T, ApiError> {
    let bytes = body.map_err(|rejection| {
        let status = rejection.status();
        if status == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::new(status, "request body is too large")
        } else {
            ApiError::new(status, format!("cannot read request body: {}", rejection.body_text()))
        }
    })?;
    if bytes.is_empty() {
        return Err(ApiError::bad_request("request body is empty; expected JSON"));
    }
    serde_json::from_slice(&bytes).map_err(|e| match e.classify() {
        serde_json::error::Category::Syntax | serde_json::error::Category::Eof => {
            ApiError::bad_request(format!("request body is not valid JSON: {e}"))
        }
        _ => ApiError::bad_request(format!("invalid request body: {e}")),
    })
}

/// Checks `Authorization: Bearer <secret>` (the scheme in any case, RFC 9110 §11.1), in
/// constant time.
pub fn require_bearer(headers: &HeaderMap, secret: &str) -> Result<(), ApiError> {
    match bearer_token(headers) {
        Some(token) if constant_time_eq(token.as_bytes(), secret.as_bytes()) => Ok(()),
        Some(_) => Err(ApiError::new(StatusCode::UNAUTHORIZED, "the Bearer token is not valid")),
        None => Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "missing Authorization: Bearer token",
        )),
    }
}

/// The token of an `Authorization: Bearer <token>` header (the scheme in any case).
pub fn bearer_token(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim_start().split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, token)| token.trim())
}

/// Equality of a client's `given` bytes with a `secret`, whose time depends only on the length
/// of `given` (which the client knows anyway): not on where the bytes differ, nor on the
/// secret's length.
///
/// Every byte of `given` is compared (with `subtle`, which keeps the compiler from cutting the
/// loop short) against the secret repeated to the same length, and the lengths are compared
/// the same way; a shorter or longer guess costs the same work as a right-length one.
pub fn constant_time_eq(given: &[u8], secret: &[u8]) -> bool {
    use subtle::ConstantTimeEq;
    if secret.is_empty() {
        return given.is_empty();
    }
    let mut same = (given.len() as u64).ct_eq(&(secret.len() as u64));
    for (i, byte) in given.iter().enumerate() {
        same &= byte.ct_eq(&secret[i % secret.len()]);
    }
    same.into()
}

/// CORS for browser clients from `origins` (`*` allows any); `None` when the list is empty.
pub fn cors(origins: &[String]) -> Option<CorsLayer> {
    if origins.is_empty() {
        return None;
    }
    let allow = if origins.iter().any(|o| o == "*") {
        AllowOrigin::any()
    } else {
        AllowOrigin::list(origins.iter().filter_map(|o| HeaderValue::from_str(o).ok()))
    };
    Some(
        CorsLayer::new()
            .allow_origin(allow)
            .allow_methods([Method::GET, Method::POST, Method::DELETE, Method::OPTIONS])
            .allow_headers([header::CONTENT_TYPE, header::AUTHORIZATION]),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_checks() {
        let mut h = HeaderMap::new();
        assert_eq!(
            require_bearer(&h, "s3cret").unwrap_err().status,
            StatusCode::UNAUTHORIZED
        );
        h.insert(header::AUTHORIZATION, HeaderValue::from_static("Bearer nope"));
        assert!(require_bearer(&h, "s3cret").is_err());
        h.insert(header::AUTHORIZATION, HeaderValue::from_static("Bearer s3cret"));
        assert!(require_bearer(&h, "s3cret").is_ok());
        h.insert(header::AUTHORIZATION, HeaderValue::from_static("bearer s3cret"));
        assert!(require_bearer(&h, "s3cret").is_ok(), "the scheme is case-insensitive");
        h.insert(header::AUTHORIZATION, HeaderValue::from_static("BEARER  s3cret"));
        assert!(require_bearer(&h, "s3cret").is_ok());
        h.insert(header::AUTHORIZATION, HeaderValue::from_static("Basic s3cret"));
        assert!(require_bearer(&h, "s3cret").is_err());
        h.insert(header::AUTHORIZATION, HeaderValue::from_static("Bearers3cret"));
        assert!(require_bearer(&h, "s3cret").is_err());
    }

    /// Equal only when both length and bytes are: a repeat or a prefix of the secret is not it.
    #[test]
    fn constant_time_eq_is_equality() {
        assert!(constant_time_eq(b"s3cret", b"s3cret"));
        assert!(!constant_time_eq(b"s3cre", b"s3cret"));
        assert!(!constant_time_eq(b"s3crets3cret", b"s3cret"));
        assert!(!constant_time_eq(b"s3cres", b"s3cret"));
        assert!(!constant_time_eq(b"", b"s3cret"));
        assert!(constant_time_eq(b"", b""));
        assert!(!constant_time_eq(b"x", b""));
    }

    #[test]
    fn json_body_errors() {
        let e = json_body::<serde_json::Value>(Ok(Bytes::from_static(b"{oops"))).unwrap_err();
        assert!(e.message.contains("not valid JSON"), "{}", e.message);
        let e = json_body::<serde_json::Value>(Ok(Bytes::new())).unwrap_err();
        assert!(e.message.contains("empty"));
    }
}
