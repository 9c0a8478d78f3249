//! The App seam as a user's app sees it, through a real server and real sockets: per-route
//! socket options (idle timeout, lifetime with its warning, rate limit, subprotocol), adopted
//! connections (counted, closed with 1012 on shutdown), client tokens verified by the host, and
//! a clear close for a class that is not served.

mod support;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::{Query, Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use futures_util::StreamExt;
use support::*;
use switchboard_apps::{App, Host, Lifetime, RateLimit, SocketOptions, attach};
use switchboard_runtime::{ConnectInfo, Context, Frame, HookResult, Object, RuntimeBuilder};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

/// Echoes frames back.
struct Parrot;

impl Object for Parrot {
    const CLASS: &'static str = "parrot";
    type Request = ();
    type Reply = ();

    async fn start(_ctx: &mut Context) -> HookResult<Self> {
        Ok(Parrot)
    }

    async fn on_message(
        &mut self,
        ctx: &mut Context,
        socket: switchboard_runtime::SocketRef,
        frame: Frame,
    ) -> HookResult {
        ctx.send(&socket, frame);
        Ok(())
    }
}

/// Never registered: connecting to it must fail clearly.
struct Ghost;

impl Object for Ghost {
    const CLASS: &'static str = "ghost";
    type Request = ();
    type Reply = ();

    async fn start(_ctx: &mut Context) -> HookResult<Self> {
        Ok(Ghost)
    }
}

/// Close codes the adopted connections saw.
type Seen = Arc<Mutex<Vec<u16>>>;

struct Probe {
    seen: Seen,
    /// What the start hook's background work does: "started", then "stopped".
    lifecycle: tokio::sync::mpsc::UnboundedSender<&'static str>,
}

impl App for Probe {
    const NAME: &'static str = "probe";
    type Config = ();

    fn register(&self, _config: &(), builder: RuntimeBuilder) -> RuntimeBuilder {
        builder.class::<Parrot>()
    }

    fn start(&self, _config: &(), host: Host, shutdown: tokio_util::sync::CancellationToken) {
        let lifecycle = self.lifecycle.clone();
        let _ = lifecycle.send("started");
        // Background work holds a runtime handle, as a reader loop would, until shutdown.
        tokio::spawn(async move {
            let _runtime = host.runtime().clone();
            shutdown.cancelled().await;
            let _ = lifecycle.send("stopped");
        });
    }

    fn routes(&self, _config: &()) -> Router<Host> {
        let seen = self.seen.clone();
        Router::new()
            .route("/parrot", get(parrot))
            .route("/ghost", get(ghost))
            .route("/token", get(token))
            .route(
                "/adopt",
                post(move |State(host): State<Host>| {
                    let seen = seen.clone();
                    async move {
                        let adopted = host.adopt("probe");
                        tokio::spawn(async move {
                            // The adopter drains what the runtime sends until a close.
                            loop {
                                let batch = adopted.conn.next_batch().await;
                                if let Some(close) = batch.close {
                                    seen.lock().unwrap().push(close.code);
                                    drop(adopted);
                                    return;
                                }
                            }
                        });
                        "adopted"
                    }
                }),
            )
    }
}

async fn parrot(State(host): State<Host>, Query(q): Query<BTreeMap<String, u64>>, req: Request) -> Response {
    let ms = |k: &str| q.get(k).map(|v| Duration::from_millis(*v));
    let options = SocketOptions {
        idle_timeout: ms("idle_ms"),
        lifetime: ms("life_ms").map(|after| Lifetime {
            after,
            warning: ms("warn_ms").map(|before| (before, Frame::text(r#"{"type":"reconnect"}"#))),
        }),
        rate_limit: q.get("burst").map(|burst| RateLimit {
            per_second: 0.001,
            burst: *burst as u32,
            reply: Some(Frame::text(r#"{"error":"slow down"}"#)),
            close_after: 3,
        }),
        subprotocol: Some("arduino".into()),
        ..Default::default()
    };
    let stub = host.runtime().object::<Parrot>("p");
    host.connect(req, stub, ConnectInfo::default(), options)
}

async fn ghost(State(host): State<Host>, req: Request) -> Response {
    let stub = host.runtime().object::<Ghost>("g");
    host.connect(req, stub, ConnectInfo::default(), SocketOptions::default())
}

async fn token(State(host): State<Host>, Query(q): Query<BTreeMap<String, String>>) -> Response {
    match host.verify_token(&q["token"]) {
        Ok(claims) => axum::Json(claims).into_response(),
        Err(e) => (StatusCode::UNAUTHORIZED, e.to_string()).into_response(),
    }
}

async fn start(seen: &Seen) -> TestServer {
    start_probe(seen, &tokio::sync::mpsc::unbounded_channel().0).await
}

async fn start_probe(seen: &Seen, lifecycle: &tokio::sync::mpsc::UnboundedSender<&'static str>) -> TestServer {
    let apps = vec![attach(Probe {
        seen: seen.clone(),
        lifecycle: lifecycle.clone(),
    })];
    TestServer::start_with(
        |c| c.jwt_secret = Some(switchboard_server::config::Secret::new("jwt-secret-of-enough-length")),
        apps,
    )
    .await
}

async fn close_code(socket: &mut Ws) -> u16 {
    next_close(socket).await.map_or(1006, |f| u16::from(f.code))
}

/// A socket with no frame for the idle timeout is closed 1001; one past its lifetime gets the
/// warning, then 4002; over the rate limit it gets the route's error, then 1008.
#[tokio::test]
async fn socket_options_are_enforced() {
    let seen = Seen::default();
    let server = start(&seen).await;
    let mut idle = ws(&server.ws_url("/parrot?idle_ms=200")).await;
    assert_eq!(close_code(&mut idle).await, 1001);

    let mut mortal = ws(&server.ws_url("/parrot?life_ms=400&warn_ms=200")).await;
    assert_eq!(next_text(&mut mortal).await, r#"{"type":"reconnect"}"#);
    assert_eq!(close_code(&mut mortal).await, 4002);

    let mut chatty = ws(&server.ws_url("/parrot?burst=2")).await;
    for text in ["1", "2", "3", "4", "5"] {
        send(&mut chatty, text).await;
    }
    assert_eq!(next_text(&mut chatty).await, "1");
    assert_eq!(next_text(&mut chatty).await, "2");
    assert_eq!(next_text(&mut chatty).await, r#"{"error":"slow down"}"#);
    assert_eq!(next_text(&mut chatty).await, r#"{"error":"slow down"}"#);
    assert_eq!(close_code(&mut chatty).await, 1008);
    server.stop().await;
}

/// The route's subprotocol is echoed when the client offers it (the ESP32 library sends
/// `arduino`), and not otherwise.
#[tokio::test]
async fn subprotocol_is_echoed() {
    let seen = Seen::default();
    let server = start(&seen).await;
    let mut req = server.ws_url("/parrot").into_client_request().unwrap();
    req.headers_mut()
        .insert("sec-websocket-protocol", "arduino".parse().unwrap());
    let (_, response) = tokio_tungstenite::connect_async(req).await.unwrap();
    assert_eq!(response.headers()["sec-websocket-protocol"], "arduino");
    let (_, plain) = tokio_tungstenite::connect_async(server.ws_url("/parrot"))
        .await
        .unwrap();
    assert!(plain.headers().get("sec-websocket-protocol").is_none());
    server.stop().await;
}

/// An adopted connection is counted as open, and closed with 1012 when the server stops.
#[tokio::test]
async fn adopted_connections_are_counted_and_closed_on_shutdown() {
    let seen = Seen::default();
    let server = start(&seen).await;
    let client = reqwest::Client::new();
    let reply = client.post(server.url("/adopt")).send().await.unwrap();
    assert_eq!(reply.text().await.unwrap(), "adopted");
    let metrics = reqwest::get(server.url("/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("switchboard_adopted_connections_open{protocol=\"probe\"} 1"),
        "{metrics}"
    );
    assert_eq!(server.runtime().socket_count(), 1);
    server.stop().await;
    assert_eq!(*seen.lock().unwrap(), [1012]);
}

/// Client tokens are verified with the configured key; a bad one is refused with a reason.
#[tokio::test]
async fn client_tokens_are_verified_by_the_host() {
    use jsonwebtoken::{EncodingKey, Header, encode};
    let seen = Seen::default();
    let server = start(&seen).await;
    let exp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 60;
    let claims = serde_json::json!({"sub": "u1", "exp": exp});
    let sign = |secret: &str| {
        encode(
            &Header::default(),
            &claims,
            &EncodingKey::from_secret(secret.as_bytes()),
        )
        .unwrap()
    };
    let good = reqwest::get(server.url(&format!("/token?token={}", sign("jwt-secret-of-enough-length"))))
        .await
        .unwrap();
    assert_eq!(good.status(), 200);
    assert_eq!(good.json::<serde_json::Value>().await.unwrap()["sub"], "u1");
    let bad = reqwest::get(server.url(&format!("/token?token={}", sign("another-secret-xxxxxxxx"))))
        .await
        .unwrap();
    assert_eq!(bad.status(), 401);
    assert!(bad.text().await.unwrap().contains("signature"));
    server.stop().await;
}

/// A socket routed to a class the server does not serve is closed with 1011 and a reason
/// naming the class, not with 1012.
#[tokio::test]
async fn unknown_class_is_closed_clearly() {
    let seen = Seen::default();
    let server = start(&seen).await;
    let (mut socket, _) = tokio_tungstenite::connect_async(server.ws_url("/ghost")).await.unwrap();
    let close = loop {
        match socket.next().await {
            Some(Ok(tokio_tungstenite::tungstenite::Message::Close(frame))) => break frame.unwrap(),
            Some(Ok(_)) => continue,
            other => panic!("no close frame: {other:?}"),
        }
    };
    assert_eq!(u16::from(close.code), 1011);
    assert!(close.reason.contains("ghost"), "{}", close.reason);
    server.stop().await;
}

/// An app's start hook runs once the server serves, and its background work sees the
/// shutdown token cancelled when the server stops.
#[tokio::test]
async fn start_hook_runs_and_hears_shutdown() {
    let (tx, mut lifecycle) = tokio::sync::mpsc::unbounded_channel();
    let server = start_probe(&Seen::default(), &tx).await;
    assert_eq!(lifecycle.recv().await, Some("started"));
    server.stop().await;
    let stopped = tokio::time::timeout(WAIT, lifecycle.recv()).await;
    assert_eq!(
        stopped.expect("the background work heard the shutdown"),
        Some("stopped")
    );
}
