//! Raw HTTP/1.1 over TCP, for requests no client library sends (stalled bodies, malformed
//! heads, odd handshakes) and for answers a server writes just before it closes.

use std::net::SocketAddr;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::WAIT;

/// An HTTP answer as read off the wire.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    /// The status line and headers, as sent.
    pub head: String,
    pub body: Vec<u8>,
}

impl Answer {
    /// The value of header `name` (case-insensitive), if present.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.head.lines().skip(1).find_map(|line| {
            let (n, v) = line.split_once(':')?;
            n.trim().eq_ignore_ascii_case(name).then(|| v.trim())
        })
    }

    /// The body parsed as JSON; fails the test if it is not.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| panic!("body is not JSON ({e}): {self:?}"))
    }

    /// Fails the test unless this is `status` with a `{"error": "<sentence>"}` body.
    pub fn assert_json_error(&self, status: u16) {
        assert_eq!(self.status, status, "{self:?}");
        assert!(self.json()["error"].as_str().is_some_and(|e| !e.is_empty()), "{self:?}");
    }
}

/// Connects to `addr`, sends `request`, and reads one answer.
pub async fn exchange(addr: SocketAddr, request: &[u8]) -> Answer {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(request).await.unwrap();
    read_answer(&mut stream).await
}

/// Reads one answer from `stream`: its head, then as many body bytes as `Content-Length` says.
/// Fails the test if none comes within [`WAIT`].
pub async fn read_answer(stream: &mut TcpStream) -> Answer {
    tokio::time::timeout(WAIT, async {
        let mut buf = Vec::new();
        let mut chunk = [0u8; 8192];
        let head_end = loop {
            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i;
            }
            let n = stream.read(&mut chunk).await.expect("read an answer");
            assert!(
                n > 0,
                "connection closed before an answer: {:?}",
                String::from_utf8_lossy(&buf)
            );
            buf.extend_from_slice(&chunk[..n]);
        };
        let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
        let mut body = buf[head_end + 4..].to_vec();
        let status = head
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("not an HTTP answer: {head}"));
        let mut answer = Answer {
            status,
            head,
            body: Vec::new(),
        };
        let length: usize = answer.header("content-length").map_or(0, |v| v.parse().unwrap());
        while body.len() < length {
            let n = stream.read(&mut chunk).await.expect("read the body");
            assert!(n > 0, "connection closed inside the body");
            body.extend_from_slice(&chunk[..n]);
        }
        answer.body = body;
        answer
    })
    .await
    .expect("an answer in time")
}

/// Waits until the server closes `stream` (reads to EOF or a reset, discarding what comes);
/// fails the test if it stays open past [`WAIT`].
pub async fn wait_closed(stream: &mut TcpStream) {
    let mut chunk = [0u8; 8192];
    tokio::time::timeout(WAIT, async {
        loop {
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(_) => continue,
            }
        }
    })
    .await
    .expect("the server closes the connection in time");
}

/// A WebSocket upgrade request for `path` with extra header lines (each ending in `\r\n`).
pub fn upgrade_request(path: &str, extra: &str) -> Vec<u8> {
    format!(
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
         Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n{extra}\r\n"
    )
    .into_bytes()
}
