//! The ESP32 on the wire, byte for byte over a raw TCP socket: the arduinoWebSockets handshake
//! as the library sends it (`Sec-WebSocket-Protocol: arduino` echoed, `Origin: file://`),
//! frames masked with an all-zero key, RFC 6455 pings, and heartbeats answered by the gateway.

mod support;

use serde_json::{Value, json};
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The handshake arduinoWebSockets' `WebSocketsClient::sendHeader` writes, header for header.
fn arduino_handshake(port: u16, device: &str) -> String {
    format!(
        "GET /ws/device?deviceId={device} HTTP/1.1\r\n\
         Host: 127.0.0.1:{port}\r\n\
         Connection: Upgrade\r\n\
         Upgrade: websocket\r\n\
         Sec-WebSocket-Version: 13\r\n\
         Sec-WebSocket-Key: SfXbpj+U4TexBeIDuBiYog==\r\n\
         Sec-WebSocket-Protocol: arduino\r\n\
         Origin: file://\r\n\
         User-Agent: arduino-WebSocket-Client\r\n\
         \r\n"
    )
}

/// A client frame as the library masks it: FIN, `opcode`, the mask bit and a zero key (so the
/// payload goes out as it is).
fn zero_masked(opcode: u8, payload: &[u8]) -> Vec<u8> {
    let mut frame = vec![0x80 | opcode];
    match payload.len() {
        n if n < 126 => frame.push(0x80 | n as u8),
        n => {
            frame.push(0x80 | 126);
            frame.extend_from_slice(&(n as u16).to_be_bytes());
        }
    }
    frame.extend_from_slice(&[0, 0, 0, 0]);
    frame.extend_from_slice(payload);
    frame
}

/// Reads one server frame: (opcode, payload). Server frames are never masked.
async fn read_frame(stream: &mut TcpStream) -> (u8, Vec<u8>) {
    let read = async {
        let mut head = [0u8; 2];
        stream.read_exact(&mut head).await.unwrap();
        assert_eq!(head[1] & 0x80, 0, "a server frame is not masked");
        let len = match head[1] & 0x7F {
            126 => {
                let mut n = [0u8; 2];
                stream.read_exact(&mut n).await.unwrap();
                u16::from_be_bytes(n) as usize
            }
            127 => {
                let mut n = [0u8; 8];
                stream.read_exact(&mut n).await.unwrap();
                u64::from_be_bytes(n) as usize
            }
            n => n as usize,
        };
        let mut payload = vec![0u8; len];
        stream.read_exact(&mut payload).await.unwrap();
        (head[0] & 0x0F, payload)
    };
    tokio::time::timeout(WAIT, read).await.expect("a frame in time")
}

async fn read_json(stream: &mut TcpStream) -> Value {
    let (opcode, payload) = read_frame(stream).await;
    assert_eq!(opcode, 1, "a text frame");
    serde_json::from_slice(&payload).unwrap()
}

/// The library's handshake is accepted as sent, with `arduino` echoed; zero-masked frames and
/// pings work; a heartbeat is answered with its timestamp as sent.
#[tokio::test]
async fn an_esp32_handshake_and_frames_byte_for_byte() {
    let server = TestServer::start().await;
    let mut stream = TcpStream::connect(server.addr).await.unwrap();
    stream
        .write_all(arduino_handshake(server.addr.port(), "ESP32-GATE").as_bytes())
        .await
        .unwrap();
    let answer = raw_http::read_answer(&mut stream).await;
    assert_eq!(answer.status, 101, "{answer:?}");
    assert_eq!(answer.header("sec-websocket-protocol"), Some("arduino"));
    // RFC 6455's accept for this key.
    assert_eq!(
        answer.header("sec-websocket-accept"),
        Some(tungstenite_accept("SfXbpj+U4TexBeIDuBiYog==").as_str())
    );

    let heartbeat = br#"{"action":"heartbeat","timestamp":1699000000}"#;
    stream.write_all(&zero_masked(1, heartbeat)).await.unwrap();
    let ack = read_json(&mut stream).await;
    assert_eq!(ack["action"], "heartbeat_ack");
    assert_eq!(ack["timestamp"], 1_699_000_000);
    let server_time = ack["serverTime"].as_i64().expect("serverTime in ms");

    stream.write_all(&zero_masked(9, b"esp")).await.unwrap();
    assert_eq!(
        read_frame(&mut stream).await,
        (10, b"esp".to_vec()),
        "a pong with the ping's payload"
    );

    let scan = br#"{"action":"scan","tagId":"RFID123","location":"Main Gate"}"#;
    stream.write_all(&zero_masked(1, scan)).await.unwrap();
    let reply = read_json(&mut stream).await;
    assert_eq!(reply["success"], true, "{reply}");
    assert_eq!(reply["scan"]["deviceId"], "ESP32-GATE");
    assert_eq!(reply["scan"]["tagId"], "RFID123");
    assert_eq!(reply["scan"]["location"], "Main Gate");
    assert_eq!(reply["scan"]["status"], "unknown");
    assert_eq!(reply["user"], Value::Null);

    let (status, devices) = get_authorized(&server.url("/api/devices")).await;
    assert_eq!(status, 200);
    let device = &devices.as_array().unwrap()[0];
    assert_eq!(device["deviceId"], "ESP32-GATE");
    assert_eq!(device["status"], "online");
    assert!(device["lastSeen"].as_i64().unwrap() >= server_time);
    assert_eq!(device["outbox"], json!({"depth": 0, "oldestAgeMs": 0}));

    // The library closes with 1000; the device goes offline.
    stream.write_all(&zero_masked(8, &1000u16.to_be_bytes())).await.unwrap();
    let (opcode, _) = read_frame(&mut stream).await;
    assert_eq!(opcode, 8, "the close is answered");
    server.stop().await;
}

/// A longer zero-masked frame (a 16-bit length) is read whole.
#[tokio::test]
async fn a_zero_masked_frame_with_a_16_bit_length() {
    let server = TestServer::start().await;
    let mut stream = TcpStream::connect(server.addr).await.unwrap();
    stream
        .write_all(arduino_handshake(server.addr.port(), "ESP32-LONG").as_bytes())
        .await
        .unwrap();
    assert_eq!(raw_http::read_answer(&mut stream).await.status, 101);
    let location = "L".repeat(200);
    let scan = json!({"action": "scan", "tagId": "RFID9", "location": location}).to_string();
    assert!(scan.len() >= 126);
    stream.write_all(&zero_masked(1, scan.as_bytes())).await.unwrap();
    let reply = read_json(&mut stream).await;
    assert_eq!(reply["scan"]["location"], location.as_str(), "{reply}");
    server.stop().await;
}

fn tungstenite_accept(key: &str) -> String {
    tokio_tungstenite::tungstenite::handshake::derive_accept_key(key.as_bytes())
}

async fn get_authorized(url: &str) -> (u16, Value) {
    let res = reqwest::Client::new()
        .get(url)
        .bearer_auth(SECRET)
        .send()
        .await
        .unwrap();
    (res.status().as_u16(), res.json().await.unwrap_or(Value::Null))
}
