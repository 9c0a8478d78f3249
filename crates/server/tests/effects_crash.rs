//! Durable effects across a crash: the chat example (`examples/chat_room.rs`), served by a child
//! process, POSTs every message to a webhook as an effect; killed with SIGKILL under load and
//! started again, every message its speaker saw acknowledged reaches the webhook at least once,
//! in order, with one idempotency key per message however often it is retried.

mod support;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::routing::post;
use serde_json::Value;
use support::*;
use tokio::sync::Notify;

/// Every POST the webhook received: (idempotency key, message text).
#[derive(Default)]
struct Sink {
    received: Mutex<Vec<(String, String)>>,
    changed: Notify,
}

async fn start_sink() -> (Arc<Sink>, String) {
    let sink = Arc::new(Sink::default());
    let app = Router::new()
        .route(
            "/hook",
            post(
                |State(sink): State<Arc<Sink>>, headers: HeaderMap, body: String| async move {
                    let key = headers["idempotency-key"].to_str().unwrap().to_string();
                    let text = serde_json::from_str::<Value>(&body).unwrap()["text"]
                        .as_str()
                        .unwrap()
                        .to_string();
                    sink.received.lock().unwrap().push((key, text));
                    sink.changed.notify_waiters();
                    "ok"
                },
            ),
        )
        .with_state(sink.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (sink, url)
}

#[allow(dead_code)] // The example's `main` is not used here.
#[path = "../../../examples/chat_room.rs"]
mod chat_room;

/// Set in the child process that serves the chat example (not a `SWITCHBOARD_*` name: those
/// are configuration keys).
const CHILD: &str = "CHAT_CRASH_CHILD";

/// The server the test below kills: this test binary run again as a child, serving the chat
/// example until it is killed. Run without [`CHILD`] set (as every test run does), it returns
/// at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chat_server_child() {
    if std::env::var_os(CHILD).is_none() {
        return;
    }
    use switchboard_server::config::{Config, Sources};
    let apps = || {
        let mut all = switchboard_apps::builtin();
        all.extend(chat_room::apps());
        all
    };
    let config = Config::load_for(&Sources::from_process(None, Vec::new()), &apps()).unwrap();
    let listener = tokio::net::TcpListener::bind(config.listen).await.unwrap();
    let serving = switchboard_server::Serving {
        apps: apps(),
        cluster: None,
    };
    let shutdown = tokio_util::sync::CancellationToken::new();
    let server = switchboard_server::start_with(config, listener, shutdown, serving)
        .await
        .unwrap();
    // What `ProcessServer` waits for: a JSON log line with the address.
    eprintln!("{}", serde_json::json!({"fields": {"addr": server.addr.to_string()}}));
    std::future::pending::<()>().await;
}

fn start_example(data_dir: &Path, hook: &str) -> ProcessServer {
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.args(["--exact", "chat_server_child", "--nocapture"])
        .env(CHILD, "1")
        .env("SWITCHBOARD_LISTEN", "127.0.0.1:0")
        .env("SWITCHBOARD_DATA_DIR", data_dir)
        .env("SWITCHBOARD_AUTH_SECRET", SECRET)
        .env("SWITCHBOARD_CHAT_WEBHOOK_URL", hook);
    ProcessServer::spawn_command(cmd)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn effects_survive_kill_9_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let (sink, hook) = start_sink().await;
    let mut server = start_example(dir.path(), &hook);
    let socket = ws(&server.ws_url("/chat/crash?name=ada")).await;
    let (mut write, mut read) = futures_util::StreamExt::split(socket);
    let writer = tokio::spawn(async move {
        use futures_util::SinkExt;
        for i in 0..2000 {
            let text = format!("m{i:04}");
            if write
                .send(tokio_tungstenite::tungstenite::Message::text(text))
                .await
                .is_err()
            {
                return;
            }
        }
    });
    // A message is acknowledged when it comes back: rooms publish only after the commit.
    let mut acked = Vec::new();
    while acked.len() < 200 {
        match futures_util::StreamExt::next(&mut read).await {
            Some(Ok(msg)) if msg.is_text() => {
                let said: Value = serde_json::from_str(msg.to_text().unwrap()).unwrap();
                acked.push(said["text"].as_str().unwrap().to_string());
            }
            Some(Ok(_)) => {}
            other => panic!("socket ended early: {other:?}"),
        }
    }
    server.signal(9);
    server.wait_exit(WAIT);
    writer.abort();

    let mut restarted = start_example(dir.path(), &hook);
    let every_acked_delivered = async {
        loop {
            let changed = sink.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            let delivered: Vec<String> = sink.received.lock().unwrap().iter().map(|(_, t)| t.clone()).collect();
            if acked.iter().all(|t| delivered.contains(t)) {
                return;
            }
            changed.await;
        }
    };
    tokio::time::timeout(WAIT, every_acked_delivered)
        .await
        .expect("every acknowledged message reaches the webhook after the restart");

    let received = sink.received.lock().unwrap().clone();
    // In order: the first delivery of each message comes after the first of every earlier one.
    let mut first_seen: Vec<&str> = Vec::new();
    for (_, text) in &received {
        if !first_seen.contains(&text.as_str()) {
            first_seen.push(text);
        }
    }
    let mut sorted = first_seen.clone();
    sorted.sort();
    assert_eq!(first_seen, sorted, "webhooks ran out of order");
    // One idempotency key per message, across retries and the restart.
    let mut keys: BTreeMap<&str, &str> = BTreeMap::new();
    for (key, text) in &received {
        assert_eq!(*keys.entry(text).or_insert(key), key.as_str(), "{text} got two keys");
    }
    restarted.signal(15);
    restarted.wait_exit(WAIT);
}
