//! The object runtime through a real server and real sockets: the input gate, hibernation,
//! auto-response, alarms across restarts, slow consumers.

mod support;

use std::time::Duration;

use futures_util::StreamExt;
use futures_util::future::join_all;
use serde_json::Value;
use support::*;
use tokio_tungstenite::tungstenite::Message;

async fn post(client: &reqwest::Client, url: &str) -> Value {
    let res = client.post(url).send().await.unwrap();
    assert_eq!(res.status(), 200, "POST {url}");
    res.json().await.unwrap()
}

async fn get(url: &str) -> Value {
    reqwest::get(url).await.unwrap().json().await.unwrap()
}

/// 1,000 increments from 50 concurrent clients against one object end exact: events of one
/// object never interleave, and every reply carries a distinct value.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_increments_end_exact() {
    let server = TestServer::start_with(|_| {}, tally::extension()).await;
    let url = server.url("/tally/exact/add");
    let clients = (0..50).map(|_| {
        let url = url.clone();
        tokio::spawn(async move {
            let client = reqwest::Client::new();
            let mut seen = Vec::new();
            for _ in 0..20 {
                seen.push(post(&client, &url).await["value"].as_i64().unwrap());
            }
            seen
        })
    });
    let mut values: Vec<i64> = join_all(clients).await.into_iter().flat_map(Result::unwrap).collect();
    values.sort_unstable();
    assert_eq!(values, (1..=1000).collect::<Vec<_>>());
    assert_eq!(get(&server.url("/tally/exact")).await["value"], 1000);
    server.stop().await;
}

/// An idle object hibernates while its 100 sockets stay open; a ping is answered without
/// waking it; the next message wakes it, with every socket's tags and attachment intact.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hibernation_keeps_sockets_and_auto_responds() {
    let server = TestServer::start_with(|c| c.hibernate_after = Duration::from_millis(300), tally::extension()).await;
    let mut sockets = Vec::new();
    for i in 0..100 {
        let url = server.ws_url(&format!("/tally/sleepy/ws?tags=all,group{},user{i}&user=u{i}", i % 2));
        sockets.push(ws(&url).await);
    }
    let asleep = server
        .wait_for_stats("hibernation", |s| {
            s.hibernations >= 1 && s.live_objects == 0 && s.hibernated_objects == 1
        })
        .await;
    assert_eq!(asleep.sockets, 100);

    // Ping: answered by the gateway, no wake.
    send(&mut sockets[7], r#"{ "type" : "ping" }"#).await;
    let pong = next_json(&mut sockets[7]).await;
    assert_eq!(pong["type"], "pong");
    assert!(pong["timestamp"].as_i64().unwrap() > 0);
    let after_ping = server.runtime().stats();
    assert_eq!(after_ping.wakes, asleep.wakes, "a ping must not wake the object");
    assert_eq!(after_ping.auto_responses, asleep.auto_responses + 1);

    // A real message wakes it; tags and attachment survived.
    send(&mut sockets[7], "whoami").await;
    let me = next_json(&mut sockets[7]).await;
    assert_eq!(me["tags"], serde_json::json!(["all", "group1", "user7"]));
    assert_eq!(me["attachment"]["user"], "u7");
    assert!(me["lastAutoResponse"].as_u64().unwrap() > 0);
    assert_eq!(server.runtime().stats().wakes, asleep.wakes + 1);
    let state = get(&server.url("/tally/sleepy")).await;
    assert_eq!(state["starts"], 2, "start ran once per wake: {state}");
    assert_eq!(state["sockets"], 100);

    // A broadcast after the wake still reaches all 100 sockets.
    send(&mut sockets[0], "add").await;
    for socket in &mut sockets {
        assert_eq!(next_json(socket).await["value"], 1);
    }

    // Asleep again, a socket closing wakes the object and its close is delivered.
    let wakes = server
        .wait_for_stats("hibernation", |s| s.live_objects == 0 && s.hibernated_objects == 1)
        .await
        .wakes;
    let mut closing = sockets.pop().unwrap();
    let normal = tokio_tungstenite::tungstenite::protocol::CloseFrame {
        code: tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode::Normal,
        reason: "bye".into(),
    };
    closing.close(Some(normal)).await.unwrap();
    server.wait_for_stats("the close", |s| s.sockets == 99).await;
    assert_eq!(server.runtime().stats().wakes, wakes + 1);
    let state = get(&server.url("/tally/sleepy")).await;
    assert_eq!(state["last_close"], serde_json::json!({"user": "u99", "code": 1000}));
    server.stop().await;
}

/// An alarm set before a restart, and due after it, fires after the restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alarm_fires_after_restart() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start_in(dir.path(), |_| {}, tally::extension()).await;
    let client = reqwest::Client::new();
    post(&client, &server.url("/tally/wakeme/alarm?in_ms=1500")).await;
    assert!(get(&server.url("/tally/wakeme")).await["alarm"].is_i64());
    server.stop().await;

    let server = TestServer::start_in(dir.path(), |_| {}, tally::extension()).await;
    server.wait_for_stats("the alarm", |s| s.alarms_fired == 1).await;
    let fired = get(&server.url("/tally/wakeme")).await;
    assert!(fired["alarm_fired"].is_i64(), "alarm did not fire after restart");
    assert!(fired["alarm"].is_null(), "a handled alarm is cleared: {fired}");
    assert_eq!(server.runtime().stats().alarms_fired, 1);
    server.stop().await;
}

/// A socket that never reads is closed with 1008 "slow consumer", while 100 others receive
/// every frame of the broadcast stream, in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_consumer_is_closed_others_keep_up() {
    let server = TestServer::start_with(
        |c| {
            c.outbound_queue.max_frames = 256;
            // Long enough for the stalled client to read its close frame after the stream.
            c.close_timeout = Duration::from_secs(60);
        },
        tally::extension(),
    )
    .await;
    // The stalled client: a tiny receive buffer, and it never reads.
    let tcp = tokio::net::TcpSocket::new_v4().unwrap();
    tcp.set_recv_buffer_size(4096).unwrap();
    let stream = tcp.connect(server.addr).await.unwrap();
    let (mut stalled, _) = tokio_tungstenite::client_async(server.ws_url("/tally/stream/ws"), stream)
        .await
        .unwrap();

    let mut readers = Vec::new();
    for _ in 0..100 {
        readers.push(ws(&server.ws_url("/tally/stream/ws")).await);
    }
    const BURSTS: usize = 250;
    const PER_BURST: usize = 8;
    let readers = tokio::spawn(async move {
        let mut counts = Vec::new();
        for mut reader in readers {
            counts.push(tokio::spawn(async move {
                for expected in 0..BURSTS * PER_BURST {
                    let frame = next_json(&mut reader).await;
                    assert_eq!(frame["seq"].as_u64().unwrap() as usize, expected % PER_BURST);
                }
                BURSTS * PER_BURST
            }));
        }
        join_all(counts).await
    });
    let client = reqwest::Client::new();
    for _ in 0..BURSTS {
        post(
            &client,
            &server.url(&format!("/tally/stream/burst?count={PER_BURST}&size=2000")),
        )
        .await;
    }
    let counts = readers.await.unwrap();
    assert!(counts.iter().all(|c| matches!(c, Ok(n) if *n == BURSTS * PER_BURST)));

    // The stalled socket: now read what reached it; it must end in a 1008 close.
    let close = loop {
        match tokio::time::timeout(WAIT, stalled.next())
            .await
            .expect("stalled socket ends")
        {
            Some(Ok(Message::Close(frame))) => break frame,
            Some(Ok(_)) => continue,
            other => panic!("expected a close, got {other:?}"),
        }
    };
    let close = close.expect("a close frame");
    assert_eq!(u16::from(close.code), 1008);
    assert_eq!(close.reason.as_str(), "slow consumer");
    server.stop().await;
}

/// A client that stops reading for good cannot hold its connection: once it is closed as a slow
/// consumer, the server drops it within `close_timeout`, though the close frame never gets out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_consumer_is_dropped_after_close_timeout() {
    let server = TestServer::start_with(
        |c| {
            c.outbound_queue.max_frames = 16;
            c.close_timeout = Duration::from_millis(500);
        },
        tally::extension(),
    )
    .await;
    let tcp = tokio::net::TcpSocket::new_v4().unwrap();
    tcp.set_recv_buffer_size(4096).unwrap();
    let stream = tcp.connect(server.addr).await.unwrap();
    let (_dead, _) = tokio_tungstenite::client_async(server.ws_url("/tally/dead/ws"), stream)
        .await
        .unwrap();
    assert_eq!(get(&server.url("/tally/dead")).await["sockets"], 1);
    let client = reqwest::Client::new();
    // Far more than the kernel buffers and the 16-frame queue hold.
    for _ in 0..100 {
        post(&client, &server.url("/tally/dead/burst?count=8&size=4000")).await;
    }
    // Within the 500 ms close timeout, plus time for the close to reach the object.
    server
        .wait_for_stats("dropping the dead socket", |s| s.sockets == 0)
        .await;
    server.stop().await;
}
