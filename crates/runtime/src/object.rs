//! The API of an object class: the [`Object`] trait, its error type, and the sockets an object
//! is handed.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::auto_response::AutoResponse;
use crate::context::Context;
use crate::effect::EffectDone;
use crate::socket::{Frame, SocketConn, SocketId};

/// A request or reply that can cross a process boundary (JSON on the wire between nodes).
pub trait Message: Serialize + DeserializeOwned + Send + 'static {}
impl<T: Serialize + DeserializeOwned + Send + 'static> Message for T {}

/// Why a hook failed. Any error converts into it, so `?` works in every hook.
///
/// A failed hook discards the event: its writes, its outputs and the instance itself, which
/// restarts from storage on the next event — memory never runs ahead of storage. A caller of a
/// failed `on_request` gets [`CallError::Failed`](crate::CallError::Failed).
#[derive(Debug)]
pub struct HookError {
    error: Box<dyn std::error::Error + Send + Sync>,
    /// The instance's memory is known to be unchanged: it stays, only the event is discarded.
    pub(crate) keeps_instance: bool,
}

impl HookError {
    pub fn msg(message: impl Into<String>) -> Self {
        HookError {
            error: message.into().into(),
            keeps_instance: false,
        }
    }

    /// A refusal made before the hook changed anything: the event is discarded and the caller
    /// hears why, but the instance stays in memory (no restart from storage).
    pub fn refused(message: impl Into<String>) -> Self {
        HookError {
            keeps_instance: true,
            ..Self::msg(message)
        }
    }
}

impl std::fmt::Display for HookError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.error.fmt(f)
    }
}

impl<E: std::error::Error + Send + Sync + 'static> From<E> for HookError {
    fn from(e: E) -> Self {
        HookError {
            error: Box::new(e),
            keeps_instance: false,
        }
    }
}

/// What every hook returns.
pub type HookResult<T = ()> = Result<T, HookError>;

/// A class of durable objects.
///
/// Each object is addressed by `(Self::CLASS, name)`. The runtime keeps at most one live
/// instance per address and hands it events one at a time; everything the object sends while
/// handling an event leaves only once the event's writes are durable. Every method but `start`
/// has a default.
pub trait Object: Sized + Send + 'static {
    /// The class name: unique within a runtime, and part of every stored key. Names starting
    /// with `_` are the runtime's own.
    const CLASS: &'static str;
    /// What callers send with [`Stub::call`](crate::Stub::call) and [`Context::tell`].
    type Request: Message;
    /// What a call returns. Refusals a caller should see (bad input, not found) belong in it,
    /// e.g. as a `Result`; a [`HookError`] is for failures that discard the event.
    type Reply: Message;

    /// The request the gateway answers for every object of this class without waking it
    /// (ping/pong). Asked once, when the class is registered.
    fn auto_response() -> Option<AutoResponse> {
        None
    }

    /// Creates the instance from storage. Runs before the first event after every start: first
    /// use, a wake from hibernation, a restart of the server, a reset after a failed hook or
    /// commit.
    fn start(ctx: &mut Context) -> impl Future<Output = HookResult<Self>> + Send;

    /// Handles a call. By default a class takes no calls.
    fn on_request(
        &mut self,
        ctx: &mut Context,
        request: Self::Request,
    ) -> impl Future<Output = HookResult<Self::Reply>> + Send {
        let _ = (ctx, request);
        async {
            Err(HookError::refused(format!(
                "objects of class {:?} take no calls",
                Self::CLASS
            )))
        }
    }

    /// A client opened a socket to this object. Accept it with [`Context::accept`]; a socket
    /// that is not accepted is closed. By default every socket is accepted without tags.
    fn on_connect(&mut self, ctx: &mut Context, socket: NewSocket) -> impl Future<Output = HookResult> + Send {
        let accepted = ctx.accept(socket, &[]).map(|_| ()).map_err(HookError::from);
        async { accepted }
    }

    /// A frame arrived on one of this object's sockets (and no auto-response matched it).
    fn on_message(
        &mut self,
        ctx: &mut Context,
        socket: SocketRef,
        frame: Frame,
    ) -> impl Future<Output = HookResult> + Send {
        let _ = (ctx, socket, frame);
        async { Ok(()) }
    }

    /// One of this object's sockets closed. It is still listed during this call.
    fn on_close(
        &mut self,
        ctx: &mut Context,
        socket: SocketRef,
        code: u16,
        reason: String,
    ) -> impl Future<Output = HookResult> + Send {
        let _ = (ctx, socket, code, reason);
        async { Ok(()) }
    }

    /// The object's alarm is due. An error retries it with capped backoff.
    fn on_alarm(&mut self, ctx: &mut Context) -> impl Future<Output = HookResult> + Send {
        let _ = ctx;
        async { Ok(()) }
    }

    /// An effect this object enqueued has succeeded (see [`Context::enqueue`]).
    fn on_effect(&mut self, ctx: &mut Context, done: EffectDone) -> impl Future<Output = HookResult> + Send {
        let _ = (ctx, done);
        async { Ok(()) }
    }
}

/// What the gateway knew about a socket when it opened: route and query parameters, request
/// headers, the peer's address, and the verified claims of the client's token, if any.
#[derive(Clone, Debug, Default, serde::Serialize, serde::Deserialize)]
pub struct ConnectInfo {
    pub params: BTreeMap<String, String>,
    /// Header names in lower case; a header sent several times keeps its last value.
    pub headers: BTreeMap<String, String>,
    pub peer: Option<SocketAddr>,
    pub claims: Option<serde_json::Value>,
}

/// A socket waiting to be accepted by [`Context::accept`].
pub struct NewSocket {
    pub(crate) conn: Arc<SocketConn>,
    pub info: ConnectInfo,
}

impl NewSocket {
    pub fn id(&self) -> SocketId {
        self.conn.id()
    }
}

/// One of an object's accepted sockets.
#[derive(Clone)]
pub struct SocketRef {
    pub(crate) conn: Arc<SocketConn>,
}

impl SocketRef {
    pub fn id(&self) -> SocketId {
        self.conn.id()
    }
}

impl std::fmt::Debug for SocketRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SocketRef({})", self.conn.id())
    }
}

impl PartialEq for SocketRef {
    fn eq(&self, other: &Self) -> bool {
        self.id() == other.id()
    }
}
