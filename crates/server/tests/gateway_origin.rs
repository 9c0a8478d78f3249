//! Foreign pages cannot drive the server: WebSocket upgrades follow the origin policy, and
//! state-changing requests a browser could send cross-site without a preflight are refused.

mod support;

use serde_json::json;
use support::raw_http::{exchange, upgrade_request};
use support::*;

async fn cors_server(allow_file_origin: bool) -> TestServer {
    TestServer::start_with(
        |c| {
            c.cors_origins = vec!["http://a.test".into()];
            c.allow_file_origin = allow_file_origin;
        },
        vec![],
    )
    .await
}

/// With `cors_origins = ["http://a.test"]`, a page of another origin (or `null`) gets 403 with
/// a JSON error on every socket route; the listed origin, the server's own pages, clients
/// without `Origin` and ESP32's `Origin: file://` are upgraded.
#[tokio::test]
async fn upgrades_follow_the_origin_policy() {
    let server = cors_server(true).await;
    let own = format!("http://{}", server.addr);
    for path in ["/ws/echo", "/ws/counter/c", "/session/s/display"] {
        for origin in ["http://evil.test", "null", "http://a.test.evil.test"] {
            let answer = exchange(server.addr, &upgrade_request(path, &format!("Origin: {origin}\r\n"))).await;
            answer.assert_json_error(403);
        }
        for extra in [
            String::new(),
            "Origin: http://a.test\r\n".into(),
            "Origin: file://\r\n".into(),
            format!("Origin: {own}\r\nHost: {}\r\n", server.addr),
        ] {
            // A duplicate Host is refused by hyper, so the own-origin case replaces it.
            let request = if extra.contains("Host:") {
                String::from_utf8(upgrade_request(path, &extra))
                    .unwrap()
                    .replacen("Host: localhost\r\n", "", 1)
                    .into_bytes()
            } else {
                upgrade_request(path, &extra)
            };
            let answer = exchange(server.addr, &request).await;
            assert_eq!(answer.status, 101, "{path} with {extra:?}: {answer:?}");
        }
    }
    server.stop().await;
}

/// `allow_file_origin = false` refuses `Origin: file://` like any unlisted origin.
#[tokio::test]
async fn file_origin_can_be_refused() {
    let server = cors_server(false).await;
    let answer = exchange(server.addr, &upgrade_request("/ws/echo", "Origin: file://\r\n")).await;
    answer.assert_json_error(403);
    server.stop().await;
}

/// A refused page changed nothing: a counter behind a refused upgrade and a `text/plain`,
/// form or untyped POST (415) keeps its value; a JSON POST, or one with a Bearer token, is
/// served.
#[tokio::test]
async fn bodies_a_browser_sends_without_preflight_are_refused() {
    let server = cors_server(true).await;
    let client = reqwest::Client::new();
    let increment = server.url("/rpc/counter.increment");
    for content_type in [Some("text/plain"), Some("application/x-www-form-urlencoded"), None] {
        let mut req = client
            .post(&increment)
            .header("origin", "http://evil.test")
            .body(r#"{"name":"c","amount":1000}"#);
        if let Some(t) = content_type {
            req = req.header("content-type", t);
        }
        let res = req.send().await.unwrap();
        assert_eq!(res.status(), 415, "{content_type:?}");
        let body: serde_json::Value = res.json().await.unwrap();
        assert!(body["error"].as_str().unwrap().contains("application/json"), "{body}");
    }
    let (status, value) = post_json(&server.url("/rpc/counter.getValue"), &json!({"name": "c"}), None).await;
    assert_eq!((status, value["value"].as_i64()), (200, Some(0)), "nothing was added");
    let (status, _) = post_json(&increment, &json!({"name": "c"}), None).await;
    assert_eq!(status, 200);
    // A Bearer token cannot be sent cross-site without a preflight: such a request is let
    // through to the route, which judges the body itself.
    let authorized = client
        .post(server.url("/session/s/init"))
        .bearer_auth(SECRET)
        .header("content-type", "text/plain")
        .body(r#"{"tenantId":"t"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(authorized.status(), 200);
    server.stop().await;
}
