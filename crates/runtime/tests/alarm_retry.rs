//! Alarms whose handler fails are retried with backoff, and handled ones are cleared.

use std::sync::Arc;
use std::time::{Duration, Instant};

use switchboard_runtime::storage::memory::MemoryBackend;
use switchboard_runtime::{AlarmResult, Context, Object, Runtime, RuntimeConfig, StorageError};
use tokio::sync::mpsc;

/// Fails its alarm the first time, succeeds the second; reports each attempt.
struct Flaky {
    attempts: u32,
}

static REPORT: std::sync::OnceLock<mpsc::UnboundedSender<(u32, Instant)>> = std::sync::OnceLock::new();

impl Object for Flaky {
    const CLASS: &'static str = "flaky";
    type Request = i64;
    type Reply = Option<i64>;

    async fn start(_ctx: &mut Context) -> Result<Self, StorageError> {
        Ok(Flaky { attempts: 0 })
    }

    /// Sets the alarm `ms` from now (0: just report the current alarm).
    async fn on_request(&mut self, ctx: &mut Context, ms: i64) -> Option<i64> {
        if ms > 0 {
            ctx.set_alarm(switchboard_proto::time::now_ms() + ms);
        }
        ctx.get_alarm()
    }

    async fn on_alarm(&mut self, _ctx: &mut Context) -> AlarmResult {
        self.attempts += 1;
        let _ = REPORT.get().unwrap().send((self.attempts, Instant::now()));
        if self.attempts == 1 {
            Err("the first attempt fails".into())
        } else {
            Ok(())
        }
    }
}

#[tokio::test]
async fn failed_alarm_is_retried_with_backoff_then_cleared() {
    let (tx, mut rx) = mpsc::unbounded_channel();
    REPORT.set(tx).unwrap();
    let rt = Runtime::builder(RuntimeConfig::default(), Arc::new(MemoryBackend::new()))
        .class::<Flaky>()
        .start()
        .await
        .unwrap();
    let stub = rt.object::<Flaky>("f");
    assert!(stub.call(50).await.unwrap().is_some());
    let (first, at_first) = tokio::time::timeout(Duration::from_secs(5), rx.recv())
        .await
        .unwrap()
        .unwrap();
    let (second, at_second) = tokio::time::timeout(Duration::from_secs(5), rx.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!((first, second), (1, 2));
    let gap = at_second - at_first;
    assert!(
        gap >= Duration::from_millis(900),
        "retried after {gap:?}, before the 1 s backoff"
    );
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(stub.call(0).await.unwrap(), None, "a handled alarm is cleared");
    assert_eq!(rt.stats().alarms_fired, 2);
    rt.shutdown().await;
}
