//! `switchboard simulate devices` against a real server: readers that scan, heartbeat, go
//! offline and replay their buffers (once twice over) lose nothing — every scan is
//! acknowledged once, the replayed batch is refused as duplicates, and the server stored
//! exactly what it acknowledged.

mod support;

use clap::Parser;
use serde_json::json;
use support::*;
use switchboard_bench::simulate::{SimulateArgs, Simulated};

#[derive(Parser)]
struct Simulate {
    #[command(flatten)]
    args: SimulateArgs,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn simulated_readers_lose_no_scan() {
    let server = TestServer::start_with(
        |c| {
            c.app_values.insert("scan_interval_ms".into(), json!(0));
        },
        vec![],
    )
    .await;
    let url = server.url("");
    let argv = [
        "simulate",
        "devices",
        "--url",
        &url,
        "--secret",
        SECRET,
        "--count",
        "20",
        "--rate",
        "40",
        "--duration",
        "2",
        "--offline-chance",
        "0.3",
    ];
    let Simulated::Devices(args) = Simulate::try_parse_from(argv).unwrap().args.what;
    let report = switchboard_bench::simulate::devices(args).await.unwrap();
    let tally = &report.results[0];
    assert_eq!(tally["lost"], 0, "{tally}");
    assert_eq!(tally["errors"], 0, "{tally}");
    let sent = tally["scans_sent"].as_u64().unwrap();
    assert!(sent >= 60, "{tally}");
    assert_eq!(tally["acknowledged"], sent, "{tally}");
    assert_eq!(tally["stored"], sent, "{tally}");
    assert!(
        tally["sent_buffered"].as_u64().unwrap() > 0,
        "some readers went offline: {tally}"
    );
    assert!(tally["duplicates_refused"].as_u64().unwrap() > 0, "{tally}");
    assert!(tally["reconnects"].as_u64().unwrap() > 0, "{tally}");
    assert!(tally["heartbeats"].as_u64().unwrap() > 0, "{tally}");
    server.stop().await;
}
