//! The built-in console: pages served from the binary for the people who run a Switchboard —
//! sign in with the admin key, watch the server live, and drive the apps from their own pages.
//!
//! The pages are static files embedded in the binary (`crates/server/console/`); everything
//! they show comes from the server's own APIs (`/metrics`, `/api/…`), which accept the console's
//! session cookie in place of the Bearer key. The cookie is HttpOnly and SameSite=Strict: no
//! other site's page can send it, and no script can read it.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::json;
use switchboard_apps::http::{ApiError, constant_time_eq, json_body};
use tokio::time::Instant;

use crate::gateway::Gateway;

/// Name of the session cookie.
pub const COOKIE: &str = "switchboard_console";
/// How long a sign-in lasts.
const SESSION_TTL: Duration = Duration::from_secs(12 * 3600);
/// Sessions kept at most; the oldest go first (a client signing in in a loop cannot grow this).
const MAX_SESSIONS: usize = 1024;

/// The signed-in sessions of this process (a restart signs everyone out).
#[derive(Default)]
pub struct Sessions {
    live: Mutex<HashMap<String, Instant>>,
}

impl Sessions {
    fn open(&self) -> String {
        let mut bytes = [0u8; 32];
        getrandom::fill(&mut bytes).expect("the OS has randomness");
        let token: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        let now = Instant::now();
        let mut live = self.live.lock().expect("sessions lock");
        live.retain(|_, expires| *expires > now);
        if live.len() >= MAX_SESSIONS
            && let Some(oldest) = live.iter().min_by_key(|(_, e)| **e).map(|(k, _)| k.clone())
        {
            live.remove(&oldest);
        }
        live.insert(token.clone(), now + SESSION_TTL);
        token
    }

    fn close(&self, token: &str) {
        self.live.lock().expect("sessions lock").remove(token);
    }

    /// Whether `headers` carry the cookie of a live session.
    pub fn signed_in(&self, headers: &HeaderMap) -> bool {
        let Some(token) = session_cookie(headers) else {
            return false;
        };
        let live = self.live.lock().expect("sessions lock");
        live.get(token).is_some_and(|expires| *expires > Instant::now())
    }
}

/// The session token in a request's `Cookie` headers, if any.
fn session_cookie(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .map(|(_, value)| value)
}

/// The console's routes.
pub fn routes() -> Router<Gateway> {
    Router::new()
        .route("/", get(index))
        .route("/console/session", post(sign_in).delete(sign_out))
        .route("/console/api/topics", get(topics))
        .route("/console/api/objects/{class}/{name}", get(object))
        .route("/console/{file}", get(asset))
}

/// The embedded files: name, content type, bytes.
const ASSETS: &[(&str, &str, &str)] = &[
    (
        "app.js",
        "text/javascript; charset=utf-8",
        include_str!("../../console/app.js"),
    ),
    (
        "style.css",
        "text/css; charset=utf-8",
        include_str!("../../console/style.css"),
    ),
];
const CONSOLE_PAGE: &str = include_str!("../../console/index.html");
const SIGN_IN_PAGE: &str = include_str!("../../console/signin.html");

fn html(page: &'static str) -> Response {
    let mut response = ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], page).into_response();
    secure_page(response.headers_mut());
    response
}

/// Pages load only what the server serves, and are never framed by another site.
fn secure_page(headers: &mut HeaderMap) {
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'self'; connect-src 'self' ws: wss:; img-src 'self' data:; frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
        ),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
}

/// `GET /`: the console for a signed-in session, else the sign-in page.
async fn index(State(gw): State<Gateway>, headers: HeaderMap) -> Response {
    if gw.sessions.signed_in(&headers) {
        html(CONSOLE_PAGE)
    } else {
        html(SIGN_IN_PAGE)
    }
}

async fn asset(Path(file): Path<String>) -> Response {
    match ASSETS.iter().find(|(name, _, _)| *name == file) {
        Some((_, content_type, body)) => {
            let mut response = ([(header::CONTENT_TYPE, *content_type)], *body).into_response();
            secure_page(response.headers_mut());
            response
        }
        None => ApiError::not_found(format!("no console file {file:?}")).into_response(),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SignIn {
    key: String,
}

/// `POST /console/session` `{"key"}`: the admin key opens a session (a cookie); a wrong key is
/// 401 and opens nothing.
async fn sign_in(State(gw): State<Gateway>, body: Result<Bytes, BytesRejection>) -> Result<Response, ApiError> {
    let SignIn { key } = json_body(body)?;
    if !constant_time_eq(key.as_bytes(), gw.auth_secret.expose().as_bytes()) {
        tracing::info!("console sign-in refused: wrong key");
        return Err(ApiError::new(StatusCode::UNAUTHORIZED, "that is not the admin key"));
    }
    let token = gw.sessions.open();
    let secure = if gw.tls { "; Secure" } else { "" };
    let cookie = format!(
        "{COOKIE}={token}; Path=/; HttpOnly; SameSite=Strict; Max-Age={}{secure}",
        SESSION_TTL.as_secs()
    );
    let mut response = Json(json!({"signedIn": true})).into_response();
    response.headers_mut().insert(
        header::SET_COOKIE,
        HeaderValue::from_str(&cookie).expect("hex token and fixed attributes"),
    );
    Ok(response)
}

/// `DELETE /console/session`: signs out (the session ends on the server, and the cookie goes).
async fn sign_out(State(gw): State<Gateway>, headers: HeaderMap) -> Response {
    if let Some(token) = session_cookie(&headers) {
        gw.sessions.close(token);
    }
    let mut response = Json(json!({"signedIn": false})).into_response();
    response.headers_mut().insert(
        header::SET_COOKIE,
        HeaderValue::from_str(&format!("{COOKIE}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0")).expect("fixed text"),
    );
    response
}

/// `GET /console/api/topics` (admin): every topic of this node with its subscribers, presence
/// and history.
async fn topics(State(gw): State<Gateway>, headers: HeaderMap) -> Result<Json<serde_json::Value>, ApiError> {
    gw.require_admin(&headers)?;
    let topics: Vec<serde_json::Value> = gw
        .runtime
        .topics()
        .into_iter()
        .map(|(name, subscribers)| {
            let presence = gw.runtime.presence(&name);
            let history = gw.runtime.topic_history(&name);
            json!({
                "name": name,
                "subscribers": subscribers,
                "users": presence.users,
                "history": history.map(|(position, entries)| json!({
                    "entries": entries, "offset": position.offset, "epoch": position.epoch,
                })),
            })
        })
        .collect();
    Ok(Json(json!({ "topics": topics })))
}

/// Keys listed per object.
const MAX_KEYS: usize = 200;

/// `GET /console/api/objects/{class}/{name}` (admin): an object's sockets, stored keys, alarm
/// and outbox, without waking it.
async fn object(
    State(gw): State<Gateway>,
    Path((class, name)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<Json<serde_json::Value>, ApiError> {
    gw.require_admin(&headers)?;
    let address = switchboard_runtime::Address::new(&class, &name);
    let detail = gw
        .runtime
        .inspect(&address, MAX_KEYS)
        .await
        .ok_or_else(|| ApiError::not_found(format!("no object class {class:?} is served here")))?
        .map_err(ApiError::unavailable)?;
    let mut body = serde_json::to_value(detail).expect("plain data");
    body["class"] = class.into();
    body["name"] = name.into();
    body["owner"] = gw.runtime.owner_of(&address).into();
    Ok(Json(body))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookie_is_found_among_others() {
        let mut h = HeaderMap::new();
        h.append(header::COOKIE, HeaderValue::from_static("a=1; switchboard_console=abc"));
        assert_eq!(session_cookie(&h), Some("abc"));
        let mut h = HeaderMap::new();
        h.append(header::COOKIE, HeaderValue::from_static("xswitchboard_console=abc"));
        assert_eq!(session_cookie(&h), None);
    }

    /// Sessions are opened, recognised and closed; an unknown token is not signed in.
    #[tokio::test(start_paused = true)]
    async fn sessions_expire_and_close() {
        let sessions = Sessions::default();
        let token = sessions.open();
        let with = |t: &str| {
            let mut h = HeaderMap::new();
            h.insert(header::COOKIE, HeaderValue::from_str(&format!("{COOKIE}={t}")).unwrap());
            h
        };
        assert!(sessions.signed_in(&with(&token)));
        assert!(!sessions.signed_in(&with("nope")));
        tokio::time::advance(SESSION_TTL).await;
        assert!(!sessions.signed_in(&with(&token)), "expired");
        let token = sessions.open();
        sessions.close(&token);
        assert!(!sessions.signed_in(&with(&token)));
    }
}
