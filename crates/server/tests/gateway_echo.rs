//! `/ws/echo` and the socket limits every WebSocket shares: frame size and handshake time.

mod support;

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use support::*;
use tokio::io::AsyncReadExt;
use tokio_tungstenite::tungstenite::Message;

/// Text and binary frames come back unchanged, in order; protocol pings are answered (a pong
/// may overtake queued data frames, as RFC 6455 allows).
#[tokio::test]
async fn echoes_text_and_binary() {
    let server = TestServer::start().await;
    let mut socket = ws(&server.ws_url("/ws/echo")).await;
    socket.send(Message::text("one")).await.unwrap();
    socket.send(Message::binary(vec![0u8, 1, 2, 255])).await.unwrap();
    socket.send(Message::Ping(vec![7u8].into())).await.unwrap();
    socket.send(Message::text("two")).await.unwrap();
    let (mut data, mut pongs) = (Vec::new(), Vec::new());
    while data.len() + pongs.len() < 4 {
        match tokio::time::timeout(WAIT, socket.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap()
        {
            Message::Pong(p) => pongs.push(p),
            other => data.push(other),
        }
    }
    assert_eq!(
        data,
        vec![
            Message::text("one"),
            Message::binary(vec![0u8, 1, 2, 255]),
            Message::text("two")
        ]
    );
    assert_eq!(pongs, vec![bytes::Bytes::from_static(&[7u8])]);
    server.stop().await;
}

/// A message over `max_frame_bytes` closes the socket with 1009.
#[tokio::test]
async fn oversize_message_closes_with_1009() {
    let server = TestServer::start_with(|c| c.max_frame_bytes = 1024, vec![]).await;
    let mut socket = ws(&server.ws_url("/ws/echo")).await;
    send(&mut socket, &"x".repeat(1000)).await;
    assert_eq!(next_text(&mut socket).await.len(), 1000);
    send(&mut socket, &"x".repeat(2000)).await;
    let close = next_close(&mut socket).await.expect("a close frame");
    assert_eq!(u16::from(close.code), 1009);
    server.stop().await;
}

/// A client that connects and never sends its request is dropped after the handshake timeout.
#[tokio::test]
async fn silent_connection_is_dropped_after_handshake_timeout() {
    let server = TestServer::start_with(|c| c.handshake_timeout = Duration::from_millis(300), vec![]).await;
    let mut tcp = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    let started = std::time::Instant::now();
    let mut buf = Vec::new();
    // The server either closes silently or answers 408; both end the connection.
    tokio::time::timeout(Duration::from_secs(5), tcp.read_to_end(&mut buf))
        .await
        .expect("the server ends the connection")
        .ok();
    assert!(
        started.elapsed() >= Duration::from_millis(250),
        "dropped too early: {:?}",
        started.elapsed()
    );
    server.stop().await;
}
