//! Which pages may open a WebSocket: the origin policy every upgrade passes.
//!
//! A browser lets any page open a WebSocket to any server and sends the page's origin along;
//! CORS does not apply. Without this check a foreign page could drive the APIs a socket exposes
//! in its visitor's name (cross-site WebSocket hijacking). Clients that are not browsers send no
//! `Origin` and are let in; so is `Origin: file://`, which no browser sends but the ESP32
//! arduinoWebSockets library does, unless `allow_file_origin = false`.

use axum::http::{HeaderMap, StatusCode, header};

use switchboard_apps::http::ApiError;

/// The origins allowed to open WebSockets. Requests carry it as an extension (the serve loop
/// adds it); a request without one gets the default: same-origin pages and `file://` only.
#[derive(Clone, Debug)]
pub struct OriginPolicy {
    /// Allowed origins, lower case; `*` allows every origin.
    allowed: Vec<String>,
    allow_file: bool,
}

impl Default for OriginPolicy {
    fn default() -> Self {
        OriginPolicy::new(&[], true)
    }
}

impl OriginPolicy {
    /// `allowed` is `cors_origins`, the same list that governs cross-origin HTTP.
    pub fn new(allowed: &[String], allow_file: bool) -> Self {
        OriginPolicy {
            allowed: allowed
                .iter()
                .map(|o| o.trim_end_matches('/').to_ascii_lowercase())
                .collect(),
            allow_file,
        }
    }

    /// Refuses, with 403, an upgrade from a browser page whose origin is not allowed.
    pub fn check(&self, headers: &HeaderMap) -> Result<(), ApiError> {
        let Some(origin) = headers.get(header::ORIGIN) else {
            return Ok(());
        };
        let origin = origin.to_str().unwrap_or_default().trim().to_ascii_lowercase();
        let allowed = self.allowed.iter().any(|o| o == "*" || *o == origin)
            || (self.allow_file && origin == "file://")
            || same_origin(&origin, headers);
        if allowed {
            Ok(())
        } else {
            Err(ApiError::new(
                StatusCode::FORBIDDEN,
                format!(
                    "WebSocket connections from pages of origin {origin:?} are not allowed; add it to cors_origins"
                ),
            ))
        }
    }
}

/// True when `origin` (lower case) names the host the request was sent to: the server's own
/// pages. The scheme is not compared, as a TLS-terminating proxy may stand in between.
fn same_origin(origin: &str, headers: &HeaderMap) -> bool {
    let Some((_, authority)) = origin.split_once("://") else {
        return false;
    };
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .map(str::to_ascii_lowercase);
    host.is_some_and(|host| {
        let strip_default = |a: &str| {
            a.strip_suffix(":80")
                .or_else(|| a.strip_suffix(":443"))
                .map(str::to_string)
                .unwrap_or_else(|| a.to_string())
        };
        !authority.is_empty() && strip_default(authority) == strip_default(&host)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(origin: Option<&'static str>) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::HOST, HeaderValue::from_static("switchboard.test:8787"));
        if let Some(origin) = origin {
            h.insert(header::ORIGIN, HeaderValue::from_static(origin));
        }
        h
    }

    /// Listed, same-origin, `file://` and absent origins pass; any other browser origin,
    /// `null` included, is refused with 403.
    #[test]
    fn browser_origins_need_the_list() {
        let policy = OriginPolicy::new(&["http://A.test".into()], true);
        for ok in [
            None,
            Some("http://a.test"),
            Some("file://"),
            Some("http://switchboard.test:8787"),
        ] {
            assert!(policy.check(&headers(ok)).is_ok(), "{ok:?}");
        }
        for refused in [
            "http://evil.test",
            "null",
            "http://switchboard.test:9999",
            "http://a.test.evil.test",
        ] {
            let err = policy.check(&headers(Some(refused))).unwrap_err();
            assert_eq!(err.status, StatusCode::FORBIDDEN, "{refused}");
        }
        let strict = OriginPolicy::new(&[], false);
        assert!(strict.check(&headers(Some("file://"))).is_err());
        assert!(
            OriginPolicy::new(&["*".into()], false)
                .check(&headers(Some("http://x.test")))
                .is_ok()
        );
    }
}
