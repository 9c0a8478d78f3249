//! Every answer in the API's shape: a `{"error"}` body on the errors axum makes by itself, and
//! the headers that keep API answers from being sniffed or cached.

use axum::body::Body;
use axum::extract::Request;
use axum::http::{HeaderValue, header};
use axum::middleware::Next;
use axum::response::Response;

use super::content_type::is_json;

/// Most bytes of a plain-text error kept as the JSON error's message.
const MAX_MESSAGE: usize = 4096;

/// Rewrites plain-text error answers (axum's rejections, such as a path that is not valid
/// percent-encoding) as `{"error": "<their text>"}`, and marks answers `nosniff`, JSON ones
/// `no-store` as well: they are per-request state, never to be served from a cache.
pub async fn api_answers(req: Request, next: Next) -> Response {
    let response = next.run(req).await;
    let status = response.status();
    if status.is_informational() {
        return response;
    }
    let mut response = if (status.is_client_error() || status.is_server_error()) && !is_json(response.headers()) {
        let (mut parts, body) = response.into_parts();
        let text = axum::body::to_bytes(body, MAX_MESSAGE)
            .await
            .ok()
            .and_then(|b| String::from_utf8(b.to_vec()).ok())
            .map(|t| t.trim().to_string())
            .filter(|t| !t.is_empty());
        let message = text.unwrap_or_else(|| status.canonical_reason().unwrap_or("error").to_lowercase());
        let body = serde_json::json!({ "error": message }).to_string();
        parts.headers.remove(header::CONTENT_LENGTH);
        parts
            .headers
            .insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
        Response::from_parts(parts, Body::from(body))
    } else {
        response
    };
    let headers = response.headers_mut();
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    if is_json(headers) {
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    response
}
