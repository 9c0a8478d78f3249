//! `topics`, `recovery` and `effects`: topics, history recovery and durable effects, measured
//! through the chat wire of `examples/chat_room.rs` (start it with `cargo run --release
//! --example chat_room`; it serves the built-in apps too). Every chat message is stored in its
//! room's log, counted by a directory object and published to the room's topic with history, so
//! these figures include that work, as a real app's would.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

use crate::client::{self, Clock, Sources, Ws};
use crate::latency::{Recorder, Summary};
use crate::probe;
use crate::report::{self, Report};
use crate::scenario::{merge, per, run_id};
use crate::target::{CommonArgs, Target, cpu_between, round3};

/// How the subscribers are spread over topics.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Layout {
    /// One room, every subscriber in it: each message reaches all of them.
    One,
    /// One room per subscriber: each message reaches one.
    Many,
}

/// The shape of a topic load: subscribers spread over rooms, and messages at a rate.
#[derive(clap::Args, Debug, Clone, serde::Serialize)]
pub struct TopicLoad {
    #[arg(long, value_enum, default_value_t = Layout::One)]
    pub layout: Layout,
    /// Subscribers (sockets).
    #[arg(long, default_value_t = 10_000)]
    pub subscribers: usize,
    /// Messages per second, in all (open loop).
    #[arg(long, default_value_t = 5.0)]
    pub rate: f64,
    /// Seconds of publishing.
    #[arg(long, default_value_t = 10.0)]
    pub duration: f64,
    /// Sockets connecting at once.
    #[arg(long, default_value_t = 256)]
    pub concurrency: usize,
}

impl TopicLoad {
    pub(crate) fn check(&self) -> anyhow::Result<()> {
        anyhow::ensure!(
            self.subscribers > 0 && self.rate > 0.0 && self.duration > 0.0,
            "--subscribers, --rate and --duration must be positive"
        );
        Ok(())
    }
}

/// Flags of `topics`.
#[derive(clap::Args, Debug, Clone, serde::Serialize)]
pub struct TopicsArgs {
    #[command(flatten)]
    #[serde(skip)]
    pub common: CommonArgs,
    #[command(flatten)]
    #[serde(flatten)]
    pub load: TopicLoad,
}

/// Flags of `recovery`.
#[derive(clap::Args, Debug, Clone, serde::Serialize)]
pub struct RecoveryArgs {
    #[command(flatten)]
    #[serde(skip)]
    pub common: CommonArgs,
    /// Messages published while the client is away (the room keeps 1,000).
    #[arg(long, default_value_t = 1000)]
    pub missed: usize,
    /// Times the client leaves and comes back.
    #[arg(long, default_value_t = 5)]
    pub rounds: usize,
}

/// Flags of `effects`.
#[derive(clap::Args, Debug, Clone, serde::Serialize)]
pub struct EffectsArgs {
    #[command(flatten)]
    #[serde(skip)]
    pub common: CommonArgs,
    /// Messages sent (each one an effect: a POST to the webhook).
    #[arg(long, default_value_t = 5000)]
    pub messages: usize,
    /// Where this bench serves the webhook; start the chat example with
    /// `SWITCHBOARD_CHAT_WEBHOOK_URL=http://<this>/hook`.
    #[arg(long, default_value = "127.0.0.1:18899")]
    pub sink: String,
}

type Sink = SplitSink<Ws, Message>;

/// Joins `room` as `name`, with `query` appended.
async fn join(
    target: &Target,
    room: &str,
    name: &str,
    query: &str,
    source: Option<std::net::Ipv4Addr>,
) -> anyhow::Result<Ws> {
    let url = target.ws(&format!("/chat/{room}?name={name}{query}"));
    client::connect(&url, target.addr, source).await
}

/// The next chat message on `ws` (skipping other frames).
async fn next_said(ws: &mut SplitStream<Ws>) -> anyhow::Result<Value> {
    loop {
        match ws.next().await {
            Some(Ok(Message::Text(t))) => {
                let v: Value = serde_json::from_str(&t)?;
                if v.get("text").is_some() || v.get("type").is_some() {
                    return Ok(v);
                }
            }
            Some(Ok(Message::Close(f))) => bail!("the server closed the socket: {f:?}"),
            Some(Ok(_)) => {}
            Some(Err(e)) => return Err(e.into()),
            None => bail!("the socket ended"),
        }
    }
}

/// Runs `topics` against every server in `--url`.
pub async fn topics(args: TopicsArgs) -> anyhow::Result<Report> {
    args.load.check()?;
    let http = client::http();
    let targets = Target::switchboards(&args.common, &http, "serves no chat rooms").await?;
    let mut results = Vec::new();
    for target in &targets {
        results.push(topics_one(&args, target, &http).await?);
    }
    Ok(Report::new("topics", &args, results))
}

async fn topics_one(args: &TopicsArgs, target: &Target, http: &reqwest::Client) -> anyhow::Result<Value> {
    let run = run_id("topics");
    let clock = Clock::new();
    let sources = Sources::new(args.load.subscribers as u64);
    let heap = "switchboard_heap_allocated_bytes";
    let heap_before = probe::metric(http, &target.base, heap).await;
    let rss_before = target.sample();
    let bar = report::bar(args.load.subscribers as u64, "joining");
    let room_of = |i: usize| match args.load.layout {
        Layout::One => run.clone(),
        Layout::Many => format!("{run}-{i}"),
    };
    let sockets = client::for_each_bounded(args.load.subscribers, args.load.concurrency, &bar, |i| {
        let (target, room) = (target.clone(), room_of(i));
        let source = Some(sources.of(i as u64));
        async move { join(&target, &room, &format!("s{i}"), "", source).await }
    })
    .await;
    bar.finish_and_clear();
    let mut sinks: Vec<Sink> = Vec::with_capacity(args.load.subscribers);
    let delivered = Arc::new(AtomicU64::new(0));
    let warm = Arc::new(AtomicU64::new(0));
    let latency = Arc::new(Recorder::default());
    for (i, socket) in sockets.into_iter().enumerate() {
        let (sink, mut stream) = socket.with_context(|| format!("subscriber {i}"))?.split();
        sinks.push(sink);
        let (delivered, latency, warm) = (delivered.clone(), latency.clone(), warm.clone());
        tokio::spawn(async move {
            while let Ok(said) = next_said(&mut stream).await {
                let Some(text) = said["text"].as_str() else { continue };
                if text == "warm-up" {
                    warm.fetch_add(1, Ordering::Relaxed);
                } else if let Some((_, sent)) = text.split_once(':')
                    && let Ok(sent_ns) = sent.parse::<u64>()
                {
                    latency.record(i, clock.now_ns().saturating_sub(sent_ns) / 1000);
                    delivered.fetch_add(1, Ordering::Relaxed);
                }
            }
        });
    }
    // A room accepts its sockets one event at a time after their handshakes: a warm-up message
    // that every subscriber hears says they are all subscribed, so none of the measured ones
    // waits behind the joining.
    let speakers = match args.load.layout {
        Layout::One => 1,
        Layout::Many => args.load.subscribers,
    };
    for sink in sinks.iter_mut().take(speakers) {
        sink.send(Message::text("warm-up")).await.context("warming up")?;
    }
    let bar = report::bar(args.load.subscribers as u64, "warming up");
    let warming = Instant::now();
    while (warm.load(Ordering::Relaxed) as usize) < args.load.subscribers && warming.elapsed() < Duration::from_secs(60)
    {
        bar.set_position(warm.load(Ordering::Relaxed));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    bar.finish_and_clear();
    anyhow::ensure!(
        warm.load(Ordering::Relaxed) as usize == args.load.subscribers,
        "only {} of {} subscribers heard the warm-up within 60 s",
        warm.load(Ordering::Relaxed),
        args.load.subscribers
    );
    let heap_after = probe::metric(http, &target.base, heap).await;
    let rss_after = target.sample();
    let total = (args.load.rate * args.load.duration).round() as u64;
    let per_message = match args.load.layout {
        Layout::One => args.load.subscribers as u64,
        Layout::Many => 1,
    };
    let expected = total * per_message;
    let cpu_before = target.sample();
    let started = Instant::now();
    let bar = report::bar(total, "publishing");
    for k in 0..total {
        let at = started + Duration::from_secs_f64(k as f64 / args.load.rate);
        tokio::time::sleep_until(at.into()).await;
        let speaker = match args.load.layout {
            Layout::One => 0,
            Layout::Many => (k as usize) % args.load.subscribers,
        };
        let text = format!("{k}:{}", clock.ns(at));
        sinks[speaker].send(Message::text(text)).await.context("publishing")?;
        bar.inc(1);
    }
    bar.finish_and_clear();
    let drain = Instant::now();
    while delivered.load(Ordering::Relaxed) < expected && drain.elapsed() < Duration::from_secs(10) {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let elapsed = started.elapsed().as_secs_f64();
    let cpu = cpu_between(cpu_before, target.sample());
    let got = delivered.load(Ordering::Relaxed);
    for mut sink in sinks {
        let _ = sink.close().await;
    }
    let summary = Summary::of(&latency.take());
    let per_subscriber = |a: Option<f64>, b: Option<f64>| match (a, b) {
        (Some(a), Some(b)) => Some(((b - a) / args.load.subscribers as f64).round()),
        _ => None,
    };
    Ok(merge(
        target.describe(),
        json!({
            "layout": args.load.layout,
            "messages": total,
            "delivered": got,
            "expected": expected,
            "deliveries_per_s": round3(got as f64 / elapsed),
            "server_cpu_s": cpu,
            "deliveries_per_cpu_s": per(got as f64, cpu),
            "server_us_per_delivery": cpu.map(|c| round3(c * 1e6 / got.max(1) as f64)),
            "latency": summary,
            "heap_per_subscriber_bytes": per_subscriber(heap_before, heap_after),
            "rss_per_subscriber_bytes": per_subscriber(rss_before.map(|s| s.rss_bytes as f64), rss_after.map(|s| s.rss_bytes as f64)),
        }),
    ))
}

/// Runs `recovery` against every server in `--url`.
pub async fn recovery(args: RecoveryArgs) -> anyhow::Result<Report> {
    anyhow::ensure!(
        args.missed > 0 && args.rounds > 0,
        "--missed and --rounds must be positive"
    );
    let http = client::http();
    let targets = Target::switchboards(&args.common, &http, "serves no chat rooms").await?;
    let mut results = Vec::new();
    for target in &targets {
        results.push(recovery_one(&args, target).await?);
    }
    Ok(Report::new("recovery", &args, results))
}

async fn recovery_one(args: &RecoveryArgs, target: &Target) -> anyhow::Result<Value> {
    let room = run_id("recovery");
    let (mut speak, mut heard) = join(target, &room, "speaker", "", None).await?.split();
    let mut times = Vec::new();
    let bar = report::bar(args.rounds as u64, "rounds");
    for round in 0..args.rounds {
        // The listener learns where the room stands, then leaves.
        let (mut l_sink, mut l_stream) = join(target, &room, "listener", "", None).await?.split();
        speak.send(Message::text(format!("mark {round}"))).await?;
        let mark = loop {
            let said = next_said(&mut l_stream).await?;
            if said["offset"].is_u64() && said["text"] == format!("mark {round}") {
                break said;
            }
        };
        let _ = next_said(&mut heard).await?;
        let _ = l_sink.close().await;
        // The speaker says `missed` things; each is durable once it comes back.
        for i in 0..args.missed {
            speak.send(Message::text(format!("r{round}-{i}"))).await?;
        }
        for _ in 0..args.missed {
            next_said(&mut heard).await?;
        }
        let query = format!(
            "&since={}&epoch={}",
            mark["offset"],
            mark["epoch"].as_str().unwrap_or("")
        );
        let started = Instant::now();
        let (_back_sink, mut back) = join(target, &room, "listener", &query, None).await?.split();
        let reply = next_said(&mut back).await?;
        anyhow::ensure!(
            reply["recovered"] == true && reply["missed"] == args.missed,
            "recovery failed: {reply}"
        );
        for i in 0..args.missed {
            let said = next_said(&mut back).await?;
            anyhow::ensure!(said["text"] == format!("r{round}-{i}"), "out of order: {said}");
        }
        times.push(started.elapsed().as_secs_f64() * 1000.0);
        bar.inc(1);
    }
    bar.finish_and_clear();
    let _ = speak.close().await;
    times.sort_by(f64::total_cmp);
    let median = times[times.len() / 2];
    Ok(merge(
        target.describe(),
        json!({
            "missed": args.missed,
            "rounds": args.rounds,
            "catch_up_ms_median": round3(median),
            "catch_up_ms_max": round3(*times.last().expect("rounds > 0")),
            "recovered_per_s": round3(args.missed as f64 / (median / 1000.0)),
        }),
    ))
}

/// Runs `effects` against every server in `--url` (one sink serves them all, in turn).
pub async fn effects(args: EffectsArgs) -> anyhow::Result<Report> {
    anyhow::ensure!(args.messages > 0, "--messages must be positive");
    let http = client::http();
    let targets = Target::switchboards(&args.common, &http, "runs no effects").await?;
    let listener = tokio::net::TcpListener::bind(&args.sink)
        .await
        .with_context(|| format!("cannot serve the webhook on {}", args.sink))?;
    let received: Received = Arc::default();
    tokio::spawn(serve_sink(listener, received.clone()));
    let mut results = Vec::new();
    for target in &targets {
        results.push(effects_one(&args, target, &received).await?);
    }
    Ok(Report::new("effects", &args, results))
}

/// POSTs the webhook received, by room (effects of other rooms may still be retrying).
type Received = Arc<std::sync::Mutex<std::collections::HashMap<String, u64>>>;

async fn effects_one(args: &EffectsArgs, target: &Target, received: &Received) -> anyhow::Result<Value> {
    let room = run_id("effects");
    let (mut speak, mut heard) = join(target, &room, "speaker", "", None).await?.split();
    let count = || received.lock().expect("sink lock").get(&room).copied().unwrap_or(0);
    let cpu_before = target.sample();
    let started = Instant::now();
    let bar = report::bar(args.messages as u64, "effects");
    // At most WINDOW messages unacknowledged, so the echoes never outgrow the socket's queue.
    const WINDOW: usize = 256;
    let (mut sent, mut acked) = (0, 0);
    while acked < args.messages {
        while sent < args.messages && sent - acked < WINDOW {
            speak.send(Message::text(format!("e{sent}"))).await?;
            sent += 1;
        }
        next_said(&mut heard).await?;
        acked += 1;
    }
    let acked_s = started.elapsed().as_secs_f64();
    let want = args.messages as u64;
    while count() < want && started.elapsed() < Duration::from_secs(120) {
        bar.set_position(count());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    bar.finish_and_clear();
    let done_s = started.elapsed().as_secs_f64();
    let cpu = cpu_between(cpu_before, target.sample());
    let _ = speak.close().await;
    let got = count();
    Ok(merge(
        target.describe(),
        json!({
            "messages": args.messages,
            "effects_received": got,
            "messages_acked_per_s": round3(args.messages as f64 / acked_s),
            "effects_per_s": round3(got as f64 / done_s),
            "seconds_to_last_effect": round3(done_s),
            "server_cpu_s": cpu,
        }),
    ))
}

/// Answers every request 200 and counts them by the `room` of their JSON body.
async fn serve_sink(listener: tokio::net::TcpListener, received: Received) {
    use http_body_util::BodyExt;
    use hyper::service::service_fn;
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let received = received.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                let received = received.clone();
                async move {
                    let body = req
                        .into_body()
                        .collect()
                        .await
                        .map(|b| b.to_bytes())
                        .unwrap_or_default();
                    let room = serde_json::from_slice::<Value>(&body)
                        .ok()
                        .and_then(|v| v["room"].as_str().map(String::from));
                    if let Some(room) = room {
                        *received.lock().expect("sink lock").entry(room).or_default() += 1;
                    }
                    Ok::<_, std::convert::Infallible>(
                        hyper::Response::new(http_body_util::Empty::<bytes::Bytes>::new()),
                    )
                }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                .await;
        });
    }
}
