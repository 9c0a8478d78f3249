//! `rooms`, `rooms-publish` and `rooms-recovery`: the rooms app (PROTOCOLS.md §2) as its
//! backend and dashboards use it — events POSTed to `/api/broadcast`, delivered to sockets
//! signed in with a JWT and subscribed to `order:` rooms (rooms with a durable history, so
//! every publish is stored before it is sent).
//!
//! The bench signs its tokens with the server's HS256 secret: start the server with
//! `SWITCHBOARD_JWT_SECRET` and give the bench the same variable (or `--jwt-secret`).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use futures_util::stream::SplitStream;
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

use crate::client::{self, Clock, Sources, Ws};
use crate::latency::{Recorder, Summary, histogram};
use crate::probe;
use crate::report::{self, Report};
use crate::scenario::chat::{Layout, TopicLoad};
use crate::scenario::{merge, per, run_id};
use crate::target::{CommonArgs, Target, cpu_between, round3};

/// Flags every rooms scenario shares.
#[derive(clap::Args, Debug, Clone, serde::Serialize)]
pub struct RoomsCommon {
    #[command(flatten)]
    #[serde(skip)]
    pub common: CommonArgs,
    /// The server's HS256 secret for client tokens.
    #[arg(
        long,
        env = "SWITCHBOARD_JWT_SECRET",
        hide_env_values = true,
        default_value = "",
        hide_default_value = true
    )]
    #[serde(skip)]
    pub jwt_secret: String,
}

/// Flags of `rooms`.
#[derive(clap::Args, Debug, Clone, serde::Serialize)]
pub struct RoomsArgs {
    #[command(flatten)]
    pub rooms: RoomsCommon,
    #[command(flatten)]
    #[serde(flatten)]
    pub load: TopicLoad,
    /// Publish through this node of the same cluster instead of `--url`, so every event crosses
    /// from one node to the other (cluster fan-out).
    #[arg(long, value_name = "URL")]
    pub publish_url: Option<String>,
    /// Other processes of the cluster (the publishing node, nats-server): their CPU counts as
    /// the server's too (repeatable).
    #[arg(long, value_name = "PID")]
    pub cluster_pid: Vec<u32>,
}

/// Flags of `rooms-publish`.
#[derive(clap::Args, Debug, Clone, serde::Serialize)]
pub struct PublishArgs {
    #[command(flatten)]
    pub rooms: RoomsCommon,
    /// Publish requests in all.
    #[arg(long, default_value_t = 20_000)]
    pub requests: usize,
    /// Requests in flight at once (closed loop).
    #[arg(long, default_value_t = 64)]
    pub concurrency: usize,
    /// Sockets subscribed to the room the events go to.
    #[arg(long, default_value_t = 1)]
    pub subscribers: usize,
}

/// Flags of `rooms-recovery`.
#[derive(clap::Args, Debug, Clone, serde::Serialize)]
pub struct RecoveryArgs {
    #[command(flatten)]
    pub rooms: RoomsCommon,
    /// Events published while the client is away (rooms keep 1,000 by default).
    #[arg(long, default_value_t = 1000)]
    pub missed: usize,
    /// Times the client leaves and comes back.
    #[arg(long, default_value_t = 5)]
    pub rounds: usize,
}

/// A client token for `sub`, valid for a day, without a branch (so a bench's thousands of
/// connections do not announce themselves to each other).
fn token(secret: &str, sub: &str) -> anyhow::Result<String> {
    use jsonwebtoken::{EncodingKey, Header, encode};
    anyhow::ensure!(
        !secret.is_empty(),
        "the bench signs client tokens: give it the server's SWITCHBOARD_JWT_SECRET (or --jwt-secret)"
    );
    let exp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs()
        + 86_400;
    Ok(encode(
        &Header::default(),
        &json!({"sub": sub, "exp": exp}),
        &EncodingKey::from_secret(secret.as_bytes()),
    )?)
}

/// Signs in as `sub` and joins `room`; returns the socket once the server confirmed it.
async fn subscriber(
    target: &Target,
    secret: &str,
    sub: &str,
    room: &str,
    source: Option<std::net::Ipv4Addr>,
) -> anyhow::Result<Ws> {
    let url = target.ws(&format!("/ws?token={}", token(secret, sub)?));
    let mut ws = client::connect(&url, target.addr, source).await?;
    let subscribe = json!({"action": "subscribe", "data": {"room": room}});
    ws.send(Message::text(subscribe.to_string())).await?;
    let reply = next_json(&mut ws).await?;
    anyhow::ensure!(reply["success"] == true, "subscribe refused: {reply}");
    Ok(ws)
}

/// The next JSON text frame.
async fn next_json<S>(ws: &mut S) -> anyhow::Result<Value>
where
    S: futures_util::Stream<Item = Result<Message, tokio_tungstenite::tungstenite::Error>> + Unpin,
{
    loop {
        match ws.next().await {
            Some(Ok(Message::Text(t))) => return Ok(serde_json::from_str(&t)?),
            Some(Ok(Message::Close(f))) => bail!("the server closed the socket: {f:?}"),
            Some(Ok(_)) => {}
            Some(Err(e)) => return Err(e.into()),
            None => bail!("the socket ended"),
        }
    }
}

async fn publish(http: &reqwest::Client, target: &Target, secret: &str, body: &Value) -> anyhow::Result<u64> {
    let response = http
        .post(target.http("/api/broadcast"))
        .bearer_auth(secret)
        .json(body)
        .send()
        .await?;
    let status = response.status();
    let answer: Value = response.json().await.unwrap_or(Value::Null);
    anyhow::ensure!(status.is_success(), "publish answered {status}: {answer}");
    answer["delivered"].as_u64().context("no `delivered` in the answer")
}

/// Runs `rooms` against every server in `--url`.
pub async fn fanout(args: RoomsArgs) -> anyhow::Result<Report> {
    args.load.check()?;
    let http = client::http();
    let targets = Target::switchboards(&args.rooms.common, &http, "serves no rooms").await?;
    let mut results = Vec::new();
    for target in &targets {
        results.push(fanout_one(&args, target, &http).await?);
    }
    Ok(Report::new("rooms", &args, results))
}

async fn fanout_one(args: &RoomsArgs, target: &Target, http: &reqwest::Client) -> anyhow::Result<Value> {
    let run = run_id("rooms");
    let clock = Clock::new();
    let sources = Sources::new(args.load.subscribers as u64);
    let secret = &args.rooms.jwt_secret;
    let heap = "switchboard_heap_allocated_bytes";
    let heap_before = probe::metric(http, &target.base, heap).await;
    let room_of = |i: usize| match args.load.layout {
        Layout::One => format!("order:{run}"),
        Layout::Many => format!("order:{run}-{i}"),
    };
    let bar = report::bar(args.load.subscribers as u64, "subscribing");
    let sockets = client::for_each_bounded(args.load.subscribers, args.load.concurrency, &bar, |i| {
        let (target, room, secret) = (target.clone(), room_of(i), secret.clone());
        let source = Some(sources.of(i as u64));
        async move { subscriber(&target, &secret, &format!("s{i}"), &room, source).await }
    })
    .await;
    bar.finish_and_clear();
    let heap_after = probe::metric(http, &target.base, heap).await;
    let total = (args.load.rate * args.load.duration).round() as u64;
    let per_event = match args.load.layout {
        Layout::One => args.load.subscribers as u64,
        Layout::Many => 1,
    };
    let expected = total * per_event;
    let delivered = Arc::new(AtomicU64::new(0));
    // Told when the last expected delivery arrives.
    let all_delivered = Arc::new(tokio::sync::Notify::new());
    let latency = Arc::new(Recorder::default());
    let mut keep = Vec::with_capacity(args.load.subscribers);
    for (i, socket) in sockets.into_iter().enumerate() {
        let (sink, mut stream): (_, SplitStream<Ws>) = socket.with_context(|| format!("subscriber {i}"))?.split();
        keep.push(sink);
        let (delivered, latency, all_delivered) = (delivered.clone(), latency.clone(), all_delivered.clone());
        tokio::spawn(async move {
            while let Ok(event) = next_json(&mut stream).await {
                if let Some(sent_ns) = event["data"]["sentNs"].as_u64() {
                    latency.record(i, clock.now_ns().saturating_sub(sent_ns) / 1000);
                    if delivered.fetch_add(1, Ordering::Relaxed) + 1 == expected {
                        all_delivered.notify_one();
                    }
                }
            }
        });
    }
    // Publishes go out on tasks of their own (at most IN_FLIGHT at once), so that one slow
    // answer does not hold the schedule.
    const IN_FLIGHT: u32 = 16;
    let permits = Arc::new(tokio::sync::Semaphore::new(IN_FLIGHT as usize));
    let failures = Arc::new(AtomicU64::new(0));
    let publisher = match &args.publish_url {
        Some(url) => Target::resolve(url, None, args.rooms.common.allow_remote, http)
            .await
            .with_context(|| format!("publishing node {url}"))?,
        None => target.clone(),
    };
    let cluster_cpu = || -> Option<f64> {
        let others: Option<Vec<f64>> = args
            .cluster_pid
            .iter()
            .map(|pid| probe::Sample::of(Some(*pid)).ok().map(|s| s.cpu_s))
            .collect();
        Some(target.sample()?.cpu_s + others?.iter().sum::<f64>())
    };
    let cpu_before = cluster_cpu();
    let started = Instant::now();
    let bar = report::bar(total, "publishing");
    for k in 0..total {
        let at = started + Duration::from_secs_f64(k as f64 / args.load.rate);
        tokio::time::sleep_until(at.into()).await;
        let room = room_of((k as usize) % args.load.subscribers);
        let body = json!({"type": "order:status_changed", "data": {"k": k, "sentNs": clock.ns(at)}, "rooms": [room]});
        let permit = permits.clone().acquire_owned().await.expect("never closed");
        let (http, target, api, failures) = (
            http.clone(),
            publisher.clone(),
            args.rooms.common.secret.clone(),
            failures.clone(),
        );
        tokio::spawn(async move {
            if publish(&http, &target, &api, &body).await.is_err() {
                failures.fetch_add(1, Ordering::Relaxed);
            }
            drop(permit);
        });
        bar.inc(1);
    }
    let _all_answered = permits.acquire_many(IN_FLIGHT).await.expect("never closed");
    bar.finish_and_clear();
    if delivered.load(Ordering::Relaxed) < expected {
        // What is still on its way gets 10 s.
        let _ = tokio::time::timeout(Duration::from_secs(10), all_delivered.notified()).await;
    }
    let elapsed = started.elapsed().as_secs_f64();
    let cpu = cpu_before
        .zip(cluster_cpu())
        .map(|(before, after)| round3(after - before));
    let got = delivered.load(Ordering::Relaxed);
    for mut sink in keep {
        let _ = sink.close().await;
    }
    let per_subscriber = match (heap_before, heap_after) {
        (Some(a), Some(b)) => Some(((b - a) / args.load.subscribers as f64).round()),
        _ => None,
    };
    Ok(merge(
        target.describe(),
        json!({
            "layout": args.load.layout,
            "events": total,
            "publish_failures": failures.load(Ordering::Relaxed),
            "delivered": got,
            "expected": expected,
            "deliveries_per_s": round3(got as f64 / elapsed),
            "server_cpu_s": cpu,
            "deliveries_per_cpu_s": per(got as f64, cpu),
            "server_us_per_delivery": cpu.map(|c| round3(c * 1e6 / got.max(1) as f64)),
            "latency": Summary::of(&latency.take()),
            "heap_per_connection_bytes": per_subscriber,
        }),
    ))
}

/// Runs `rooms-publish` against every server in `--url`.
pub async fn publish_rate(args: PublishArgs) -> anyhow::Result<Report> {
    anyhow::ensure!(
        args.requests > 0 && args.concurrency > 0,
        "--requests and --concurrency must be positive"
    );
    let http = client::http();
    let targets = Target::switchboards(&args.rooms.common, &http, "serves no rooms").await?;
    let mut results = Vec::new();
    for target in &targets {
        results.push(publish_one(&args, target, &http).await?);
    }
    Ok(Report::new("rooms-publish", &args, results))
}

async fn publish_one(args: &PublishArgs, target: &Target, http: &reqwest::Client) -> anyhow::Result<Value> {
    let room = format!("order:{}", run_id("publish"));
    let mut sockets = Vec::new();
    for i in 0..args.subscribers {
        sockets.push(subscriber(target, &args.rooms.jwt_secret, &format!("p{i}"), &room, None).await?);
    }
    let drains: Vec<_> = sockets
        .into_iter()
        .map(|ws| {
            tokio::spawn(async move {
                let (_sink, mut stream) = ws.split();
                let mut n = 0u64;
                while next_json(&mut stream).await.is_ok() {
                    n += 1;
                }
                n
            })
        })
        .collect();
    let next = Arc::new(AtomicU64::new(0));
    let latency = Arc::new(Recorder::default());
    let cpu_before = target.sample();
    let started = Instant::now();
    let bar = report::bar(args.requests as u64, "publishing");
    let mut workers = Vec::new();
    for w in 0..args.concurrency {
        let (next, latency, http, target, bar) =
            (next.clone(), latency.clone(), http.clone(), target.clone(), bar.clone());
        let (secret, room, requests) = (args.rooms.common.secret.clone(), room.clone(), args.requests as u64);
        workers.push(tokio::spawn(async move {
            let mut delivered = 0;
            loop {
                let k = next.fetch_add(1, Ordering::Relaxed);
                if k >= requests {
                    return anyhow::Ok(delivered);
                }
                let body = json!({"type": "machine:status_changed", "data": {"k": k}, "rooms": [room]});
                let sent = Instant::now();
                delivered += publish(&http, &target, &secret, &body).await?;
                latency.record(w, sent.elapsed().as_micros() as u64);
                bar.inc(1);
            }
        }));
    }
    let mut delivered = 0;
    for worker in workers {
        delivered += worker.await??;
    }
    let elapsed = started.elapsed().as_secs_f64();
    let cpu = cpu_between(cpu_before, target.sample());
    bar.finish_and_clear();
    for drain in drains {
        drain.abort();
    }
    Ok(merge(
        target.describe(),
        json!({
            "requests": args.requests,
            "concurrency": args.concurrency,
            "subscribers": args.subscribers,
            "delivered": delivered,
            "requests_per_s": round3(args.requests as f64 / elapsed),
            "server_cpu_s": cpu,
            "server_us_per_request": cpu.map(|c| round3(c * 1e6 / args.requests as f64)),
            "latency": Summary::of(&latency.take()),
        }),
    ))
}

/// Runs `rooms-recovery` against every server in `--url`.
pub async fn recovery(args: RecoveryArgs) -> anyhow::Result<Report> {
    anyhow::ensure!(
        args.missed > 0 && args.rounds > 0,
        "--missed and --rounds must be positive"
    );
    let http = client::http();
    let targets = Target::switchboards(&args.rooms.common, &http, "serves no rooms").await?;
    let mut results = Vec::new();
    for target in &targets {
        results.push(recovery_one(&args, target, &http).await?);
    }
    Ok(Report::new("rooms-recovery", &args, results))
}

async fn recovery_one(args: &RecoveryArgs, target: &Target, http: &reqwest::Client) -> anyhow::Result<Value> {
    let room = format!("order:{}", run_id("recovery"));
    let (jwt, api) = (&args.rooms.jwt_secret, &args.rooms.common.secret);
    let mut times = histogram();
    let bar = report::bar(args.rounds as u64, "rounds");
    for round in 0..args.rounds {
        let mut ws = subscriber(target, jwt, "away", &room, None).await?;
        publish(
            http,
            target,
            api,
            &json!({"type": "mark", "data": {"round": round}, "rooms": [room]}),
        )
        .await?;
        let mark = next_json(&mut ws).await?;
        client::goodbye(&mut ws).await;
        for i in 0..args.missed {
            publish(
                http,
                target,
                api,
                &json!({"type": "missed", "data": {"i": i}, "rooms": [room]}),
            )
            .await?;
        }
        let started = Instant::now();
        let url = target.ws(&format!("/ws?token={}", token(jwt, "away")?));
        let mut back = client::connect(&url, target.addr, None).await?;
        let resubscribe =
            json!({"action": "subscribe", "data": {"room": room, "offset": mark["offset"], "epoch": mark["epoch"]}});
        back.send(Message::text(resubscribe.to_string())).await?;
        let reply = next_json(&mut back).await?;
        anyhow::ensure!(
            reply["recovered"] == true && reply["missed"] == args.missed,
            "recovery failed: {reply}"
        );
        for i in 0..args.missed {
            let event = next_json(&mut back).await?;
            anyhow::ensure!(event["data"]["i"] == i, "out of order: {event}");
        }
        times.saturating_record(started.elapsed().as_micros() as u64);
        client::goodbye(&mut back).await;
        bar.inc(1);
    }
    bar.finish_and_clear();
    let summary = Summary::of(&times);
    Ok(merge(
        target.describe(),
        json!({
            "missed": args.missed,
            "rounds": args.rounds,
            "catch_up": summary,
            "recovered_per_s": round3(args.missed as f64 / (summary.p50_ms / 1000.0).max(1e-9)),
        }),
    ))
}
