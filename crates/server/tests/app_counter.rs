//! Live counters (PROTOCOLS.md §3) through the real server: one test per row of the contract,
//! and the bad inputs.

mod support;

use std::time::Duration;

use futures_util::future::join_all;
use serde_json::{Value, json};
use support::*;

async fn op(server: &TestServer, op: &str, body: Value) -> (u16, Value) {
    post_json(&server.url(&format!("/rpc/counter.{op}")), &body, None).await
}

async fn counter_server() -> TestServer {
    TestServer::start_with(|_| {}, vec![]).await
}

/// increment / decrement: default amount 1, or `amount`; the reply has value, previousValue
/// and full metadata; every socket of the counter gets the broadcast with an ISO timestamp.
#[tokio::test]
async fn increment_and_decrement_reply_and_broadcast() {
    let server = counter_server().await;
    let mut a = ws(&server.ws_url("/ws/counter/c")).await;
    let mut b = ws(&server.ws_url("/ws/counter/c")).await;
    let (status, reply) = op(&server, "increment", json!({"name": "c"})).await;
    assert_eq!(status, 200);
    assert_eq!(
        (reply["value"].as_i64(), reply["previousValue"].as_i64()),
        (Some(1), Some(0))
    );
    let meta = &reply["metadata"];
    assert_eq!(
        (
            meta["name"].as_str(),
            meta["value"].as_i64(),
            meta["operationCount"].as_i64()
        ),
        (Some("c"), Some(1), Some(1))
    );
    assert!(
        meta["id"].is_u64() && is_iso_ms(&meta["createdAt"]) && is_iso_ms(&meta["updatedAt"]),
        "{meta}"
    );
    let (_, reply) = op(&server, "decrement", json!({"name": "c", "amount": 5})).await;
    assert_eq!(
        (reply["value"].as_i64(), reply["previousValue"].as_i64()),
        (Some(-4), Some(1))
    );
    for socket in [&mut a, &mut b] {
        let first = next_json(socket).await;
        assert_eq!(
            (
                first["type"].as_str(),
                first["value"].as_i64(),
                first["previousValue"].as_i64()
            ),
            (Some("increment"), Some(1), Some(0))
        );
        assert!(
            is_iso_ms(&first["timestamp"]) && first["metadata"]["operationCount"] == 1,
            "{first}"
        );
        let second = next_json(socket).await;
        assert_eq!(
            (second["type"].as_str(), second["value"].as_i64()),
            (Some("decrement"), Some(-4))
        );
    }
    server.stop().await;
}

/// setValue and reset store, reply and broadcast like the others.
#[tokio::test]
async fn set_value_and_reset() {
    let server = counter_server().await;
    let mut socket = ws(&server.ws_url("/ws/counter/s")).await;
    let (_, reply) = op(&server, "setValue", json!({"name": "s", "value": 42})).await;
    assert_eq!(
        (reply["value"].as_i64(), reply["previousValue"].as_i64()),
        (Some(42), Some(0))
    );
    let (_, reply) = op(&server, "reset", json!({"name": "s"})).await;
    assert_eq!(
        (reply["value"].as_i64(), reply["previousValue"].as_i64()),
        (Some(0), Some(42))
    );
    assert_eq!(next_json(&mut socket).await["type"], "setValue");
    let reset = next_json(&mut socket).await;
    assert_eq!(
        (reset["type"].as_str(), reset["value"].as_i64()),
        (Some("reset"), Some(0))
    );
    server.stop().await;
}

/// getValue, getMetadata and getHistory (newest first, `limit` default 50) read without
/// changing anything.
#[tokio::test]
async fn reads_value_metadata_and_history() {
    let server = counter_server().await;
    assert_eq!(
        op(&server, "getValue", json!({"name": "r"})).await.1,
        json!({"value": 0})
    );
    for _ in 0..60 {
        op(&server, "increment", json!({"name": "r", "amount": 2})).await;
    }
    assert_eq!(
        op(&server, "getValue", json!({"name": "r"})).await.1,
        json!({"value": 120})
    );
    let (_, meta) = op(&server, "getMetadata", json!({"name": "r"})).await;
    assert_eq!(
        (
            meta["value"].as_i64(),
            meta["operationCount"].as_i64(),
            meta["name"].as_str()
        ),
        (Some(120), Some(60), Some("r"))
    );
    let (_, history) = op(&server, "getHistory", json!({"name": "r"})).await;
    let history = history.as_array().unwrap();
    assert_eq!(history.len(), 50);
    assert_eq!(
        history[0],
        json!({"op": "increment", "amount": 2, "value": 120, "previousValue": 118, "timestamp": history[0]["timestamp"]})
    );
    assert!(is_iso_ms(&history[0]["timestamp"]));
    assert_eq!(history[49]["value"], 22);
    let (_, three) = op(&server, "getHistory", json!({"name": "r", "limit": 3})).await;
    assert_eq!(
        three
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["value"].as_i64().unwrap())
            .collect::<Vec<_>>(),
        vec![120, 118, 116]
    );
    server.stop().await;
}

/// The history is capped at `counter_history_limit`.
#[tokio::test]
async fn history_is_capped() {
    let server = TestServer::start_with(
        |c| {
            c.app_values.insert("counter_history_limit".into(), 5.into());
        },
        vec![],
    )
    .await;
    for _ in 0..12 {
        op(&server, "increment", json!({"name": "cap"})).await;
    }
    let (_, history) = op(&server, "getHistory", json!({"name": "cap", "limit": 100})).await;
    assert_eq!(
        history
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["value"].as_i64().unwrap())
            .collect::<Vec<_>>(),
        vec![12, 11, 10, 9, 8]
    );
    server.stop().await;
}

/// An operation that would overflow 64 bits is a 400, changes nothing, broadcasts nothing.
#[tokio::test]
async fn overflow_is_refused_and_changes_nothing() {
    let server = counter_server().await;
    let mut socket = ws(&server.ws_url("/ws/counter/o")).await;
    op(&server, "setValue", json!({"name": "o", "value": i64::MAX})).await;
    assert_eq!(next_json(&mut socket).await["value"], i64::MAX);
    let (status, err) = op(&server, "increment", json!({"name": "o"})).await;
    assert_eq!(status, 400);
    assert!(err["error"].as_str().unwrap().contains("overflow"));
    let (status, _) = op(&server, "decrement", json!({"name": "o", "amount": i64::MIN})).await;
    assert_eq!(status, 400);
    let (_, meta) = op(&server, "getMetadata", json!({"name": "o"})).await;
    assert_eq!(
        (meta["value"].as_i64(), meta["operationCount"].as_i64()),
        (Some(i64::MAX), Some(1))
    );
    // The next broadcast is the next real change, not the refused ones.
    op(&server, "reset", json!({"name": "o"})).await;
    assert_eq!(next_json(&mut socket).await["type"], "reset");
    server.stop().await;
}

/// Operations over the socket: `{"type":"increment","amount":1,"id":"c1"}` gets
/// `{"type":"result","id":"c1",…}` and the others get the broadcast; errors carry the id.
#[tokio::test]
async fn operations_over_the_socket_echo_their_id() {
    let server = counter_server().await;
    let mut me = ws(&server.ws_url("/ws/counter/w")).await;
    let mut other = ws(&server.ws_url("/ws/counter/w")).await;
    send(&mut me, r#"{"type":"increment","amount":3,"id":"c1"}"#).await;
    let mut got = [next_json(&mut me).await, next_json(&mut me).await];
    got.sort_by_key(|v| v["type"].as_str().unwrap().to_string());
    assert_eq!(
        (got[0]["type"].as_str(), got[0]["value"].as_i64()),
        (Some("increment"), Some(3))
    );
    assert_eq!(
        (
            got[1]["type"].as_str(),
            got[1]["id"].as_str(),
            got[1]["value"].as_i64(),
            got[1]["previousValue"].as_i64()
        ),
        (Some("result"), Some("c1"), Some(3), Some(0))
    );
    assert_eq!(got[1]["metadata"]["value"], 3);
    assert_eq!(next_json(&mut other).await["type"], "increment");
    send(&mut me, r#"{"type":"getValue","id":7}"#).await;
    assert_eq!(next_json(&mut me).await, json!({"type": "result", "id": 7, "value": 3}));
    send(&mut me, r#"{"type":"explode","id":"x"}"#).await;
    let err = next_json(&mut me).await;
    assert_eq!((err["type"].as_str(), err["id"].as_str()), (Some("error"), Some("x")));
    send(&mut me, "not json").await;
    assert_eq!(next_json(&mut me).await["type"], "error");
    send(&mut me, r#"{"type":"setValue","id":"y"}"#).await;
    let err = next_json(&mut me).await;
    assert!(err["message"].as_str().unwrap().contains("value"), "{err}");
    server.stop().await;
}

/// `{"type":"ping"}` is answered `{"type":"pong","timestamp":ISO}` by the gateway: it does not
/// wake a hibernated counter.
#[tokio::test]
async fn ping_is_answered_without_waking() {
    let server = TestServer::start_with(|c| c.hibernate_after = Duration::from_millis(200), vec![]).await;
    let mut socket = ws(&server.ws_url("/ws/counter/p")).await;
    let wakes = server
        .wait_for_stats("hibernation", |s| s.hibernated_objects == 1 && s.live_objects == 0)
        .await
        .wakes;
    send(&mut socket, r#"{"type":"ping"}"#).await;
    let pong = next_json(&mut socket).await;
    assert_eq!(pong["type"], "pong");
    assert!(is_iso_ms(&pong["timestamp"]), "{pong}");
    assert_eq!(server.runtime().stats().wakes, wakes);
    server.stop().await;
}

/// Counters are isolated by name: sockets hear only their own counter.
#[tokio::test]
async fn names_are_isolated() {
    let server = counter_server().await;
    let mut a = ws(&server.ws_url("/ws/counter/one")).await;
    op(&server, "increment", json!({"name": "two", "amount": 10})).await;
    op(&server, "increment", json!({"name": "one"})).await;
    assert_eq!(next_json(&mut a).await["value"], 1);
    assert_eq!(op(&server, "getValue", json!({"name": "two"})).await.1["value"], 10);
    server.stop().await;
}

/// Two clients on one counter see the same sequence of values, in the same order, under ten
/// concurrent writers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_clients_see_one_order_under_concurrent_writers() {
    let server = counter_server().await;
    let mut a = ws(&server.ws_url("/ws/counter/order")).await;
    let mut b = ws(&server.ws_url("/ws/counter/order")).await;
    let url = server.url("/rpc/counter.increment");
    let writers = (0..10).map(|i| {
        let url = url.clone();
        tokio::spawn(async move {
            for _ in 0..20 {
                let body = json!({"name": "order", "amount": if i % 2 == 0 { 1 } else { -1 }});
                assert_eq!(post_json(&url, &body, None).await.0, 200);
            }
        })
    });
    join_all(writers).await;
    let (mut seen_a, mut seen_b) = (Vec::new(), Vec::new());
    for _ in 0..200 {
        seen_a.push(next_json(&mut a).await["value"].as_i64().unwrap());
        seen_b.push(next_json(&mut b).await["value"].as_i64().unwrap());
    }
    assert_eq!(seen_a, seen_b);
    server.stop().await;
}

/// A counter keeps its value and history across a restart.
#[tokio::test]
async fn state_survives_restart() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start_in(dir.path(), |_| {}, vec![]).await;
    op(&server, "increment", json!({"name": "keep", "amount": 7})).await;
    server.stop().await;
    let server = TestServer::start_in(dir.path(), |_| {}, vec![]).await;
    assert_eq!(op(&server, "getValue", json!({"name": "keep"})).await.1["value"], 7);
    assert_eq!(
        op(&server, "getHistory", json!({"name": "keep"})).await.1[0]["amount"],
        7
    );
    server.stop().await;
}

/// Bad input: malformed JSON, missing fields, wrong types, unknown op (404 listing the ops),
/// a body over the limit (413), a bad limit; each a JSON error, nothing changed.
#[tokio::test]
async fn bad_inputs_get_clear_errors() {
    let server = TestServer::start_with(|c| c.max_body_bytes = 1024, vec![]).await;
    let raw = |body: &'static str| {
        let url = server.url("/rpc/counter.increment");
        async move {
            let res = reqwest::Client::new()
                .post(url)
                .header("content-type", "application/json")
                .body(body)
                .send()
                .await
                .unwrap();
            (res.status().as_u16(), res.json::<Value>().await.unwrap())
        }
    };
    let (status, err) = raw("{\"name\": ").await;
    assert_eq!(status, 400);
    assert!(err["error"].as_str().unwrap().contains("not valid JSON"), "{err}");
    let (status, err) = raw("").await;
    assert_eq!((status, err["error"].is_string()), (400, true));
    let (status, err) = op(&server, "increment", json!({"amount": 1})).await;
    assert_eq!(status, 400);
    assert!(err["error"].as_str().unwrap().contains("name"));
    let (status, err) = op(&server, "increment", json!({"name": "b", "amount": "lots"})).await;
    assert_eq!(status, 400);
    assert!(err["error"].as_str().unwrap().contains("invalid type"), "{err}");
    let (status, _) = op(&server, "increment", json!({"name": 5})).await;
    assert_eq!(status, 400);
    let (status, err) = op(&server, "explode", json!({"name": "b"})).await;
    assert_eq!(status, 404);
    assert!(
        err["error"].as_str().unwrap().contains("getHistory"),
        "the 404 lists the operations: {err}"
    );
    let (status, err) = op(&server, "increment", json!({"name": "b", "pad": "x".repeat(2000)})).await;
    assert_eq!(status, 413);
    assert!(err["error"].is_string());
    let (status, _) = op(&server, "getHistory", json!({"name": "b", "limit": 0})).await;
    assert_eq!(status, 400);
    let (status, _) = op(&server, "setValue", json!({"name": "b"})).await;
    assert_eq!(status, 400);
    assert_eq!(op(&server, "getValue", json!({"name": "b"})).await.1["value"], 0);
    assert_eq!(
        op(&server, "getMetadata", json!({"name": "b"})).await.1["operationCount"],
        0
    );
    server.stop().await;
}

/// One socket cannot flood a counter with durable writes: past its rate (and burst) each
/// operation is answered with the protocol's error and dropped, and a socket that keeps on is
/// closed with 1008. What was accepted is all that was stored.
#[tokio::test]
async fn a_flooding_socket_is_limited_then_closed() {
    let server = TestServer::start_with(
        |c| {
            c.app_values.insert("counter_socket_rate_per_second".into(), json!(5));
        },
        vec![],
    )
    .await;
    let mut socket = ws(&server.ws_url("/ws/counter/flood")).await;
    for i in 0..40 {
        send(
            &mut socket,
            &json!({"type": "increment", "id": format!("f{i}")}).to_string(),
        )
        .await;
    }
    let (mut results, mut refused) = (0, 0);
    let code = loop {
        match tokio::time::timeout(WAIT, futures_util::StreamExt::next(&mut socket))
            .await
            .unwrap()
        {
            Some(Ok(tokio_tungstenite::tungstenite::Message::Text(t))) => {
                let frame: Value = serde_json::from_str(&t).unwrap();
                match frame["type"].as_str() {
                    Some("result") => results += 1,
                    Some("error") => {
                        assert!(frame["message"].as_str().unwrap().contains("rate limit"), "{frame}");
                        refused += 1;
                    }
                    _ => {}
                }
            }
            Some(Ok(tokio_tungstenite::tungstenite::Message::Close(frame))) => break frame.map(|f| u16::from(f.code)),
            Some(Ok(_)) => {}
            other => panic!("{other:?}"),
        }
    };
    assert_eq!(code, Some(1008));
    assert_eq!(refused, 9, "the tenth refusal in a row closes the socket");
    // The burst of 10 (and what refilled meanwhile) was stored; the rest was not. (Results
    // still on their way when the socket was closed are not sent.)
    let (_, value) = op(&server, "getValue", json!({"name": "flood"})).await;
    let stored = value["value"].as_i64().unwrap();
    assert!((10..=12).contains(&stored), "{stored}");
    assert!(results <= stored, "{results} results, {stored} stored");
    server.stop().await;
}
