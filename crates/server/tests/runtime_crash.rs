//! Durability through a crash: kill -9 of the real binary while clients stream acknowledged
//! writes and a subscriber receives broadcasts.

mod support;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use serde_json::{Value, json};
use support::*;

async fn rpc(client: &reqwest::Client, base: &str, op: &str, body: Value) -> Result<Value, reqwest::Error> {
    client
        .post(format!("{base}/rpc/counter.{op}"))
        .json(&body)
        .send()
        .await?
        .error_for_status()?
        .json()
        .await
}

/// After kill -9 and a restart, every increment that was acknowledged is stored, and every
/// value a subscriber received is stored too: no client ever saw state a crash took back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_loses_nothing_acknowledged() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = ProcessServer::spawn(dir.path(), &[]);
    let base = server.url("");
    let mut subscriber = ws(&server.ws_url("/ws/counter/crash")).await;
    let received = tokio::spawn(async move {
        let mut values = BTreeSet::new();
        while let Ok(Some(Ok(msg))) = tokio::time::timeout(WAIT, futures_util::StreamExt::next(&mut subscriber)).await {
            if let Ok(text) = msg.to_text()
                && let Ok(v) = serde_json::from_str::<Value>(text)
                && let Some(value) = v["value"].as_i64()
            {
                values.insert(value);
            }
        }
        values
    });

    let acked = Arc::new(AtomicUsize::new(0));
    // Told when 300 increments are acknowledged: the crash comes under load.
    let loaded = Arc::new(tokio::sync::Notify::new());
    let writers: Vec<_> = (0..4)
        .map(|_| {
            let (base, acked, loaded) = (base.clone(), acked.clone(), loaded.clone());
            tokio::spawn(async move {
                let client = reqwest::Client::new();
                let mut mine = Vec::new();
                while let Ok(reply) = rpc(&client, &base, "increment", json!({"name": "crash"})).await {
                    mine.push(reply["value"].as_i64().unwrap());
                    if acked.fetch_add(1, Ordering::Relaxed) + 1 == 300 {
                        loaded.notify_one();
                    }
                }
                mine
            })
        })
        .collect();
    loaded.notified().await;
    server.signal(9);
    let mut acknowledged = BTreeSet::new();
    for writer in writers {
        acknowledged.extend(writer.await.unwrap());
    }
    let received = received.await.unwrap();
    server.wait_exit(Duration::from_secs(5));
    assert!(acknowledged.len() >= 300);

    let server = ProcessServer::spawn(dir.path(), &[]);
    let client = reqwest::Client::new();
    let base = server.url("");
    let value = rpc(&client, &base, "getValue", json!({"name": "crash"})).await.unwrap()["value"]
        .as_i64()
        .unwrap();
    let history = rpc(&client, &base, "getHistory", json!({"name": "crash", "limit": 1000}))
        .await
        .unwrap();
    let stored: BTreeSet<i64> = history
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["value"].as_i64().unwrap())
        .collect();

    assert!(
        value >= *acknowledged.last().unwrap(),
        "value {value} < last acknowledged"
    );
    assert!(
        value - (acknowledged.len() as i64) <= 4,
        "at most the 4 in-flight writes may have landed unacknowledged"
    );
    let missing_acked: Vec<_> = acknowledged.difference(&stored).collect();
    assert!(
        missing_acked.is_empty(),
        "acknowledged but not stored: {missing_acked:?}"
    );
    let missing_seen: Vec<_> = received.difference(&stored).collect();
    assert!(missing_seen.is_empty(), "broadcast but not stored: {missing_seen:?}");
    assert_eq!(
        stored,
        (1..=value).collect(),
        "history is exactly the stored increments"
    );
}

/// The same across every built-in app at once: increments on several counters and updates to
/// several display sessions stream concurrently; after kill -9 and a restart, each counter holds
/// at least its acknowledged increments (at most its in-flight ones more) and each session
/// every acknowledged update, in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_under_mixed_load_across_every_app() {
    let dir = tempfile::tempdir().unwrap();
    let sets = ["display_list_limit=100000"];
    let mut server = ProcessServer::spawn(dir.path(), &sets);
    let base = server.url("");
    let client = reqwest::Client::new();
    for s in 0..2 {
        let init = client
            .post(format!("{base}/session/mixed-{s}/init"))
            .bearer_auth(SECRET)
            .json(&json!({"tenantId": "t"}))
            .send()
            .await
            .unwrap();
        assert_eq!(init.status(), 200);
    }
    let acked = Arc::new(AtomicUsize::new(0));
    let loaded = Arc::new(tokio::sync::Notify::new());
    let ack = |acked: &AtomicUsize, loaded: &tokio::sync::Notify| {
        if acked.fetch_add(1, Ordering::Relaxed) + 1 == 400 {
            loaded.notify_one();
        }
    };
    // Two writers per counter and one per session: (what, acknowledged count or updates).
    let mut counters = Vec::new();
    for c in 0..3 {
        for _ in 0..2 {
            let (base, acked, loaded) = (base.clone(), acked.clone(), loaded.clone());
            counters.push((
                c,
                tokio::spawn(async move {
                    let client = reqwest::Client::new();
                    let mut n = 0u64;
                    let name = format!("mixed-{c}");
                    while rpc(&client, &base, "increment", json!({"name": name})).await.is_ok() {
                        n += 1;
                        ack(&acked, &loaded);
                    }
                    n
                }),
            ));
        }
    }
    let mut sessions = Vec::new();
    for s in 0..2 {
        let (base, acked, loaded) = (base.clone(), acked.clone(), loaded.clone());
        sessions.push(tokio::spawn(async move {
            let client = reqwest::Client::new();
            let mut sent = Vec::new();
            for i in 0.. {
                let text = format!("u{i}");
                let ok = client
                    .post(format!("{base}/session/mixed-{s}/update"))
                    .bearer_auth(SECRET)
                    .json(&json!({"type": "transcription", "text": text}))
                    .send()
                    .await
                    .is_ok_and(|r| r.status() == 200);
                if !ok {
                    break;
                }
                sent.push(text);
                ack(&acked, &loaded);
            }
            sent
        }));
    }
    loaded.notified().await;
    server.signal(9);
    let mut per_counter = [0u64; 3];
    for (c, writer) in counters {
        per_counter[c] += writer.await.unwrap();
    }
    let mut per_session = Vec::new();
    for writer in sessions {
        per_session.push(writer.await.unwrap());
    }
    server.wait_exit(Duration::from_secs(5));

    let mut server = ProcessServer::spawn(dir.path(), &sets);
    let base = server.url("");
    for (c, acknowledged) in per_counter.iter().enumerate() {
        let value = rpc(&client, &base, "getValue", json!({"name": format!("mixed-{c}")}))
            .await
            .unwrap()["value"]
            .as_i64()
            .unwrap() as u64;
        assert!(
            value >= *acknowledged && value <= acknowledged + 2,
            "counter {c}: {value} stored, {acknowledged} acknowledged by its 2 writers"
        );
    }
    for (s, acknowledged) in per_session.iter().enumerate() {
        let state: Value = client
            .get(format!("{base}/session/mixed-{s}/state"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let stored: Vec<&str> = state["transcriptions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["text"].as_str().unwrap())
            .collect();
        assert!(stored.len() >= acknowledged.len() && stored.len() <= acknowledged.len() + 1);
        assert_eq!(&stored[..acknowledged.len()], acknowledged.as_slice(), "session {s}");
    }
    server.signal(15);
    server.wait_exit(WAIT);
}
