//! `devices`: the RFID gateway (PROTOCOLS.md §1) under load. N readers connect (each answered
//! one heartbeat); the server's memory per connected reader is taken, then again once every
//! device object has hibernated (its socket still open); then every reader scans in a closed
//! loop — its next scan once the previous is acknowledged, that is stored durably — for
//! `--duration`: acknowledged scans per second and their latency.
//!
//! The baseline, measured in the same run on the same server: N sockets on live counters
//! (`/ws/counter/{name}`), one object each, through the same steps — memory per socket awake and
//! hibernated, then durable increments over the socket in a closed loop. What a device costs
//! beyond it is the gateway's own work: the tag lookup, the directory, the dashboard feed, the
//! scan record.
//!
//! The server must run with `scan_interval_ms = 0`, or the repeat window refuses a reader's
//! scans but one a second.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::task::JoinSet;
use tokio_tungstenite::tungstenite::Message;

use crate::client::{self, Sources, Ws};
use crate::latency::{Recorder, Summary};
use crate::probe;
use crate::report::{self, Report};
use crate::scenario::{merge, run_id};
use crate::target::{CommonArgs, Target, round3};

/// The server's live-heap gauge (see `switchboard_server::telemetry::record_heap`).
const HEAP: &str = "switchboard_heap_allocated_bytes";
/// Objects that may stay in memory between phases (the device directory and tag registry).
const QUIET_OBJECTS: f64 = 2.0;
/// How long one reply may take before the bench gives up on the socket.
const REPLY_WAIT: Duration = Duration::from_secs(15);

/// Flags of `devices`.
#[derive(clap::Args, Debug, Clone)]
pub struct DevicesArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    /// Connected readers (and, for the baseline, counter sockets).
    #[arg(long, default_value_t = 1000)]
    pub devices: usize,
    /// Seconds of scanning (and of incrementing, for the baseline).
    #[arg(long, default_value_t = 10.0)]
    pub duration: f64,
    /// Seconds to wait for every object to hibernate (the server's `hibernate_after_ms`
    /// decides when); 0 skips the hibernated measurement.
    #[arg(long, default_value_t = 30.0)]
    pub hibernate_timeout: f64,
    /// Sockets connecting at once.
    #[arg(long, default_value_t = 256)]
    pub connect_concurrency: usize,
    /// Sockets per source address before the next one (127.0.0.1, 127.0.0.2, …): below the
    /// server's `max_connections_per_ip` (default 1000), which the bench's HTTP probes share.
    #[arg(long, default_value_t = 500)]
    pub per_source: u64,
}

/// What a socket stands for: a reader, or the baseline's counter socket.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Client {
    Reader,
    Counter,
}

impl Client {
    fn path(self, name: &str) -> String {
        match self {
            Client::Reader => format!("/ws/device?deviceId={name}"),
            Client::Counter => format!("/ws/counter/{name}"),
        }
    }

    /// A frame the gateway answers without waking the object, and how its answer starts.
    fn hello(self) -> (&'static str, &'static str) {
        match self {
            Client::Reader => (
                r#"{"action":"heartbeat","timestamp":0}"#,
                r#"{"action":"heartbeat_ack""#,
            ),
            Client::Counter => (r#"{"type":"ping"}"#, r#"{"type":"pong""#),
        }
    }

    /// The `k`-th durable write: a scan, or an increment.
    fn write(self, k: u64) -> String {
        match self {
            Client::Reader => json!({"action": "scan", "tagId": format!("TAG-{}", k % 50), "location": "Bench"}),
            Client::Counter => json!({"type": "increment", "id": k}),
        }
        .to_string()
    }

    /// Whether `frame` acknowledges the `k`-th write; `Err` if it refuses it.
    fn acknowledges(self, frame: &Value, k: u64) -> anyhow::Result<bool> {
        match self {
            Client::Reader if frame["success"] == true => Ok(true),
            Client::Reader if frame["success"] == false => {
                let error = frame["error"].as_str().unwrap_or_default();
                if error.starts_with("Please wait") {
                    bail!("the repeat window refused a scan: serve with --set scan_interval_ms=0");
                }
                bail!("a scan was refused: {error}")
            }
            Client::Reader => Ok(false),
            // A counter's own socket also gets the broadcast of its change; the result is ours.
            Client::Counter => Ok(frame["type"] == "result" && frame["id"] == k),
        }
    }
}

/// Runs the readers and the baseline against every server in `--url`, one after the other.
pub async fn run(args: DevicesArgs) -> anyhow::Result<Report> {
    anyhow::ensure!(
        args.devices > 0 && args.duration > 0.0,
        "--devices and --duration must be positive"
    );
    let http = client::http();
    let targets = Target::switchboards(&args.common, &http, "has no device gateway").await?;
    let mut results = Vec::new();
    for target in &targets {
        let readers = phase(&http, target, &args, Client::Reader).await?;
        let counters = phase(&http, target, &args, Client::Counter).await?;
        let ratio = |key: &str| -> Value {
            match (readers[key].as_f64(), counters[key].as_f64()) {
                (Some(r), Some(c)) if c != 0.0 => json!(round3(r / c)),
                _ => Value::Null,
            }
        };
        let comparison = json!({
            "scans_per_increment_per_s": ratio("acknowledged_per_s"),
            "heap_per_reader_over_counter_socket": ratio("server_heap_per_socket_bytes"),
            "heap_per_hibernated_reader_over_counter_socket": ratio("server_heap_per_hibernated_socket_bytes"),
        });
        let result = json!({"readers": readers, "baseline_counters": counters, "comparison": comparison});
        results.push(merge(target.describe(), result));
    }
    let params = json!({
        "devices": args.devices,
        "duration_s": args.duration,
        "hibernate_timeout_s": args.hibernate_timeout,
    });
    Ok(Report::new("devices", params, results))
}

/// One kind of client through the steps: connect, memory awake, memory hibernated, writes.
async fn phase(http: &reqwest::Client, target: &Target, args: &DevicesArgs, client: Client) -> anyhow::Result<Value> {
    let prefix = run_id(match client {
        Client::Reader => "reader",
        Client::Counter => "counter",
    });
    let n = args.devices;
    // The previous phase's objects must be out of memory first, or freeing them would show
    // as this phase's memory going down.
    wait_quiet(http, target, Duration::from_secs_f64(args.hibernate_timeout.max(1.0))).await;
    let hibernated0 = probe::metric(http, &target.base, "switchboard_objects_hibernated").await;
    let heap0 = probe::metric(http, &target.base, HEAP).await;
    let rss0 = target.sample();

    let sources = Sources::new(args.per_source);
    let bar = report::bar(n as u64, "connecting");
    let connected = client::for_each_bounded(n, args.connect_concurrency, &bar, |i| {
        let url = target.ws(&client.path(&format!("{prefix}-{i}")));
        let addr = target.addr;
        async move {
            let mut ws = client::connect(&url, addr, Some(sources.of(i as u64))).await?;
            let (hello, answer) = client.hello();
            ws.send(Message::text(hello)).await?;
            let reply = next_text(&mut ws).await?;
            anyhow::ensure!(reply.starts_with(answer), "expected {answer}…, got {reply}");
            anyhow::Ok(ws)
        }
    })
    .await;
    bar.finish_and_clear();
    let mut sockets = Vec::with_capacity(n);
    for ws in connected {
        sockets.push(ws.context("a socket did not connect")?);
    }
    let heap_connected = probe::metric(http, &target.base, HEAP).await;
    let rss_connected = target.sample();

    let (mut heap_hibernated, mut rss_hibernated, mut all_hibernated) = (None, None, None);
    if args.hibernate_timeout > 0.0 {
        let bar = report::bar(n as u64, "waiting for hibernation");
        let want = hibernated0.unwrap_or(0.0) as u64 + n as u64;
        let limit = Duration::from_secs_f64(args.hibernate_timeout);
        let (_, reached) = probe::wait_hibernated(http, &target.base, want, limit).await;
        bar.finish_and_clear();
        all_hibernated = Some(reached);
        heap_hibernated = probe::metric(http, &target.base, HEAP).await;
        rss_hibernated = target.sample();
    }

    let commits0 = probe::metric(http, &target.base, "switchboard_storage_commits_total").await;
    let acked = Arc::new(AtomicU64::new(0));
    let recorder = Arc::new(Recorder::default());
    let started = Instant::now();
    let until = started + Duration::from_secs_f64(args.duration);
    let bar = report::bar((args.duration * 10.0) as u64, "durable writes");
    let mut writers = JoinSet::new();
    for (i, ws) in sockets.into_iter().enumerate() {
        let (acked, recorder) = (acked.clone(), recorder.clone());
        writers.spawn(write_loop(ws, i, client, until, acked, recorder));
    }
    while Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(100)).await;
        bar.inc(1);
    }
    let mut first_error = None;
    while let Some(done) = writers.join_next().await {
        if let Err(e) = done.context("a writer panicked")? {
            first_error.get_or_insert_with(|| format!("{e:#}"));
        }
    }
    bar.finish_and_clear();
    let elapsed = started.elapsed().as_secs_f64();
    let commits1 = probe::metric(http, &target.base, "switchboard_storage_commits_total").await;
    if let Some(e) = first_error {
        bail!("{client:?}: {e}");
    }

    let per_socket = |after: Option<f64>| -> Option<i64> { Some(((after? - heap0?) / n as f64).round() as i64) };
    let rss_per_socket = |after: Option<probe::Sample>| -> Option<i64> {
        Some((after?.rss_bytes as i64 - rss0?.rss_bytes as i64) / n as i64)
    };
    let acked = acked.load(Ordering::Relaxed);
    Ok(json!({
        "sockets": n,
        "server_heap_per_socket_bytes": per_socket(heap_connected),
        "server_heap_per_hibernated_socket_bytes": per_socket(heap_hibernated),
        "server_rss_per_socket_bytes": rss_per_socket(rss_connected),
        "server_rss_per_hibernated_socket_bytes": rss_per_socket(rss_hibernated),
        "all_hibernated": all_hibernated,
        "acknowledged": acked,
        "elapsed_s": round3(elapsed),
        "acknowledged_per_s": (acked as f64 / elapsed).round(),
        "storage_commits": probe::delta(commits0, commits1),
        "latency": Summary::of(&recorder.take()),
    }))
}

/// Waits, at most `limit`, until no more than [`QUIET_OBJECTS`] objects are in memory.
async fn wait_quiet(http: &reqwest::Client, target: &Target, limit: Duration) {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        let live = probe::metric(http, &target.base, "switchboard_objects_live").await;
        if live.unwrap_or(0.0) <= QUIET_OBJECTS {
            return;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Writes in a closed loop until `until`: the next write once the last is acknowledged.
async fn write_loop(
    mut ws: Ws,
    index: usize,
    client: Client,
    until: Instant,
    acked: Arc<AtomicU64>,
    recorder: Arc<Recorder>,
) -> anyhow::Result<()> {
    let mut k = 0u64;
    while Instant::now() < until {
        k += 1;
        let sent = Instant::now();
        ws.send(Message::text(client.write(k))).await?;
        loop {
            let frame: Value = serde_json::from_str(&next_text(&mut ws).await?)?;
            if client.acknowledges(&frame, k)? {
                break;
            }
        }
        recorder.record(index, sent.elapsed().as_micros() as u64);
        acked.fetch_add(1, Ordering::Relaxed);
    }
    client::goodbye(&mut ws).await;
    Ok(())
}

async fn next_text(ws: &mut Ws) -> anyhow::Result<String> {
    loop {
        match tokio::time::timeout(REPLY_WAIT, ws.next()).await {
            Ok(Some(Ok(Message::Text(text)))) => return Ok(text.to_string()),
            Ok(Some(Ok(Message::Ping(_) | Message::Pong(_)))) => continue,
            Ok(other) => bail!("the socket ended: {other:?}"),
            Err(_) => bail!("no answer within {REPLY_WAIT:?}"),
        }
    }
}
