//! The Cluster seam: which node owns an object, and how calls, messages, socket commands and
//! publications reach other nodes.
//!
//! Everything that crosses a node is a serde type ([`NodeMessage`]; requests and replies as
//! JSON), so an implementation only moves bytes. On a single node there is no cluster at all:
//! the runtime checks for one once per call and takes the local path. Two implementations:
//! the single node (no cluster at all) and the in-memory [`twin`] (N nodes in one process, for
//! tests). Topic histories are numbered by the node a publication starts on; across nodes
//! they are not yet one history (what a shared store brings).

pub mod twin;

use std::pin::Pin;
use std::sync::Weak;

use serde::{Deserialize, Serialize};

use crate::address::Address;
use crate::object::ConnectInfo;
use crate::registry::{CallError, Inner, Runtime};
use crate::socket::{Frame, SocketId};
use crate::topic::{JsonPublication, Prepared};

/// What one node asks of another.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum NodeMessage {
    /// A call to an object this node owns; the reply is the JSON of `O::Reply`.
    Call {
        class: String,
        name: String,
        request: String,
    },
    /// A message to an object this node owns: no reply.
    Tell {
        class: String,
        name: String,
        request: String,
    },
    /// A publication for this node's subscribers; the reply is how many it reached.
    Publish(Prepared),
    /// A publication for this node to number, store and send, as the node that numbers the
    /// cluster's topic histories; the reply is how many sockets it reached here.
    PublishHistory(JsonPublication),
    /// A frame for a socket connected to this node.
    SocketSend { socket: SocketId, frame: Frame },
    /// A close for a socket connected to this node.
    SocketClose {
        socket: SocketId,
        code: u16,
        reason: String,
    },
    /// A socket connected to the sending node, offered to an object this node owns; the reply
    /// is `true` if it was accepted. What the object sends it goes back as `SocketSend` and
    /// `SocketClose`.
    Connect {
        class: String,
        name: String,
        socket: SocketId,
        info: ConnectInfo,
    },
    /// A frame from a socket connected to the sending node, for the object here that accepted it.
    SocketFrame {
        class: String,
        name: String,
        socket: SocketId,
        frame: Frame,
    },
    /// That socket closed.
    SocketClosed {
        class: String,
        name: String,
        socket: SocketId,
        code: u16,
        reason: String,
    },
}

/// A reply on its way back from another node.
pub type Answer = Pin<Box<dyn Future<Output = Result<String, CallError>> + Send>>;

/// Where an object lives: `None` on this node (which may have just taken it), or the node that
/// owns it.
pub type Location = Pin<Box<dyn Future<Output = Result<Option<String>, CallError>> + Send>>;

/// How a node takes part in a cluster.
pub trait Cluster: Send + Sync + 'static {
    /// This node's name.
    fn node_id(&self) -> &str;
    /// This node's tag in socket ids (24 bits, unique in the cluster).
    fn socket_tag(&self) -> u32;
    /// Called once the runtime has started: what other nodes send here goes to `node`.
    fn join(&self, node: LocalNode);
    /// The node that owns `address`, or `None` if this one does. A cluster with leases takes
    /// the object here when nobody holds it, so a `None` means this node may run it now.
    fn locate(&self, address: &Address) -> Location;
    /// This node dropped `address` from memory (it sleeps, with no socket): a cluster with
    /// leases gives the object up, so any node may take it next.
    fn released(&self, address: &Address);
    /// The node holding `address` as far as this node knows, without taking it: `None` if no
    /// node is known to hold it.
    fn holder(&self, address: &Address) -> Option<String>;
    /// The node a socket is connected to, or `None` if it is this one or unknown.
    fn node_of_socket(&self, socket: SocketId) -> Option<String>;
    /// Sends a message to a node and waits for its answer.
    fn request(&self, node: &str, message: NodeMessage) -> Answer;
    /// Sends a message to a node without waiting.
    fn send(&self, node: &str, message: NodeMessage);
    /// Sends a publication to every other node with subscribers of one of its topics, once each.
    fn publish(&self, prepared: &Prepared);
    /// This node gained its first subscriber of `topic` (`true`), or lost its last (`false`).
    fn interest(&self, topic: &str, interested: bool);
}

/// The door through which other nodes reach this node's runtime.
#[derive(Clone)]
pub struct LocalNode {
    rt: Weak<Inner>,
}

impl LocalNode {
    pub(crate) fn new(rt: &Runtime) -> Self {
        LocalNode {
            rt: std::sync::Arc::downgrade(&rt.inner),
        }
    }

    /// Another node set (`Some`) or cleared an object's alarm: this node keeps it in its
    /// schedule too, and fires it only if it owns the object when it comes due.
    pub fn alarm_changed(&self, address: &Address, at: Option<i64>) {
        if let Some(inner) = self.rt.upgrade() {
            inner.alarms.set(address, at);
        }
    }

    /// This node no longer owns `address` (its lease was lost or given up): the object's
    /// memory is dropped, so it restarts from storage if it comes back, and its sockets here
    /// are closed with 1012 so their clients reconnect to the new owner.
    pub fn disowned(&self, address: &Address) {
        if let Some(inner) = self.rt.upgrade() {
            Runtime { inner }.disowned(address);
        }
    }

    /// Handles what another node sent.
    pub fn handle(&self, message: NodeMessage) -> Answer {
        let Some(inner) = self.rt.upgrade() else {
            return Box::pin(std::future::ready(Err(CallError::ShuttingDown)));
        };
        let rt = Runtime { inner };
        let done = |answer: String| -> Answer { Box::pin(std::future::ready(Ok(answer))) };
        match message {
            NodeMessage::Call { class, name, request } => rt.call_json(&class, &name, &request, true),
            NodeMessage::Tell { class, name, request } => rt.call_json(&class, &name, &request, false),
            NodeMessage::Publish(prepared) => done(rt.deliver_remote(&prepared).to_string()),
            NodeMessage::PublishHistory(spec) => Box::pin(async move {
                rt.publish(spec.into_publication())
                    .await
                    .map(|n| n.to_string())
                    .map_err(|e| match e {
                        crate::registry::PublishError::ShuttingDown => CallError::ShuttingDown,
                        e => CallError::Failed(e.to_string()),
                    })
            }),
            NodeMessage::SocketSend { socket, frame } => {
                let sent = rt.inner.sockets.get(socket).is_some_and(|c| c.send(frame).is_ok());
                done(sent.to_string())
            }
            NodeMessage::SocketClose { socket, code, reason } => {
                let conn = rt.inner.sockets.get(socket);
                if let Some(conn) = &conn {
                    conn.close(code, reason);
                }
                done(conn.is_some().to_string())
            }
            NodeMessage::Connect {
                class,
                name,
                socket,
                info,
            } => rt.connect_remote(&class, &name, socket, info),
            NodeMessage::SocketFrame {
                class,
                name,
                socket,
                frame,
            } => rt.remote_frame(&class, &name, socket, frame),
            NodeMessage::SocketClosed {
                class,
                name,
                socket,
                code,
                reason,
            } => rt.remote_closed(&class, &name, socket, code, reason),
        }
    }
}
