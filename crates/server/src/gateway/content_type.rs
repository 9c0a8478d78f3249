//! Refuses state-changing requests whose body a browser page could send to another site without
//! asking first.
//!
//! A cross-site `fetch` with a `text/plain`, form or untyped body is a "simple" request: the
//! browser sends it without a CORS preflight and only hides the answer from the page, so the
//! change is made all the same. JSON bodies need a preflight, which CORS refuses to origins not
//! in `cors_origins`. A request carrying `Authorization` needs a preflight too, whatever its
//! body, so Bearer-authenticated APIs may take other types (raw bodies, as API Gateway's
//! `@connections` does).

use axum::body::HttpBody;
use axum::extract::Request;
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use switchboard_apps::http::ApiError;

/// Paths whose protocol posts bodies of another type by its specification: Engine.IO's
/// polling transport sends `text/plain`. The Socket.IO route applies the WebSocket origin
/// policy to every one of its requests, which shuts out the cross-site sender this rule is for.
const OTHER_BODIES: &[&str] = &["/socket.io/"];

/// Answers 415 to a POST, PUT, PATCH or DELETE with a body that is not JSON and no
/// `Authorization` header.
pub async fn require_json(req: Request, next: Next) -> Response {
    let changes_state = matches!(
        *req.method(),
        Method::POST | Method::PUT | Method::PATCH | Method::DELETE
    );
    if changes_state
        && !OTHER_BODIES.iter().any(|p| req.uri().path().starts_with(p))
        && !req.body().is_end_stream()
        && !req.headers().contains_key(header::AUTHORIZATION)
        && !is_json(req.headers())
    {
        return ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "a request body must be JSON: send Content-Type: application/json",
        )
        .into_response();
    }
    next.run(req).await
}

/// True if `headers` declare a JSON body: `application/json` or `application/<x>+json`, with
/// or without parameters.
pub fn is_json(headers: &HeaderMap) -> bool {
    let Some(value) = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let mime = value.split(';').next().unwrap_or_default().trim().to_ascii_lowercase();
    mime == "application/json" || (mime.starts_with("application/") && mime.ends_with("+json"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    #[test]
    fn json_types() {
        let typed = |t: &'static str| {
            let mut h = HeaderMap::new();
            h.insert(header::CONTENT_TYPE, HeaderValue::from_static(t));
            is_json(&h)
        };
        assert!(typed("application/json"));
        assert!(typed("Application/JSON; charset=utf-8"));
        assert!(typed("application/merge-patch+json"));
        assert!(!typed("text/plain"));
        assert!(!typed("text/plain; application/json"));
        assert!(!typed("application/x-www-form-urlencoded"));
        assert!(!is_json(&HeaderMap::new()));
    }
}
