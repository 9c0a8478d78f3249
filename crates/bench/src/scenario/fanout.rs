//! `fanout`: S objects × C subscribers each, and an open-loop publisher sending R updates a
//! second to every object for D seconds. Reports deliveries, losses, duplicates, publish →
//! deliver latency and the server's CPU cost per delivery.
//!
//! Latency is measured from each update's *scheduled* send time, not from when it was actually
//! sent: when the server (or the bench) falls behind, the wait counts against it, as it would
//! for a real publisher (no coordinated omission). Display updates carry their scheduled time
//! in the payload; a counter's increment is matched to its broadcast by the value it produced.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use serde_json::{Value, json};
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;
use tokio_tungstenite::tungstenite::Message;

use crate::client::{self, Clock, Sources, Ws};
use crate::latency::{Recorder, Summary};
use crate::report::{self, Report};
use crate::scenario::{merge, per, run_id};
use crate::target::{CommonArgs, ServerKind, Target, cpu_between, round3};
use crate::wire::{self, Delivery, ObjectKind, Publisher};

/// The shape of a publish/subscribe load (shared with `ramp`).
#[derive(clap::Args, Debug, Clone)]
pub struct LoadArgs {
    /// What to load: display sessions or live counters.
    #[arg(long, value_enum, default_value_t = ObjectKind::Display)]
    pub kind: ObjectKind,
    /// Objects (sessions or counters), each with its own subscribers and publisher.
    #[arg(long, default_value_t = 1)]
    pub objects: usize,
    /// Subscribers (sockets) per object.
    #[arg(long, default_value_t = 100)]
    pub subscribers: usize,
    /// Size of each display update, bytes (a counter's frame is what the counter sends).
    #[arg(long, default_value_t = 100)]
    pub payload: usize,
    /// Publish requests in flight at most. A publish waiting for a slot still has its latency
    /// counted from its scheduled time.
    #[arg(long, default_value_t = 256)]
    pub max_inflight: usize,
    /// Seconds to wait after the last publish for deliveries still on their way.
    #[arg(long, default_value_t = 5.0)]
    pub drain_timeout: f64,
    /// Sockets connecting at once.
    #[arg(long, default_value_t = 256)]
    pub connect_concurrency: usize,
}

impl LoadArgs {
    pub(crate) fn params(&self) -> Value {
        json!({
            "kind": self.kind,
            "objects": self.objects,
            "subscribers_per_object": self.subscribers,
            "payload_bytes": if self.kind == ObjectKind::Display { Some(self.payload) } else { None },
            "max_inflight": self.max_inflight,
        })
    }
}

/// Flags of `fanout`.
#[derive(clap::Args, Debug, Clone)]
pub struct FanoutArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    #[command(flatten)]
    pub load: LoadArgs,
    /// Updates per second published to each object.
    #[arg(long, default_value_t = 10.0)]
    pub rate: f64,
    /// Seconds of publishing.
    #[arg(long, default_value_t = 10.0)]
    pub duration: f64,
}

/// Runs the fan-out against every server in `--url`, one after the other.
pub async fn run(args: FanoutArgs) -> anyhow::Result<Report> {
    anyhow::ensure!(
        args.rate > 0.0 && args.duration > 0.0,
        "--rate and --duration must be positive"
    );
    let http = client::http();
    let targets = Target::all(&args.common, &http).await?;
    let mut results = Vec::new();
    for target in &targets {
        let audience = Audience::connect(
            &http,
            target,
            &args.load,
            &args.common.secret,
            &[(args.rate, args.duration)],
        )
        .await?;
        let phase = audience.phase(&http, args.rate, args.duration).await;
        let described = audience.describe();
        audience.close().await;
        results.push(merge(merge(target.describe(), described), phase.to_json()));
    }
    let params = merge(
        args.load.params(),
        json!({"rate_per_object": args.rate, "duration_s": args.duration}),
    );
    let mut report = Report::new("fanout", params, results);
    report.comparison = compare(&report.results);
    Ok(report)
}

/// Switchboard against the baseline, when both were measured: CPU per delivery and latency.
fn compare(results: &[Value]) -> Option<Value> {
    let find = |kind: ServerKind| results.iter().find(|r| r["server"] == json!(kind));
    let (sb, base) = (find(ServerKind::Switchboard)?, find(ServerKind::Baseline)?);
    let us_per_delivery = |r: &Value| r["deliveries_per_cpu_s"].as_f64().map(|d| round3(1e6 / d));
    let (sb_us, base_us) = (us_per_delivery(sb), us_per_delivery(base));
    Some(json!({
        "server_cpu_us_per_delivery_switchboard": sb_us,
        "server_cpu_us_per_delivery_baseline": base_us,
        "switchboard_cpu_per_delivery_vs_baseline": match (sb_us, base_us) {
            (Some(a), Some(b)) if b > 0.0 => Some(round3(a / b)),
            _ => None,
        },
        "p99_ms_switchboard": sb["latency"]["p99_ms"],
        "p99_ms_baseline": base["latency"]["p99_ms"],
    }))
}

/// One object under load: its name, its subscribers, and what was published to it.
struct Channel {
    name: String,
    /// Subscribers that are connected and accepted.
    subscribers: AtomicU64,
    /// A counter's value before the run; its n-th increment (from 0) produces `base + n + 1`.
    base: i64,
    /// Sequence number of the next display update.
    next_seq: AtomicU64,
    /// Publishes the server acknowledged.
    published: AtomicU64,
    publish_errors: AtomicU64,
    /// Counters only: scheduled send time (ns + 1; 0 = not known yet) by sequence number.
    send_times: Vec<AtomicU64>,
}

impl Channel {
    fn send_time(&self, seq: u64) -> Option<u64> {
        let t = self.send_times.get(seq as usize)?.load(Ordering::Acquire);
        (t > 0).then(|| t - 1)
    }
}

/// What one subscriber saw.
#[derive(Default)]
struct SubStats {
    received: AtomicU64,
    unique: AtomicU64,
    duplicated: AtomicU64,
    /// Deliveries with a lower sequence number than one already seen (display updates published
    /// concurrently may reach the server out of order; a counter's values never should).
    reordered: AtomicU64,
}

/// A delivery whose send time was not known when it arrived (a counter broadcast that beat
/// its own HTTP reply): resolved when the phase ends.
struct Deferred {
    channel: usize,
    seq: u64,
    received_ns: u64,
}

/// Everything the subscribers share.
struct Shared {
    kind: ObjectKind,
    clock: Clock,
    recorder: Recorder,
    deferred: Mutex<Vec<Deferred>>,
    last_delivery_ns: AtomicU64,
    closed_by_server: AtomicU64,
    first_close: Mutex<Option<String>>,
}

/// The connected subscribers of every object of one load against one server.
pub(crate) struct Audience {
    target: Target,
    secret: String,
    load: LoadArgs,
    pad: Arc<str>,
    channels: Vec<Arc<Channel>>,
    subscribers: Vec<Arc<SubStats>>,
    shared: Arc<Shared>,
    stop: watch::Sender<bool>,
    tasks: JoinSet<()>,
    connect_errors: usize,
    first_connect_error: Option<String>,
}

/// What one publishing phase did.
pub(crate) struct Phase {
    pub published: u64,
    pub publish_errors: u64,
    pub expected: u64,
    pub delivered: u64,
    pub lost: u64,
    pub duplicated: u64,
    pub reordered: u64,
    pub deliveries_per_s: f64,
    pub latency: Summary,
    /// Deliveries whose send time could not be matched (should be 0).
    pub untimed: u64,
    pub server_cpu_s: Option<f64>,
    pub client_cpu_s: Option<f64>,
    pub server_rss_bytes: Option<u64>,
    /// How late the bench sent against its schedule (included in `latency`).
    pub publisher_lag: Summary,
    pub elapsed_s: f64,
    pub closed_by_server: u64,
    pub first_error: Option<String>,
}

impl Phase {
    pub(crate) fn to_json(&self) -> Value {
        json!({
            "published": self.published,
            "publish_errors": self.publish_errors,
            "expected": self.expected,
            "delivered": self.delivered,
            "lost": self.lost,
            "duplicated": self.duplicated,
            "reordered": self.reordered,
            "deliveries_per_s": self.deliveries_per_s,
            "latency": self.latency,
            "untimed": self.untimed,
            "server_cpu_s": self.server_cpu_s,
            "deliveries_per_cpu_s": per(self.delivered as f64, self.server_cpu_s),
            "client_cpu_s": self.client_cpu_s,
            "server_rss_bytes": self.server_rss_bytes,
            "publisher_lag": self.publisher_lag,
            "elapsed_s": self.elapsed_s,
            "closed_by_server": self.closed_by_server,
            "first_error": self.first_error,
        })
    }

    /// Every expected delivery arrived, once.
    pub(crate) fn complete(&self) -> bool {
        self.lost == 0 && self.publish_errors == 0 && self.expected > 0
    }
}

impl Audience {
    /// Prepares `load.objects` fresh objects on `target` and connects `load.subscribers` to
    /// each. `plan` lists the (rate, seconds) of the phases to come, to size the counters'
    /// send-time tables.
    pub(crate) async fn connect(
        http: &reqwest::Client,
        target: &Target,
        load: &LoadArgs,
        secret: &str,
        plan: &[(f64, f64)],
    ) -> anyhow::Result<Audience> {
        anyhow::ensure!(
            load.objects > 0 && load.subscribers > 0,
            "--objects and --subscribers must be positive"
        );
        let kind = load.kind;
        let prefix = run_id("fanout");
        let capacity = match kind {
            ObjectKind::Counter => plan.iter().map(|(r, d)| (r * d).ceil() as usize + 2).sum(),
            ObjectKind::Display => 0,
        };
        let bar = report::bar(load.objects as u64, "preparing objects");
        let prepared = client::for_each_bounded(load.objects, 64, &bar, |i| {
            let (http, target, secret) = (http.clone(), target.clone(), secret.to_string());
            let name = format!("{prefix}-{i}");
            async move {
                kind.prepare(&http, &target, &name, &secret).await?;
                let base = match kind {
                    ObjectKind::Counter => wire::counter_value(&http, &target, &name).await?,
                    ObjectKind::Display => 0,
                };
                anyhow::Ok((name, base))
            }
        })
        .await;
        bar.finish_and_clear();
        let mut channels = Vec::new();
        for prepared in prepared {
            let (name, base) = prepared?;
            channels.push(Arc::new(Channel {
                name,
                subscribers: AtomicU64::new(0),
                base,
                next_seq: AtomicU64::new(0),
                published: AtomicU64::new(0),
                publish_errors: AtomicU64::new(0),
                send_times: (0..capacity).map(|_| AtomicU64::new(0)).collect(),
            }));
        }

        let total = load.objects * load.subscribers;
        let sources = Sources::new(50_000);
        let bar = report::bar(total as u64, "connecting subscribers");
        let sockets = client::for_each_bounded(total, load.connect_concurrency, &bar, |i| {
            // Socket i subscribes to object i mod S, so objects fill evenly.
            let channel = i % channels.len();
            let name = channels[channel].name.clone();
            let (url, addr) = (target.ws(&kind.socket_path(&name)), target.addr);
            async move {
                let mut ws = client::connect(&url, addr, Some(sources.of(i as u64))).await?;
                kind.ready(&mut ws, &name).await?;
                anyhow::Ok((ws, channel))
            }
        })
        .await;
        bar.finish_and_clear();

        let shared = Arc::new(Shared {
            kind,
            clock: Clock::new(),
            recorder: Recorder::default(),
            deferred: Mutex::new(Vec::new()),
            last_delivery_ns: AtomicU64::new(0),
            closed_by_server: AtomicU64::new(0),
            first_close: Mutex::new(None),
        });
        let (stop, _) = watch::channel(false);
        let mut audience = Audience {
            target: target.clone(),
            secret: secret.to_string(),
            load: load.clone(),
            pad: wire::pad_for(load.payload).into(),
            channels,
            subscribers: Vec::new(),
            shared,
            stop,
            tasks: JoinSet::new(),
            connect_errors: 0,
            first_connect_error: None,
        };
        for socket in sockets {
            match socket {
                Ok((ws, channel)) => audience.listen(ws, channel),
                Err(e) => {
                    audience.connect_errors += 1;
                    audience.first_connect_error.get_or_insert_with(|| format!("{e:#}"));
                }
            }
        }
        anyhow::ensure!(
            !audience.subscribers.is_empty(),
            "no subscriber could connect: {}",
            audience.first_connect_error.as_deref().unwrap_or("?")
        );
        Ok(audience)
    }

    fn listen(&mut self, ws: Ws, channel_index: usize) {
        let channel = self.channels[channel_index].clone();
        channel.subscribers.fetch_add(1, Ordering::Relaxed);
        let stats = Arc::new(SubStats::default());
        self.subscribers.push(stats.clone());
        let index = self.subscribers.len();
        let listener = Listener {
            index,
            channel_index,
            channel,
            stats,
            shared: self.shared.clone(),
        };
        self.tasks.spawn(listener.run(ws, self.stop.subscribe()));
    }

    /// Connection figures, for the report.
    pub(crate) fn describe(&self) -> Value {
        json!({
            "connected": self.subscribers.len(),
            "connect_errors": self.connect_errors,
            "first_connect_error": self.first_connect_error,
        })
    }

    /// Publishes `rate` updates a second to every object for `seconds`, then waits (at most
    /// `drain_timeout`) for every delivery, and reports.
    pub(crate) async fn phase(&self, http: &reqwest::Client, rate: f64, seconds: f64) -> Phase {
        let shared = &self.shared;
        let totals = |f: fn(&SubStats) -> &AtomicU64| -> u64 {
            self.subscribers.iter().map(|s| f(s).load(Ordering::Relaxed)).sum()
        };
        let received0 = totals(|s| &s.received);
        let unique0 = totals(|s| &s.unique);
        let duplicated0 = totals(|s| &s.duplicated);
        let reordered0 = totals(|s| &s.reordered);
        let closed0 = shared.closed_by_server.load(Ordering::Relaxed);
        let published0: Vec<u64> = self
            .channels
            .iter()
            .map(|c| c.published.load(Ordering::Relaxed))
            .collect();
        let errors0: u64 = self
            .channels
            .iter()
            .map(|c| c.publish_errors.load(Ordering::Relaxed))
            .sum();
        shared.recorder.take();

        let server0 = self.target.sample();
        let client0 = crate::probe::Sample::of(None).ok();
        let interval = Duration::from_secs_f64(1.0 / rate);
        let count = ((rate * seconds).floor() as u64).max(1);
        let start = Instant::now() + Duration::from_millis(20);
        let publishing = Arc::new(Publishing {
            publisher: Publisher {
                kind: self.load.kind,
                http: http.clone(),
                target: self.target.clone(),
                secret: self.secret.clone(),
                pad: self.pad.clone(),
            },
            clock: shared.clock,
            permits: Arc::new(Semaphore::new(self.load.max_inflight.max(1))),
            lag: Recorder::default(),
            first_error: Mutex::new(None),
        });
        let bar = report::bar(
            count * self.channels.len() as u64,
            &format!("publishing {rate}/s/object"),
        );
        let channels = self.channels.clone();
        let pacer = {
            let (publishing, bar) = (publishing.clone(), bar.clone());
            tokio::task::spawn_blocking(move || publishing.pace(&channels, start, interval, count, &bar))
        };
        pacer.await.expect("the pacer does not panic");
        // Every send holds a permit until its reply: holding them all means all are answered.
        let all = publishing
            .permits
            .acquire_many(self.load.max_inflight.max(1) as u32)
            .await;
        drop(all);
        let published_at = Instant::now();
        bar.finish_and_clear();

        let expected: u64 = self
            .channels
            .iter()
            .zip(&published0)
            .map(|(c, p0)| (c.published.load(Ordering::Relaxed) - p0) * c.subscribers.load(Ordering::Relaxed))
            .sum();
        let drain_until = Instant::now() + Duration::from_secs_f64(self.load.drain_timeout);
        while totals(|s| &s.unique) - unique0 < expected && Instant::now() < drain_until {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }

        let untimed = self.resolve_deferred();
        let histogram = shared.recorder.take();
        let server1 = self.target.sample();
        let client1 = crate::probe::Sample::of(None).ok();
        let delivered = totals(|s| &s.received) - received0;
        let unique = totals(|s| &s.unique) - unique0;
        let last_delivery = shared.last_delivery_ns.load(Ordering::Relaxed);
        let end_ns = last_delivery.max(shared.clock.ns(published_at));
        let elapsed = (end_ns.saturating_sub(shared.clock.ns(start))) as f64 / 1e9;
        let first_error = publishing
            .first_error
            .lock()
            .expect("error lock poisoned")
            .clone()
            .or_else(|| shared.first_close.lock().expect("close lock poisoned").clone());
        Phase {
            published: self
                .channels
                .iter()
                .zip(&published0)
                .map(|(c, p0)| c.published.load(Ordering::Relaxed) - p0)
                .sum(),
            publish_errors: self
                .channels
                .iter()
                .map(|c| c.publish_errors.load(Ordering::Relaxed))
                .sum::<u64>()
                - errors0,
            expected,
            delivered,
            lost: expected.saturating_sub(unique),
            duplicated: totals(|s| &s.duplicated) - duplicated0,
            reordered: totals(|s| &s.reordered) - reordered0,
            deliveries_per_s: if elapsed > 0.0 {
                (delivered as f64 / elapsed).round()
            } else {
                0.0
            },
            latency: Summary::of(&histogram),
            untimed,
            server_cpu_s: cpu_between(server0, server1),
            client_cpu_s: cpu_between(client0, client1),
            server_rss_bytes: server1.map(|s| s.rss_bytes),
            publisher_lag: Summary::of(&publishing.lag.take()),
            elapsed_s: round3(elapsed),
            closed_by_server: shared.closed_by_server.load(Ordering::Relaxed) - closed0,
            first_error,
        }
    }

    /// Records the latency of deliveries that arrived before their send time was known.
    /// Returns how many still have none.
    fn resolve_deferred(&self) -> u64 {
        let deferred = std::mem::take(&mut *self.shared.deferred.lock().expect("deferred lock poisoned"));
        let mut untimed = 0;
        for (i, d) in deferred.into_iter().enumerate() {
            match self.channels[d.channel].send_time(d.seq) {
                Some(sent) => self
                    .shared
                    .recorder
                    .record(i, d.received_ns.saturating_sub(sent) / 1000),
                None => untimed += 1,
            }
        }
        untimed
    }

    /// Closes every subscriber (with a close frame) and waits for them, briefly.
    pub(crate) async fn close(mut self) {
        let _ = self.stop.send(true);
        let all = async { while self.tasks.join_next().await.is_some() {} };
        if tokio::time::timeout(Duration::from_secs(15), all).await.is_err() {
            self.tasks.abort_all();
        }
    }
}

/// What the publishers of one phase share.
struct Publishing {
    publisher: Publisher,
    clock: Clock,
    permits: Arc<Semaphore>,
    /// How late each publish left against its schedule (the bench's own lag).
    lag: Recorder,
    first_error: Mutex<Option<String>>,
}

impl Publishing {
    /// Publishes `count` updates to every channel on one schedule: update k of all of them at
    /// `start + k × interval / channels`, to channel k mod channels, so the objects' schedules
    /// interleave instead of bursting together. This runs on a thread of its own, which keeps
    /// time with the OS's fine-grained sleep rather than tokio's millisecond timer wheel, and
    /// hands each send to the runtime.
    fn pace(
        self: &Arc<Self>,
        channels: &[Arc<Channel>],
        start: Instant,
        interval: Duration,
        count: u64,
        bar: &indicatif::ProgressBar,
    ) {
        let runtime = tokio::runtime::Handle::current();
        let step = interval.div_f64(channels.len() as f64);
        for k in 0..count * channels.len() as u64 {
            let at = start + step.mul_f64(k as f64);
            let now = Instant::now();
            if at > now {
                std::thread::sleep(at - now);
            }
            let permit = match self.permits.clone().try_acquire_owned() {
                Ok(permit) => permit,
                Err(_) => runtime
                    .block_on(self.permits.clone().acquire_owned())
                    .expect("semaphore never closes"),
            };
            self.lag
                .record(0, Instant::now().saturating_duration_since(at).as_micros() as u64);
            let (this, channel) = (self.clone(), channels[(k % channels.len() as u64) as usize].clone());
            // Numbered in schedule order; concurrent publishes may still reach the server in
            // another order, which `reordered` then shows.
            let seq = channel.next_seq.fetch_add(1, Ordering::Relaxed);
            runtime.spawn(async move {
                this.send(&channel, seq, this.clock.ns(at)).await;
                drop(permit);
            });
            bar.inc(1);
        }
    }

    async fn send(&self, channel: &Channel, seq: u64, sent_ns: u64) {
        let outcome = async {
            let body = self.publisher.send(&channel.name, seq, sent_ns).await?;
            if let Some(value) = self.publisher.kind.published_value(&body)? {
                let seq = (value - channel.base - 1) as u64;
                if let Some(slot) = channel.send_times.get(seq as usize) {
                    slot.store(sent_ns + 1, Ordering::Release);
                }
            }
            anyhow::Ok(())
        };
        match outcome.await {
            Ok(()) => channel.published.fetch_add(1, Ordering::Relaxed),
            Err(e) => {
                self.first_error
                    .lock()
                    .expect("error lock poisoned")
                    .get_or_insert_with(|| format!("{e:#}"));
                channel.publish_errors.fetch_add(1, Ordering::Relaxed)
            }
        };
    }
}

/// One subscriber's reading loop.
struct Listener {
    /// Its number, which picks its histogram shard.
    index: usize,
    channel_index: usize,
    channel: Arc<Channel>,
    stats: Arc<SubStats>,
    shared: Arc<Shared>,
}

/// Largest sequence number a subscriber tracks (guards its bitmap against garbage).
const MAX_SEQ: u64 = 1 << 28;

impl Listener {
    async fn run(self, mut ws: Ws, mut stop: watch::Receiver<bool>) {
        let mut seen: Vec<u64> = Vec::new();
        let mut highest: Option<u64> = None;
        loop {
            tokio::select! {
                message = ws.next() => match message {
                    Some(Ok(Message::Text(text))) => {
                        if let Some(delivery) = self.shared.kind.delivery(&text) {
                            self.delivered(delivery, &mut seen, &mut highest);
                        }
                    }
                    Some(Ok(Message::Close(frame))) => {
                        self.closed(format!("the server closed a subscriber: {frame:?}"));
                        return;
                    }
                    Some(Ok(_)) => {}
                    Some(Err(e)) => {
                        self.closed(format!("a subscriber's socket failed: {e}"));
                        return;
                    }
                    None => {
                        self.closed("a subscriber's socket ended".into());
                        return;
                    }
                },
                _ = stop.changed() => break,
            }
        }
        client::goodbye(&mut ws).await;
    }

    fn delivered(&self, delivery: Delivery, seen: &mut Vec<u64>, highest: &mut Option<u64>) {
        let now = self.shared.clock.now_ns();
        self.stats.received.fetch_add(1, Ordering::Relaxed);
        self.shared.last_delivery_ns.fetch_max(now, Ordering::Relaxed);
        let (seq, sent) = match delivery {
            Delivery::Display { seq, sent_ns } => (seq, Some(sent_ns)),
            Delivery::Counter { value } => {
                let Some(seq) = value
                    .checked_sub(self.channel.base + 1)
                    .and_then(|s| u64::try_from(s).ok())
                else {
                    return;
                };
                (seq, self.channel.send_time(seq))
            }
        };
        if seq >= MAX_SEQ {
            return;
        }
        let (word, bit) = ((seq / 64) as usize, 1u64 << (seq % 64));
        if seen.len() <= word {
            seen.resize(word + 1, 0);
        }
        if seen[word] & bit == 0 {
            seen[word] |= bit;
            self.stats.unique.fetch_add(1, Ordering::Relaxed);
        } else {
            self.stats.duplicated.fetch_add(1, Ordering::Relaxed);
        }
        if highest.is_some_and(|h| seq < h) {
            self.stats.reordered.fetch_add(1, Ordering::Relaxed);
        }
        *highest = Some(highest.map_or(seq, |h| h.max(seq)));
        match sent {
            Some(sent) => self.shared.recorder.record(self.index, now.saturating_sub(sent) / 1000),
            None => self
                .shared
                .deferred
                .lock()
                .expect("deferred lock poisoned")
                .push(Deferred {
                    channel: self.channel_index,
                    seq,
                    received_ns: now,
                }),
        }
    }

    fn closed(&self, why: String) {
        self.shared.closed_by_server.fetch_add(1, Ordering::Relaxed);
        self.shared
            .first_close
            .lock()
            .expect("close lock poisoned")
            .get_or_insert(why);
    }
}
