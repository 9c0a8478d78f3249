//! `socketio`: the kiosk's Socket.IO sessions (PROTOCOLS.md §4), spoken as socket.io-client
//! speaks them (Engine.IO 4 with Socket.IO 5), over websocket or long polling.
//!
//! Two phases against each server: N sessions held idle (answering the server's pings), with
//! the server's memory per session; then scans broadcast to all of them at a fixed rate
//! (`POST /api/nfc/simulate`, each scan an `nfc_tag_scanned` to every session), with the
//! deliveries per server CPU-second. The same uid is presented every time, so the server must
//! run with `kiosk_debounce_ms=0`; the scenario checks that the first two scans are accepted.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio_tungstenite::tungstenite::Message;

use crate::client::{self, Sources, Ws};
use crate::probe::{self, Sample};
use crate::report::{self, Report};
use crate::scenario::{merge, per};
use crate::target::{CommonArgs, Target, cpu_between, round3};

/// The Engine.IO transport the sessions use.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Transport {
    Websocket,
    Polling,
}

/// Flags of `socketio`.
#[derive(clap::Args, Debug, Clone)]
pub struct SocketIoArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    #[arg(long, value_enum, default_value_t = Transport::Websocket)]
    pub transport: Transport,
    /// Sessions to hold.
    #[arg(long, default_value_t = 1000)]
    pub sessions: usize,
    /// Seconds the sessions are held idle before the server's memory is read.
    #[arg(long, default_value_t = 5.0)]
    pub hold: f64,
    /// Scans broadcast per second.
    #[arg(long, default_value_t = 20.0)]
    pub rate: f64,
    /// Seconds of broadcasting.
    #[arg(long, default_value_t = 10.0)]
    pub duration: f64,
    /// Sessions opening at once.
    #[arg(long, default_value_t = 128)]
    pub connect_concurrency: usize,
}

/// The server's live-heap gauge.
const HEAP: &str = "switchboard_heap_allocated_bytes";
/// The uid every scan presents.
const UID: &str = "04:BE:BC:00";

/// Runs both phases against every server in `--url`, one after the other.
pub async fn run(args: SocketIoArgs) -> anyhow::Result<Report> {
    anyhow::ensure!(
        args.sessions > 0 && args.rate > 0.0 && args.duration > 0.0,
        "--sessions, --rate and --duration must be positive"
    );
    let http = client::http();
    let targets = Target::switchboards(&args.common, &http, "has no Socket.IO").await?;
    let mut results = Vec::new();
    for target in &targets {
        results.push(merge(target.describe(), measure(&http, target, &args).await?));
    }
    let params = json!({
        "transport": args.transport,
        "sessions": args.sessions,
        "hold_s": args.hold,
        "rate": args.rate,
        "duration_s": args.duration,
    });
    Ok(Report::new("socketio", params, results))
}

/// What the sessions share: counters, and a way to stop them.
#[derive(Default)]
struct Tally {
    /// Sessions that received their first `status` (adopted by the host, joined to the kiosk).
    ready: AtomicU64,
    scans: AtomicU64,
    pongs: AtomicU64,
    lost: AtomicU64,
}

async fn measure(http: &reqwest::Client, target: &Target, args: &SocketIoArgs) -> anyhow::Result<Value> {
    let heap0 = probe::metric(http, &target.base, HEAP).await;
    let before = target.sample();
    let tally = Arc::new(Tally::default());
    let (stop, stopped) = watch::channel(false);
    let mut sessions = JoinSet::new();
    let started = Instant::now();
    let bar = report::bar(args.sessions as u64, "opening sessions");
    let sources = Sources::new(50_000);
    let gate = Arc::new(tokio::sync::Semaphore::new(args.connect_concurrency.max(1)));
    for i in 0..args.sessions {
        let (target, tally, stopped, gate) = (target.clone(), tally.clone(), stopped.clone(), gate.clone());
        let (http, transport, source) = (http.clone(), args.transport, sources.of(i as u64));
        sessions.spawn(async move {
            let opening = gate.acquire_owned().await.expect("gate open");
            let result = match transport {
                Transport::Websocket => websocket(&target, source, &tally, opening, stopped).await,
                Transport::Polling => polling(&http, &target, &tally, opening, stopped).await,
            };
            if result.is_err() {
                tally.lost.fetch_add(1, Ordering::Relaxed);
            }
            result
        });
    }
    let want = args.sessions as u64;
    let limit = Instant::now() + Duration::from_secs(60);
    while tally.ready.load(Ordering::Relaxed) + tally.lost.load(Ordering::Relaxed) < want && Instant::now() < limit {
        bar.set_position(tally.ready.load(Ordering::Relaxed));
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    bar.finish_and_clear();
    let ready = tally.ready.load(Ordering::Relaxed);
    let open_s = started.elapsed().as_secs_f64();
    tokio::time::sleep(Duration::from_secs_f64(args.hold)).await;
    let held = target.sample();
    let heap_held = probe::metric(http, &target.base, HEAP).await;
    let per_session = |a: Option<f64>, b: Option<f64>| -> Option<i64> {
        let (a, b) = (a?, b?);
        (ready > 0).then(|| ((b - a) / ready as f64).round() as i64)
    };

    // Broadcast: an open-loop schedule of scans.
    let secret = args.common.secret.clone();
    let simulate = |http: reqwest::Client| {
        let (url, secret) = (target.http("/api/nfc/simulate"), secret.clone());
        async move {
            let answer = http
                .post(url)
                .bearer_auth(secret)
                .json(&json!({ "uid": UID }))
                .send()
                .await?;
            let body: Value = answer.json().await?;
            anyhow::Ok(body["accepted"] == true)
        }
    };
    for _ in 0..2 {
        if !simulate(http.clone()).await.context("POST /api/nfc/simulate")? {
            bail!("the kiosk debounced a repeated scan: start the server with --set kiosk_debounce_ms=0");
        }
    }
    let warm = 2 * ready;
    let deadline = Instant::now() + Duration::from_secs(10);
    while tally.scans.load(Ordering::Relaxed) < warm && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let scans0 = tally.scans.load(Ordering::Relaxed);
    let cpu0 = target.sample();
    let client0 = Sample::of(None).ok();
    let total = (args.rate * args.duration).round() as u64;
    let interval = Duration::from_secs_f64(1.0 / args.rate);
    let begin = Instant::now();
    let mut publishes = JoinSet::new();
    for n in 0..total {
        tokio::time::sleep_until((begin + interval * n as u32).into()).await;
        publishes.spawn(simulate(http.clone()));
    }
    let mut accepted = 0u64;
    while let Some(done) = publishes.join_next().await {
        accepted += u64::from(matches!(done, Ok(Ok(true))));
    }
    let expected = scans0 + accepted * ready;
    let drain = Instant::now() + Duration::from_secs(10);
    while tally.scans.load(Ordering::Relaxed) < expected && Instant::now() < drain {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let cpu1 = target.sample();
    let client1 = Sample::of(None).ok();
    let delivered = tally.scans.load(Ordering::Relaxed) - scans0;
    let server_cpu_s = cpu_between(cpu0, cpu1);

    let _ = stop.send(true);
    let all = async { while sessions.join_next().await.is_some() {} };
    if tokio::time::timeout(Duration::from_secs(20), all).await.is_err() {
        sessions.abort_all();
    }
    Ok(json!({
        "sessions_ready": ready,
        "sessions_lost": tally.lost.load(Ordering::Relaxed),
        "open_s": round3(open_s),
        "server_rss_before_bytes": before.map(|s| s.rss_bytes),
        "server_rss_held_bytes": held.map(|s| s.rss_bytes),
        "server_rss_per_session_bytes": per_session(before.map(|s| s.rss_bytes as f64), held.map(|s| s.rss_bytes as f64)),
        "server_heap_per_session_bytes": per_session(heap0, heap_held),
        "scans_accepted": accepted,
        "deliveries": delivered,
        "deliveries_expected": accepted * ready,
        "broadcast_s": round3(begin.elapsed().as_secs_f64()),
        "server_cpu_s": server_cpu_s,
        "deliveries_per_cpu_s": per(delivered as f64, server_cpu_s).map(f64::round),
        "client_cpu_s": cpu_between(client0, client1),
        "pongs": tally.pongs.load(Ordering::Relaxed),
    }))
}

/// What one Engine.IO packet (a text frame, or one record of a polling payload) asks of the
/// session. Pings are answered with pongs; `status` marks the session ready.
fn read_packet(packet: &str, tally: &Tally, ready: &mut bool) -> Option<&'static str> {
    match packet.as_bytes().first() {
        Some(b'2') => {
            tally.pongs.fetch_add(1, Ordering::Relaxed);
            Some("3")
        }
        Some(b'4') if packet.starts_with("42[\"nfc_tag_scanned\"") => {
            tally.scans.fetch_add(1, Ordering::Relaxed);
            None
        }
        Some(b'4') if !*ready && packet.starts_with("42[\"status\"") => {
            *ready = true;
            tally.ready.fetch_add(1, Ordering::Relaxed);
            None
        }
        _ => None,
    }
}

/// One session over websocket: open, join the namespace, then read until stopped.
async fn websocket(
    target: &Target,
    source: std::net::Ipv4Addr,
    tally: &Tally,
    opening: tokio::sync::OwnedSemaphorePermit,
    mut stop: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let url = target.ws("/socket.io/?EIO=4&transport=websocket");
    let mut ws: Ws = client::connect(&url, target.addr, Some(source)).await?;
    ws.send(Message::text("40")).await?;
    let mut ready = false;
    let mut opening = Some(opening);
    loop {
        tokio::select! {
            message = ws.next() => match message {
                Some(Ok(Message::Text(text))) => {
                    if let Some(reply) = read_packet(&text, tally, &mut ready) {
                        ws.send(Message::text(reply)).await?;
                    }
                    if ready {
                        opening.take();
                    }
                }
                Some(Ok(_)) => {}
                Some(Err(e)) => return Err(e.into()),
                None => bail!("the server closed the session"),
            },
            _ = stop.changed() => break,
        }
    }
    client::goodbye(&mut ws).await;
    Ok(())
}

/// One session over long polling: the handshake, the namespace, then one GET at a time.
async fn polling(
    http: &reqwest::Client,
    target: &Target,
    tally: &Tally,
    opening: tokio::sync::OwnedSemaphorePermit,
    mut stop: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let base = target.http("/socket.io/?EIO=4&transport=polling");
    let open = http.get(&base).send().await?.text().await?;
    let handshake: Value =
        serde_json::from_str(open.strip_prefix('0').context("no Engine.IO open packet")?).context("open packet")?;
    let sid = handshake["sid"].as_str().context("no sid")?.to_string();
    let url = format!("{base}&sid={sid}");
    let post = |body: &'static str| {
        http.post(&url)
            .header("content-type", "text/plain;charset=UTF-8")
            .body(body)
            .send()
    };
    post("40").await?.error_for_status()?;
    let mut ready = false;
    let mut opening = Some(opening);
    loop {
        let payload = tokio::select! {
            answer = http.get(&url).send() => answer?.error_for_status()?.text().await?,
            _ = stop.changed() => break,
        };
        for packet in payload.split('\u{1e}') {
            if packet.starts_with('1') {
                bail!("the server closed the session");
            }
            if let Some(reply) = read_packet(packet, tally, &mut ready) {
                post(reply).await?.error_for_status()?;
            }
        }
        if ready {
            opening.take();
        }
    }
    let _ = post("1").await;
    Ok(())
}
