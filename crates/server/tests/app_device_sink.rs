//! The device gateway's outbox (PROTOCOLS.md §1) against a real local HTTP sink: while the sink
//! refuses connections, hangs past `effect_timeout_ms` or answers 500, scans are acknowledged
//! and wait (visible per device in `GET /api/devices` and `/metrics`); once it answers 2xx every
//! scan arrives exactly once, in order per device, with `Idempotency-Key` = scan id — also
//! across a kill -9 of the server in the middle.

mod support;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use serde_json::{Value, json};
use support::*;
use tokio::sync::Notify;

/// How the sink answers.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Mode {
    /// Holds the request without ever answering (the server's attempt times out).
    Hang,
    /// 500.
    Fail,
    /// 200 for this many requests, then 500.
    Ok(usize),
}

/// One request the sink received.
#[derive(Clone, Debug)]
struct Received {
    key: String,
    scan_id: String,
    device_id: String,
    /// 0 while it hangs.
    status: u16,
}

struct Sink {
    mode: Mutex<Mode>,
    log: Mutex<Vec<Received>>,
    changed: Notify,
}

impl Sink {
    fn set(&self, mode: Mode) {
        *self.mode.lock().unwrap() = mode;
    }

    /// Waits until the log satisfies `pred`; fails the test after [`WAIT`].
    async fn wait_until(&self, what: &str, pred: impl Fn(&[Received]) -> bool) {
        loop {
            let notified = self.changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if pred(&self.log.lock().unwrap()) {
                return;
            }
            if tokio::time::timeout(WAIT, notified).await.is_err() {
                panic!("{what} did not happen: {:?}", self.log.lock().unwrap());
            }
        }
    }

    /// Scan ids answered 2xx, in the order they were answered.
    fn delivered(&self) -> Vec<String> {
        let log = self.log.lock().unwrap();
        log.iter()
            .filter(|r| r.status == 200)
            .map(|r| r.scan_id.clone())
            .collect()
    }

    fn count(&self, pred: impl Fn(&Received) -> bool) -> usize {
        self.log.lock().unwrap().iter().filter(|r| pred(r)).count()
    }
}

async fn receive(State(sink): State<Arc<Sink>>, headers: HeaderMap, body: String) -> StatusCode {
    let body: Value = serde_json::from_str(&body).expect("the sink gets JSON");
    assert!(body.get("user").is_some(), "{body}");
    let scan = &body["scan"];
    let status = {
        let mut mode = sink.mode.lock().unwrap();
        match *mode {
            Mode::Hang => 0,
            Mode::Fail | Mode::Ok(0) => 500,
            Mode::Ok(n) => {
                *mode = Mode::Ok(n - 1);
                200
            }
        }
    };
    sink.log.lock().unwrap().push(Received {
        key: headers["idempotency-key"].to_str().unwrap().to_string(),
        scan_id: scan["id"].as_str().unwrap().to_string(),
        device_id: scan["deviceId"].as_str().unwrap().to_string(),
        status,
    });
    sink.changed.notify_waiters();
    if status == 0 {
        std::future::pending::<()>().await;
    }
    StatusCode::from_u16(status).unwrap()
}

/// An address nobody listens on yet: connections to it are refused.
fn free_addr() -> SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

/// Starts the sink on `addr`.
async fn start_sink(addr: SocketAddr, mode: Mode) -> Arc<Sink> {
    let sink = Arc::new(Sink {
        mode: Mutex::new(mode),
        log: Mutex::new(Vec::new()),
        changed: Notify::new(),
    });
    let app = Router::new().route("/scans", post(receive)).with_state(sink.clone());
    let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    sink
}

/// The scan ids of `device` among `ids`, in order.
fn of(device: &str, ids: &[String]) -> Vec<String> {
    ids.iter()
        .filter(|id| id.starts_with(&format!("{device}:")))
        .cloned()
        .collect()
}

async fn admin_get(url: &str) -> Value {
    let res = reqwest::Client::new()
        .get(url)
        .bearer_auth(SECRET)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    res.json().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scans_reach_a_sink_that_refuses_hangs_fails_then_recovers_once_each_in_order() {
    let addr = free_addr();
    let sink_url = format!("http://{addr}/scans");
    let server = TestServer::start_with(
        |c| {
            c.app_values.insert("scan_sink_url".into(), sink_url.clone().into());
            c.app_values.insert("scan_interval_ms".into(), json!(0));
            c.effect_timeout = std::time::Duration::from_millis(300);
        },
        vec![],
    )
    .await;
    let mut acknowledged = Vec::new();
    for device_id in ["D-1", "D-2"] {
        let mut gate = ws(&server.ws_url(&format!("/ws/device?deviceId={device_id}"))).await;
        for i in 0..4 {
            send(
                &mut gate,
                &json!({"action": "scan", "tagId": format!("T{i}")}).to_string(),
            )
            .await;
            let reply = next_json(&mut gate).await;
            acknowledged.push(reply["scan"]["id"].as_str().unwrap().to_string());
        }
        let batch =
            json!({"action": "scan_batch", "scans": [{"tagId": "B", "timestamp": 1_700_000_000_000i64, "seq": 7}]});
        send(&mut gate, &batch.to_string()).await;
        assert_eq!(next_json(&mut gate).await["accepted"], 1);
        acknowledged.push(format!("{device_id}:5"));
    }

    // Refused: the scans wait, per device, in the listing and the metrics.
    server
        .wait_for_stats("attempts refused", |s| {
            s.effect_attempts_failed >= 2 && s.outbox_depth == 10
        })
        .await;
    let devices = admin_get(&server.url("/api/devices")).await;
    for device in devices.as_array().unwrap() {
        assert_eq!(device["outbox"]["depth"], 5, "{device}");
        assert!(device["outbox"]["oldestAgeMs"].as_i64().unwrap() >= 0);
    }
    let metrics = reqwest::get(server.url("/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains(r#"switchboard_object_outbox_depth{class="device",object="D-1"} 5"#),
        "{metrics}"
    );

    // Up, but hanging past the attempt's timeout; then answering 500; then 2xx.
    let sink = start_sink(addr, Mode::Hang).await;
    sink.wait_until("two hung attempts", |log| log.len() >= 2).await;
    let failed = server.runtime().stats().effect_attempts_failed;
    server
        .wait_for_stats("hung attempts time out", |s| s.effect_attempts_failed > failed)
        .await;
    sink.set(Mode::Fail);
    sink.wait_until("two 500s", |log| log.iter().filter(|r| r.status == 500).count() >= 2)
        .await;
    sink.set(Mode::Ok(usize::MAX));
    server
        .wait_for_stats("every scan delivered", |s| {
            s.effects_succeeded == 10 && s.outbox_depth == 0
        })
        .await;

    let delivered = sink.delivered();
    for device_id in ["D-1", "D-2"] {
        assert_eq!(
            of(device_id, &delivered),
            of(device_id, &acknowledged),
            "once each, in order"
        );
    }
    assert_eq!(delivered.len(), 10);
    assert_eq!(sink.count(|r| r.key != r.scan_id), 0, "Idempotency-Key is the scan id");
    let devices = admin_get(&server.url("/api/devices")).await;
    assert!(
        devices
            .as_array()
            .unwrap()
            .iter()
            .all(|d| d["outbox"] == json!({"depth": 0, "oldestAgeMs": 0}))
    );
    let metrics = reqwest::get(server.url("/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains(r#"switchboard_object_outbox_depth{class="device",object="D-1"} 0"#),
        "a drained outbox shows 0: {metrics}"
    );
    server.stop().await;
}

/// A server killed with SIGKILL while its sink fails loses no acknowledged scan and sends none
/// again that the sink had taken: started again, it delivers the rest, in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_outbox_survives_kill_9() {
    let addr = free_addr();
    let sink = start_sink(addr, Mode::Ok(3)).await;
    let dir = tempfile::tempdir().unwrap();
    let sets = [
        format!("scan_sink_url=http://{addr}/scans"),
        "scan_interval_ms=0".to_string(),
        "effect_timeout_ms=300".to_string(),
    ];
    let sets: Vec<&str> = sets.iter().map(String::as_str).collect();
    let mut server = ProcessServer::spawn(dir.path(), &sets);
    let mut gate = ws(&server.ws_url("/ws/device?deviceId=D-kill")).await;
    let mut acknowledged = Vec::new();
    for i in 0..8 {
        send(
            &mut gate,
            &json!({"action": "scan", "tagId": format!("T{i}")}).to_string(),
        )
        .await;
        acknowledged.push(next_json(&mut gate).await["scan"]["id"].as_str().unwrap().to_string());
    }
    // Three taken, then the sink fails the fourth (at least twice: the three are long removed).
    sink.wait_until("three delivered, then refusals", |log| {
        log.iter().filter(|r| r.status == 500).count() >= 2
    })
    .await;
    server.signal(9);
    server.wait_exit(WAIT);
    sink.set(Mode::Ok(usize::MAX));

    let server = ProcessServer::spawn(dir.path(), &sets);
    sink.wait_until("every scan delivered", |log| {
        log.iter().filter(|r| r.status == 200).count() >= acknowledged.len()
    })
    .await;
    assert_eq!(sink.delivered(), acknowledged, "each once, in order, across the kill");
    let mut attempts: BTreeMap<String, usize> = BTreeMap::new();
    for r in sink.log.lock().unwrap().iter() {
        *attempts.entry(r.scan_id.clone()).or_default() += 1;
        assert_eq!(r.device_id, "D-kill");
    }
    for id in &acknowledged[..3] {
        assert_eq!(attempts[id], 1, "{id} was taken before the kill and not sent again");
    }
    let devices = admin_get(&server.url("/api/devices")).await;
    assert_eq!(devices[0]["outbox"]["depth"], 0);
}
