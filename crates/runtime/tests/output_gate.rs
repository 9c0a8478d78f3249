//! The output gate and group commit, observed from outside the runtime: nothing leaves before
//! its writes are durable, a failed commit takes its outputs with it, and many events share
//! one commit.

use std::sync::Arc;
use std::time::Duration;

use switchboard_runtime::storage::memory::MemoryBackend;
use switchboard_runtime::storage::{Backend, BackendFuture, ListOptions, ObjectWrites};
use switchboard_runtime::{
    Address, CallError, ConnectInfo, Context, Frame, HookResult, Object, QueueLimits, Runtime, RuntimeConfig,
    SocketConn,
};
use tokio::sync::watch;

/// Adds to a stored value and broadcasts the result.
struct Adder {
    value: i64,
}

impl Object for Adder {
    const CLASS: &'static str = "adder";
    type Request = i64;
    type Reply = i64;

    async fn start(ctx: &mut Context) -> HookResult<Self> {
        Ok(Adder {
            value: ctx.storage().get("value").await?.unwrap_or(0),
        })
    }

    async fn on_request(&mut self, ctx: &mut Context, amount: i64) -> HookResult<i64> {
        if amount != 0 {
            self.value += amount;
            ctx.storage().put("value", &self.value)?;
            ctx.broadcast(Frame::text(self.value.to_string()));
        }
        Ok(self.value)
    }
}

/// A backend whose commits wait until the test opens the valve.
struct Valve {
    inner: Arc<MemoryBackend>,
    open: watch::Sender<bool>,
}

impl Valve {
    fn new() -> Arc<Self> {
        Arc::new(Valve {
            inner: Arc::new(MemoryBackend::new()),
            open: watch::channel(true).0,
        })
    }

    fn set(&self, open: bool) {
        self.open.send_replace(open);
    }
}

impl Backend for Valve {
    fn get(&self, a: &Address, k: &str) -> BackendFuture<Option<Vec<u8>>> {
        self.inner.get(a, k)
    }
    fn list(&self, a: &Address, o: &ListOptions) -> BackendFuture<Vec<(String, Vec<u8>)>> {
        self.inner.list(a, o)
    }
    fn commit(&self, batch: Vec<ObjectWrites>) -> BackendFuture<()> {
        let (mut open, inner) = (self.open.subscribe(), self.inner.clone());
        Box::pin(async move {
            let _ = open.wait_for(|o| *o).await;
            inner.commit(batch).await
        })
    }
    fn alarms(&self) -> BackendFuture<Vec<(Address, i64)>> {
        self.inner.alarms()
    }
}

async fn runtime(backend: Arc<dyn Backend>) -> Runtime {
    Runtime::builder(RuntimeConfig::default(), backend)
        .class::<Adder>()
        .start()
        .await
        .unwrap()
}

async fn subscriber(rt: &Runtime, name: &str) -> Arc<SocketConn> {
    let conn = rt.new_socket(QueueLimits::default());
    let accepted = rt
        .object::<Adder>(name)
        .connect(conn.clone(), ConnectInfo::default())
        .await
        .unwrap();
    assert!(accepted.is_some());
    conn
}

async fn next_frame(conn: &SocketConn, within: Duration) -> Option<Frame> {
    tokio::time::timeout(within, conn.next_batch())
        .await
        .ok()
        .and_then(|b| b.frames.into_iter().next())
}

/// While a commit is pending, neither the reply nor the broadcast is visible; both appear once
/// it is durable.
#[tokio::test(start_paused = true)]
async fn outputs_wait_for_their_commit() {
    let valve = Valve::new();
    let rt = runtime(valve.clone()).await;
    let conn = subscriber(&rt, "a").await;
    valve.set(false);
    let stub = rt.object::<Adder>("a");
    let call = tokio::spawn(async move { stub.call(5).await });
    assert!(
        next_frame(&conn, Duration::from_millis(200)).await.is_none(),
        "broadcast leaked before commit"
    );
    assert!(!call.is_finished(), "reply leaked before commit");
    valve.set(true);
    assert_eq!(call.await.unwrap().unwrap(), 5);
    assert_eq!(next_frame(&conn, Duration::from_secs(5)).await, Some(Frame::text("5")));
    rt.shutdown().await;
}

/// The object's next event runs while earlier writes commit, and one commit carries many
/// events: 200 calls held behind one stalled commit finish in a handful of commits.
#[tokio::test(start_paused = true)]
async fn many_events_share_one_commit() {
    let valve = Valve::new();
    let rt = runtime(valve.clone()).await;
    rt.object::<Adder>("g").call(0).await.unwrap();
    valve.set(false);
    let calls: Vec<_> = (0..200)
        .map(|_| {
            let stub = rt.object::<Adder>("g");
            tokio::spawn(async move { stub.call(1).await.unwrap() })
        })
        .collect();
    // Paused time advances only once every task is idle: every call has run and queued its
    // writes behind the stalled commit.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let before = rt.stats().commits;
    valve.set(true);
    let mut values = Vec::new();
    for call in calls {
        values.push(call.await.unwrap());
    }
    values.sort_unstable();
    assert_eq!(values, (1..=200).collect::<Vec<_>>());
    let commits = rt.stats().commits - before;
    assert!(commits <= 3, "200 events took {commits} commits");
    rt.shutdown().await;
}

/// A failed commit drops the outputs it held (the caller gets an error, subscribers nothing),
/// and the object restarts from storage, so its memory never runs ahead of disk.
#[tokio::test(start_paused = true)]
async fn failed_commit_drops_outputs_and_resets_the_object() {
    let backend = Arc::new(MemoryBackend::new());
    let rt = runtime(backend.clone()).await;
    let conn = subscriber(&rt, "f").await;
    let stub = rt.object::<Adder>("f");
    assert_eq!(stub.call(1).await.unwrap(), 1);
    assert_eq!(next_frame(&conn, Duration::from_secs(5)).await, Some(Frame::text("1")));

    assert!(rt.is_ready());
    backend.fail_commits(true);
    assert!(matches!(stub.call(10).await, Err(CallError::CommitFailed)));
    assert!(!rt.is_ready(), "a runtime whose commits fail is not ready");
    assert!(
        next_frame(&conn, Duration::from_millis(200)).await.is_none(),
        "a lost write was broadcast"
    );
    backend.fail_commits(false);
    // With no writes at all, the writer's own probe finds storage working again.
    tokio::time::timeout(Duration::from_secs(5), async {
        while !rt.is_ready() {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("ready again without any write");

    assert_eq!(
        stub.call(0).await.unwrap(),
        1,
        "the object restarted from what storage holds"
    );
    assert_eq!(rt.stats().evictions, 1);
    assert_eq!(stub.call(2).await.unwrap(), 3);
    assert!(rt.is_ready(), "ready again once commits succeed");
    assert_eq!(next_frame(&conn, Duration::from_secs(5)).await, Some(Frame::text("3")));
    rt.shutdown().await;
}

/// Calls to a class that was never registered fail clearly instead of hanging.
#[tokio::test(start_paused = true)]
async fn unregistered_class_is_an_error() {
    let rt = Runtime::builder(RuntimeConfig::default(), Arc::new(MemoryBackend::new()))
        .start()
        .await
        .unwrap();
    assert!(matches!(
        rt.object::<Adder>("x").call(1).await,
        Err(CallError::UnknownClass(ref c)) if c == "adder"
    ));
    rt.shutdown().await;
}
