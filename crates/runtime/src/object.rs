//! The API of an object class: the [`Object`] trait, and the sockets an object is handed.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::context::Context;
use crate::socket::{Frame, SocketConn, SocketId};
use crate::storage::StorageError;

/// What an alarm handler returns; an error retries the alarm with backoff.
pub type AlarmResult = Result<(), Box<dyn std::error::Error + Send + Sync>>;

/// A class of durable objects.
///
/// Each object is addressed by `(Self::CLASS, name)`. The runtime keeps at most one live
/// instance per address and hands it events one at a time; everything the object sends while
/// handling an event leaves only once the event's writes are durable. Every method but `start`
/// and `on_request` has a default.
pub trait Object: Sized + Send + 'static {
    /// The class name: unique within a runtime, and part of every stored key.
    const CLASS: &'static str;
    /// What callers send with [`Stub::call`](crate::Stub::call).
    type Request: Send + 'static;
    /// What a call returns.
    type Reply: Send + 'static;

    /// Creates the instance from storage. Runs before the first event after every start: first
    /// use, a wake from hibernation, a restart of the server, a reset after a failed commit.
    fn start(ctx: &mut Context) -> impl Future<Output = Result<Self, StorageError>> + Send;

    /// Handles a call.
    fn on_request(&mut self, ctx: &mut Context, request: Self::Request) -> impl Future<Output = Self::Reply> + Send;

    /// A client opened a socket to this object. Accept it with [`Context::accept`]; a socket
    /// that is not accepted is closed. By default every socket is accepted without tags.
    fn on_connect(&mut self, ctx: &mut Context, socket: NewSocket) -> impl Future<Output = ()> + Send {
        let _ = ctx.accept(socket, &[]);
        async {}
    }

    /// A frame arrived on one of this object's sockets (and no auto-response matched it).
    fn on_message(&mut self, ctx: &mut Context, socket: SocketRef, frame: Frame) -> impl Future<Output = ()> + Send {
        let _ = (ctx, socket, frame);
        async {}
    }

    /// One of this object's sockets closed. It is still listed during this call.
    fn on_close(
        &mut self,
        ctx: &mut Context,
        socket: SocketRef,
        code: u16,
        reason: String,
    ) -> impl Future<Output = ()> + Send {
        let _ = (ctx, socket, code, reason);
        async {}
    }

    /// The object's alarm is due.
    fn on_alarm(&mut self, ctx: &mut Context) -> impl Future<Output = AlarmResult> + Send {
        let _ = ctx;
        async { Ok(()) }
    }
}

/// What the gateway knew about a socket when it opened: route and query parameters, and the
/// verified claims of the client's token, if any.
#[derive(Clone, Debug, Default)]
pub struct ConnectInfo {
    pub params: BTreeMap<String, String>,
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
