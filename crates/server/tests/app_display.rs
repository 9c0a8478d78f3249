//! Restaurant display sessions (PROTOCOLS.md §5) through the real server: one test per row of
//! the contract, and the bad inputs.

mod support;

use std::time::Duration;

use serde_json::{Value, json};
use support::*;

fn url(server: &TestServer, session: &str, what: &str) -> String {
    server.url(&format!("/session/{session}/{what}"))
}

async fn init(server: &TestServer, session: &str, tenant: &str) -> Value {
    let (status, reply) = post_json(
        &url(server, session, "init"),
        &json!({"tenantId": tenant}),
        Some(SECRET),
    )
    .await;
    assert_eq!(status, 200, "{reply}");
    reply
}

async fn update(server: &TestServer, session: &str, body: Value) -> (u16, Value) {
    post_json(&url(server, session, "update"), &body, Some(SECRET)).await
}

async fn display_server() -> TestServer {
    TestServer::start_with(
        |c| {
            c.app_values.insert("display_list_limit".into(), 3.into());
        },
        vec![],
    )
    .await
}

/// A display's first frame is `initial_state` with the stored state and a ms timestamp.
#[tokio::test]
async fn display_gets_initial_state_first() {
    let server = display_server().await;
    init(&server, "s1", "org_xyz").await;
    update(&server, "s1", json!({"type": "transcription", "text": "hello"})).await;
    let mut display = ws(&server.ws_url("/session/s1/display")).await;
    let first = next_json(&mut display).await;
    assert_eq!(first["type"], "initial_state");
    assert!(first["timestamp"].is_i64());
    let state = &first["state"];
    assert_eq!(
        (state["sessionId"].as_str(), state["tenantId"].as_str()),
        (Some("s1"), Some("org_xyz"))
    );
    assert_eq!(state["transcriptions"][0]["text"], "hello");
    assert!(state["startedAt"].is_i64() && state["currentOrder"].is_null() && state["displayUpdates"] == json!([]));
    server.stop().await;
}

/// `init` creates or re-initialises a session (Bearer), and open displays start over.
#[tokio::test]
async fn init_creates_and_reinitialises() {
    let server = display_server().await;
    let reply = init(&server, "s2", "t1").await;
    assert_eq!(reply["state"]["tenantId"], "t1");
    update(&server, "s2", json!({"type": "menu"})).await;
    let mut display = ws(&server.ws_url("/session/s2/display")).await;
    assert_eq!(
        next_json(&mut display).await["state"]["displayUpdates"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    init(&server, "s2", "t2").await;
    let again = next_json(&mut display).await;
    assert_eq!(again["type"], "initial_state");
    assert_eq!(
        (
            again["state"]["tenantId"].as_str(),
            again["state"]["displayUpdates"].as_array().map(Vec::len)
        ),
        (Some("t2"), Some(0))
    );
    let (_, state) = get_json(&url(&server, "s2", "state")).await;
    assert_eq!(state["tenantId"], "t2");
    server.stop().await;
}

/// `update` applies by type — transcriptions appended, order_summary sets currentOrder, others
/// go to displayUpdates — caps the lists, stores, and broadcasts to every display.
#[tokio::test]
async fn updates_apply_by_type_cap_and_broadcast() {
    let server = display_server().await;
    init(&server, "s3", "t").await;
    let mut d1 = ws(&server.ws_url("/session/s3/display")).await;
    let mut d2 = ws(&server.ws_url("/session/s3/display")).await;
    next_json(&mut d1).await;
    next_json(&mut d2).await;
    for i in 0..5 {
        assert_eq!(
            update(&server, "s3", json!({"type": "transcription", "text": i}))
                .await
                .0,
            200
        );
    }
    update(
        &server,
        "s3",
        json!({"type": "order_summary", "items": ["soup"], "timestamp": 5}),
    )
    .await;
    update(
        &server,
        "s3",
        json!({"type": "dish_card", "displayData": {"dish": "soup"}}),
    )
    .await;
    for display in [&mut d1, &mut d2] {
        let first = next_json(display).await;
        assert_eq!(
            (first["type"].as_str(), first["update"]["text"].as_i64()),
            (Some("update"), Some(0))
        );
        assert!(
            first["timestamp"].is_i64() && first["update"]["timestamp"].is_i64(),
            "{first}"
        );
        for _ in 1..7 {
            next_json(display).await;
        }
    }
    let (_, state) = get_json(&url(&server, "s3", "state")).await;
    let texts: Vec<i64> = state["transcriptions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["text"].as_i64().unwrap())
        .collect();
    assert_eq!(texts, vec![2, 3, 4], "capped at display_list_limit = 3, oldest dropped");
    assert_eq!(
        state["currentOrder"],
        json!({"type": "order_summary", "items": ["soup"], "timestamp": 5})
    );
    assert_eq!(state["displayUpdates"][0]["displayData"]["dish"], "soup");
    server.stop().await;
}

/// `{"type":"ping"}` → `{"type":"pong","timestamp":ms}`, without waking the session.
#[tokio::test]
async fn ping_is_answered_without_waking() {
    let server = TestServer::start_with(|c| c.hibernate_after = Duration::from_millis(200), vec![]).await;
    let mut display = ws(&server.ws_url("/session/p/display")).await;
    assert_eq!(next_json(&mut display).await["type"], "initial_state");
    let wakes = server
        .wait_for_stats("hibernation", |s| s.hibernated_objects == 1 && s.live_objects == 0)
        .await
        .wakes;
    send(&mut display, r#"{"type":"ping"}"#).await;
    let pong = next_json(&mut display).await;
    assert_eq!(pong["type"], "pong");
    assert!(pong["timestamp"].as_i64().unwrap() > 1_600_000_000_000);
    assert_eq!(server.runtime().stats().wakes, wakes);
    server.stop().await;
}

/// A session keeps its state across a restart, lists and current order included.
#[tokio::test]
async fn state_survives_restart() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start_in(dir.path(), |_| {}, vec![]).await;
    init(&server, "r", "t").await;
    update(&server, "r", json!({"type": "transcription", "text": "kept"})).await;
    update(&server, "r", json!({"type": "order_summary", "total": 12})).await;
    server.stop().await;
    let server = TestServer::start_in(dir.path(), |_| {}, vec![]).await;
    let (_, state) = get_json(&url(&server, "r", "state")).await;
    assert_eq!(
        (
            state["transcriptions"][0]["text"].as_str(),
            state["currentOrder"]["total"].as_i64()
        ),
        (Some("kept"), Some(12))
    );
    server.stop().await;
}

/// CORS: an allowed origin gets its preflight answered and the header on replies; another
/// origin gets no CORS header.
#[tokio::test]
async fn cors_allow_list_and_preflight() {
    let server = TestServer::start_with(|c| c.cors_origins = vec!["https://display.example".into()], vec![]).await;
    let client = reqwest::Client::new();
    let preflight = client
        .request(reqwest::Method::OPTIONS, url(&server, "c", "update"))
        .header("origin", "https://display.example")
        .header("access-control-request-method", "POST")
        .header("access-control-request-headers", "authorization,content-type")
        .send()
        .await
        .unwrap();
    assert!(preflight.status().is_success());
    assert_eq!(
        preflight.headers()["access-control-allow-origin"],
        "https://display.example"
    );
    let methods = preflight.headers()["access-control-allow-methods"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(methods.contains("POST"), "{methods}");
    let allowed = client
        .get(url(&server, "c", "state"))
        .header("origin", "https://display.example")
        .send()
        .await
        .unwrap();
    assert_eq!(
        allowed.headers()["access-control-allow-origin"],
        "https://display.example"
    );
    let other = client
        .get(url(&server, "c", "state"))
        .header("origin", "https://evil.example")
        .send()
        .await
        .unwrap();
    assert!(other.headers().get("access-control-allow-origin").is_none());
    server.stop().await;
}

/// Bad input: no or wrong secret (401, nothing stored), malformed JSON, an update without a
/// type, a session never initialised (404 on state and update).
#[tokio::test]
async fn bad_inputs_get_clear_errors() {
    let server = display_server().await;
    let (status, err) = post_json(&url(&server, "b", "init"), &json!({"tenantId": "t"}), None).await;
    assert_eq!(status, 401);
    assert!(err["error"].is_string());
    let (status, _) = post_json(
        &url(&server, "b", "init"),
        &json!({"tenantId": "t"}),
        Some("wrong-secret-wrong"),
    )
    .await;
    assert_eq!(status, 401);
    let (status, err) = get_json(&url(&server, "b", "state")).await;
    assert_eq!(status, 404, "nothing was stored by the refused init");
    assert!(err["error"].as_str().unwrap().contains("not been initialised"));
    let (status, _) = update(&server, "b", json!({"type": "menu"})).await;
    assert_eq!(status, 404);
    init(&server, "b", "t").await;
    let (status, _) = post_json(&url(&server, "b", "update"), &json!({"type": "menu"}), None).await;
    assert_eq!(status, 401);
    let (status, err) = update(&server, "b", json!({"text": "no type"})).await;
    assert_eq!(status, 400);
    assert!(err["error"].as_str().unwrap().contains("type"));
    let (status, _) = update(&server, "b", json!({"type": 3})).await;
    assert_eq!(status, 400);
    let res = reqwest::Client::new()
        .post(url(&server, "b", "update"))
        .bearer_auth(SECRET)
        .body("{oops")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 400);
    let (status, _) = post_json(&url(&server, "b", "init"), &json!({"tenant": "t"}), Some(SECRET)).await;
    assert_eq!(status, 400, "init needs tenantId");
    let (_, state) = get_json(&url(&server, "b", "state")).await;
    assert_eq!(
        (
            state["displayUpdates"].as_array().map(Vec::len),
            state["tenantId"].as_str()
        ),
        (Some(0), Some("t"))
    );
    server.stop().await;
}

/// A display opened before `init` gets the empty state (tenantId and startedAt null) and the
/// real one as soon as the session is initialised.
#[tokio::test]
async fn display_before_init_gets_state_on_init() {
    let server = display_server().await;
    let mut display = ws(&server.ws_url("/session/early/display")).await;
    let first = next_json(&mut display).await;
    assert_eq!(
        (first["state"]["tenantId"].clone(), first["state"]["startedAt"].clone()),
        (Value::Null, Value::Null)
    );
    init(&server, "early", "t").await;
    assert_eq!(next_json(&mut display).await["state"]["tenantId"], "t");
    server.stop().await;
}

/// A session's state is bounded: an update that would outgrow `display_state_max_bytes` is
/// 413 and stores nothing; and a display whose `initial_state` is bigger than its socket's
/// queue bound still gets it (a first frame never trips the slow-consumer bound).
#[tokio::test]
async fn state_growth_is_bounded_and_always_shown() {
    let server = TestServer::start_with(
        |c| {
            c.app_values.insert("display_state_max_bytes".into(), 3000.into());
            c.outbound_queue.max_bytes = 1024;
        },
        vec![],
    )
    .await;
    init(&server, "big", "t1").await;
    let text = "x".repeat(1500);
    let (status, _) = update(&server, "big", json!({"type": "transcription", "text": text})).await;
    assert_eq!(status, 200);
    let (status, reply) = update(&server, "big", json!({"type": "transcription", "text": text})).await;
    assert_eq!(status, 413, "{reply}");
    assert!(
        reply["error"].as_str().unwrap().contains("nothing was stored"),
        "{reply}"
    );
    let (_, state) = get_json(&url(&server, "big", "state")).await;
    assert_eq!(state["transcriptions"].as_array().unwrap().len(), 1);
    let mut display = ws(&server.ws_url("/session/big/display")).await;
    let first = next_json(&mut display).await;
    assert_eq!(first["type"], "initial_state");
    assert_eq!(
        first["state"]["transcriptions"][0]["text"].as_str().map(str::len),
        Some(1500)
    );
    server.stop().await;
}
