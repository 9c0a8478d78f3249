//! Objects reaching each other and sockets by id: `tell` (released by the output gate), `call`
//! (after this event's writes are durable), sends and closes by socket id, and hooks whose
//! failure leaves storage and memory agreeing.

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use switchboard_runtime::storage::memory::MemoryBackend;
use switchboard_runtime::{
    CallError, ConnectInfo, Context, Frame, HookError, HookResult, Object, QueueLimits, Runtime, RuntimeConfig,
    SocketId,
};

/// Keeps a number; can pass some on to another ledger.
struct Ledger {
    value: i64,
}

#[derive(Serialize, Deserialize)]
enum Op {
    Add(i64),
    Get,
    /// Tell `to` to add `amount`, without waiting.
    Tell {
        to: String,
        amount: i64,
    },
    /// Move `amount` to `to`, asking it (call) first.
    Move {
        to: String,
        amount: i64,
    },
    CallSelf,
    /// Writes, then fails: nothing of it may stay.
    AddThenFail(i64),
    Send {
        socket: SocketId,
        text: String,
    },
    Close {
        socket: SocketId,
    },
}

impl Object for Ledger {
    const CLASS: &'static str = "ledger";
    type Request = Op;
    type Reply = Result<i64, CallError>;

    async fn start(ctx: &mut Context) -> HookResult<Self> {
        Ok(Ledger {
            value: ctx.storage().get("value").await?.unwrap_or(0),
        })
    }

    async fn on_request(&mut self, ctx: &mut Context, op: Op) -> HookResult<Self::Reply> {
        match op {
            Op::Add(n) => {
                self.value += n;
                ctx.storage().put("value", &self.value)?;
            }
            Op::Get => {}
            Op::Tell { to, amount } => {
                self.value -= amount;
                ctx.storage().put("value", &self.value)?;
                ctx.tell::<Ledger>(&to, Op::Add(amount));
            }
            Op::Move { to, amount } => {
                self.value -= amount;
                ctx.storage().put("value", &self.value)?;
                if let Err(e) = ctx.call::<Ledger>(&to, Op::Add(amount)).await {
                    return Ok(Err(e));
                }
            }
            Op::CallSelf => {
                let me = ctx.name().to_string();
                return Ok(ctx.call::<Ledger>(&me, Op::Get).await.and_then(|r| r));
            }
            Op::AddThenFail(n) => {
                self.value += n;
                ctx.storage().put("value", &self.value)?;
                return Err(HookError::msg("failed after writing"));
            }
            Op::Send { socket, text } => ctx.send_to(socket, Frame::text(text)),
            Op::Close { socket } => ctx.close_socket(socket, 4000, "replaced"),
        }
        Ok(Ok(self.value))
    }
}

async fn runtime() -> Runtime {
    Runtime::builder(RuntimeConfig::default(), Arc::new(MemoryBackend::new()))
        .class::<Ledger>()
        .start()
        .await
        .unwrap()
}

/// A told object gets the message once the teller's write is durable; a called one answers
/// in the same event; an object calling itself gets an error, not a deadlock.
#[tokio::test(start_paused = true)]
async fn tell_and_call() {
    let rt = runtime().await;
    let (a, b) = (rt.object::<Ledger>("a"), rt.object::<Ledger>("b"));
    a.call(Op::Add(10)).await.unwrap().unwrap();
    a.call(Op::Move {
        to: "b".into(),
        amount: 3,
    })
    .await
    .unwrap()
    .unwrap();
    assert_eq!(
        b.call(Op::Get).await.unwrap(),
        Ok(3),
        "a call is answered before the caller's event ends"
    );
    assert_eq!(
        a.call(Op::Tell {
            to: "b".into(),
            amount: 2
        })
        .await
        .unwrap(),
        Ok(5)
    );
    // The message was released with the reply; b handles it before this later call.
    assert_eq!(b.call(Op::Get).await.unwrap(), Ok(5));
    assert!(matches!(a.call(Op::CallSelf).await.unwrap(), Err(CallError::Failed(_))));
    rt.shutdown().await;
}

/// A failed hook: the caller hears it, and the object restarts from what storage holds.
#[tokio::test(start_paused = true)]
async fn a_failed_hook_discards_its_writes() {
    let rt = runtime().await;
    let a = rt.object::<Ledger>("a");
    a.call(Op::Add(1)).await.unwrap().unwrap();
    assert!(matches!(a.call(Op::AddThenFail(100)).await, Err(CallError::Failed(m)) if m.contains("failed after")));
    assert_eq!(a.call(Op::Get).await.unwrap(), Ok(1));
    assert_eq!(rt.stats().hook_failures, 1);
    rt.shutdown().await;
}

/// Any object reaches any socket by id: a send, then a close with its code.
#[tokio::test(start_paused = true)]
async fn sockets_by_id() {
    let rt = runtime().await;
    let conn = rt.new_socket(QueueLimits::default());
    let accepted = rt
        .object::<Ledger>("owner")
        .connect(conn.clone(), ConnectInfo::default())
        .await
        .unwrap();
    assert!(accepted.is_some());
    let other = rt.object::<Ledger>("other");
    other
        .call(Op::Send {
            socket: conn.id(),
            text: "hi".into(),
        })
        .await
        .unwrap()
        .unwrap();
    other.call(Op::Close { socket: conn.id() }).await.unwrap().unwrap();
    let batch = conn.next_batch().await;
    assert_eq!(batch.frames, vec![Frame::text("hi")]);
    assert_eq!(batch.close.map(|c| c.code), Some(4000));
    assert!(!rt.socket_is_open(conn.id()));
    rt.socket_ended(conn.id());
    assert!(!rt.send_to_socket(conn.id(), Frame::text("gone")));
    rt.shutdown().await;
}

/// A class with only sockets takes no calls: a call is refused with a reason, and the instance
/// stays (a refusal is not a failure that restarts it from storage).
#[tokio::test(start_paused = true)]
async fn a_class_without_calls_refuses_them_and_stays() {
    use std::sync::atomic::{AtomicU32, Ordering};
    static STARTS: AtomicU32 = AtomicU32::new(0);
    struct Quiet;
    impl Object for Quiet {
        const CLASS: &'static str = "quiet";
        type Request = ();
        type Reply = ();
        async fn start(_ctx: &mut Context) -> HookResult<Self> {
            STARTS.fetch_add(1, Ordering::SeqCst);
            Ok(Quiet)
        }
    }
    let rt = Runtime::builder(RuntimeConfig::default(), Arc::new(MemoryBackend::new()))
        .class::<Quiet>()
        .start()
        .await
        .unwrap();
    for _ in 0..2 {
        let refused = rt.object::<Quiet>("q").call(()).await;
        assert!(
            matches!(&refused, Err(CallError::Failed(m)) if m.contains("take no calls")),
            "{refused:?}"
        );
    }
    assert_eq!(STARTS.load(Ordering::SeqCst), 1, "the instance stayed");
    rt.shutdown().await;
}
