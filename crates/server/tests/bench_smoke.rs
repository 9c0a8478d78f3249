//! `switchboard bench` smoke test: every scenario runs for about a second with small numbers
//! against a real server process (and fan-out also against the baseline server), and each
//! report must show real work done — deliveries with none lost, durable writes that add up,
//! objects that hibernated and woke.

mod support;

use clap::Parser;
use serde_json::Value;
use switchboard_bench::{BenchArgs, Report};

/// `switchboard bench …` as the binary parses it.
#[derive(Parser)]
struct Bench {
    #[command(flatten)]
    args: BenchArgs,
}

/// Runs `bench <scenario> <common…> <extra…>` in-process and returns its report.
async fn bench(scenario: &str, common: &[String], extra: &[&str]) -> Report {
    let argv: Vec<String> = ["bench", scenario]
        .into_iter()
        .map(String::from)
        .chain(common.iter().cloned())
        .chain(extra.iter().map(|s| s.to_string()))
        .collect();
    let parsed = Bench::try_parse_from(&argv).unwrap_or_else(|e| panic!("{argv:?}: {e}"));
    // A bound far above a scenario's few seconds: a scenario that stops making progress fails
    // here, naming itself, instead of holding the suite.
    tokio::time::timeout(
        std::time::Duration::from_secs(180),
        switchboard_bench::measure(parsed.args),
    )
    .await
    .unwrap_or_else(|_| panic!("{argv:?} made no progress for 180 s"))
    .unwrap_or_else(|e| panic!("{argv:?}: {e:#}"))
}

fn int(v: &Value) -> u64 {
    v.as_u64()
        .or_else(|| v.as_i64().map(|i| i.max(0) as u64))
        .unwrap_or_else(|| panic!("not an integer: {v}"))
}

/// Checks a fan-out result over `objects` objects with `connected` subscribers in all:
/// everything expected arrived once, in order, with a latency each.
fn assert_complete_fanout(r: &Value, connected: u64, objects: u64) {
    assert_eq!(int(&r["connected"]), connected, "{r}");
    assert!(int(&r["published"]) > 0, "{r}");
    assert_eq!(int(&r["expected"]), int(&r["published"]) * connected / objects, "{r}");
    assert_eq!(int(&r["delivered"]), int(&r["expected"]), "{r}");
    assert_eq!(
        (
            int(&r["lost"]),
            int(&r["duplicated"]),
            int(&r["reordered"]),
            int(&r["untimed"])
        ),
        (0, 0, 0, 0),
        "{r}"
    );
    assert_eq!(int(&r["latency"]["count"]), int(&r["delivered"]), "{r}");
    assert!(r["latency"]["p99_ms"].as_f64().unwrap() > 0.0, "{r}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_scenario_measures_real_work() {
    let dir = tempfile::tempdir().unwrap();
    let server = support::ProcessServer::spawn(dir.path(), &["hibernate_after_ms=500"]);
    let url = format!("http://{}", server.addr);
    let common: Vec<String> = [
        "--url",
        &url,
        "--pid",
        &server.child.id().to_string(),
        "--secret",
        support::SECRET,
    ]
    .map(String::from)
    .to_vec();

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let baseline_url = format!("http://{}", listener.local_addr().unwrap());
    let (stop_baseline, stopped) = tokio::sync::oneshot::channel::<()>();
    let baseline = tokio::spawn(switchboard_bench::baseline::serve(listener, 1024, async {
        let _ = stopped.await;
    }));

    // Fan-out to display sessions, against Switchboard and the baseline in one run.
    let extra = [
        "--objects",
        "2",
        "--subscribers",
        "5",
        "--rate",
        "20",
        "--duration",
        "1",
    ];
    let report = bench("fanout", &common, &[&["--url", &baseline_url][..], &extra].concat()).await;
    assert_eq!(report.results.len(), 2);
    assert_eq!(report.results[0]["server"], "switchboard");
    assert_eq!(report.results[1]["server"], "baseline");
    for r in &report.results {
        assert_complete_fanout(r, 10, 2);
        assert_eq!(int(&r["published"]), 40, "20/s × 1 s × 2 objects: {r}");
    }
    assert!(
        report.results[0]["deliveries_per_cpu_s"]
            .as_f64()
            .is_some_and(|d| d > 0.0)
    );
    assert!(report.comparison.is_some(), "switchboard against baseline: {report:?}");

    // Fan-out of counter increments: deliveries are matched to increments by value.
    let extra = [
        "--kind",
        "counter",
        "--objects",
        "2",
        "--subscribers",
        "3",
        "--rate",
        "20",
        "--duration",
        "1",
    ];
    let report = bench("fanout", &common, &extra).await;
    assert_complete_fanout(&report.results[0], 6, 2);

    // Ramp: two steps that hold, then the confirming step at half the best rate.
    let extra = [
        "--subscribers",
        "5",
        "--start-rate",
        "20",
        "--factor",
        "2",
        "--max-rate",
        "40",
        "--step-duration",
        "0.5",
        "--p99-bound-ms",
        "2000",
    ];
    let report = bench("ramp", &common, &extra).await;
    let r = &report.results[0];
    assert_eq!(r["max_sustainable_rate_per_object"], 40.0, "{r}");
    assert_eq!(r["steps"].as_array().unwrap().len(), 2, "{r}");
    assert_eq!(r["at_half_max"]["held"], true, "{r}");

    // Idle: sockets held with pings answered while awake and while hibernated.
    let extra = [
        "--sockets",
        "40",
        "--duration",
        "1",
        "--ping-interval",
        "0.2",
        "--hibernate-timeout",
        "10",
    ];
    let report = bench("idle", &common, &extra).await;
    let r = &report.results[0];
    assert_eq!(int(&r["connected"]), 40, "{r}");
    assert_eq!(r["all_hibernated"], true, "{r}");
    assert!(int(&r["pongs"]) >= 40, "{r}");
    assert!(int(&r["ping_rtt_hibernated"]["count"]) > 0, "{r}");
    assert_eq!(int(&r["wakes_while_hibernated"]), 0, "pings must not wake objects: {r}");
    assert!(r["server_rss_per_socket_bytes"].is_i64(), "{r}");

    // Durable, through the binary's `bench` subcommand: exactly one JSON line on stdout, and
    // every acknowledged increment is in the stored value.
    let output = tokio::process::Command::new(support::binary())
        .args(["bench", "durable"])
        .args(&common)
        .args(["--clients", "8", "--duration", "1", "--durability", "full"])
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8(output.stdout).unwrap();
    assert!(
        output.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(stdout.lines().count(), 1, "{stdout}");
    let report: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(report["params"]["durability"], "full");
    let r = &report["results"][0];
    assert!(int(&r["writes"]) > 0 && int(&r["errors"]) == 0, "{r}");
    assert_eq!(r["verified"], true, "{r}");
    assert_eq!(int(&r["latency"]["count"]), int(&r["writes"]), "{r}");
    assert!(int(&r["commits"]) > 0, "{r}");

    // Wake: hibernated counters woken by a socket message, one by one.
    let report = bench("wake", &common, &["--objects", "10", "--hibernate-timeout", "10"]).await;
    let r = &report.results[0];
    assert!(int(&r["wakes_observed"]) >= 10, "{r}");
    assert_eq!(int(&r["wake_latency"]["count"]), 10, "{r}");
    assert_eq!(int(&r["awake_latency"]["count"]), 10, "{r}");

    let _ = stop_baseline.send(());
    baseline.await.unwrap();
}

#[allow(dead_code)] // The example's `main` is not used here.
#[path = "../../../examples/chat_room.rs"]
mod chat_room;

/// The topic scenarios against the chat example served in-process, and the kernel's floor: each
/// reports real work — every delivery expected arrived, recovery got all it missed, every effect
/// reached the webhook, every floor frame was drained.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chat_scenarios_and_floor_measure_real_work() {
    let sink = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let hook = format!("http://{sink}/hook");
    let server = support::TestServer::start_with(
        |c| {
            c.app_values.insert("chat_webhook_url".into(), hook.clone().into());
        },
        chat_room::apps(),
    )
    .await;
    let url = server.url("");
    let common = vec!["--url".to_string(), url];
    let one = &bench(
        "topics",
        &common,
        &["--subscribers", "40", "--rate", "5", "--duration", "1"],
    )
    .await
    .results[0];
    assert_eq!((int(&one["delivered"]), int(&one["expected"])), (200, 200), "{one}");
    let many = &bench(
        "topics",
        &common,
        &[
            "--layout",
            "many",
            "--subscribers",
            "40",
            "--rate",
            "40",
            "--duration",
            "1",
        ],
    )
    .await
    .results[0];
    assert_eq!((int(&many["delivered"]), int(&many["expected"])), (40, 40), "{many}");
    let recovery = &bench("recovery", &common, &["--missed", "20", "--rounds", "2"])
        .await
        .results[0];
    assert!(recovery["catch_up_ms_median"].as_f64().unwrap() > 0.0, "{recovery}");
    let effects = &bench("effects", &common, &["--messages", "100", "--sink", &sink.to_string()])
        .await
        .results[0];
    assert_eq!(int(&effects["effects_received"]), 100, "{effects}");
    server.stop().await;

    let floor = &bench(
        "floor",
        &[],
        &["--subscribers=20", "--rate=20", "--duration=1", "--senders=2"],
    )
    .await
    .results[0];
    assert_eq!(int(&floor["frames_written"]), 400, "{floor}");
    assert_eq!(int(&floor["frames_delivered"]), 400, "{floor}");
    assert_eq!(int(&floor["latency"]["count"]), 400, "every frame timed: {floor}");
}

/// The rooms scenarios against the rooms app: every event published reached every subscriber
/// it was meant for, the publish API answered every request, and recovery got all it missed in
/// order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rooms_scenarios_measure_real_work() {
    const JWT: &str = "bench-smoke-jwt-secret-of-enough-length";
    let server = support::TestServer::start_with(
        |c| c.jwt_secret = Some(switchboard_server::config::Secret::new(JWT)),
        vec![],
    )
    .await;
    let common = vec![
        "--url".to_string(),
        server.url(""),
        "--secret".to_string(),
        support::SECRET.to_string(),
        "--jwt-secret".to_string(),
        JWT.to_string(),
    ];
    let small = ["--subscribers", "40", "--rate", "20", "--duration", "1"];
    let one = &bench("rooms", &common, &small).await.results[0];
    assert_eq!((int(&one["delivered"]), int(&one["expected"])), (800, 800), "{one}");
    assert_eq!(int(&one["publish_failures"]), 0, "{one}");
    assert_eq!(int(&one["latency"]["count"]), 800, "{one}");
    let many = &bench("rooms", &common, &[&["--layout", "many"][..], &small[..]].concat())
        .await
        .results[0];
    assert_eq!((int(&many["delivered"]), int(&many["expected"])), (20, 20), "{many}");
    let publish = &bench(
        "rooms-publish",
        &common,
        &["--requests", "200", "--concurrency", "8", "--subscribers", "2"],
    )
    .await
    .results[0];
    assert_eq!(int(&publish["delivered"]), 400, "{publish}");
    let recovery = &bench("rooms-recovery", &common, &["--missed", "30", "--rounds", "2"])
        .await
        .results[0];
    assert_eq!(int(&recovery["catch_up"]["count"]), 2, "{recovery}");
    server.stop().await;
}

/// `bench devices`: readers and the counter baseline connect, hibernate, and make durable
/// writes that the server acknowledged; memory figures come from the server's heap gauge.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn devices_scenario_measures_real_work() {
    let dir = tempfile::tempdir().unwrap();
    let server = support::ProcessServer::spawn(dir.path(), &["hibernate_after_ms=300", "scan_interval_ms=0"]);
    let url = format!("http://{}", server.addr);
    let pid = server.child.id().to_string();
    let common: Vec<String> = ["--url", &url, "--pid", &pid].map(String::from).to_vec();
    let extra = ["--devices", "20", "--duration", "1", "--hibernate-timeout", "10"];
    let report = bench("devices", &common, &extra).await;
    let r = &report.results[0];
    for side in ["readers", "baseline_counters"] {
        let s = &r[side];
        assert_eq!(int(&s["sockets"]), 20, "{s}");
        assert_eq!(s["all_hibernated"], true, "{s}");
        assert!(int(&s["acknowledged"]) >= 20, "every socket wrote at least once: {s}");
        assert_eq!(int(&s["latency"]["count"]), int(&s["acknowledged"]), "{s}");
        assert!(int(&s["storage_commits"]) > 0, "{s}");
        assert!(s["server_heap_per_socket_bytes"].is_i64(), "{s}");
    }
    assert!(
        r["comparison"]["scans_per_increment_per_s"]
            .as_f64()
            .is_some_and(|x| x > 0.0),
        "{r}"
    );
}

/// The Socket.IO scenario, over both transports: every session opens, every scan reaches every
/// session, and the server's memory and CPU are read.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn socketio_scenario_measures_real_work() {
    let dir = tempfile::tempdir().unwrap();
    let server = support::ProcessServer::spawn(dir.path(), &["kiosk_debounce_ms=0"]);
    let common: Vec<String> = [
        "--url",
        &server.url(""),
        "--pid",
        &server.child.id().to_string(),
        "--secret",
        support::SECRET,
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    for transport in ["websocket", "polling"] {
        let extra = [
            "--transport",
            transport,
            "--sessions",
            "20",
            "--hold",
            "0.2",
            "--rate",
            "10",
            "--duration",
            "1",
        ];
        let report = bench("socketio", &common, &extra).await;
        let r = &report.results[0];
        assert_eq!(int(&r["sessions_ready"]), 20, "{r}");
        assert_eq!(int(&r["scans_accepted"]), 10, "{r}");
        assert_eq!(int(&r["deliveries"]), 200, "{r}");
        assert!(r["deliveries_per_cpu_s"].as_f64().is_some(), "{r}");
        assert!(r["server_heap_per_session_bytes"].as_i64().is_some(), "{r}");
    }
}
