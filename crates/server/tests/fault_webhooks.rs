//! A dead, then slow, application backend behind durable effects (the chat example's webhook):
//! messages are acknowledged while the backend is down, their effects wait in the outbox
//! (visible in the metrics) and are retried; once the backend answers, slowly, every one is
//! delivered, in order.

mod support;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::routing::post;
use serde_json::Value;
use support::*;

#[allow(dead_code)] // The example's `main` is not used here.
#[path = "../../../examples/chat_room.rs"]
mod chat_room;

/// What the backend received, in order.
#[derive(Default)]
struct Sink {
    texts: Mutex<Vec<String>>,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn effects_wait_for_a_dead_backend_then_arrive_in_order() {
    // A port nobody listens on yet: the backend is down.
    let addr = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let hook = format!("http://{addr}/hook");
    let server = TestServer::start_with(
        |c| {
            c.app_values.insert("chat_webhook_url".into(), hook.clone().into());
        },
        chat_room::apps(),
    )
    .await;
    let mut socket = ws(&server.ws_url("/chat/outage?name=ada")).await;
    for i in 0..5 {
        send(&mut socket, &format!("m{i}")).await;
        assert_eq!(next_json(&mut socket).await["text"], format!("m{i}"), "acknowledged");
    }
    let waiting = server
        .wait_for_stats("effects refused by the dead backend", |s| {
            s.outbox_depth == 5 && s.effect_attempts_failed >= 1
        })
        .await;
    assert_eq!(waiting.effects_succeeded, 0);
    let metrics = reqwest::get(server.url("/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(metrics.contains("switchboard_outbox_depth 5"), "{metrics}");

    // The backend comes up, and answers slowly.
    let sink = Arc::new(Sink::default());
    let app = Router::new()
        .route(
            "/hook",
            post(|State(sink): State<Arc<Sink>>, body: String| async move {
                tokio::time::sleep(Duration::from_millis(100)).await; // a slow backend, not a wait
                let said: Value = serde_json::from_str(&body).unwrap();
                sink.texts
                    .lock()
                    .unwrap()
                    .push(said["text"].as_str().unwrap().to_string());
                "ok"
            }),
        )
        .with_state(sink.clone());
    let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    let done = server
        .wait_for_stats("every effect delivered", |s| {
            s.effects_succeeded == 5 && s.outbox_depth == 0
        })
        .await;
    assert!(done.effect_attempts_failed >= 1);
    assert_eq!(*sink.texts.lock().unwrap(), ["m0", "m1", "m2", "m3", "m4"]);
    server.stop().await;
}
