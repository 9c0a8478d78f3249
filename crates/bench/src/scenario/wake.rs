//! `wake`: M counters with one socket each (incremented once, so each has stored state) are
//! left to hibernate, then woken one at a time in random order by a counter operation over the
//! socket (`{"type":"getValue","id":n}`). The time to its `{"type":"result"}` is the wake-up
//! latency; the same operation sent right after, to the now awake object, is the comparison.

use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use futures_util::SinkExt;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

use crate::client::{self, Sources, Ws};
use crate::latency::{self, Summary};
use crate::probe;
use crate::report::{self, Report};
use crate::scenario::{Shuffle, merge, run_id};
use crate::target::{CommonArgs, Target};
use crate::wire::{self, ObjectKind};

/// How long one operation may take before the run fails.
const OP_TIMEOUT: Duration = Duration::from_secs(10);

/// Flags of `wake`.
#[derive(clap::Args, Debug, Clone)]
pub struct WakeArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    /// Objects (counters), one socket each.
    #[arg(long, default_value_t = 100)]
    pub objects: usize,
    /// Seconds to wait for them to hibernate (start the server with a small
    /// `--set hibernate_after_ms=…`).
    #[arg(long, default_value_t = 30.0)]
    pub hibernate_timeout: f64,
}

/// Runs the wake-ups against every server in `--url`, one after the other.
pub async fn run(args: WakeArgs) -> anyhow::Result<Report> {
    anyhow::ensure!(args.objects > 0, "--objects must be positive");
    let http = client::http();
    let targets = Target::switchboards(&args.common, &http, "has no objects to hibernate").await?;
    let mut results = Vec::new();
    for target in &targets {
        results.push(merge(target.describe(), wake(&http, target, &args).await?));
    }
    let params = json!({"objects": args.objects, "hibernate_timeout_s": args.hibernate_timeout});
    Ok(Report::new("wake", params, results))
}

async fn wake(http: &reqwest::Client, target: &Target, args: &WakeArgs) -> anyhow::Result<Value> {
    let prefix = run_id("wake");
    let hibernated0 = probe::metric(http, &target.base, "switchboard_objects_hibernated")
        .await
        .unwrap_or(0.0) as u64;
    let sources = Sources::new(50_000);
    let bar = report::bar(args.objects as u64, "connecting");
    let sockets = client::for_each_bounded(args.objects, 128, &bar, |i| {
        let name = format!("{prefix}-{i}");
        let (url, addr) = (target.ws(&ObjectKind::Counter.socket_path(&name)), target.addr);
        async move {
            let mut ws = client::connect(&url, addr, Some(sources.of(i as u64))).await?;
            ObjectKind::Counter.ready(&mut ws, &name).await?;
            // A stored value, so that waking reads real state back from storage.
            round_trip(&mut ws, "increment", u64::MAX).await?;
            anyhow::Ok(ws)
        }
    })
    .await;
    bar.finish_and_clear();
    let mut sockets: Vec<Ws> = sockets.into_iter().collect::<anyhow::Result<_>>()?;

    let bar = report::bar(args.objects as u64, "waiting for hibernation");
    let (seen, reached) = probe::wait_hibernated(
        http,
        &target.base,
        hibernated0 + args.objects as u64,
        Duration::from_secs_f64(args.hibernate_timeout),
    )
    .await;
    bar.finish_and_clear();
    if !reached {
        bail!(
            "only {} of {} objects hibernated within {} s: start the server with a hibernate_after_ms \
             below --hibernate-timeout",
            seen.saturating_sub(hibernated0),
            args.objects,
            args.hibernate_timeout
        );
    }

    let wakes0 = probe::metric(http, &target.base, "switchboard_object_wakes_total").await;
    let mut order: Vec<usize> = (0..sockets.len()).collect();
    Shuffle::seeded().shuffle(&mut order);
    let (mut woken, mut awake) = (latency::histogram(), latency::histogram());
    let bar = report::bar(order.len() as u64, "waking");
    for (n, &i) in order.iter().enumerate() {
        let ws = &mut sockets[i];
        woken.saturating_record(round_trip(ws, "getValue", 2 * n as u64).await?.as_micros().max(1) as u64);
        awake.saturating_record(round_trip(ws, "getValue", 2 * n as u64 + 1).await?.as_micros().max(1) as u64);
        bar.inc(1);
    }
    bar.finish_and_clear();
    let wakes1 = probe::metric(http, &target.base, "switchboard_object_wakes_total").await;

    for ws in &mut sockets {
        let _ = tokio::time::timeout(Duration::from_secs(2), ws.close(None)).await;
    }
    Ok(json!({
        "objects": sockets.len(),
        "hibernated_before_waking": seen.saturating_sub(hibernated0),
        "wakes_observed": probe::delta(wakes0, wakes1),
        "wake_latency": Summary::of(&woken),
        "awake_latency": Summary::of(&awake),
    }))
}

/// Sends the counter operation `op` with `id` over the socket and waits for its result.
async fn round_trip(ws: &mut Ws, op: &str, id: u64) -> anyhow::Result<Duration> {
    let sent = Instant::now();
    ws.send(Message::text(json!({"type": op, "id": id}).to_string()))
        .await?;
    let answer = async {
        loop {
            let text = wire::next_text(ws).await?;
            let frame: Value = serde_json::from_str(&text)?;
            match frame["type"].as_str() {
                Some("result") if frame["id"] == id => return anyhow::Ok(sent.elapsed()),
                Some("error") if frame["id"] == id => bail!("{op} failed: {text}"),
                _ => continue,
            }
        }
    };
    tokio::time::timeout(OP_TIMEOUT, answer)
        .await
        .with_context(|| format!("no result of {op} within 10 s"))?
}
