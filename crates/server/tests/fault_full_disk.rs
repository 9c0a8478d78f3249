//! A full disk, as a file-size limit on the server process (`prlimit --fsize`): once storage
//! cannot grow, every write is refused with a clear 503 and readiness drops; nothing that was
//! acknowledged is lost; when space returns (the limit is raised on the running process) the
//! server takes writes again by itself, and a restart finds exactly what was acknowledged.

mod support;

use std::process::Command;

use serde_json::json;
use support::*;

async fn increment(client: &reqwest::Client, server: &ProcessServer) -> reqwest::StatusCode {
    client
        .post(server.url("/rpc/counter.increment"))
        .json(&json!({"name": "disk"}))
        .send()
        .await
        .unwrap()
        .status()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_refuses_writes_and_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = Command::new("prlimit");
    // Room for the database and a little of its log, far less than 2,000 commits need.
    cmd.args(["--fsize=262144:unlimited", "--"])
        .arg(binary())
        .args(["serve", "--listen", "127.0.0.1:0", "--log-format", "json", "--data-dir"])
        .arg(dir.path())
        .env("SWITCHBOARD_AUTH_SECRET", SECRET)
        .env("RUST_LOG", "warn,switchboard_server=info");
    let mut server = ProcessServer::spawn_command(cmd);
    let client = reqwest::Client::new();

    let mut acknowledged = 0;
    let refusal = loop {
        let status = increment(&client, &server).await;
        if status != 200 {
            break status;
        }
        acknowledged += 1;
        assert!(acknowledged < 2000, "the file-size limit was never reached");
    };
    assert_eq!(refusal, 503, "a write that cannot be stored is refused clearly");
    let ready = client.get(server.url("/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), 503);
    assert!(ready.text().await.unwrap().contains("\"error\""));
    for _ in 0..5 {
        assert_eq!(increment(&client, &server).await, 503, "still refused while full");
    }

    // Space returns: the running process may grow its files again.
    let raised = Command::new("prlimit")
        .args(["--pid", &server.child.id().to_string(), "--fsize=unlimited:unlimited"])
        .status()
        .unwrap();
    assert!(raised.success());
    // The writer's own probe finds storage working; each retry is a round trip, not a sleep.
    let started = std::time::Instant::now();
    while increment(&client, &server).await != 200 {
        assert!(started.elapsed() < WAIT, "writes did not resume");
    }
    acknowledged += 1;
    for _ in 0..10 {
        assert_eq!(increment(&client, &server).await, 200);
        acknowledged += 1;
    }
    let (_, value) = post_json(&server.url("/rpc/counter.getValue"), &json!({"name": "disk"}), None).await;
    assert_eq!(value["value"], acknowledged, "exactly the acknowledged writes");

    server.signal(15);
    server.wait_exit(WAIT);
    let mut again = ProcessServer::spawn(dir.path(), &[]);
    let (_, value) = post_json(&again.url("/rpc/counter.getValue"), &json!({"name": "disk"}), None).await;
    assert_eq!(value["value"], acknowledged, "and after a restart");
    again.signal(15);
    again.wait_exit(WAIT);
}
