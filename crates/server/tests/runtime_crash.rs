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
