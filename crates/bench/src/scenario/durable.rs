//! `durable`: storage-bound updates from many concurrent clients, each sending its next update
//! as soon as the previous one is acknowledged (closed loop). An acknowledgement means the
//! update is durable, so acknowledged updates per second are durable writes per second.
//!
//! The server's durability (`full` or `normal`) is fixed when it starts and it does not say
//! which over HTTP: `--durability` records it in the report.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::json;

use crate::client::{self, Clock};
use crate::latency::{Recorder, Summary};
use crate::probe::{self, Sample};
use crate::report::{self, Report};
use crate::scenario::{merge, per, run_id};
use crate::target::{CommonArgs, Target, cpu_between, round3};
use crate::wire::{self, ObjectKind, Publisher};

/// Flags of `durable`.
#[derive(clap::Args, Debug, Clone)]
pub struct DurableArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    /// What to update: counter increments (HTTP RPC) or display updates.
    #[arg(long, value_enum, default_value_t = ObjectKind::Counter)]
    pub kind: ObjectKind,
    /// Objects updated. Client i sends its k-th update to object (i + k × clients) mod N, so
    /// every object gets updates however few clients there are.
    #[arg(long, default_value_t = 1)]
    pub objects: usize,
    /// Concurrent clients, each with its own keep-alive connection.
    #[arg(long, default_value_t = 64)]
    pub clients: usize,
    /// Seconds of updating.
    #[arg(long, default_value_t = 10.0)]
    pub duration: f64,
    /// Size of each display update, bytes.
    #[arg(long, default_value_t = 100)]
    pub payload: usize,
    /// The durability the server was started with (`--set durability=…`), for the report.
    #[arg(long, value_name = "full|normal")]
    pub durability: Option<String>,
}

/// Runs the durable load against every server in `--url`, one after the other.
pub async fn run(args: DurableArgs) -> anyhow::Result<Report> {
    anyhow::ensure!(
        args.objects > 0 && args.clients > 0 && args.duration > 0.0,
        "--objects, --clients and --duration must be positive"
    );
    let http = client::http();
    let targets = Target::switchboards(
        &args.common,
        &http,
        "stores nothing, so it has no durable writes to measure",
    )
    .await?;
    let mut results = Vec::new();
    for target in &targets {
        results.push(merge(target.describe(), measure(&http, target, &args).await?));
    }
    let params = json!({
        "kind": args.kind,
        "objects": args.objects,
        "clients": args.clients,
        "duration_s": args.duration,
        "durability": args.durability.as_deref().unwrap_or("not given (use --durability)"),
    });
    Ok(Report::new("durable", params, results))
}

/// What the clients of one run share.
struct Load {
    publisher: Publisher,
    clients: usize,
    names: Vec<String>,
    /// Acknowledged updates per object.
    acked: Vec<AtomicU64>,
    errors: AtomicU64,
    first_error: Mutex<Option<String>>,
    recorder: Recorder,
    clock: Clock,
}

async fn measure(http: &reqwest::Client, target: &Target, args: &DurableArgs) -> anyhow::Result<serde_json::Value> {
    let prefix = run_id("durable");
    let names: Vec<String> = (0..args.objects).map(|i| format!("{prefix}-{i}")).collect();
    let mut bases = Vec::new();
    for name in &names {
        args.kind.prepare(http, target, name, &args.common.secret).await?;
        if args.kind == ObjectKind::Counter {
            bases.push(wire::counter_value(http, target, name).await?);
        }
    }
    let load = Arc::new(Load {
        publisher: Publisher {
            kind: args.kind,
            http: http.clone(),
            target: target.clone(),
            secret: args.common.secret.clone(),
            pad: wire::pad_for(args.payload).into(),
        },
        clients: args.clients,
        acked: names.iter().map(|_| AtomicU64::new(0)).collect(),
        names,
        errors: AtomicU64::new(0),
        first_error: Mutex::new(None),
        recorder: Recorder::default(),
        clock: Clock::new(),
    });

    let commits0 = probe::metric(http, &target.base, "switchboard_storage_commits_total").await;
    let (server0, client0) = (target.sample(), Sample::of(None).ok());
    let started = Instant::now();
    let until = started + Duration::from_secs_f64(args.duration);
    let bar = report::bar((args.duration * 10.0) as u64, "durable updates");
    let ticker = {
        let bar = bar.clone();
        tokio::spawn(async move {
            while Instant::now() < until {
                tokio::time::sleep(Duration::from_millis(100)).await;
                bar.inc(1);
            }
        })
    };
    let clients: Vec<_> = (0..args.clients)
        .map(|i| tokio::spawn(load.clone().client(i, until)))
        .collect();
    for c in clients {
        c.await?;
    }
    let elapsed = started.elapsed().as_secs_f64();
    let _ = ticker.await;
    bar.finish_and_clear();
    let (server1, client1) = (target.sample(), Sample::of(None).ok());
    let commits1 = probe::metric(http, &target.base, "switchboard_storage_commits_total").await;

    let writes: u64 = load.acked.iter().map(|a| a.load(Ordering::Relaxed)).sum();
    // Every acknowledged increment must be in the stored value, and nothing else.
    let mut mismatches = 0;
    if args.kind == ObjectKind::Counter {
        for ((name, base), acked) in load.names.iter().zip(&bases).zip(&load.acked) {
            let value = wire::counter_value(http, target, name).await?;
            if value != base + acked.load(Ordering::Relaxed) as i64 {
                mismatches += 1;
            }
        }
    }
    let commits = probe::delta(commits0, commits1);
    let server_cpu = cpu_between(server0, server1);
    Ok(json!({
        "writes": writes,
        "errors": load.errors.load(Ordering::Relaxed),
        "first_error": *load.first_error.lock().expect("error lock poisoned"),
        "writes_per_s": (writes as f64 / elapsed).round(),
        "latency": Summary::of(&load.recorder.take()),
        "commits": commits,
        "writes_per_commit": per(writes as f64, commits.map(|c| c as f64)),
        "server_cpu_s": server_cpu,
        "writes_per_cpu_s": per(writes as f64, server_cpu),
        "client_cpu_s": cpu_between(client0, client1),
        "verified": (args.kind == ObjectKind::Counter).then_some(mismatches == 0),
        "elapsed_s": round3(elapsed),
    }))
}

impl Load {
    /// One client: the next update as soon as the previous one is acknowledged, until `until`.
    async fn client(self: Arc<Self>, index: usize, until: Instant) {
        let (objects, clients) = (self.names.len() as u64, self.clients as u64);
        let mut seq = 0;
        while Instant::now() < until {
            let object = ((index as u64 + seq * clients) % objects) as usize;
            let sent = Instant::now();
            let outcome = self.publisher.send(&self.names[object], seq, self.clock.ns(sent)).await;
            seq += 1;
            match outcome {
                Ok(_) => {
                    self.recorder.record(index, sent.elapsed().as_micros() as u64);
                    self.acked[object].fetch_add(1, Ordering::Relaxed);
                }
                Err(e) => {
                    self.errors.fetch_add(1, Ordering::Relaxed);
                    self.first_error
                        .lock()
                        .expect("error lock poisoned")
                        .get_or_insert_with(|| format!("{e:#}"));
                    // A failing server should not be hammered in a tight loop.
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            }
        }
    }
}
