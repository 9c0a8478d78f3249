//! The gateway's own HTTP routes: health, readiness, metrics, and JSON errors.

mod support;

use support::*;

/// `/healthz` and `/readyz` answer 200 while the server runs.
#[tokio::test]
async fn health_and_readiness() {
    let server = TestServer::start().await;
    let health = reqwest::get(server.url("/healthz")).await.unwrap();
    assert_eq!(health.status(), 200);
    assert_eq!(health.json::<serde_json::Value>().await.unwrap()["status"], "ok");
    let ready = reqwest::get(server.url("/readyz")).await.unwrap();
    assert_eq!(ready.status(), 200);
    server.stop().await;
}

/// `/metrics` is Prometheus text with connections, frames and requests by route and status.
#[tokio::test]
async fn metrics_count_connections_frames_and_requests() {
    let server = TestServer::start().await;
    let mut socket = ws(&server.ws_url("/ws/echo")).await;
    send(&mut socket, "hello").await;
    assert_eq!(next_text(&mut socket).await, "hello");
    reqwest::get(server.url("/healthz")).await.unwrap();
    let increment = serde_json::json!({"name": "metrics"});
    assert_eq!(
        post_json(&server.url("/rpc/counter.increment"), &increment, None)
            .await
            .0,
        200
    );
    let body = reqwest::get(server.url("/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for needle in [
        "switchboard_connections_open",
        "switchboard_frames_in_total",
        "switchboard_frames_out_total",
        "switchboard_http_requests_total{route=\"/healthz\",status=\"200\"}",
        "switchboard_objects_live",
        "switchboard_storage_commit_seconds_bucket",
        "switchboard_storage_commit_batch_size",
    ] {
        assert!(body.contains(needle), "metrics lack {needle}:\n{body}");
    }
    server.stop().await;
}

/// Unknown routes and wrong methods get `{"error": ...}` with 404 and 405.
#[tokio::test]
async fn errors_are_json() {
    let server = TestServer::start().await;
    let missing = reqwest::get(server.url("/no/such/thing")).await.unwrap();
    assert_eq!(missing.status(), 404);
    let body: serde_json::Value = missing.json().await.unwrap();
    assert!(body["error"].as_str().unwrap().contains("/no/such/thing"));
    let wrong = reqwest::Client::new()
        .post(server.url("/healthz"))
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 405);
    assert!(wrong.json::<serde_json::Value>().await.unwrap()["error"].is_string());
    let not_upgrade = reqwest::get(server.url("/ws/echo")).await.unwrap();
    assert_eq!(not_upgrade.status(), 426);
    assert!(not_upgrade.json::<serde_json::Value>().await.unwrap()["error"].is_string());
    server.stop().await;
}

/// With `echo_enabled = false` there is no `/ws/echo`.
#[tokio::test]
async fn echo_can_be_turned_off() {
    let server = TestServer::start_with(|c| c.echo_enabled = false, vec![]).await;
    assert_eq!(reqwest::get(server.url("/ws/echo")).await.unwrap().status(), 404);
    server.stop().await;
}

/// With `metrics_require_auth`, `/metrics` answers 401 without the API secret and the
/// Prometheus text with it.
#[tokio::test]
async fn metrics_can_require_the_api_secret() {
    let server = TestServer::start_with(|c| c.metrics_require_auth = true, vec![]).await;
    let client = reqwest::Client::new();
    let refused = client.get(server.url("/metrics")).send().await.unwrap();
    assert_eq!(refused.status(), 401);
    assert!(refused.text().await.unwrap().contains("\"error\""));
    let allowed = client
        .get(server.url("/metrics"))
        .bearer_auth(SECRET)
        .send()
        .await
        .unwrap();
    assert_eq!(allowed.status(), 200);
    assert!(allowed.text().await.unwrap().contains("switchboard_objects_live"));
    server.stop().await;
}

/// `GET /api/objects/{class}/{name}` (API secret) tells whether an object is awake and how many
/// sockets it holds, without waking or creating it; an unknown class is 404.
#[tokio::test]
async fn object_status_for_operators() {
    let server = TestServer::start().await;
    let client = reqwest::Client::new();
    let status = |path: &str| {
        let req = client.get(server.url(path)).bearer_auth(SECRET);
        async move {
            let res = req.send().await.unwrap();
            (res.status().as_u16(), res.json::<serde_json::Value>().await.unwrap())
        }
    };
    assert_eq!(
        status("/api/objects/counter/idle").await,
        (
            200,
            serde_json::json!({"class": "counter", "name": "idle", "owner": "local", "awake": false, "sockets": 0})
        )
    );
    let _socket = ws(&server.ws_url("/ws/counter/busy")).await;
    server.wait_for_stats("the socket accepted", |s| s.sockets == 1).await;
    let (_, busy) = status("/api/objects/counter/busy").await;
    assert_eq!(
        (busy["awake"].as_bool(), busy["sockets"].as_u64()),
        (Some(true), Some(1)),
        "{busy}"
    );
    assert_eq!(status("/api/objects/nosuch/x").await.0, 404);
    let anonymous = client
        .get(server.url("/api/objects/counter/busy"))
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.status(), 401);
    server.stop().await;
}
