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

/// Reports each alarm it handles; sets one on request.
struct Sleeper;

static WOKE: std::sync::OnceLock<mpsc::UnboundedSender<i64>> = std::sync::OnceLock::new();

impl Object for Sleeper {
    const CLASS: &'static str = "sleeper";
    type Request = i64;
    type Reply = ();

    async fn start(_ctx: &mut Context) -> HookResult<Self> {
        Ok(Sleeper)
    }

    async fn on_request(&mut self, ctx: &mut Context, at_ms: i64) -> HookResult {
        ctx.set_alarm(at_ms);
        Ok(())
    }

    async fn on_alarm(&mut self, ctx: &mut Context) -> HookResult {
        let _ = WOKE.get().unwrap().send(ctx.now_ms());
        Ok(())
    }
}

/// The system clock stepped between two runs (NTP, a dead RTC battery, a manual change): an
/// alarm is due at its wall-clock time, so a clock stepped forward past it fires it at once
/// when the server starts, and one stepped back fires it only when the clock reaches it again —
/// never lost, never early. Within a run the runtime counts monotonic time, so a step of the
/// system clock moves nothing.
#[tokio::test(start_paused = true)]
async fn alarms_across_clock_steps() {
    use switchboard_runtime::Clock;
    let (tx, mut woke) = mpsc::unbounded_channel();
    WOKE.set(tx).unwrap();
    const T: i64 = 1_700_000_000_000;
    const HOUR: i64 = 3_600_000;
    let backend = Arc::new(MemoryBackend::new());
    let start = |at: i64| {
        Runtime::builder(RuntimeConfig::default(), backend.clone())
            .class::<Sleeper>()
            .clock(Clock::starting_at(at))
            .start()
    };

    // Set for T + 60 s; the next run's clock reads an hour later: due, fired at once.
    let rt = start(T).await.unwrap();
    rt.object::<Sleeper>("a").call(T + 60_000).await.unwrap();
    rt.shutdown().await;
    let rt = start(T + HOUR).await.unwrap();
    let fired_at = woke.recv().await.unwrap();
    assert_eq!(fired_at, T + HOUR, "fired at start, without waiting");
    rt.object::<Sleeper>("b").call(T + HOUR + 60_000).await.unwrap();
    rt.shutdown().await;

    // The next run's clock was stepped back an hour: the alarm waits for its time.
    let rt = start(T).await.unwrap();
    let started = Instant::now();
    tokio::time::advance(Duration::from_secs(3_600)).await;
    assert!(woke.try_recv().is_err(), "not early");
    let fired_at = woke.recv().await.unwrap();
    assert_eq!(fired_at, T + HOUR + 60_000);
    assert_eq!(started.elapsed(), Duration::from_millis((HOUR + 60_000) as u64));
    rt.shutdown().await;
}
