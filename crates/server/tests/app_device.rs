//! The RFID device gateway (PROTOCOLS.md §1) through the real server: every row of the
//! contract with its bad inputs, one socket per device, config push and ack, tags, the
//! dashboard, the HTTP fallback, device keys, and what survives a restart.

mod support;

use std::path::Path;

use serde_json::{Value, json};
use support::*;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;

/// A server with the given device settings (`key = value`).
async fn gateway(settings: &[(&str, Value)]) -> TestServer {
    let settings: Vec<(String, Value)> = settings.iter().map(|(k, v)| (k.to_string(), v.clone())).collect();
    TestServer::start_with(move |c| c.app_values.extend(settings), vec![]).await
}

async fn gateway_in(dir: &Path, settings: &[(&str, Value)]) -> TestServer {
    let settings: Vec<(String, Value)> = settings.iter().map(|(k, v)| (k.to_string(), v.clone())).collect();
    TestServer::start_in(dir, move |c| c.app_values.extend(settings), vec![]).await
}

async fn device(server: &TestServer, id: &str) -> Ws {
    ws(&server.ws_url(&format!("/ws/device?deviceId={id}"))).await
}

async fn dashboard(server: &TestServer) -> Ws {
    ws(&server.ws_url(&format!("/ws/dashboard?token={SECRET}"))).await
}

async fn scan(socket: &mut Ws, tag: &str) -> Value {
    send(
        socket,
        &json!({"action": "scan", "tagId": tag, "location": "Main Gate"}).to_string(),
    )
    .await;
    next_json(socket).await
}

/// An admin request: (status, JSON body).
async fn admin(method: &str, url: &str, body: Option<Value>) -> (u16, Value) {
    let client = reqwest::Client::new();
    let mut req = client.request(method.parse().unwrap(), url).bearer_auth(SECRET);
    if let Some(body) = body {
        req = req.json(&body);
    }
    let res = req.send().await.unwrap();
    (res.status().as_u16(), res.json().await.unwrap_or(Value::Null))
}

/// The next dashboard frame of `kind`, skipping others.
async fn next_of(socket: &mut Ws, kind: &str) -> Value {
    loop {
        let frame = next_json(socket).await;
        if frame["type"] == kind {
            return frame;
        }
    }
}

/// A scan is stored, then acknowledged with the §1 reply; one inside the repeat window is
/// refused with nothing stored.
#[tokio::test]
async fn a_scan_is_stored_and_acknowledged_and_a_repeat_refused() {
    let server = gateway(&[("scan_interval_ms", json!(60_000))]).await;
    let mut gate = device(&server, "TEST001").await;
    let before = server.runtime().now_ms();
    let reply = scan(&mut gate, "RFID123").await;
    assert_eq!(reply["success"], true, "{reply}");
    let stored = &reply["scan"];
    assert!(stored["id"].as_str().is_some_and(|id| !id.is_empty()));
    assert_eq!(stored["deviceId"], "TEST001");
    assert_eq!(stored["tagId"], "RFID123");
    assert_eq!(stored["location"], "Main Gate");
    assert!(stored["timestamp"].as_i64().unwrap() >= before);
    assert_eq!(stored["status"], "unknown");
    assert_eq!(reply["user"], Value::Null);

    let repeat = scan(&mut gate, "RFID124").await;
    assert_eq!(
        repeat,
        json!({"success": false, "error": "Please wait 60 seconds between scans"})
    );

    let (status, page) = admin("GET", &server.url("/api/scans?deviceId=TEST001"), None).await;
    assert_eq!(status, 200);
    assert_eq!(page["scans"], json!([stored]), "only the accepted scan is stored");
    assert_eq!(page["next"], Value::Null);
    server.stop().await;
}

/// Every bad frame gets `{"success":false,"error"}` and the socket stays open.
#[tokio::test]
async fn bad_frames_get_errors_and_the_socket_stays() {
    let server = gateway(&[("scan_interval_ms", json!(0))]).await;
    let mut gate = device(&server, "D-bad").await;
    for (frame, says) in [
        ("not json", "JSON"),
        (r#"{"tagId":"A"}"#, "action"),
        (r#"{"action":"launch"}"#, "unknown action"),
        (r#"{"action":"scan"}"#, "tagId"),
        (r#"{"action":"scan","tagId":""}"#, "tagId"),
        (
            r#"{"action":"scan_batch","scans":[{"tagId":"A","timestamp":1,"seq":1},{"tagId":"B"}]}"#,
            "scans[1]",
        ),
        (r#"{"action":"config_ack","version":"one"}"#, "version"),
        (r#"{"action":"config_ack","version":4}"#, "never sent"),
    ] {
        send(&mut gate, frame).await;
        let reply = next_json(&mut gate).await;
        assert_eq!(reply["success"], false, "{frame}: {reply}");
        assert!(reply["error"].as_str().unwrap().contains(says), "{frame}: {reply}");
    }
    use futures_util::SinkExt;
    gate.send(tokio_tungstenite::tungstenite::Message::binary(vec![1, 2, 3]))
        .await
        .unwrap();
    assert!(next_json(&mut gate).await["error"].as_str().unwrap().contains("text"));
    assert_eq!(scan(&mut gate, "OK1").await["success"], true);
    let (_, page) = admin("GET", &server.url("/api/scans?deviceId=D-bad"), None).await;
    assert_eq!(
        page["scans"].as_array().unwrap().len(),
        1,
        "the bad batch stored nothing"
    );
    server.stop().await;
}

/// `scan_batch` is idempotent on `(deviceId, seq)`, keeps the device's timestamps and skips the
/// repeat window.
#[tokio::test]
async fn scan_batch_is_idempotent_on_seq() {
    let server = gateway(&[("scan_interval_ms", json!(60_000))]).await;
    let mut gate = device(&server, "D-batch").await;
    assert_eq!(scan(&mut gate, "LIVE").await["success"], true);
    let batch = json!({"action": "scan_batch", "scans": [
        {"tagId": "A", "location": "Side", "timestamp": 1_700_000_000_000i64, "seq": 1},
        {"tagId": "B", "location": "Side", "timestamp": 1_700_000_001_000i64, "seq": 2},
        {"tagId": "B", "location": "Side", "timestamp": 1_700_000_001_000i64, "seq": 2},
    ]})
    .to_string();
    send(&mut gate, &batch).await;
    assert_eq!(
        next_json(&mut gate).await,
        json!({"success": true, "accepted": 2, "duplicates": 1})
    );
    send(&mut gate, &batch).await;
    assert_eq!(
        next_json(&mut gate).await,
        json!({"success": true, "accepted": 0, "duplicates": 3})
    );
    let (_, page) = admin("GET", &server.url("/api/scans?deviceId=D-batch"), None).await;
    let stamps: Vec<i64> = page["scans"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["timestamp"].as_i64().unwrap())
        .collect();
    assert_eq!(stamps.len(), 3);
    assert_eq!(
        &stamps[1..],
        [1_700_000_001_000, 1_700_000_000_000],
        "newest first, as the device stamped them"
    );
    server.stop().await;
}

/// A newer socket of the same device closes the older with 4000; the device stays online
/// (the dashboard hears online once, then offline when the live socket closes).
#[tokio::test]
async fn a_second_socket_replaces_the_first() {
    let server = gateway(&[("scan_interval_ms", json!(0))]).await;
    let mut board = dashboard(&server).await;
    let mut first = device(&server, "D-two").await;
    assert_eq!(next_of(&mut board, "device_status").await["status"], "online");
    let mut second = device(&server, "D-two").await;
    let close = next_close(&mut first).await.expect("a close frame");
    assert_eq!(u16::from(close.code), 4000);
    assert_eq!(close.reason, "replaced");
    assert_eq!(scan(&mut second, "T").await["success"], true);
    assert_eq!(next_of(&mut board, "scan").await["scan"]["deviceId"], "D-two");
    second.close(None).await.unwrap();
    let offline = next_json(&mut board).await;
    assert_eq!(offline["type"], "device_status", "no status change between: {offline}");
    assert_eq!(offline["status"], "offline");
    assert!(offline["lastSeen"].is_i64());
    server.stop().await;
}

/// A config is stored with a version, sent on every connect until acked, pushed at once to a
/// connected device, and its applied version is listed.
#[tokio::test]
async fn config_is_pushed_until_acked() {
    let server = gateway(&[]).await;
    let url = server.url("/api/devices/D-cfg/config");
    let (status, reply) = admin("POST", &url, Some(json!({"registrationMode": true, "beepMs": 80}))).await;
    assert_eq!((status, reply), (200, json!({"deviceId": "D-cfg", "version": 1})));

    let expected = json!({"action": "config", "version": 1, "registrationMode": true, "beepMs": 80});
    let mut gate = device(&server, "D-cfg").await;
    assert_eq!(next_json(&mut gate).await, expected);
    gate.close(None).await.unwrap();
    let mut gate = device(&server, "D-cfg").await;
    assert_eq!(next_json(&mut gate).await, expected, "not acked: sent again");
    send(&mut gate, r#"{"action":"config_ack","version":1}"#).await;
    gate.close(None).await.unwrap();

    let mut gate = device(&server, "D-cfg").await;
    send(&mut gate, r#"{"action":"heartbeat","timestamp":1}"#).await;
    assert_eq!(
        next_json(&mut gate).await["action"],
        "heartbeat_ack",
        "acked: no config on connect"
    );
    let (_, reply) = admin("POST", &url, Some(json!({"beepMs": null}))).await;
    assert_eq!(reply["version"], 2);
    assert_eq!(
        next_json(&mut gate).await,
        json!({"action": "config", "version": 2, "registrationMode": true}),
        "pushed at once"
    );
    send(&mut gate, r#"{"action":"config_ack","version":2}"#).await;
    send(&mut gate, r#"{"action":"heartbeat","timestamp":2}"#).await;
    next_json(&mut gate).await;
    let (_, devices) = admin("GET", &server.url("/api/devices"), None).await;
    let listed = &devices.as_array().unwrap()[0];
    assert_eq!(listed["configVersion"], 2);
    assert_eq!(listed["configAppliedVersion"], 2);

    for (body, status) in [
        (json!([1]), 400),
        (json!({"version": 7}), 400),
        (json!({"registrationMode": "yes"}), 400),
        (json!({"motd": "x".repeat(16 * 1024)}), 413),
    ] {
        let (got, reply) = admin("POST", &url, Some(body.clone())).await;
        assert_eq!(got, status, "{body}: {reply}");
        assert!(reply["error"].is_string());
    }
    let (status, _) = post_json(&url, &json!({"beepMs": 1}), None).await;
    assert_eq!(status, 401);
    let (_, devices) = admin("GET", &server.url("/api/devices"), None).await;
    assert_eq!(devices[0]["configVersion"], 2, "refused changes changed nothing");
    server.stop().await;
}

/// The tag registry decides known / unknown; in registration mode an unknown tag is offered
/// to the dashboard (live, and to a dashboard that connects later) until it is registered.
#[tokio::test]
async fn tags_decide_the_status_and_registration_offers_unknown_tags() {
    let server = gateway(&[("scan_interval_ms", json!(0))]).await;
    let tags = server.url("/api/tags");
    let ada = json!({"tagId": "T-ADA", "userId": "u1", "name": "Ada"});
    assert_eq!(admin("POST", &tags, Some(ada.clone())).await, (200, ada.clone()));
    let mut gate = device(&server, "D-tags").await;
    let known = scan(&mut gate, "T-ADA").await;
    assert_eq!(known["scan"]["status"], "known");
    assert_eq!(known["user"], json!({"userId": "u1", "name": "Ada"}));
    assert_eq!(scan(&mut gate, "T-NEW").await["scan"]["status"], "unknown");

    let mut board = dashboard(&server).await;
    admin(
        "POST",
        &server.url("/api/devices/D-tags/config"),
        Some(json!({"registrationMode": true})),
    )
    .await;
    assert_eq!(next_json(&mut gate).await["action"], "config");
    let offered = scan(&mut gate, "T-NEW").await;
    assert_eq!(offered["scan"]["status"], "registration");
    let feed = next_of(&mut board, "scan").await;
    assert_eq!(feed["scan"], offered["scan"]);
    assert_eq!(
        next_json(&mut board).await,
        json!({"type": "tag_pending_registration", "deviceId": "D-tags", "tagId": "T-NEW"})
    );
    let mut later = dashboard(&server).await;
    assert_eq!(
        next_json(&mut later).await["tagId"],
        "T-NEW",
        "a new dashboard sees what waits"
    );

    let bob = json!({"tagId": "T-NEW", "userId": "u2", "name": "Bob"});
    admin("POST", &tags, Some(bob.clone())).await;
    assert_eq!(scan(&mut gate, "T-NEW").await["scan"]["status"], "known");
    let (status, list) = admin("GET", &tags, None).await;
    assert_eq!((status, list), (200, json!([ada, bob])));
    assert_eq!(admin("DELETE", &server.url("/api/tags/T-ADA"), None).await.0, 200);
    let (status, gone) = admin("DELETE", &server.url("/api/tags/T-ADA"), None).await;
    assert_eq!(status, 404, "{gone}");
    for bad in [
        json!({"tagId": "", "userId": "u", "name": "n"}),
        json!({"tagId": "x"}),
        json!({"tagId": "x", "userId": "u", "name": "n", "extra": 1}),
    ] {
        assert_eq!(admin("POST", &tags, Some(bad.clone())).await.0, 400, "{bad}");
    }
    assert_eq!(post_json(&tags, &bob, None).await.0, 401);
    server.stop().await;
}

/// The HTTP fallback goes through the same object: the same reply body, the same repeat
/// window, and records like the socket's.
#[tokio::test]
async fn the_http_fallback_shares_the_object_and_its_window() {
    let server = gateway(&[("scan_interval_ms", json!(60_000))]).await;
    let url = server.url("/api/rfid/scan");
    let (status, by_http) = post_json(
        &url,
        &json!({"deviceId": "D-http", "tagId": "T1", "location": "Dock"}),
        None,
    )
    .await;
    assert_eq!(status, 200, "{by_http}");
    assert_eq!(by_http["success"], true);
    assert_eq!(by_http["scan"]["deviceId"], "D-http");
    let mut gate = device(&server, "D-http").await;
    let refused = scan(&mut gate, "T1").await;
    assert_eq!(
        refused["error"], "Please wait 60 seconds between scans",
        "one window for both"
    );
    let (status, again) = post_json(
        &url,
        &json!({"deviceId": "D-http", "tagId": "T1", "location": "Dock"}),
        None,
    )
    .await;
    assert_eq!((status, &again), (429, &refused));

    // A second device: its socket scan and the first's HTTP scan make records of one shape.
    let mut other = device(&server, "D-sock").await;
    let by_socket = scan(&mut other, "T1").await;
    let strip = |v: &Value| {
        let mut v = v["scan"].clone();
        for k in ["id", "deviceId", "timestamp"] {
            v.as_object_mut().unwrap().remove(k);
        }
        v
    };
    let mut socket_record = strip(&by_socket);
    socket_record["location"] = "Dock".into();
    assert_eq!(socket_record, strip(&by_http));
    assert_eq!(
        by_socket.as_object().unwrap().keys().collect::<Vec<_>>(),
        by_http.as_object().unwrap().keys().collect::<Vec<_>>()
    );

    for (body, says) in [
        (json!({"tagId": "T"}), "deviceId"),
        (json!({"deviceId": "has space", "tagId": "T"}), "deviceId"),
        (json!({"deviceId": "D", "tagId": ""}), "tagId"),
    ] {
        let (status, reply) = post_json(&url, &body, None).await;
        assert_eq!(status, 400, "{body}: {reply}");
        assert_eq!(reply["success"], false);
        assert!(reply["error"].as_str().unwrap().contains(says), "{reply}");
    }
    server.stop().await;
}

/// With `device_keys = true` a device needs its registered key (`?key=` or Bearer); a missing
/// or wrong one is 401 before the upgrade, on the socket and the HTTP fallback alike.
#[tokio::test]
async fn device_keys_are_checked_before_the_upgrade() {
    let server = gateway(&[("device_keys", json!(true))]).await;
    let refused = |url: String| async move {
        match tokio_tungstenite::connect_async(url).await {
            Err(tokio_tungstenite::tungstenite::Error::Http(res)) => res.status().as_u16(),
            other => panic!("expected an HTTP refusal, got {:?}", other.map(|_| ())),
        }
    };
    assert_eq!(refused(server.ws_url("/ws/device?deviceId=D-key")).await, 401);
    let (status, _) = admin("PUT", &server.url("/api/devices/D-key"), Some(json!({"key": "k-123"}))).await;
    assert_eq!(status, 200);
    assert_eq!(refused(server.ws_url("/ws/device?deviceId=D-key&key=wrong")).await, 401);
    let mut gate = ws(&server.ws_url("/ws/device?deviceId=D-key&key=k-123")).await;
    send(&mut gate, r#"{"action":"heartbeat","timestamp":3}"#).await;
    assert_eq!(next_json(&mut gate).await["timestamp"], 3);

    let mut req = server
        .ws_url("/ws/device?deviceId=D-key")
        .into_client_request()
        .unwrap();
    req.headers_mut()
        .insert("authorization", HeaderValue::from_static("Bearer k-123"));
    let (mut by_header, _) = tokio_tungstenite::connect_async(req).await.unwrap();
    send(&mut by_header, r#"{"action":"heartbeat","timestamp":4}"#).await;
    assert_eq!(next_json(&mut by_header).await["timestamp"], 4);

    let url = server.url("/api/rfid/scan");
    let body = json!({"deviceId": "D-key", "tagId": "T"});
    assert_eq!(post_json(&url, &body, None).await.0, 401);
    assert_eq!(post_json(&url, &body, Some("k-123")).await.0, 200);
    assert_eq!(
        admin("PUT", &server.url("/api/devices/D-key"), Some(json!({"key": ""})))
            .await
            .0,
        400
    );
    assert_eq!(
        post_json(&server.url("/api/devices/D-key"), &json!({"key": "x"}), None)
            .await
            .0,
        405
    );
    server.stop().await;
}

/// The dashboard and the admin API want the admin key: 401 before the upgrade otherwise.
#[tokio::test]
async fn the_dashboard_wants_the_admin_key() {
    let server = gateway(&[]).await;
    for url in [
        server.ws_url("/ws/dashboard"),
        server.ws_url("/ws/dashboard?token=wrong"),
    ] {
        match tokio_tungstenite::connect_async(url).await {
            Err(tokio_tungstenite::tungstenite::Error::Http(res)) => assert_eq!(res.status().as_u16(), 401),
            other => panic!("expected 401, got {:?}", other.map(|_| ())),
        }
    }
    for path in ["/api/devices", "/api/scans", "/api/tags"] {
        let (status, body) = get_json(&server.url(path)).await;
        assert_eq!(status, 401, "{path}");
        assert!(body["error"].is_string());
    }
    let mut board = dashboard(&server).await;
    send(&mut board, "hello").await;
    assert_eq!(next_json(&mut board).await["success"], false);
    server.stop().await;
}

/// `GET /api/scans` pages through every device's scans newest first, each exactly once, and
/// filters by device and time; bad parameters are 400.
#[tokio::test]
async fn scans_page_across_devices() {
    let server = gateway(&[("scan_interval_ms", json!(0))]).await;
    let mut ids = Vec::new();
    for device_id in ["D-a", "D-b", "D-c"] {
        let mut gate = device(&server, device_id).await;
        for tag in ["T1", "T2", "T3"] {
            ids.push(scan(&mut gate, tag).await["scan"].clone());
        }
    }
    let mut seen = Vec::new();
    let mut url = server.url("/api/scans?limit=4");
    loop {
        let (status, page) = admin("GET", &url, None).await;
        assert_eq!(status, 200, "{page}");
        seen.extend(page["scans"].as_array().unwrap().iter().cloned());
        match page["next"].as_str() {
            Some(next) => url = server.url(&format!("/api/scans?limit=4&before={next}")),
            None => break,
        }
    }
    assert_eq!(seen.len(), 9, "each scan once");
    let key = |s: &Value| (s["timestamp"].as_i64().unwrap(), s["id"].as_str().unwrap().to_string());
    assert!(seen.windows(2).all(|w| key(&w[0]) > key(&w[1])), "newest first");
    let mut expected: Vec<_> = ids.iter().map(key).collect();
    let mut got: Vec<_> = seen.iter().map(key).collect();
    expected.sort();
    got.sort();
    assert_eq!(got, expected);

    let newest = seen[0]["timestamp"].as_i64().unwrap();
    let (_, recent) = admin("GET", &server.url(&format!("/api/scans?since={newest}")), None).await;
    assert!(
        recent["scans"]
            .as_array()
            .unwrap()
            .iter()
            .all(|s| s["timestamp"].as_i64().unwrap() >= newest)
    );
    let (_, one) = admin("GET", &server.url("/api/scans?deviceId=D-b"), None).await;
    assert_eq!(one["scans"].as_array().unwrap().len(), 3);
    for bad in [
        "limit=0",
        "limit=5000",
        "since=yesterday",
        "before=nope",
        "deviceId=has%20space",
    ] {
        let (status, body) = admin("GET", &server.url(&format!("/api/scans?{bad}")), None).await;
        assert_eq!(status, 400, "{bad}: {body}");
    }
    server.stop().await;
}

/// The repeat window, the config and the device list hold across a restart: a scan right
/// after one accepted before the restart is refused, and every device is still listed.
#[tokio::test]
async fn the_repeat_window_and_the_devices_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let settings = [("scan_interval_ms", json!(60_000))];
    let server = gateway_in(dir.path(), &settings).await;
    let mut gate = device(&server, "D-restart").await;
    assert_eq!(scan(&mut gate, "T").await["success"], true);
    admin(
        "POST",
        &server.url("/api/devices/D-cfg-only/config"),
        Some(json!({"registrationMode": true})),
    )
    .await;
    drop(gate);
    server.stop().await;

    let server = gateway_in(dir.path(), &settings).await;
    let (_, devices) = admin("GET", &server.url("/api/devices"), None).await;
    let listed: Vec<&str> = devices
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["deviceId"].as_str().unwrap())
        .collect();
    assert_eq!(listed, ["D-cfg-only", "D-restart"]);
    assert!(devices.as_array().unwrap().iter().all(|d| d["status"] == "offline"));
    let mut gate = device(&server, "D-restart").await;
    assert_eq!(
        scan(&mut gate, "T").await["error"],
        "Please wait 60 seconds between scans"
    );
    server.stop().await;
}

/// The repeat window holds across hibernation: the device object is dropped from memory
/// between two scans, and the second is still refused.
#[tokio::test]
async fn the_repeat_window_survives_hibernation() {
    let server = TestServer::start_with(
        |c| {
            c.app_values.insert("scan_interval_ms".into(), json!(60_000));
            c.hibernate_after = std::time::Duration::from_millis(50);
        },
        vec![],
    )
    .await;
    let mut gate = device(&server, "D-sleep").await;
    assert_eq!(scan(&mut gate, "T").await["success"], true);
    let hibernated = server.runtime().stats().hibernations;
    server
        .wait_for_stats("the device hibernates", |s| {
            s.hibernations > hibernated && s.hibernated_objects >= 1
        })
        .await;
    let wakes = server.runtime().stats().wakes;
    assert_eq!(
        scan(&mut gate, "T").await["error"],
        "Please wait 60 seconds between scans"
    );
    assert!(server.runtime().stats().wakes > wakes, "the scan woke it");
    server.stop().await;
}
