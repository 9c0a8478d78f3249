//! The server pings quiet sockets: a client that answers (as every WebSocket client does while
//! it reads) stays, one that does not is closed with 1001 — so a dead peer, or one stuck inside a
//! frame, does not hold its socket forever.

mod support;

use futures_util::StreamExt;
use support::*;
use tokio::io::AsyncReadExt;
use tokio_tungstenite::tungstenite::Message;

async fn server() -> TestServer {
    TestServer::start_with(
        |c| {
            c.ping_interval = std::time::Duration::from_millis(200);
            c.ping_timeout = std::time::Duration::from_millis(200);
        },
        vec![],
    )
    .await
}

/// A reading client answers each ping and keeps its socket.
#[tokio::test]
async fn a_client_that_answers_stays() {
    let server = server().await;
    let mut socket = ws(&server.ws_url("/ws/echo")).await;
    let mut pings = 0;
    while pings < 3 {
        match tokio::time::timeout(WAIT, socket.next()).await.expect("a ping comes") {
            Some(Ok(Message::Ping(_))) => pings += 1,
            other => panic!("expected pings, got {other:?}"),
        }
    }
    send(&mut socket, "still here").await;
    assert_eq!(next_text(&mut socket).await, "still here");
    server.stop().await;
}

/// A client that never answers gets a ping, then a close with 1001, then the connection ends.
#[tokio::test]
async fn a_silent_client_is_closed() {
    let server = server().await;
    let mut socket = ws(&server.ws_url("/ws/echo")).await;
    // Read the raw bytes, below the WebSocket layer: nothing answers the ping.
    let raw = match socket.get_mut() {
        tokio_tungstenite::MaybeTlsStream::Plain(tcp) => tcp,
        _ => unreachable!("plain ws"),
    };
    let mut bytes = Vec::new();
    tokio::time::timeout(WAIT, raw.read_to_end(&mut bytes))
        .await
        .expect("the server ends the connection")
        .unwrap();
    assert_eq!(&bytes[..2], [0x89, 0x00], "a ping first: {bytes:?}");
    let close = bytes.windows(4).position(|w| w[0] == 0x88 && w[2..] == [0x03, 0xE9]);
    assert!(close.is_some(), "a close with 1001: {bytes:?}");
    server.stop().await;
}
