//! The rooms app (PROTOCOLS.md §2) over real sockets: JWT sign-in before the upgrade, every
//! action and its reply, room authorization, the publish API with dedup across rooms,
//! recovery (no gap, a gap beyond history, a restart), the API Gateway events against a real
//! local backend, the management API, and the socket limits.

mod support;

use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use axum::Json;
use axum::extract::State;
use futures_util::SinkExt;
use jsonwebtoken::{Algorithm, EncodingKey, Header, encode};
use serde_json::{Value, json};
use support::*;
use switchboard_server::config::{Config, Secret};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;

const JWT: &str = "rooms-test-jwt-secret-of-enough-length";

fn now_secs() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs()
}

fn token(sub: &str, branch: &str, role: &str) -> String {
    let claims = json!({"sub": sub, "branchId": branch, "role": role, "exp": now_secs() + 600});
    encode(&Header::default(), &claims, &EncodingKey::from_secret(JWT.as_bytes())).unwrap()
}

fn with_jwt(c: &mut Config) {
    c.jwt_secret = Some(Secret::new(JWT));
}

async fn rooms_server(configure: impl FnOnce(&mut Config)) -> TestServer {
    TestServer::start_with(
        |c| {
            with_jwt(c);
            configure(c);
        },
        vec![],
    )
    .await
}

fn set(c: &mut Config, key: &str, value: Value) {
    c.app_values.insert(key.into(), value);
}

async fn join(server: &TestServer, sub: &str, branch: &str, role: &str) -> Ws {
    ws(&server.ws_url(&format!("/ws?token={}", token(sub, branch, role)))).await
}

async fn ask(socket: &mut Ws, frame: Value) -> Value {
    send(socket, &frame.to_string()).await;
    next_json(socket).await
}

/// The status and `{"error"}` body of a refused upgrade.
async fn refused(url: &str) -> (u16, Value) {
    match tokio_tungstenite::connect_async(url).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            let body = response.body().clone().unwrap_or_default();
            (
                response.status().as_u16(),
                serde_json::from_slice(&body).unwrap_or(Value::Null),
            )
        }
        other => panic!("expected an HTTP refusal, got {:?}", other.map(|_| "a socket")),
    }
}

/// Every action of the §2 table gets its reply; own rooms are joined on connect; rooms of
/// another user, branch or role, and rooms no rule allows, are refused with an error reply and
/// the socket stays open.
#[tokio::test]
async fn actions_and_authorization() {
    let server = rooms_server(|_| {}).await;
    let mut ada = join(&server, "ada", "b1", "manager").await;
    let pong = ask(&mut ada, json!({"action": "ping"})).await;
    assert_eq!(pong["action"], "pong");
    assert!(is_iso_ms(&pong["timestamp"]), "{pong}");
    let rooms = ask(&mut ada, json!({"action": "getRooms"})).await;
    assert_eq!(
        rooms,
        json!({"action": "getRooms", "rooms": ["branch:b1", "role:manager:b1", "user:ada"], "count": 3})
    );
    let ok = ask(&mut ada, json!({"action": "subscribe", "data": {"room": "order:7"}})).await;
    assert_eq!(ok, json!({"action": "subscribe", "success": true, "room": "order:7"}));
    let order = ask(
        &mut ada,
        json!({"action": "subscribeToOrder", "data": {"orderId": "67890"}}),
    )
    .await;
    assert_eq!(
        order,
        json!({"action": "subscribeToOrder", "success": true, "orderId": "67890"})
    );
    let numeric = ask(&mut ada, json!({"action": "subscribeToOrder", "data": {"orderId": 5}})).await;
    assert_eq!(numeric["orderId"], "5");
    let status = ask(&mut ada, json!({"action": "getStatus"})).await;
    assert_eq!(status["action"], "getStatus");
    assert_eq!(status["userId"], "ada");
    assert_eq!(status["branchId"], "b1");
    assert_eq!(status["role"], "manager");
    assert!(
        is_iso_ms(&status["connectedAt"]) && is_iso_ms(&status["expiresAt"]),
        "{status}"
    );
    assert_eq!(status["connectionId"].as_str().unwrap().len(), 27);
    assert_eq!(status["rooms"].as_array().unwrap().len(), 6);
    let left = ask(&mut ada, json!({"action": "unsubscribe", "data": {"room": "order:7"}})).await;
    assert_eq!(
        left,
        json!({"action": "unsubscribe", "success": true, "room": "order:7"})
    );
    let not_in = ask(&mut ada, json!({"action": "unsubscribe", "data": {"room": "order:7"}})).await;
    assert_eq!(not_in["success"], false);

    for room in [
        "branch:b2",
        "user:bob",
        "role:admin:b1",
        "role:manager:b2",
        "machine:m1",
    ] {
        let denied = ask(&mut ada, json!({"action": "subscribe", "data": {"room": room}})).await;
        assert_eq!(denied["action"], "subscribe", "{denied}");
        assert_eq!(denied["success"], false, "{room}: {denied}");
        assert_eq!(denied["room"], room);
        assert!(denied["error"].as_str().unwrap().len() > 10, "{denied}");
    }
    for bad in [
        json!({"action": "subscribe"}),
        json!({"action": "subscribe", "data": {"room": ""}}),
        json!({"action": "subscribe", "data": {"room": "order:1", "offset": 3}}),
        json!({"action": "subscribeToOrder", "data": {}}),
    ] {
        let reply = ask(&mut ada, bad.clone()).await;
        assert_eq!(reply["success"], false, "{bad} → {reply}");
    }
    let unknown = ask(&mut ada, json!({"action": "dance"})).await;
    assert_eq!(unknown["action"], "error");
    assert!(unknown["error"].as_str().unwrap().contains("dance"));
    send(&mut ada, "{not json").await;
    assert_eq!(next_json(&mut ada).await["action"], "error");
    ada.send(Message::Binary(vec![1, 2, 3].into())).await.unwrap();
    assert_eq!(next_json(&mut ada).await["action"], "error");
    assert_eq!(
        ask(&mut ada, json!({"action": "ping", "data": {}})).await["action"],
        "pong"
    );
    server.stop().await;
}

/// A token is checked before the upgrade: missing, expired, signed with another secret,
/// `alg: none`, malformed, without `sub`, or HS256 against a server that holds an EC public
/// key (algorithm confusion) — each is HTTP 401 with a reason, and no socket.
#[tokio::test]
async fn bad_tokens_are_refused_before_the_upgrade() {
    let server = rooms_server(|_| {}).await;
    let sign = |claims: Value, secret: &str| {
        encode(
            &Header::default(),
            &claims,
            &EncodingKey::from_secret(secret.as_bytes()),
        )
        .unwrap()
    };
    let expired = sign(json!({"sub": "ada", "exp": now_secs() - 3600}), JWT);
    let wrong = sign(
        json!({"sub": "ada", "exp": now_secs() + 60}),
        "another-secret-of-enough-length",
    );
    let no_sub = sign(json!({"branchId": "b1", "exp": now_secs() + 60}), JWT);
    let none = {
        let good = token("ada", "b1", "manager");
        let payload = good.split('.').nth(1).unwrap().to_string();
        format!("eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.{payload}.")
    };
    for (token, why) in [
        (None, "missing"),
        (Some(expired), "expired"),
        (Some(wrong), "signature"),
        (Some(none), "none"),
        (Some("not.a.jwt".to_string()), "not valid"),
        (Some(no_sub), "sub"),
    ] {
        let url = match &token {
            Some(t) => server.ws_url(&format!("/ws?token={t}")),
            None => server.ws_url("/ws"),
        };
        let (status, body) = refused(&url).await;
        assert_eq!(status, 401, "{why}");
        let error = body["error"].as_str().unwrap_or_default().to_lowercase();
        assert!(error.contains(why), "{why}: {body}");
    }
    // The Bearer header works as well as ?token=.
    let mut req =
        tokio_tungstenite::tungstenite::client::IntoClientRequest::into_client_request(server.ws_url("/ws")).unwrap();
    req.headers_mut().insert(
        "authorization",
        format!("bearer {}", token("ada", "b1", "x")).parse().unwrap(),
    );
    let (mut socket, _) = tokio_tungstenite::connect_async(req).await.unwrap();
    assert_eq!(ask(&mut socket, json!({"action": "ping"})).await["action"], "pong");
    server.stop().await;

    // ES256: the server holds the public key; a token signed with it as an HS256 secret is refused.
    let key = rcgen::KeyPair::generate().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let public = dir.path().join("public.pem");
    std::fs::write(&public, key.public_key_pem()).unwrap();
    let server = TestServer::start_with(|c| c.jwt_public_key = Some(public.clone()), vec![]).await;
    let claims = json!({"sub": "ada", "branchId": "b1", "role": "r", "exp": now_secs() + 60});
    let es = encode(
        &Header::new(Algorithm::ES256),
        &claims,
        &EncodingKey::from_ec_pem(key.serialize_pem().as_bytes()).unwrap(),
    )
    .unwrap();
    let mut socket = ws(&server.ws_url(&format!("/ws?token={es}"))).await;
    assert_eq!(ask(&mut socket, json!({"action": "getRooms"})).await["count"], 3);
    let confused = sign(claims, &key.public_key_pem());
    let (status, body) = refused(&server.ws_url(&format!("/ws?token={confused}"))).await;
    assert_eq!(status, 401, "{body}");
    server.stop().await;
}

async fn bearer_post(server: &TestServer, path: &str, body: Value) -> (u16, Value) {
    post_json(&server.url(path), &body, Some(SECRET)).await
}

/// `user:connected` reaches the others in the branch room (not the connection itself); a
/// broadcast to several rooms reaches a socket in more than one of them once; users, branches
/// and roles are addressed by their rooms; events in history rooms carry room, offset, epoch;
/// the API needs the key and well-formed bodies.
#[tokio::test]
async fn publish_api() {
    let server = rooms_server(|_| {}).await;
    let mut ada = join(&server, "ada", "b1", "manager").await;
    assert_eq!(
        ask(&mut ada, json!({"action": "subscribe", "data": {"room": "order:7"}})).await["success"],
        true
    );
    let mut bob = join(&server, "bob", "b1", "operator").await;
    let hello = next_json(&mut ada).await;
    assert_eq!(hello["type"], "user:connected");
    assert_eq!(hello["data"], json!({"userId": "bob", "role": "operator"}));
    assert_eq!(hello["room"], "branch:b1");
    assert!(is_iso_ms(&hello["timestamp"]));
    let mut carl = join(&server, "carl", "b2", "manager").await;
    assert_eq!(ask(&mut carl, json!({"action": "ping"})).await["action"], "pong");

    let (status, body) = bearer_post(
        &server,
        "/api/broadcast",
        json!({"type": "order:status_changed", "data": {"orderId": "7", "newStatus": "done"}, "rooms": ["branch:b1", "order:7"]}),
    )
    .await;
    assert_eq!((status, body), (200, json!({"delivered": 2})));
    for socket in [&mut ada, &mut bob] {
        let event = next_json(socket).await;
        assert_eq!(event["type"], "order:status_changed");
        assert_eq!(event["data"]["newStatus"], "done");
        assert!(event["offset"].is_u64() && event["epoch"].is_string(), "{event}");
    }
    // Ada was in both rooms and got it once: the next frame she sees is the answer to a ping.
    assert_eq!(ask(&mut ada, json!({"action": "ping"})).await["action"], "pong");

    assert_eq!(
        bearer_post(&server, "/api/users/bob/send", json!({"type": "note", "data": 1})).await,
        (200, json!({"delivered": 1}))
    );
    assert_eq!(next_json(&mut bob).await["room"], "user:bob");
    assert_eq!(
        bearer_post(&server, "/api/branches/b2/broadcast", json!({"type": "refresh"})).await,
        (200, json!({"delivered": 1}))
    );
    assert_eq!(next_json(&mut carl).await["type"], "refresh");
    let (status, _) = bearer_post(&server, "/api/roles/manager/broadcast", json!({"type": "report"})).await;
    assert_eq!(status, 400, "a role needs its branch");
    assert_eq!(
        bearer_post(
            &server,
            "/api/roles/manager/broadcast?branchId=b1",
            json!({"type": "report", "data": {}})
        )
        .await,
        (200, json!({"delivered": 1}))
    );
    let report = next_json(&mut ada).await;
    assert_eq!(report["type"], "report");
    assert!(
        report.get("offset").is_none(),
        "role rooms keep no history by default: {report}"
    );
    for (body, status) in [
        (json!({"type": "t", "rooms": []}), 400),
        (json!({"type": "", "rooms": ["a"]}), 400),
        (json!({"rooms": ["a"]}), 400),
        (json!({"type": "t", "rooms": ["bad\u{1}room"]}), 400),
    ] {
        assert_eq!(
            bearer_post(&server, "/api/broadcast", body.clone()).await.0,
            status,
            "{body}"
        );
    }
    let (status, _) = post_json(
        &server.url("/api/broadcast"),
        &json!({"type": "t", "rooms": ["a"]}),
        None,
    )
    .await;
    assert_eq!(status, 401);
    server.stop().await;
}

/// A client that reconnects and resubscribes with its offsets gets exactly what it missed, in
/// order, before anything new — in a room it joins itself and in one it is put in on connect;
/// a position older than the history, or another epoch, is `recovered: false`; history and
/// epoch survive a restart.
#[tokio::test]
async fn recovery() {
    let dir = tempfile::tempdir().unwrap();
    let configure = |c: &mut Config| {
        with_jwt(c);
        set(c, "room_history_limit", json!(5));
    };
    let server = TestServer::serve_in(dir.path(), configure, Default::default()).await;
    let publish = |server: &TestServer, room: &str, n: u64| {
        let (url, room) = (server.url("/api/broadcast"), room.to_string());
        async move {
            let body = json!({"type": "order:status_changed", "data": {"n": n}, "rooms": [room]});
            assert_eq!(post_json(&url, &body, Some(SECRET)).await.0, 200);
        }
    };
    let mut ada = join(&server, "ada", "b1", "manager").await;
    ask(&mut ada, json!({"action": "subscribe", "data": {"room": "order:9"}})).await;
    publish(&server, "order:9", 1).await;
    let seen = next_json(&mut ada).await;
    let (offset, epoch) = (seen["offset"].as_u64().unwrap(), seen["epoch"].clone());
    publish(&server, "branch:b1", 0).await;
    let branch_seen = next_json(&mut ada).await;
    assert_eq!(branch_seen["room"], "branch:b1");
    drop(ada);
    for n in 2..=3 {
        publish(&server, "order:9", n).await;
    }

    let mut back = join(&server, "ada", "b1", "manager").await;
    let reply = ask(
        &mut back,
        json!({"action": "subscribe", "data": {"room": "order:9", "offset": offset, "epoch": epoch}}),
    )
    .await;
    assert_eq!(
        reply,
        json!({"action": "subscribe", "success": true, "room": "order:9", "recovered": true, "missed": 2})
    );
    for n in 2..=3 {
        let event = next_json(&mut back).await;
        assert_eq!(event["data"]["n"], n);
        assert_eq!(event["offset"], offset + n - 1);
    }
    // The branch room it was put in on connect: what came after its offset (its own leave and
    // return included), in order.
    let branch = json!({"action": "subscribe", "data": {"room": "branch:b1", "offset": branch_seen["offset"], "epoch": branch_seen["epoch"]}});
    let reply = ask(&mut back, branch).await;
    assert_eq!(reply["recovered"], true, "{reply}");
    assert_eq!(reply["missed"], 2);
    assert_eq!(next_json(&mut back).await["type"], "user:disconnected");
    assert_eq!(next_json(&mut back).await["type"], "user:connected");
    publish(&server, "order:9", 4).await;
    assert_eq!(next_json(&mut back).await["data"]["n"], 4, "then what is new");

    // Beyond a 5-event history, and another epoch: the client must reload.
    for n in 5..=10 {
        publish(&server, "order:9", n).await;
        next_json(&mut back).await;
    }
    let stale = ask(
        &mut back,
        json!({"action": "subscribe", "data": {"room": "order:9", "offset": offset, "epoch": epoch}}),
    )
    .await;
    assert_eq!(stale["recovered"], false, "{stale}");
    let other = ask(
        &mut back,
        json!({"action": "subscribe", "data": {"room": "order:9", "offset": 9, "epoch": "x"}}),
    )
    .await;
    assert_eq!(other["recovered"], false);
    drop(back);
    server.stop().await;

    // After a restart: the same epoch, and the last events still recoverable.
    let server = TestServer::serve_in(dir.path(), configure, Default::default()).await;
    let mut again = join(&server, "ada", "b1", "manager").await;
    let reply = ask(
        &mut again,
        json!({"action": "subscribe", "data": {"room": "order:9", "offset": offset + 8, "epoch": epoch}}),
    )
    .await;
    assert_eq!(reply["recovered"], true, "{reply}");
    assert_eq!(reply["missed"], 1);
    assert_eq!(next_json(&mut again).await["data"]["n"], 10);
    server.stop().await;
}

/// How the fake backend answers an event.
enum Reply {
    Now(u16, Value),
    Never,
}

type Respond = Arc<dyn Fn(&Value) -> Reply + Send + Sync>;

/// A local application backend: every event it is sent, in order, and the answers `respond`
/// gives.
async fn backend(respond: Respond) -> (String, mpsc::UnboundedReceiver<Value>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let app = axum::Router::new()
        .route(
            "/events",
            axum::routing::post(
                |State((tx, respond)): State<(mpsc::UnboundedSender<Value>, Respond)>, Json(event): Json<Value>| async move {
                    let reply = respond(&event);
                    let _ = tx.send(event);
                    match reply {
                        Reply::Now(status, body) => (axum::http::StatusCode::from_u16(status).unwrap(), Json(body)),
                        Reply::Never => std::future::pending().await,
                    }
                },
            ),
        )
        .with_state((tx, respond));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/events", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, rx)
}

async fn next_event(events: &mut mpsc::UnboundedReceiver<Value>) -> Value {
    tokio::time::timeout(WAIT, events.recv())
        .await
        .expect("an event in time")
        .unwrap()
}

fn route_of(event: &Value) -> &str {
    event["requestContext"]["routeKey"].as_str().unwrap()
}

/// `$connect` decides the upgrade (a refusal's status, 502 when it does not answer in time,
/// 503 when it cannot be reached); `$default` gets what the server does not handle and its
/// `body` comes back, without holding up the socket while it thinks; `$disconnect` is durable
/// and retried until the backend takes it; `ask` rules ask it about rooms.
#[tokio::test]
async fn api_gateway_events() {
    let refusals = Arc::new(Mutex::new(1u32));
    let left = refusals.clone();
    let respond: Respond = Arc::new(move |event| {
        let user = event["requestContext"]["authorizer"]["sub"]
            .as_str()
            .unwrap_or_default();
        let body: Value = event["body"]
            .as_str()
            .and_then(|b| serde_json::from_str(b).ok())
            .unwrap_or(Value::Null);
        match (route_of(event), user) {
            ("$connect", "mallory") => Reply::Now(200, json!({"statusCode": 403})),
            ("$connect", "slow") => Reply::Never,
            ("$default", _) if body["action"] == "hang" => Reply::Never,
            ("$default", _) => Reply::Now(
                200,
                json!({"statusCode": 200, "body": json!({"echo": body}).to_string()}),
            ),
            ("subscribe", _) if body["data"]["room"] == "machine:m1" => Reply::Now(200, json!({})),
            ("subscribe", _) => Reply::Now(403, json!({})),
            ("$disconnect", _) => {
                let mut left = left.lock().unwrap();
                if *left > 0 {
                    *left -= 1;
                    Reply::Now(500, json!({}))
                } else {
                    Reply::Now(200, json!({}))
                }
            }
            _ => Reply::Now(200, json!({})),
        }
    });
    let (url, mut events) = backend(respond).await;
    let server = rooms_server(|c| {
        set(c, "backend_url", json!(url));
        set(c, "rooms_backend_timeout_ms", json!(300));
        set(c, "room_rules", json!(["order:*=allow", "machine:*=ask"]));
    })
    .await;

    let mut ada = ws(&server.ws_url(&format!("/ws?token={}&client=web", token("ada", "b1", "manager")))).await;
    let connect = next_event(&mut events).await;
    let context = &connect["requestContext"];
    assert_eq!(context["routeKey"], "$connect");
    assert_eq!(context["eventType"], "CONNECT");
    assert_eq!(context["authorizer"]["branchId"], "b1");
    assert_eq!(context["identity"]["sourceIp"], "127.0.0.1");
    assert!(context["connectedAt"].is_i64() && context["requestTimeEpoch"].is_i64());
    assert_eq!(connect["queryStringParameters"]["client"], "web");
    assert!(connect["headers"]["host"].is_string());
    let status = ask(&mut ada, json!({"action": "getStatus"})).await;
    assert_eq!(context["connectionId"], status["connectionId"]);

    assert_eq!(
        refused(&server.ws_url(&format!("/ws?token={}", token("mallory", "b1", "x"))))
            .await
            .0,
        403
    );
    next_event(&mut events).await;
    assert_eq!(
        refused(&server.ws_url(&format!("/ws?token={}", token("slow", "b1", "x"))))
            .await
            .0,
        502
    );
    next_event(&mut events).await;

    // $default: a slow answer does not hold up the socket; a prompt one comes back.
    send(&mut ada, &json!({"action": "hang"}).to_string()).await;
    assert_eq!(route_of(&next_event(&mut events).await), "$default");
    assert_eq!(ask(&mut ada, json!({"action": "ping"})).await["action"], "pong");
    let echoed = ask(&mut ada, json!({"action": "sendMessage", "data": {"text": "hi"}})).await;
    assert_eq!(echoed["echo"]["data"]["text"], "hi");
    let default = next_event(&mut events).await;
    assert_eq!(default["requestContext"]["eventType"], "MESSAGE");
    assert!(default["body"].as_str().unwrap().contains("sendMessage"));
    send(&mut ada, "plain text").await;
    assert_eq!(next_json(&mut ada).await["echo"], Value::Null);
    next_event(&mut events).await;

    // Rooms left to the backend.
    let allowed = ask(&mut ada, json!({"action": "subscribe", "data": {"room": "machine:m1"}})).await;
    assert_eq!(allowed["success"], true, "{allowed}");
    assert_eq!(route_of(&next_event(&mut events).await), "subscribe");
    let denied = ask(&mut ada, json!({"action": "subscribe", "data": {"room": "machine:m2"}})).await;
    assert_eq!(denied["success"], false);
    next_event(&mut events).await;

    // $disconnect: refused once (500), then delivered.
    ada.close(Some(tokio_tungstenite::tungstenite::protocol::CloseFrame {
        code: 1000.into(),
        reason: "bye".into(),
    }))
    .await
    .unwrap();
    let first = next_event(&mut events).await;
    assert_eq!(route_of(&first), "$disconnect");
    assert_eq!(first["requestContext"]["eventType"], "DISCONNECT");
    assert_eq!(first["requestContext"]["disconnectStatusCode"], 1000);
    let again = next_event(&mut events).await;
    assert_eq!(
        again["requestContext"]["connectionId"],
        first["requestContext"]["connectionId"]
    );
    assert_eq!(*refusals.lock().unwrap(), 0);
    server.stop().await;

    // A backend that cannot be reached: $connect fails closed with 503.
    let dead = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}/events", listener.local_addr().unwrap())
    };
    let server = rooms_server(|c| set(c, "backend_url", json!(dead))).await;
    let (status, body) = refused(&server.ws_url(&format!("/ws?token={}", token("ada", "b1", "m")))).await;
    assert_eq!(status, 503, "{body}");
    server.stop().await;
}

async fn connection_id(socket: &mut Ws) -> String {
    ask(socket, json!({"action": "getStatus"})).await["connectionId"]
        .as_str()
        .unwrap()
        .to_string()
}

/// `@connections/{id}`: POST sends the raw body (413 over 128 KiB), GET describes the
/// connection, DELETE closes it (204); a gone id is 410. The connection listing filters by
/// user and room, and DELETE /api/connections/{id} disconnects.
#[tokio::test]
async fn management_api() {
    let server = rooms_server(|_| {}).await;
    let client = reqwest::Client::new();
    let mut ada = join(&server, "ada", "b1", "manager").await;
    let mut bob = join(&server, "bob", "b2", "operator").await;
    let id = connection_id(&mut ada).await;
    // Its answer leaves after its rooms are joined.
    let bob_id = connection_id(&mut bob).await;
    let url = server.url(&format!("/@connections/{id}"));

    let sent = client
        .post(&url)
        .bearer_auth(SECRET)
        .body("raw {not json}")
        .send()
        .await
        .unwrap();
    assert_eq!(sent.status(), 200);
    assert_eq!(next_text(&mut ada).await, "raw {not json}");
    let big = client
        .post(&url)
        .bearer_auth(SECRET)
        .body(vec![b'x'; 128 * 1024 + 1])
        .send()
        .await
        .unwrap();
    assert_eq!(big.status(), 413);
    assert!(big.json::<Value>().await.unwrap()["error"].is_string());
    let info: Value = client
        .get(&url)
        .bearer_auth(SECRET)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(
        is_iso_ms(&info["connectedAt"]) && is_iso_ms(&info["lastActiveAt"]),
        "{info}"
    );
    assert_eq!(info["identity"]["sourceIp"], "127.0.0.1");
    assert_eq!(client.get(&url).send().await.unwrap().status(), 401);

    let list: Value = get_json_bearer(&server.url("/api/connections?room=branch:b2"), SECRET)
        .await
        .1;
    assert_eq!(list["count"], 1);
    assert_eq!(list["connections"][0]["userId"], "bob");
    let all: Value = get_json_bearer(&server.url("/api/connections"), SECRET).await.1;
    assert_eq!(all["count"], 2);

    assert_eq!(
        client.delete(&url).bearer_auth(SECRET).send().await.unwrap().status(),
        204
    );
    assert_eq!(next_close(&mut ada).await.map(|f| u16::from(f.code)), Some(1000));
    for response in [
        client.post(&url).bearer_auth(SECRET).body("late").send().await.unwrap(),
        client.get(&url).bearer_auth(SECRET).send().await.unwrap(),
        client
            .get(server.url("/@connections/nosuch"))
            .bearer_auth(SECRET)
            .send()
            .await
            .unwrap(),
    ] {
        assert_eq!(response.status(), 410);
        assert!(
            response.json::<Value>().await.unwrap()["error"]
                .as_str()
                .unwrap()
                .contains("Gone")
        );
    }
    let gone = client
        .delete(server.url(&format!("/api/connections/{bob_id}")))
        .bearer_auth(SECRET)
        .send()
        .await
        .unwrap();
    assert_eq!(gone.status(), 200);
    assert_eq!(next_close(&mut bob).await.map(|f| u16::from(f.code)), Some(1000));
    let unknown = client
        .delete(server.url("/api/connections/nosuch"))
        .bearer_auth(SECRET)
        .send()
        .await
        .unwrap();
    assert_eq!(unknown.status(), 404);
    server.stop().await;
}

/// A frame over 32 KiB closes with 1009; a client over its rate gets the error reply, then
/// 1008; a connection at the end of its lifetime gets the `reconnect` hint, then 4002; one that
/// is quiet past the idle timeout is closed 1001; a connection in too many rooms is refused
/// more.
#[tokio::test]
async fn limits() {
    let server = rooms_server(|c| {
        set(c, "rooms_lifetime_ms", json!(600));
        set(c, "rooms_rate_per_second", json!(5));
        set(c, "rooms_rate_burst", json!(5));
        set(c, "rooms_max_per_socket", json!(4));
    })
    .await;
    let mut big = join(&server, "ada", "b1", "m").await;
    big.send(Message::text("x".repeat(33 * 1024))).await.unwrap();
    assert_eq!(next_close(&mut big).await.map(|f| u16::from(f.code)), Some(1009));

    let mut rooms = join(&server, "ada", "b1", "m").await;
    assert_eq!(
        ask(&mut rooms, json!({"action": "subscribe", "data": {"room": "order:1"}})).await["success"],
        true
    );
    let full = ask(&mut rooms, json!({"action": "subscribe", "data": {"room": "order:2"}})).await;
    assert_eq!(full["success"], false);
    assert!(full["error"].as_str().unwrap().contains("at most 4"), "{full}");

    let mut chatty = join(&server, "bob", "b1", "m").await;
    for _ in 0..30 {
        send(&mut chatty, r#"{"action":"getRooms"}"#).await;
    }
    let mut errors = 0;
    let code = loop {
        match tokio::time::timeout(WAIT, futures_util::StreamExt::next(&mut chatty))
            .await
            .unwrap()
        {
            Some(Ok(Message::Text(t))) => {
                let frame: Value = serde_json::from_str(&t).unwrap();
                if frame["action"] == "error" {
                    assert!(frame["error"].as_str().unwrap().contains("rate limit"));
                    errors += 1;
                }
            }
            Some(Ok(Message::Close(frame))) => break frame.map(|f| u16::from(f.code)),
            Some(Ok(_)) => {}
            other => panic!("{other:?}"),
        }
    };
    assert!(errors > 0);
    assert_eq!(code, Some(1008));

    let hint = loop {
        let frame = next_json(&mut rooms).await;
        if frame["type"] != "user:connected" {
            break frame;
        }
    };
    assert_eq!(hint["type"], "reconnect");
    assert_eq!(hint["data"], json!({"reason": "lifetime", "in": 300}));
    assert_eq!(next_close(&mut rooms).await.map(|f| u16::from(f.code)), Some(4002));
    server.stop().await;

    let server = rooms_server(|c| set(c, "rooms_idle_timeout_ms", json!(300))).await;
    let mut quiet = join(&server, "ada", "b1", "m").await;
    assert_eq!(next_close(&mut quiet).await.map(|f| u16::from(f.code)), Some(1001));
    server.stop().await;
}

/// A server that shuts down closes its sockets with 1012 and the backend still hears of each:
/// the `$disconnect` is stored with the close and delivered, after the restart if not before.
#[tokio::test]
async fn shutdown_sends_disconnects() {
    let (url, mut events) = backend(Arc::new(|_| Reply::Now(200, json!({})))).await;
    let dir = tempfile::tempdir().unwrap();
    let configure = |c: &mut Config| {
        with_jwt(c);
        set(c, "backend_url", json!(url));
    };
    let server = TestServer::serve_in(dir.path(), configure, Default::default()).await;
    let mut ada = join(&server, "ada", "b1", "manager").await;
    assert_eq!(route_of(&next_event(&mut events).await), "$connect");
    assert_eq!(ask(&mut ada, json!({"action": "ping"})).await["action"], "pong");
    server.stop().await;
    assert_eq!(next_close(&mut ada).await.map(|f| u16::from(f.code)), Some(1012));
    let server = TestServer::serve_in(dir.path(), configure, Default::default()).await;
    let gone = next_event(&mut events).await;
    assert_eq!(route_of(&gone), "$disconnect");
    assert_eq!(gone["requestContext"]["disconnectStatusCode"], 1012);
    server.stop().await;
}

/// A bounded random run of frames on a rooms socket — real actions with random data, near
/// misses and garbage: each gets exactly one reply in the protocol's shape, the socket stays
/// open, and it is still in its own rooms at the end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_frames_each_get_one_reply() {
    let server = rooms_server(|c| set(c, "rooms_rate_per_second", json!(0))).await;
    let mut socket = join(&server, "ada", "b1", "manager").await;
    let mut seed: u64 = 0x5eed_0000_7007_0001;
    let mut next = move |n: u64| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed % n
    };
    let values = [
        json!(null),
        json!(7),
        json!("order:1"),
        json!({"room": 3}),
        json!([1]),
        json!(""),
    ];
    let actions = [
        "ping",
        "getRooms",
        "subscribe",
        "unsubscribe",
        "subscribeToOrder",
        "getStatus",
        "dance",
        "",
    ];
    for i in 0..300 {
        let value = values[next(values.len() as u64) as usize].clone();
        let text = match next(6) {
            0 => json!({"action": actions[next(8) as usize]}).to_string(),
            1 => json!({"action": "subscribe", "data": {"room": format!("order:{}", next(150)), "offset": next(3), "epoch": "e"}}).to_string(),
            2 => json!({"action": actions[next(8) as usize], "data": {"room": value, "orderId": next(99)}}).to_string(),
            3 => json!({"action": "subscribe", "data": {"room": format!("{}:{}", ["branch", "user", "role", "x"][next(4) as usize], next(3))}}).to_string(),
            4 => (0..next(60)).map(|_| char::from_u32(next(0xD7FF) as u32 + 1).unwrap_or('?')).collect(),
            _ => format!("{{\"action\": \"subscribe\", \"data\": {i}"),
        };
        send(&mut socket, &text).await;
        let reply = next_json(&mut socket).await;
        assert!(reply["action"].is_string(), "{text} → {reply}");
    }
    let status = ask(&mut socket, json!({"action": "getStatus"})).await;
    let rooms = status["rooms"].as_array().unwrap();
    for own in ["branch:b1", "role:manager:b1", "user:ada"] {
        assert!(rooms.contains(&json!(own)), "{status}");
    }
    server.stop().await;
}
