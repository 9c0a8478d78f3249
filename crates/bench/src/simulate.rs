//! `switchboard simulate devices`: simulated RFID readers speaking PROTOCOLS.md §1 like the
//! ESP32 firmware — they connect, heartbeat, scan, go offline now and then, buffer what they
//! scan meanwhile and replay it with `scan_batch` (sometimes twice, as a reader does whose
//! reply was lost). At the end, a tally: every scan sent must be acknowledged once or refused
//! by the repeat window; anything else is lost.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context as _, bail};
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use switchboard_proto::device::BufferedScan;
use tokio_tungstenite::tungstenite::Message;

use crate::client::{self, Ws};
use crate::report::{self, Report};
use crate::scenario::{Shuffle, run_id};
use crate::target::{CommonArgs, Target};

/// How long a reply may take before the reader counts an error.
const REPLY_WAIT: Duration = Duration::from_secs(10);
/// Scans a reader sends in one `scan_batch`.
const BATCH: usize = 100;
/// A heartbeat before the first scan, then every this many scans.
const HEARTBEAT_EVERY: u64 = 10;

/// `switchboard simulate <what>`.
#[derive(clap::Args, Debug, Clone)]
pub struct SimulateArgs {
    #[command(subcommand)]
    pub what: Simulated,
}

#[derive(clap::Subcommand, Debug, Clone)]
pub enum Simulated {
    /// RFID readers on `/ws/device` (PROTOCOLS.md §1).
    Devices(DevicesArgs),
}

/// Flags of `simulate devices`.
#[derive(clap::Args, Debug, Clone)]
pub struct DevicesArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    /// Simulated readers, each with its own socket.
    #[arg(long, default_value_t = 10)]
    pub count: usize,
    /// Scans per second, all readers together (each reader scans every count/rate seconds;
    /// under the server's `scan_interval_ms` the repeat window refuses some).
    #[arg(long, default_value_t = 5.0)]
    pub rate: f64,
    /// Seconds of scanning.
    #[arg(long, default_value_t = 10.0)]
    pub duration: f64,
    /// Chance, at each of its scans, that an online reader drops its connection and scans
    /// offline for one to five scans.
    #[arg(long, default_value_t = 0.05)]
    pub offline_chance: f64,
    /// Prefix of the readers' ids (default: one no earlier run used).
    #[arg(long)]
    pub prefix: Option<String>,
}

/// What the readers counted.
#[derive(Default)]
struct Tally {
    sent_live: AtomicU64,
    sent_buffered: AtomicU64,
    acknowledged: AtomicU64,
    duplicates: AtomicU64,
    too_soon: AtomicU64,
    heartbeats: AtomicU64,
    reconnects: AtomicU64,
    errors: AtomicU64,
}

impl Tally {
    fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }
}

/// Runs `simulate <what>` and prints its tally; fails if a scan was lost.
pub async fn run(args: SimulateArgs) -> anyhow::Result<()> {
    let Simulated::Devices(args) = args.what;
    let format = args.common.format;
    let report = devices(args).await?;
    println!("{}", report.render(format));
    let lost = report.results[0]["lost"].as_u64().unwrap_or(0);
    if lost > 0 {
        bail!("{lost} scans were lost");
    }
    Ok(())
}

/// Runs the simulated readers against the first `--url` and returns the tally.
pub async fn devices(args: DevicesArgs) -> anyhow::Result<Report> {
    anyhow::ensure!(
        args.count > 0 && args.rate > 0.0 && args.duration > 0.0,
        "--count, --rate and --duration must be positive"
    );
    let http = client::http();
    let target = Target::all(&args.common, &http)
        .await?
        .into_iter()
        .next()
        .context("no --url")?;
    let prefix = args.prefix.clone().unwrap_or_else(|| run_id("sim"));
    let period = Duration::from_secs_f64(args.count as f64 / args.rate);
    if period < Duration::from_secs(1) {
        eprintln!("each reader scans every {period:?}: a server with the default scan_interval_ms (1000) refuses some");
    }
    let tally = Arc::new(Tally::default());
    let started = Instant::now();
    let until = started + Duration::from_secs_f64(args.duration);
    let bar = report::bar((args.duration * 10.0).ceil() as u64, "simulated readers");
    let ticker = {
        let (bar, tally) = (bar.clone(), tally.clone());
        tokio::spawn(async move {
            while Instant::now() < until {
                tokio::time::sleep(Duration::from_millis(100)).await;
                bar.inc(1);
                bar.set_message(format!("{} acknowledged", Tally::get(&tally.acknowledged)));
            }
        })
    };
    let mut readers = tokio::task::JoinSet::new();
    for i in 0..args.count {
        let reader = Reader {
            id: format!("{prefix}-{i}"),
            target: target.clone(),
            tally: tally.clone(),
            random: Shuffle::seeded_with(i as u64),
            offline_chance: args.offline_chance,
            buffer: Vec::new(),
            seq: 0,
            replayed: false,
        };
        // Spread the first scans over one period.
        let first = started + period.mul_f64(i as f64 / args.count as f64);
        readers.spawn(reader.run(first, period, until));
    }
    let mut ids = Vec::new();
    while let Some(done) = readers.join_next().await {
        let (id, acknowledged) = done.context("a reader panicked")?;
        ids.push((id, acknowledged));
    }
    let _ = ticker.await;
    bar.finish_and_clear();
    let elapsed = started.elapsed().as_secs_f64();

    let t = &tally;
    let sent = Tally::get(&t.sent_live) + Tally::get(&t.sent_buffered);
    let settled = Tally::get(&t.acknowledged) + Tally::get(&t.too_soon);
    let mut result = json!({
        "readers": args.count,
        "elapsed_s": crate::target::round3(elapsed),
        "scans_sent": sent,
        "sent_live": Tally::get(&t.sent_live),
        "sent_buffered": Tally::get(&t.sent_buffered),
        "acknowledged": Tally::get(&t.acknowledged),
        "duplicates_refused": Tally::get(&t.duplicates),
        "refused_repeat_window": Tally::get(&t.too_soon),
        "heartbeats": Tally::get(&t.heartbeats),
        "reconnects": Tally::get(&t.reconnects),
        "errors": Tally::get(&t.errors),
        "lost": sent.saturating_sub(settled),
    });
    // With the admin key, the server's own records must hold every acknowledged scan.
    if !args.common.secret.is_empty() {
        let mut stored = 0u64;
        let mut missing = 0u64;
        for (id, acknowledged) in &ids {
            let count = stored_scans(&http, &target, &args.common.secret, id).await?;
            stored += count;
            missing += acknowledged.saturating_sub(count);
        }
        result["stored"] = stored.into();
        result["lost"] = (result["lost"].as_u64().unwrap_or(0) + missing).into();
    }
    let params = json!({
        "count": args.count,
        "rate": args.rate,
        "duration_s": args.duration,
        "offline_chance": args.offline_chance,
    });
    Ok(Report::new("simulate-devices", params, vec![result]))
}

/// How many scans the server stored for `device` (every page of `GET /api/scans`).
async fn stored_scans(http: &reqwest::Client, target: &Target, secret: &str, device: &str) -> anyhow::Result<u64> {
    let mut count = 0;
    let mut before: Option<String> = None;
    loop {
        let mut url = format!("{}/api/scans?deviceId={device}&limit=1000", target.base);
        if let Some(cursor) = &before {
            url.push_str(&format!("&before={cursor}"));
        }
        let page: Value = http
            .get(url)
            .bearer_auth(secret)
            .send()
            .await?
            .error_for_status()
            .context("GET /api/scans (is --secret the server's admin key?)")?
            .json()
            .await?;
        count += page["scans"].as_array().map_or(0, Vec::len) as u64;
        match page["next"].as_str() {
            Some(next) => before = Some(next.to_string()),
            None => return Ok(count),
        }
    }
}

/// One simulated reader.
struct Reader {
    id: String,
    target: Target,
    tally: Arc<Tally>,
    random: Shuffle,
    offline_chance: f64,
    /// Scans taken while offline, waiting for a `scan_batch`.
    buffer: Vec<BufferedScan>,
    seq: u64,
    /// Whether it has sent a batch twice already (once per reader is enough to show it).
    replayed: bool,
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

impl Reader {
    /// Scans every `period` from `first` until `until`; returns its id and how many of its
    /// scans the server acknowledged.
    async fn run(mut self, first: Instant, period: Duration, until: Instant) -> (String, u64) {
        let mut acknowledged = 0;
        let mut ws = self.connect().await;
        let mut offline_for = 0u32;
        let mut next = first;
        let mut n = 0u64;
        while next < until {
            tokio::time::sleep_until(next.into()).await;
            next += period;
            n += 1;
            let tag = format!("TAG-{}", self.random.below(50));
            if ws.is_some() && self.random.chance(self.offline_chance) {
                if let Some(mut open) = ws.take() {
                    client::goodbye(&mut open).await;
                }
                offline_for = 1 + self.random.below(5) as u32;
            }
            let Some(open) = ws.as_mut() else {
                self.buffer_scan(tag);
                offline_for = offline_for.saturating_sub(1);
                if offline_for == 0 {
                    ws = self.connect().await;
                    if let Some(open) = ws.as_mut() {
                        Tally::add(&self.tally.reconnects, 1);
                        acknowledged += self.replay(open).await;
                    }
                }
                continue;
            };
            if n % HEARTBEAT_EVERY == 1 {
                let beat = json!({"action": "heartbeat", "timestamp": now_ms()});
                if self
                    .ask(open, &beat)
                    .await
                    .is_some_and(|r| r["action"] == "heartbeat_ack")
                {
                    Tally::add(&self.tally.heartbeats, 1);
                }
            }
            Tally::add(&self.tally.sent_live, 1);
            let scan = json!({"action": "scan", "tagId": tag, "location": "Simulated Gate"});
            match self.ask(open, &scan).await {
                Some(reply) if reply["success"] == true => {
                    acknowledged += 1;
                    Tally::add(&self.tally.acknowledged, 1);
                }
                Some(reply) if reply["error"].as_str().is_some_and(|e| e.starts_with("Please wait")) => {
                    Tally::add(&self.tally.too_soon, 1);
                }
                _ => {
                    // No answer: the reader keeps the scan and replays it after reconnecting
                    // (counted once, as buffered).
                    self.tally.sent_live.fetch_sub(1, Ordering::Relaxed);
                    self.buffer_scan(tag);
                    ws = None;
                    offline_for = 1;
                }
            }
        }
        // Whatever is still buffered goes out before the reader stops.
        if ws.is_none() {
            ws = self.connect().await;
        }
        if let Some(mut open) = ws {
            acknowledged += self.replay(&mut open).await;
            client::goodbye(&mut open).await;
        }
        (self.id, acknowledged)
    }

    fn buffer_scan(&mut self, tag: String) {
        self.seq += 1;
        Tally::add(&self.tally.sent_buffered, 1);
        self.buffer.push(BufferedScan {
            tag_id: tag,
            location: "Simulated Gate".into(),
            timestamp: now_ms(),
            seq: self.seq,
        });
    }

    async fn connect(&self) -> Option<Ws> {
        let url = self.target.ws(&format!("/ws/device?deviceId={}", self.id));
        match client::connect(&url, self.target.addr, None).await {
            Ok(ws) => Some(ws),
            Err(e) => {
                self.error(&format!("connect: {e:#}"));
                None
            }
        }
    }

    /// Sends the buffer in batches; a batch leaves the buffer only once the server took it.
    /// The first batch of a reader is sent twice: the second time every scan is a duplicate.
    async fn replay(&mut self, ws: &mut Ws) -> u64 {
        let mut accepted = 0;
        while !self.buffer.is_empty() {
            let chunk: Vec<BufferedScan> = self.buffer.iter().take(BATCH).cloned().collect();
            let batch = json!({"action": "scan_batch", "scans": chunk});
            let Some(reply) = self.ask(ws, &batch).await.filter(|r| r["success"] == true) else {
                return accepted;
            };
            let taken = reply["accepted"].as_u64().unwrap_or(0);
            let duplicates = reply["duplicates"].as_u64().unwrap_or(0);
            if taken + duplicates != chunk.len() as u64 {
                self.error(&format!("a batch of {} was answered {reply}", chunk.len()));
            }
            accepted += taken;
            Tally::add(&self.tally.acknowledged, taken);
            Tally::add(&self.tally.duplicates, duplicates);
            if !self.replayed {
                self.replayed = true;
                if let Some(again) = self.ask(ws, &batch).await {
                    Tally::add(&self.tally.duplicates, again["duplicates"].as_u64().unwrap_or(0));
                    if again["accepted"] != 0 {
                        self.error(&format!("a batch sent twice was taken twice: {again}"));
                    }
                }
            }
            self.buffer.drain(..chunk.len());
        }
        accepted
    }

    /// Sends a frame and returns the reply (configs pushed meanwhile are acked and skipped).
    async fn ask(&self, ws: &mut Ws, frame: &Value) -> Option<Value> {
        if let Err(e) = ws.send(Message::text(frame.to_string())).await {
            self.error(&format!("send: {e}"));
            return None;
        }
        loop {
            let next = match tokio::time::timeout(REPLY_WAIT, ws.next()).await {
                Ok(Some(Ok(Message::Text(text)))) => text,
                Ok(Some(Ok(Message::Ping(_) | Message::Pong(_)))) => continue,
                other => {
                    self.error(&format!("no reply: {other:?}"));
                    return None;
                }
            };
            let reply: Value = serde_json::from_str(&next).unwrap_or(Value::Null);
            if reply["action"] == "config" {
                let ack = json!({"action": "config_ack", "version": reply["version"]});
                let _ = ws.send(Message::text(ack.to_string())).await;
                continue;
            }
            return Some(reply);
        }
    }

    fn error(&self, what: &str) {
        if Tally::get(&self.tally.errors) == 0 {
            eprintln!("{}: {what}", self.id);
        }
        Tally::add(&self.tally.errors, 1);
    }
}
