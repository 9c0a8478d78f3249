//! Limits of the serve loop, as a stalled, greedy or hasty client meets them: the body
//! deadline, connections per address, and the drain that lets a refused body's sender read
//! its answer.

mod support;

use std::time::{Duration, Instant};

use support::raw_http::{exchange, read_answer, wait_closed};
use support::*;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

const HEALTHZ: &[u8] = b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n";

/// A body that stops arriving (a `Content-Length` never reached, or a chunked body that stalls)
/// is answered 408 with a JSON error once `body_timeout_ms` passes, and the connection closed.
#[tokio::test]
async fn stalled_bodies_are_answered_408() {
    let server = TestServer::start_with(|c| c.body_timeout = Duration::from_millis(200), vec![]).await;
    let heads = [
        "Content-Length: 1000\r\n\r\n{",
        "Transfer-Encoding: chunked\r\n\r\n5\r\n{\"na",
    ];
    for head in heads {
        let mut stream = TcpStream::connect(server.addr).await.unwrap();
        let request = format!(
            "POST /rpc/counter.increment HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n{head}"
        );
        stream.write_all(request.as_bytes()).await.unwrap();
        let answer = read_answer(&mut stream).await;
        answer.assert_json_error(408);
        wait_closed(&mut stream).await;
    }
    let (_, value) = post_json(
        &server.url("/rpc/counter.getValue"),
        &serde_json::json!({"name": "na"}),
        None,
    )
    .await;
    assert_eq!(value["value"], 0, "a timed-out request changed nothing");
    server.stop().await;
}

/// An address holding `max_connections_per_ip` connections (WebSockets count, for as long as
/// they are open) gets 429 with a JSON error on the next; another is let in once one closes.
#[tokio::test]
async fn connections_per_address_are_bounded() {
    let server = TestServer::start_with(|c| c.max_connections_per_ip = 3, vec![]).await;
    let mut first = ws(&server.ws_url("/ws/echo")).await;
    let mut second = ws(&server.ws_url("/ws/echo")).await;
    // Both sockets answer, so the server has taken both before the next connection.
    send(&mut first, "a").await;
    assert_eq!(next_text(&mut first).await, "a");
    send(&mut second, "b").await;
    assert_eq!(next_text(&mut second).await, "b");
    let mut idle = TcpStream::connect(server.addr).await.unwrap();

    let refused = exchange(server.addr, HEALTHZ).await;
    refused.assert_json_error(429);
    let refused_socket = tokio_tungstenite::connect_async(server.ws_url("/ws/echo")).await;
    assert!(refused_socket.is_err(), "a fourth connection is refused");

    idle.shutdown().await.unwrap();
    wait_closed(&mut idle).await;
    // The server gives the slot back just after it closes; a retry is a round trip, not a sleep.
    let started = Instant::now();
    loop {
        let answer = exchange(server.addr, HEALTHZ).await;
        if answer.status == 200 {
            break;
        }
        answer.assert_json_error(429);
        assert!(started.elapsed() < WAIT, "the slot never came back");
    }
    server.stop().await;
}

/// A client that writes its whole oversize body before reading (as Python's urllib does) reads
/// the 413 and its JSON error instead of a broken pipe: the server drains the body first.
#[tokio::test]
async fn oversize_body_answer_is_readable_after_writing_it_all() {
    let server = TestServer::start_with(|c| c.max_body_bytes = 1024, vec![]).await;
    let body = vec![b' '; 8 << 20];
    let mut stream = TcpStream::connect(server.addr).await.unwrap();
    let head = format!(
        "POST /rpc/counter.increment HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\n\r\n",
        body.len()
    );
    tokio::time::timeout(WAIT, async {
        stream.write_all(head.as_bytes()).await?;
        stream.write_all(&body).await
    })
    .await
    .expect("the body is taken in time")
    .expect("the server reads the whole body instead of closing on it");
    read_answer(&mut stream).await.assert_json_error(413);
    server.stop().await;
}

/// With `ip_rate_per_second`, an address's requests and socket frames share one bucket: past
/// its burst an HTTP request is 429 with `Retry-After`, and a socket frame gets the route's own
/// rate-limit error; a socket that keeps on is closed with 1008. Another address is not
/// affected.
#[tokio::test]
async fn request_and_frame_rate_per_address() {
    let server = TestServer::start_with(
        |c| {
            c.ip_rate_per_second = 1;
            c.ip_rate_burst = 4;
        },
        vec![],
    )
    .await;
    // The upgrade takes the first token, two requests the next two.
    let mut socket = ws(&server.ws_url("/ws/counter/rate")).await;
    let client = reqwest::Client::new();
    for _ in 0..2 {
        assert_eq!(client.get(server.url("/healthz")).send().await.unwrap().status(), 200);
    }
    send(&mut socket, r#"{"type":"increment","id":"ok"}"#).await;
    assert_eq!(next_json(&mut socket).await["type"], "increment");
    assert_eq!(next_json(&mut socket).await["id"], "ok");
    let refused = client.get(server.url("/healthz")).send().await.unwrap();
    assert_eq!(refused.status(), 429);
    assert_eq!(refused.headers()["retry-after"], "1");
    let body: serde_json::Value = refused.json().await.unwrap();
    assert!(body["error"].as_str().unwrap().contains("this address"), "{body}");
    send(&mut socket, r#"{"type":"increment","id":"over"}"#).await;
    let error = next_json(&mut socket).await;
    assert_eq!(error["type"], "error");
    assert!(error["message"].as_str().unwrap().contains("rate limit"), "{error}");
    for _ in 0..10 {
        send(&mut socket, r#"{"type":"increment"}"#).await;
    }
    assert_eq!(next_close(&mut socket).await.map(|f| u16::from(f.code)), Some(1008));
    // Another client address (127.0.0.2 is loopback too) has a bucket of its own.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.2:0".parse().unwrap()).unwrap();
    let mut stream = socket.connect(server.addr).await.unwrap();
    stream.write_all(HEALTHZ).await.unwrap();
    let answer = read_answer(&mut stream).await;
    assert_eq!(answer.status, 200);
    server.stop().await;
}

/// With `max_new_objects_per_ip_per_minute`, an address creates at most that many objects a
/// minute: the next counter it would create is 429 over HTTP and an error over a socket, and
/// nothing is stored; counters that exist take its writes as before.
#[tokio::test]
async fn new_objects_per_address_are_bounded() {
    let server = TestServer::start_with(|c| c.max_new_objects_per_ip_per_minute = 2, vec![]).await;
    let increment = |name: &str| {
        let url = server.url("/rpc/counter.increment");
        let body = serde_json::json!({ "name": name });
        async move { post_json(&url, &body, None).await }
    };
    assert_eq!(increment("one").await.0, 200);
    assert_eq!(increment("two").await.0, 200);
    let (status, body) = increment("three").await;
    assert_eq!(status, 429, "{body}");
    assert!(body["error"].as_str().unwrap().contains("too many objects"), "{body}");
    assert_eq!(increment("one").await.0, 200, "an existing counter is not a creation");
    let (_, value) = post_json(
        &server.url("/rpc/counter.getValue"),
        &serde_json::json!({"name": "three"}),
        None,
    )
    .await;
    assert_eq!(value["value"], 0, "nothing stored");
    let mut socket = ws(&server.ws_url("/ws/counter/four")).await;
    send(&mut socket, r#"{"type":"increment","id":"c"}"#).await;
    let error = next_json(&mut socket).await;
    assert_eq!(
        (error["type"].as_str(), error["id"].as_str()),
        (Some("error"), Some("c")),
        "{error}"
    );
    server.stop().await;
}
