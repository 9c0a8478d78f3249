//! Alarms whose handler fails are retried with capped backoff until they succeed, and handled
//! ones are cleared. Time is tokio's paused clock: no real waiting.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use switchboard_runtime::storage::memory::MemoryBackend;
use switchboard_runtime::{Context, HookError, HookResult, Object, Runtime, RuntimeConfig};
use tokio::sync::mpsc;
use tokio::time::Instant;

/// Fails its alarm the first three times, then succeeds; reports each attempt.
struct Flaky;

/// Attempts so far, kept outside the object: a failed hook restarts the object from storage.
static ATTEMPTS: AtomicU32 = AtomicU32::new(0);

static REPORT: std::sync::OnceLock<mpsc::UnboundedSender<(u32, Instant)>> = std::sync::OnceLock::new();

impl Object for Flaky {
    const CLASS: &'static str = "flaky";
    type Request = i64;
    type Reply = Option<i64>;

    async fn start(_ctx: &mut Context) -> HookResult<Self> {
        Ok(Flaky)
    }

    /// Sets the alarm `ms` from now (0: just report the current alarm).
    async fn on_request(&mut self, ctx: &mut Context, ms: i64) -> HookResult<Option<i64>> {
        if ms > 0 {
            ctx.set_alarm(ctx.now_ms() + ms);
        }
        Ok(ctx.get_alarm())
    }

    async fn on_alarm(&mut self, _ctx: &mut Context) -> HookResult {
        let attempt = ATTEMPTS.fetch_add(1, Ordering::SeqCst) + 1;
        let _ = REPORT.get().unwrap().send((attempt, Instant::now()));
        if attempt <= 3 {
            Err(HookError::msg("the first attempts fail"))
        } else {
            Ok(())
        }
    }
}

#[tokio::test(start_paused = true)]
async fn failed_alarm_is_retried_with_backoff_then_cleared() {
    let (tx, mut rx) = mpsc::unbounded_channel();
    REPORT.set(tx).unwrap();
    let rt = Runtime::builder(RuntimeConfig::default(), Arc::new(MemoryBackend::new()))
        .class::<Flaky>()
        .start()
        .await
        .unwrap();
    let stub = rt.object::<Flaky>("f");
    let set_at = Instant::now();
    assert!(stub.call(50).await.unwrap().is_some());
    let mut seen = Vec::new();
    for _ in 0..4 {
        seen.push(rx.recv().await.unwrap());
    }
    assert_eq!(seen.iter().map(|(n, _)| *n).collect::<Vec<_>>(), [1, 2, 3, 4]);
    assert!(seen[0].1 - set_at >= Duration::from_millis(50));
    // The backoff doubles from 1 s, each wait drawn between half and all of its bound.
    for (i, pair) in seen.windows(2).enumerate() {
        let gap = pair[1].1 - pair[0].1;
        let bound = Duration::from_secs(1 << i);
        assert!(
            gap >= bound / 2 && gap <= bound + Duration::from_millis(5),
            "retry {i} after {gap:?}"
        );
    }
    assert_eq!(rt.stats().alarms_fired, 4);
    assert_eq!(stub.call(0).await.unwrap(), None, "a handled alarm is cleared");
    rt.shutdown().await;
}
