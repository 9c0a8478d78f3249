//! The WebSocket opening handshake refuses what RFC 6455 §4.2.1 does not allow, with answers a
//! client can act on.

mod support;

use support::raw_http::exchange;
use support::*;

fn handshake(version: &str, key: &str) -> Vec<u8> {
    format!(
        "GET /ws/echo HTTP/1.1\r\nHost: localhost\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
         Sec-WebSocket-Version: {version}\r\nSec-WebSocket-Key: {key}\r\n\r\n"
    )
    .into_bytes()
}

/// A `Sec-WebSocket-Key` that is not base64 of 16 bytes is 400 with a JSON error.
#[tokio::test]
async fn malformed_keys_are_refused() {
    let server = TestServer::start().await;
    for key in [
        "abc",
        "dGhlIHNhbXBsZSBub25jZQ",
        "!!!!!!!!!!!!!!!!!!!!!!==",
        "dGhlIHNhbXBsZSBub25jZQ==AAAA",
    ] {
        exchange(server.addr, &handshake("13", key))
            .await
            .assert_json_error(400);
    }
    let good = exchange(server.addr, &handshake("13", "dGhlIHNhbXBsZSBub25jZQ==")).await;
    assert_eq!(good.status, 101, "{good:?}");
    assert_eq!(
        good.header("sec-websocket-accept"),
        Some("s3pPLMBiTxaQ9kYGzzhZRbK+xOo=")
    );
    server.stop().await;
}

/// Another version than 13 is answered 426 with `Sec-WebSocket-Version: 13`, so a client
/// knows which to retry with.
#[tokio::test]
async fn wrong_version_names_the_spoken_one() {
    let server = TestServer::start().await;
    for version in ["8", "12", "14"] {
        let answer = exchange(server.addr, &handshake(version, "dGhlIHNhbXBsZSBub25jZQ==")).await;
        answer.assert_json_error(426);
        assert_eq!(answer.header("sec-websocket-version"), Some("13"), "{answer:?}");
    }
    server.stop().await;
}
