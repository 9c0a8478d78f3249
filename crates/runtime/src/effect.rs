//! Durable effects (the outbox): work with the outside world that an event asks for, stored in
//! the same commit as the event's writes and run by the runtime after that commit.
//!
//! An effect runs outside its object's input gate, on a task of its own, in the order its object
//! enqueued it, and is retried with capped exponential backoff and jitter until it succeeds — it
//! is never dropped. Each carries an idempotency key, unique and fixed for its life, so a backend
//! can recognise a retry (a crash between the effect's success and the commit of its removal
//! runs it again: effects run at least once). Nothing runs for an event whose writes did not
//! commit. When an effect succeeds the object hears it through
//! [`Object::on_effect`](crate::Object::on_effect).

use std::collections::{HashMap, VecDeque};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::address::Address;
use crate::registry::Runtime;
use crate::storage::{ObjectWrites, WriteOp};
use crate::store::{Health, RESERVED_CLASS};

/// Where every pending effect is stored, under its sequence number.
pub(crate) fn outbox_address() -> Address {
    Address::new(RESERVED_CLASS, "effects")
}

/// Something to do in the outside world.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Effect {
    Http(HttpRequest),
}

/// An HTTP request to an application's backend.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct HttpRequest {
    pub method: String,
    pub url: String,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl HttpRequest {
    /// A POST of `body` as JSON.
    pub fn post_json<T: Serialize + ?Sized>(url: &str, body: &T) -> Self {
        HttpRequest {
            method: "POST".into(),
            url: url.into(),
            headers: vec![("content-type".into(), "application/json".into())],
            body: serde_json::to_string(body).expect("JSON values serialize"),
        }
    }
}

/// What a successful attempt returned.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EffectResponse {
    pub status: u16,
    pub body: String,
}

/// An effect that succeeded, as its object hears of it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EffectDone {
    /// The idempotency key [`Context::enqueue`](crate::Context::enqueue) returned.
    pub key: String,
    pub effect: Effect,
    pub response: EffectResponse,
    /// Attempts it took in this process (a restart counts again from one).
    pub attempts: u32,
}

/// The future of one attempt.
pub type Attempt = Pin<Box<dyn Future<Output = Result<EffectResponse, String>> + Send>>;

/// Runs effects; the server brings one that speaks HTTP.
pub trait EffectRunner: Send + Sync + 'static {
    /// Makes one attempt. `Err` (refused, timed out, a non-2xx answer) is retried later.
    fn run(&self, effect: &Effect, key: &str) -> Attempt;
}

/// How failed attempts are retried: after `first`, doubling up to `max`, each wait drawn
/// between half and all of its bound (jitter), without limit on attempts.
#[derive(Clone, Copy, Debug)]
pub struct RetryPolicy {
    /// Default: 250 ms.
    pub first: Duration,
    /// Default: 60 s.
    pub max: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            first: Duration::from_millis(250),
            max: Duration::from_secs(60),
        }
    }
}

impl RetryPolicy {
    /// The wait after the `failures`-th failed attempt.
    pub fn delay(&self, failures: u32) -> Duration {
        let bound = self
            .first
            .saturating_mul(1u32.checked_shl(failures.saturating_sub(1)).unwrap_or(u32::MAX))
            .min(self.max);
        let mut r = [0u8; 4];
        getrandom::fill(&mut r).expect("the OS has randomness");
        let fraction = 0.5 + 0.5 * (u32::from_le_bytes(r) as f64 / u32::MAX as f64);
        bound.mul_f64(fraction)
    }
}

/// An object's pending effects: how many, and how long the oldest has waited.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct OutboxStats {
    pub depth: usize,
    #[serde(rename = "oldestAgeMs")]
    pub oldest_age_ms: i64,
}

/// How an effect is stored.
#[derive(Clone, Serialize, Deserialize)]
pub(crate) struct Pending {
    class: String,
    name: String,
    key: String,
    at_ms: i64,
    effect: Effect,
    #[serde(skip)]
    seq: u64,
}

impl Pending {
    /// The write that stores it.
    pub(crate) fn write(&self) -> WriteOp {
        WriteOp::Put(seq_key(self.seq), serde_json::to_vec(self).expect("plain struct"))
    }

    /// Its idempotency key.
    pub(crate) fn key(&self) -> &str {
        &self.key
    }
}

#[derive(Default)]
struct Queue {
    pending: VecDeque<Pending>,
    running: bool,
}

/// Every object's pending effects, and their workers.
pub(crate) struct Outbox {
    queues: Mutex<HashMap<Address, Queue>>,
    next_seq: AtomicU64,
    runner: Option<Arc<dyn EffectRunner>>,
    retry: RetryPolicy,
    pub(crate) succeeded: AtomicU64,
    pub(crate) failed_attempts: AtomicU64,
}

fn seq_key(seq: u64) -> String {
    format!("{seq:020}")
}

impl Outbox {
    pub(crate) fn new(runner: Option<Arc<dyn EffectRunner>>, retry: RetryPolicy) -> Self {
        Outbox {
            queues: Mutex::new(HashMap::new()),
            next_seq: AtomicU64::new(0),
            runner,
            retry,
            succeeded: AtomicU64::new(0),
            failed_attempts: AtomicU64::new(0),
        }
    }

    /// A new pending effect of `address`, with the idempotency key `key` or a new random one.
    pub(crate) fn prepare(&self, address: &Address, effect: Effect, key: Option<String>, now_ms: i64) -> Pending {
        let seq = self.next_seq.fetch_add(1, Ordering::Relaxed);
        let key = key.unwrap_or_else(|| {
            let mut r = [0u8; 8];
            getrandom::fill(&mut r).expect("the OS has randomness");
            format!("{}-{}", address, u64::from_le_bytes(r))
        });
        Pending {
            class: address.class.to_string(),
            name: address.name.to_string(),
            key,
            at_ms: now_ms,
            effect,
            seq,
        }
    }

    /// Queues a committed effect and starts its object's worker if none runs.
    pub(crate) fn push(&self, rt: &Runtime, pending: Pending) {
        let address = Address::new(&pending.class, &pending.name);
        let mut queues = self.queues.lock().expect("outbox poisoned");
        let queue = queues.entry(address.clone()).or_default();
        queue.pending.push_back(pending);
        if !queue.running {
            queue.running = true;
            tokio::spawn(work(rt.clone(), address));
        }
    }

    /// Loads the stored effects at start and starts their workers.
    pub(crate) fn load(&self, rt: &Runtime, rows: Vec<(String, Vec<u8>)>) {
        let mut max = None;
        for (key, value) in rows {
            let (Ok(seq), Ok(mut pending)) = (key.parse::<u64>(), serde_json::from_slice::<Pending>(&value)) else {
                tracing::error!(key, "a stored effect cannot be read; it stays stored and is skipped");
                continue;
            };
            pending.seq = seq;
            max = max.max(Some(seq));
            self.push(rt, pending);
        }
        if let Some(max) = max {
            self.next_seq.fetch_max(max + 1, Ordering::Relaxed);
        }
    }

    pub(crate) fn stats(&self, address: &Address, now_ms: i64) -> OutboxStats {
        let queues = self.queues.lock().expect("outbox poisoned");
        queues.get(address).map_or_else(OutboxStats::default, |q| OutboxStats {
            depth: q.pending.len(),
            oldest_age_ms: q.pending.front().map_or(0, |p| (now_ms - p.at_ms).max(0)),
        })
    }

    /// Every object with effects waiting, and its stats.
    pub(crate) fn all(&self, now_ms: i64) -> Vec<(Address, OutboxStats)> {
        let queues = self.queues.lock().expect("outbox poisoned");
        queues
            .iter()
            .filter(|(_, q)| !q.pending.is_empty())
            .map(|(address, q)| {
                let oldest = q.pending.front().map_or(0, |p| (now_ms - p.at_ms).max(0));
                let stats = OutboxStats {
                    depth: q.pending.len(),
                    oldest_age_ms: oldest,
                };
                (address.clone(), stats)
            })
            .collect()
    }

    pub(crate) fn totals(&self, now_ms: i64) -> OutboxStats {
        let queues = self.queues.lock().expect("outbox poisoned");
        OutboxStats {
            depth: queues.values().map(|q| q.pending.len()).sum(),
            oldest_age_ms: queues
                .values()
                .filter_map(|q| q.pending.front())
                .map(|p| (now_ms - p.at_ms).max(0))
                .max()
                .unwrap_or(0),
        }
    }

    /// The next effect of `address`; when there is none, forgets the queue, so that the next
    /// push starts a new worker.
    fn front(&self, address: &Address) -> Option<Pending> {
        let mut queues = self.queues.lock().expect("outbox poisoned");
        let queue = queues.get_mut(address)?;
        match queue.pending.front() {
            Some(p) => Some(p.clone()),
            None => {
                queues.remove(address);
                None
            }
        }
    }

    fn pop(&self, address: &Address) {
        if let Some(q) = self.queues.lock().expect("outbox poisoned").get_mut(address) {
            q.pending.pop_front();
        }
    }
}

/// Runs one object's effects in order until its queue is empty or the runtime shuts down.
async fn work(rt: Runtime, address: Address) {
    let inner = rt.inner.clone();
    let outbox = &inner.outbox;
    while let Some(pending) = outbox.front(&address) {
        let mut attempts = 0u32;
        let response = loop {
            attempts += 1;
            let attempt = match &outbox.runner {
                Some(runner) => runner.run(&pending.effect, &pending.key),
                None => Box::pin(std::future::ready(Err("no effect runner is configured".to_string()))),
            };
            let result = tokio::select! {
                r = attempt => r,
                _ = inner.shutdown.cancelled() => return,
            };
            match result {
                Ok(response) => break response,
                Err(error) => {
                    outbox.failed_attempts.fetch_add(1, Ordering::Relaxed);
                    inner.stats.changed.notify_waiters();
                    let wait = outbox.retry.delay(attempts);
                    tracing::warn!(%address, key = pending.key, attempts, %error, retry_in_ms = wait.as_millis() as u64, "effect failed; retrying");
                    tokio::select! {
                        _ = tokio::time::sleep(wait) => {}
                        _ = inner.shutdown.cancelled() => return,
                    }
                }
            }
        };
        outbox.succeeded.fetch_add(1, Ordering::Relaxed);
        let removal = ObjectWrites {
            address: outbox_address(),
            ops: vec![WriteOp::Delete(seq_key(pending.seq))],
        };
        // If this does not commit, the effect runs again after a restart: at least once.
        let _ = inner.store.submit(removal, Arc::new(Health::default()));
        outbox.pop(&address);
        let done = EffectDone {
            key: pending.key,
            effect: pending.effect,
            response,
            attempts,
        };
        rt.effect_done(&address, done);
        inner.stats.changed.notify_waiters();
    }
    // `front` removed the empty queue under the lock: an effect pushed after that starts a
    // worker of its own.
}
