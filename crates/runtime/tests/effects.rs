//! Durable effects: run after the commit that stored them, in order per object, retried with
//! backoff until they succeed, reported back to their object, never run for a write that did
//! not commit, and resumed by a new runtime over the same storage. Paused time: no real waits.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use switchboard_runtime::storage::memory::MemoryBackend;
use switchboard_runtime::{
    Attempt, CallError, Context, Effect, EffectDone, EffectResponse, EffectRunner, HookError, HookResult, HttpRequest,
    Object, Runtime, RuntimeConfig,
};
use tokio::sync::mpsc;

/// Enqueues one effect per call, and records the keys it hears back about.
struct Notifier;

#[derive(Serialize, Deserialize)]
enum Ask {
    Notify(String),
    /// Enqueue, call another object, then fail.
    NotifyCallFail(String),
    Done,
}

impl Object for Notifier {
    const CLASS: &'static str = "notifier";
    type Request = Ask;
    type Reply = Vec<String>;

    async fn start(_ctx: &mut Context) -> HookResult<Self> {
        Ok(Notifier)
    }

    async fn on_request(&mut self, ctx: &mut Context, ask: Ask) -> HookResult<Vec<String>> {
        match ask {
            Ask::Notify(text) => {
                ctx.storage().put("last", &text)?;
                let key = ctx.enqueue(Effect::Http(HttpRequest::post_json("http://sink.invalid/", &text)));
                Ok(vec![key])
            }
            Ask::NotifyCallFail(text) => {
                ctx.enqueue(Effect::Http(HttpRequest::post_json("http://sink.invalid/", &text)));
                ctx.call::<Notifier>("other", Ask::Done).await?;
                Err(HookError::msg("failed after a call"))
            }
            Ask::Done => Ok(ctx.storage().get("done").await?.unwrap_or_default()),
        }
    }

    async fn on_effect(&mut self, ctx: &mut Context, done: EffectDone) -> HookResult {
        let mut all: Vec<String> = ctx.storage().get("done").await?.unwrap_or_default();
        all.push(done.key);
        ctx.storage().put("done", &all)?;
        Ok(())
    }
}

/// Records every attempt; refuses the first `fail_first` of them.
struct Sink {
    attempts: mpsc::UnboundedSender<(String, String, tokio::time::Instant)>,
    fail_first: Mutex<u32>,
}

impl EffectRunner for Sink {
    fn run(&self, effect: &Effect, key: &str) -> Attempt {
        let Effect::Http(request) = effect;
        let _ = self
            .attempts
            .send((request.body.clone(), key.to_string(), tokio::time::Instant::now()));
        let mut fail = self.fail_first.lock().unwrap();
        let result = if *fail > 0 {
            *fail -= 1;
            Err("refused".to_string())
        } else {
            Ok(EffectResponse {
                status: 200,
                body: String::new(),
            })
        };
        Box::pin(std::future::ready(result))
    }
}

type Attempts = mpsc::UnboundedReceiver<(String, String, tokio::time::Instant)>;

async fn runtime(backend: Arc<MemoryBackend>, fail_first: u32) -> (Runtime, Attempts) {
    let (tx, rx) = mpsc::unbounded_channel();
    let sink = Sink {
        attempts: tx,
        fail_first: Mutex::new(fail_first),
    };
    let rt = Runtime::builder(RuntimeConfig::default(), backend)
        .class::<Notifier>()
        .effects(Arc::new(sink))
        .start()
        .await
        .unwrap();
    (rt, rx)
}

/// Effects run in the order they were enqueued, failed attempts are retried with growing
/// waits, each success is reported to the object, and the outbox empties.
#[tokio::test(start_paused = true)]
async fn in_order_retried_and_reported() {
    let (rt, mut attempts) = runtime(Arc::new(MemoryBackend::new()), 3).await;
    let stub = rt.object::<Notifier>("n");
    let mut keys = Vec::new();
    for text in ["a", "b", "c"] {
        keys.extend(stub.call(Ask::Notify(text.into())).await.unwrap());
    }
    let mut seen = Vec::new();
    for _ in 0..6 {
        seen.push(attempts.recv().await.unwrap());
    }
    let bodies: Vec<&str> = seen.iter().map(|(b, _, _)| b.as_str()).collect();
    // Three refusals of "a", then each in order: b never overtakes a.
    assert_eq!(
        bodies,
        ["\"a\""; 4].into_iter().chain(["\"b\"", "\"c\""]).collect::<Vec<_>>()
    );
    assert!(
        seen.iter()
            .zip(["a", "a", "a", "a", "b", "c"])
            .all(|((_, k, _), _)| keys.contains(k))
    );
    let waits: Vec<Duration> = seen[..4].windows(2).map(|w| w[1].2 - w[0].2).collect();
    assert!(
        waits[0] >= Duration::from_millis(125) && waits[2] >= Duration::from_millis(500),
        "{waits:?}"
    );
    let stats = rt
        .wait_for_stats(|s| s.effects_succeeded == 3 && s.outbox_depth == 0)
        .await;
    assert_eq!(stats.effect_attempts_failed, 3);
    // on_effect ran for each, in order (the last report was queued before this call).
    assert_eq!(stub.call(Ask::Done).await.unwrap(), keys);
    rt.shutdown().await;
}

/// An effect whose event's commit failed never runs; the caller hears the failure.
#[tokio::test(start_paused = true)]
async fn nothing_runs_for_a_write_that_did_not_commit() {
    let backend = Arc::new(MemoryBackend::new());
    let (rt, mut attempts) = runtime(backend.clone(), 0).await;
    let stub = rt.object::<Notifier>("n");
    backend.fail_commits(true);
    assert_eq!(
        stub.call(Ask::Notify("lost".into())).await,
        Err(CallError::CommitFailed)
    );
    backend.fail_commits(false);
    stub.call(Ask::Notify("kept".into())).await.unwrap();
    assert_eq!(attempts.recv().await.unwrap().0, "\"kept\"");
    rt.wait_for_stats(|s| s.effects_succeeded == 1).await;
    assert!(attempts.try_recv().is_err(), "the lost write's effect ran");
    rt.shutdown().await;
}

/// Effects still pending when a runtime stops run when a new one starts over the same storage,
/// with the same idempotency keys.
#[tokio::test(start_paused = true)]
async fn pending_effects_survive_a_restart() {
    let backend = Arc::new(MemoryBackend::new());
    let (rt, mut attempts) = runtime(backend.clone(), u32::MAX).await;
    let key = rt.object::<Notifier>("n").call(Ask::Notify("x".into())).await.unwrap();
    let (_, first_key, _) = attempts.recv().await.unwrap();
    assert_eq!(vec![first_key.clone()], key);
    assert_eq!(rt.stats().outbox_depth, 1);
    rt.shutdown().await;

    let (rt, mut attempts) = runtime(backend, 0).await;
    let (body, again, _) = attempts.recv().await.unwrap();
    assert_eq!((body.as_str(), again), ("\"x\"", first_key));
    rt.wait_for_stats(|s| s.effects_succeeded == 1 && s.outbox_depth == 0)
        .await;
    rt.shutdown().await;
}

/// A call makes the event's writes so far durable, effects included: an effect enqueued before
/// a call runs even if the hook fails after it.
#[tokio::test(start_paused = true)]
async fn an_effect_flushed_by_a_call_runs() {
    let (rt, mut attempts) = runtime(Arc::new(MemoryBackend::new()), 0).await;
    let stub = rt.object::<Notifier>("n");
    let failed = stub.call(Ask::NotifyCallFail("early".into())).await;
    assert!(matches!(failed, Err(CallError::Failed(_))), "{failed:?}");
    assert_eq!(attempts.recv().await.unwrap().0, "\"early\"");
    rt.wait_for_stats(|s| s.effects_succeeded == 1 && s.outbox_depth == 0)
        .await;
    rt.shutdown().await;
}
