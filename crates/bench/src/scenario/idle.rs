//! `idle`: N sockets held open with a periodic `{"type":"ping"}` round trip each (answered by
//! the server's auto-response, without waking the object). Reports the server's resident
//! memory per socket while the objects are awake, and again once they have hibernated.
//!
//! Every socket is an open file on both ends. This process, like the server, may hold only as
//! many as its `RLIMIT_NOFILE` allows (`ulimit -n`; docs/deployment.md says how to raise it),
//! so the scenario refuses a count it cannot hold rather than failing half way.

use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio_tungstenite::tungstenite::Message;

use crate::client::{self, Sources, Ws};
use crate::latency::{Recorder, Summary};
use crate::probe::{self, Sample};
use crate::report::{self, Report};
use crate::scenario::{merge, run_id};
use crate::target::{CommonArgs, ServerKind, Target, round3};
use crate::wire::ObjectKind;

/// Files the bench keeps for itself besides the sockets (HTTP connections, stdio, /proc).
const SPARE_FILES: u64 = 100;

/// Flags of `idle`.
#[derive(clap::Args, Debug, Clone)]
pub struct IdleArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    /// Sockets to hold.
    #[arg(long, default_value_t = 1000)]
    pub sockets: usize,
    /// Sockets per object (1: every socket has an object of its own).
    #[arg(long, default_value_t = 1)]
    pub per_object: usize,
    /// What the sockets connect to.
    #[arg(long, value_enum, default_value_t = ObjectKind::Counter)]
    pub kind: ObjectKind,
    /// Seconds to hold the sockets (pinging) before measuring the awake memory.
    #[arg(long, default_value_t = 10.0)]
    pub duration: f64,
    /// Seconds between two pings of one socket.
    #[arg(long, default_value_t = 5.0)]
    pub ping_interval: f64,
    /// Seconds to wait for every object to hibernate (the server's `hibernate_after_ms`
    /// decides when); 0 skips the hibernated measurement.
    #[arg(long, default_value_t = 30.0)]
    pub hibernate_timeout: f64,
    /// Sockets per source address before the next one (127.0.0.1, 127.0.0.2, …). Capped by
    /// the local port range.
    #[arg(long, default_value_t = 50_000)]
    pub per_source: u64,
    /// Sockets connecting at once.
    #[arg(long, default_value_t = 256)]
    pub connect_concurrency: usize,
}

/// Runs the idle hold against every server in `--url`, one after the other.
pub async fn run(args: IdleArgs) -> anyhow::Result<Report> {
    anyhow::ensure!(
        args.sockets > 0 && args.per_object > 0 && args.ping_interval > 0.0,
        "--sockets, --per-object and --ping-interval must be positive"
    );
    if let Some(limit) = probe::open_files_limit(None) {
        anyhow::ensure!(
            args.sockets as u64 + SPARE_FILES <= limit,
            "{} sockets need {} open files but this process may hold {limit} (RLIMIT_NOFILE, `ulimit -n`); \
             raise it (docs/deployment.md) or use fewer sockets",
            args.sockets,
            args.sockets as u64 + SPARE_FILES
        );
    }
    let http = client::http();
    let targets = Target::all(&args.common, &http).await?;
    let mut results = Vec::new();
    for target in &targets {
        results.push(merge(target.describe(), hold(&http, target, &args).await?));
    }
    let params = json!({
        "sockets": args.sockets,
        "per_object": args.per_object,
        "kind": args.kind,
        "duration_s": args.duration,
        "ping_interval_s": args.ping_interval,
        "hibernate_timeout_s": args.hibernate_timeout,
        "per_source": Sources::new(args.per_source).per_source,
    });
    Ok(Report::new("idle", params, results))
}

/// What the sockets of one hold share.
#[derive(Default)]
struct Pings {
    sent: AtomicU64,
    answered: AtomicU64,
    closed_by_server: AtomicU64,
    first_close: Mutex<Option<String>>,
    recorder: Recorder,
}

/// The server's live-heap gauge (see `switchboard_server::telemetry::record_heap`).
const HEAP: &str = "switchboard_heap_allocated_bytes";

async fn hold(http: &reqwest::Client, target: &Target, args: &IdleArgs) -> anyhow::Result<Value> {
    let objects = args.sockets.div_ceil(args.per_object);
    let prefix = run_id("idle");
    let names: Arc<Vec<String>> = Arc::new((0..objects).map(|i| format!("{prefix}-{i}")).collect());
    let bar = report::bar(objects as u64, "preparing objects");
    for result in client::for_each_bounded(objects, 64, &bar, |i| {
        let (http, target, secret, kind, names) = (
            http.clone(),
            target.clone(),
            args.common.secret.clone(),
            args.kind,
            names.clone(),
        );
        async move { kind.prepare(&http, &target, &names[i], &secret).await }
    })
    .await
    {
        result?;
    }
    bar.finish_and_clear();

    let switchboard = target.kind == ServerKind::Switchboard;
    let hibernated0 = if switchboard {
        probe::metric(http, &target.base, "switchboard_objects_hibernated").await
    } else {
        None
    };
    let auto0 = probe::metric(http, &target.base, "switchboard_auto_responses_total").await;
    // The live heap, where the server publishes it: exact, unlike RSS, which an allocator may
    // keep high after memory is freed.
    let heap_before = probe::metric(http, &target.base, HEAP).await;
    let before = target.sample();
    let client_before = Sample::of(None).ok();

    let sources = Sources::new(args.per_source);
    let started = Instant::now();
    let bar = report::bar(args.sockets as u64, "connecting sockets");
    let sockets = client::for_each_bounded(args.sockets, args.connect_concurrency, &bar, |i| {
        let name = names[i % objects].clone();
        let (url, addr, kind) = (target.ws(&args.kind.socket_path(&name)), target.addr, args.kind);
        async move {
            let mut ws = client::connect(&url, addr, Some(sources.of(i as u64))).await?;
            kind.ready(&mut ws, &name).await?;
            anyhow::Ok(ws)
        }
    })
    .await;
    bar.finish_and_clear();
    let connect_s = started.elapsed().as_secs_f64();

    let pings = Arc::new(Pings::default());
    let (stop, _) = watch::channel(false);
    let mut tasks = JoinSet::new();
    let mut connect_errors = 0;
    let mut first_connect_error = None;
    let interval = Duration::from_secs_f64(args.ping_interval);
    let connected_at = Instant::now();
    for (i, socket) in sockets.into_iter().enumerate() {
        match socket {
            Ok(ws) => {
                // Spread the first pings over one interval.
                let first = connected_at + interval.mul_f64(i as f64 / args.sockets as f64);
                tasks.spawn(ping_loop(ws, i, first, interval, pings.clone(), stop.subscribe()));
            }
            Err(e) => {
                connect_errors += 1;
                first_connect_error.get_or_insert_with(|| format!("{e:#}"));
            }
        }
    }
    let connected = args.sockets - connect_errors;
    let after_connect = target.sample();

    let bar = report::bar((args.duration * 10.0) as u64, "holding");
    let until = connected_at + Duration::from_secs_f64(args.duration);
    while Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(100)).await;
        bar.inc(1);
    }
    bar.finish_and_clear();
    let held = target.sample();
    let heap_held = probe::metric(http, &target.base, HEAP).await;
    let client_held = Sample::of(None).ok();
    let awake_pings = Summary::of(&pings.recorder.take());

    let (mut hibernated, mut all_hibernated, mut asleep, mut wakes_while_hibernated) = (None, None, None, None);
    let mut heap_asleep = None;
    if switchboard && args.hibernate_timeout > 0.0 {
        let bar = report::bar(objects as u64, "waiting for hibernation");
        let want = hibernated0.unwrap_or(0.0) as u64 + objects as u64;
        let limit = Duration::from_secs_f64(args.hibernate_timeout);
        let (seen, reached) = probe::wait_hibernated(http, &target.base, want, limit).await;
        bar.finish_and_clear();
        hibernated = Some(seen.saturating_sub(hibernated0.unwrap_or(0.0) as u64));
        all_hibernated = Some(reached);
        asleep = target.sample();
        heap_asleep = probe::metric(http, &target.base, HEAP).await;
        // One more ping round while they sleep: answered, and waking nothing.
        let wakes0 = probe::metric(http, &target.base, "switchboard_object_wakes_total").await;
        tokio::time::sleep(interval.min(Duration::from_secs(5)) + Duration::from_millis(200)).await;
        let wakes1 = probe::metric(http, &target.base, "switchboard_object_wakes_total").await;
        wakes_while_hibernated = probe::delta(wakes0, wakes1);
    }
    let auto1 = probe::metric(http, &target.base, "switchboard_auto_responses_total").await;
    let _ = stop.send(true);
    let all = async { while tasks.join_next().await.is_some() {} };
    if tokio::time::timeout(Duration::from_secs(20), all).await.is_err() {
        tasks.abort_all();
    }

    let per_socket = |sample: Option<Sample>| -> Option<i64> {
        let (b, s) = (before?, sample?);
        (connected > 0).then(|| (s.rss_bytes as i64 - b.rss_bytes as i64) / connected as i64)
    };
    let heap_per_socket = |heap: Option<f64>| -> Option<i64> {
        let (b, h) = (heap_before?, heap?);
        (connected > 0).then(|| ((h - b) / connected as f64).round() as i64)
    };
    let client_per_socket = match (client_before, client_held) {
        (Some(b), Some(h)) if connected > 0 => Some((h.rss_bytes as i64 - b.rss_bytes as i64) / connected as i64),
        _ => None,
    };
    Ok(json!({
        "connected": connected,
        "connect_errors": connect_errors,
        "first_connect_error": first_connect_error,
        "objects": objects,
        "connect_s": round3(connect_s),
        "sockets_per_s_connecting": (connected as f64 / connect_s).round(),
        "server_rss_before_bytes": before.map(|s| s.rss_bytes),
        "server_rss_connected_bytes": after_connect.map(|s| s.rss_bytes),
        "server_rss_held_bytes": held.map(|s| s.rss_bytes),
        "server_rss_per_socket_bytes": per_socket(held),
        "hibernated_objects": hibernated,
        "all_hibernated": all_hibernated,
        "server_rss_hibernated_bytes": asleep.map(|s| s.rss_bytes),
        "server_rss_per_hibernated_socket_bytes": per_socket(asleep),
        "client_rss_per_socket_bytes": client_per_socket,
        "server_heap_before_bytes": heap_before,
        "server_heap_per_socket_bytes": heap_per_socket(heap_held),
        "server_heap_per_hibernated_socket_bytes": heap_per_socket(heap_asleep),
        "server_open_files_limit": target.pid.and_then(|p| probe::open_files_limit(Some(p))),
        "pings_sent": pings.sent.load(Ordering::Relaxed),
        "pongs": pings.answered.load(Ordering::Relaxed),
        "auto_responses": probe::delta(auto0, auto1),
        "wakes_while_hibernated": wakes_while_hibernated,
        "ping_rtt_awake": awake_pings,
        "ping_rtt_hibernated": Summary::of(&pings.recorder.take()),
        "closed_by_server": pings.closed_by_server.load(Ordering::Relaxed),
        "first_close": *pings.first_close.lock().expect("close lock poisoned"),
    }))
}

/// Pings every `interval` from `first` on; records each round trip; closes on `stop`.
async fn ping_loop(
    mut ws: Ws,
    index: usize,
    first: Instant,
    interval: Duration,
    pings: Arc<Pings>,
    mut stop: watch::Receiver<bool>,
) {
    let mut next = first;
    let mut outstanding: Option<Instant> = None;
    loop {
        tokio::select! {
            _ = tokio::time::sleep_until(next.into()) => {
                next += interval;
                if outstanding.is_none() {
                    if ws.send(Message::text(r#"{"type":"ping"}"#)).await.is_err() {
                        break;
                    }
                    pings.sent.fetch_add(1, Ordering::Relaxed);
                    outstanding = Some(Instant::now());
                }
            }
            message = ws.next() => match message {
                Some(Ok(Message::Text(text))) => {
                    if text.contains(r#""type":"pong""#) && let Some(sent) = outstanding.take() {
                        pings.answered.fetch_add(1, Ordering::Relaxed);
                        pings.recorder.record(index, sent.elapsed().as_micros() as u64);
                    }
                }
                Some(Ok(Message::Close(frame))) => {
                    pings.closed_by_server.fetch_add(1, Ordering::Relaxed);
                    pings.first_close.lock().expect("close lock poisoned").get_or_insert(format!("{frame:?}"));
                    return;
                }
                Some(Ok(_)) => {}
                Some(Err(_)) | None => {
                    pings.closed_by_server.fetch_add(1, Ordering::Relaxed);
                    return;
                }
            },
            _ = stop.changed() => break,
        }
    }
    client::goodbye(&mut ws).await;
}
