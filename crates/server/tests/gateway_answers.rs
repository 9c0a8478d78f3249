//! Every answer is in the API's shape: errors that hyper or axum make by themselves carry a
//! `{"error"}` body, API answers are neither sniffed nor cached, and the Bearer scheme is
//! read as HTTP defines it.

mod support;

use support::raw_http::exchange;
use support::*;

/// A path that is not valid percent-encoding (axum's rejection), a URI too long (414), too many
/// headers (431) and a request that is not HTTP (400) all get a JSON error body.
#[tokio::test]
async fn errors_made_below_the_routes_are_json() {
    let server = TestServer::start().await;
    let bad_path = exchange(
        server.addr,
        b"GET /session/%ff%fe/state HTTP/1.1\r\nHost: localhost\r\n\r\n",
    )
    .await;
    bad_path.assert_json_error(400);
    assert_eq!(bad_path.header("content-type"), Some("application/json"));

    let long_uri = format!("GET /{} HTTP/1.1\r\nHost: localhost\r\n\r\n", "a".repeat(70_000));
    exchange(server.addr, long_uri.as_bytes()).await.assert_json_error(414);

    let many_headers: String = (0..120).map(|i| format!("X-Header-{i}: v\r\n")).collect();
    let request = format!("GET /healthz HTTP/1.1\r\nHost: localhost\r\n{many_headers}\r\n");
    exchange(server.addr, request.as_bytes()).await.assert_json_error(431);

    let malformed = exchange(
        server.addr,
        b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nno colon here\r\n\r\n",
    )
    .await;
    malformed.assert_json_error(400);
    server.stop().await;
}

/// API answers, errors included, carry `X-Content-Type-Options: nosniff` and
/// `Cache-Control: no-store`.
#[tokio::test]
async fn api_answers_are_not_sniffed_or_cached() {
    let server = TestServer::start().await;
    for path in ["/healthz", "/no/such/route", "/session/s/state"] {
        let res = reqwest::get(server.url(path)).await.unwrap();
        assert_eq!(res.headers()["x-content-type-options"], "nosniff", "{path}");
        assert_eq!(res.headers()["cache-control"], "no-store", "{path}");
    }
    server.stop().await;
}

/// `bearer` in any case is the Bearer scheme (RFC 9110 §11.1); a wrong token is still 401.
#[tokio::test]
async fn bearer_scheme_is_case_insensitive() {
    let server = TestServer::start().await;
    let client = reqwest::Client::new();
    for (authorization, status) in [
        (format!("bearer {SECRET}"), 200),
        (format!("BEARER {SECRET}"), 200),
        ("bearer wrong-secret-0123456789".to_string(), 401),
        (format!("Basic {SECRET}"), 401),
    ] {
        let res = client
            .post(server.url("/session/s/init"))
            .header("authorization", &authorization)
            .json(&serde_json::json!({"tenantId": "t"}))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), status, "{authorization}");
    }
    server.stop().await;
}
