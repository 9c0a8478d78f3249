//! The context an object's event runs with: its storage, sockets, topics, messages, effects,
//! alarm and outputs.

use std::sync::{Arc, OnceLock};

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::address::Address;
use crate::effect::{Effect, OutboxStats, Pending, outbox_address};
use crate::object::{NewSocket, Object, SocketRef};
use crate::registry::{CallError, Runtime, SlotCore, Subscription};
use crate::socket::{Frame, SocketId};
use crate::socket_set::{MAX_ATTACHMENT, MAX_TAGS, SocketRecord};
use crate::storage::view::Storage;
use crate::storage::{ObjectWrites, WriteOp};
use crate::store::{Health, Output};
use crate::topic::{Prepared, Presence, Publication, TopicError, valid_topic};

/// Why a socket operation was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SocketError {
    #[error("a socket may carry at most {MAX_TAGS} tags")]
    TooManyTags,
    #[error("attachment is {0} bytes; at most {MAX_ATTACHMENT} are allowed")]
    AttachmentTooLarge(usize),
    #[error("attachment cannot be encoded: {0}")]
    Encode(String),
    #[error("the socket is not one of this object's")]
    UnknownSocket,
}

/// A publication waiting for the end of its event, and the frames it gets then.
pub(crate) type PendingPublish = (Publication, Arc<OnceLock<Prepared>>);

/// Everything an object can do while it handles an event.
///
/// What an event sends — frames, closes, publishes, messages to other objects, effects — is an
/// *output*: held until every write made before it is durable, then released in order.
pub struct Context {
    pub(crate) rt: Runtime,
    pub(crate) core: Arc<SlotCore>,
    pub(crate) storage: Storage,
    pub(crate) outputs: Vec<Output>,
    pub(crate) health: Arc<Health>,
    /// The alarm as this event left it: `Some(new)` once set or deleted in this event.
    pub(crate) alarm_change: Option<Option<i64>>,
    /// Publications of this event: numbered in their topics when the event's writes are submitted.
    pub(crate) publishes: Vec<PendingPublish>,
    /// Effects of this event: stored with its writes, queued to run once they are durable.
    pub(crate) effects: Vec<Pending>,
}

impl Context {
    /// The object's address.
    pub fn address(&self) -> &Address {
        &self.core.address
    }

    /// The object's name.
    pub fn name(&self) -> &str {
        &self.core.address.name
    }

    /// Milliseconds since the epoch, from the runtime's clock (which tests can pause).
    pub fn now_ms(&self) -> i64 {
        self.rt.now_ms()
    }

    /// The value of type `T` registered with
    /// [`RuntimeBuilder::setting`](crate::RuntimeBuilder::setting), if any.
    pub fn setting<T: std::any::Any + Send + Sync>(&self) -> Option<&T> {
        self.rt
            .inner
            .settings
            .get(&std::any::TypeId::of::<T>())
            .and_then(|v| v.downcast_ref())
    }

    /// The object's storage.
    pub fn storage(&mut self) -> &mut Storage {
        &mut self.storage
    }

    // ---- sockets

    /// Accepts a new socket with up to ten tags.
    pub fn accept(&mut self, socket: NewSocket, tags: &[&str]) -> Result<SocketRef, SocketError> {
        if tags.len() > MAX_TAGS {
            return Err(SocketError::TooManyTags);
        }
        self.core.sockets.insert(SocketRecord {
            conn: socket.conn.clone(),
            tags: tags.iter().map(|t| Arc::from(*t)).collect(),
            attachment: None,
        });
        // The socket count changed: whoever waits on the runtime's counters looks again.
        self.rt.inner.stats.changed.notify_waiters();
        Ok(SocketRef { conn: socket.conn })
    }

    /// This object's sockets, all of them or those with `tag`.
    pub fn sockets(&self, tag: Option<&str>) -> Vec<SocketRef> {
        self.core
            .sockets
            .conns(tag)
            .into_iter()
            .map(|conn| SocketRef { conn })
            .collect()
    }

    /// How many sockets this object has.
    pub fn socket_count(&self) -> usize {
        self.core.sockets.len()
    }

    /// The socket with this id, if it is one of this object's.
    pub fn socket(&self, id: SocketId) -> Option<SocketRef> {
        self.core.sockets.conn(id).map(|conn| SocketRef { conn })
    }

    /// The tags a socket was accepted with.
    pub fn tags(&self, socket: &SocketRef) -> Vec<String> {
        self.core.sockets.tags(socket.id())
    }

    /// The socket's attachment, if set (and decodable as `T`).
    pub fn attachment<T: DeserializeOwned>(&self, socket: &SocketRef) -> Option<T> {
        let bytes = self.core.sockets.attachment(socket.id())?;
        serde_json::from_slice(&bytes).ok()
    }

    /// Sets the socket's attachment (at most 16 KiB encoded); it survives hibernation.
    pub fn set_attachment<T: Serialize>(&mut self, socket: &SocketRef, value: &T) -> Result<(), SocketError> {
        let bytes = serde_json::to_vec(value).map_err(|e| SocketError::Encode(e.to_string()))?;
        if bytes.len() > MAX_ATTACHMENT {
            return Err(SocketError::AttachmentTooLarge(bytes.len()));
        }
        if self
            .core
            .sockets
            .set_attachment(socket.id(), Some(bytes.into_boxed_slice()))
        {
            Ok(())
        } else {
            Err(SocketError::UnknownSocket)
        }
    }

    /// Sends a frame to one socket once this event's writes are durable.
    pub fn send(&mut self, socket: &SocketRef, frame: Frame) {
        self.outputs.push(Output::Send(socket.conn.clone(), frame));
    }

    /// Sends `value` as a JSON text frame to one socket.
    pub fn send_json<T: Serialize + ?Sized>(&mut self, socket: &SocketRef, value: &T) {
        self.send(socket, json_frame(value));
    }

    /// Sends a frame to any socket by id, this object's or not, on this node or another.
    pub fn send_to(&mut self, id: SocketId, frame: Frame) {
        let rt = self.rt.clone();
        self.outputs.push(Output::run(move |released| {
            if released {
                rt.send_to_socket(id, frame);
            }
        }));
    }

    /// Sends a frame to every socket of this object (the bytes are shared, not copied).
    pub fn broadcast(&mut self, frame: Frame) {
        self.broadcast_to(None, frame, &[]);
    }

    /// Sends a frame to the sockets with `tag` (all if `None`) except those in `except`.
    pub fn broadcast_to(&mut self, tag: Option<&str>, frame: Frame, except: &[&SocketRef]) {
        self.outputs.push(Output::Broadcast {
            object: self.core.clone(),
            frame,
            tag: tag.map(Arc::from),
            except: except.iter().map(|s| s.id()).collect(),
        });
    }

    /// Closes a socket with a code and reason, after what was sent to it before.
    pub fn close(&mut self, socket: &SocketRef, code: u16, reason: &str) {
        self.outputs
            .push(Output::Close(socket.conn.clone(), code, reason.to_string()));
    }

    /// Closes any socket by id, after what was sent to it before.
    pub fn close_socket(&mut self, id: SocketId, code: u16, reason: &str) {
        let (rt, reason) = (self.rt.clone(), reason.to_string());
        self.outputs.push(Output::run(move |released| {
            if released {
                rt.close_socket(id, code, &reason);
            }
        }));
    }

    /// When the gateway last auto-responded on `socket` (ms since the epoch; 0: never).
    pub fn last_auto_response_ms(&self, socket: &SocketRef) -> u64 {
        socket.conn.last_auto_response_ms()
    }

    /// Counts the creation of this object for `origin` (the client whose request makes it
    /// exist: call it before the first write of an object that has none); false when that
    /// origin has created its share this minute (`RuntimeConfig::new_objects_per_origin_per_minute`),
    /// and the event should refuse instead of writing.
    pub fn admit_creation(&mut self, origin: std::net::IpAddr) -> bool {
        self.rt
            .inner
            .creations
            .as_ref()
            .is_none_or(|c| c.admit(origin, self.rt.now_ms()))
    }

    // ---- topics

    /// The topics a socket of this object is subscribed to now (subscriptions of this event
    /// take effect when its outputs are released).
    pub fn socket_topics(&self, socket: &SocketRef) -> Vec<String> {
        self.rt.socket_topics(socket.id())
    }

    /// Subscribes a socket of this node to a topic once this event's writes are durable; with
    /// `subscription.since`, it first gets the reply and what it missed.
    pub fn subscribe(&mut self, id: SocketId, topic: &str, subscription: Subscription) -> Result<(), TopicError> {
        valid_topic(topic)?;
        let (rt, topic) = (self.rt.clone(), topic.to_string());
        self.outputs.push(Output::run(move |released| {
            if released && let Some(conn) = rt.inner.sockets.get(id) {
                rt.subscribe_conn(&conn, &topic, subscription);
            }
        }));
        Ok(())
    }

    /// Takes a socket out of a topic once this event's writes are durable.
    pub fn unsubscribe(&mut self, id: SocketId, topic: &str) {
        let (rt, topic) = (self.rt.clone(), topic.to_string());
        self.outputs.push(Output::run(move |released| {
            if released {
                rt.unsubscribe(id, &topic);
            }
        }));
    }

    /// Publishes to topics once this event's writes are durable. In a topic with history the
    /// publication is stored in the same commit as the event's writes.
    pub fn publish(&mut self, publication: Publication) -> Result<(), TopicError> {
        for topic in publication.topics() {
            valid_topic(topic)?;
        }
        let prepared = Arc::new(OnceLock::new());
        let (rt, cell) = (self.rt.clone(), prepared.clone());
        self.outputs.push(Output::run(move |released| {
            if released && let Some(prepared) = cell.get() {
                rt.deliver(prepared);
            }
        }));
        self.publishes.push((publication, prepared));
        Ok(())
    }

    /// Who is subscribed to a topic on this node.
    pub fn presence(&self, topic: &str) -> Presence {
        self.rt.presence(topic)
    }

    // ---- messages to other objects

    /// Sends a request to another object without waiting for its reply, once this event's
    /// writes are durable. Two objects that tell each other things never deadlock.
    pub fn tell<O: Object>(&mut self, name: &str, request: O::Request) {
        let stub = self.rt.object::<O>(name);
        self.outputs.push(Output::run(move |released| {
            if released {
                stub.tell(request);
            }
        }));
    }

    /// Calls another object and waits for its reply.
    ///
    /// What this event wrote so far is made durable first, so the callee never acts on state a
    /// crash could take back. While it waits, this object handles no other event (its input
    /// gate stays closed): two objects that call each other at the same time deadlock, and an
    /// object calling itself gets an error at once. Use [`tell`](Self::tell) where a reply is
    /// not needed.
    pub async fn call<O: Object>(&mut self, name: &str, request: O::Request) -> Result<O::Reply, CallError> {
        if O::CLASS == &*self.core.address.class && name == &*self.core.address.name {
            return Err(CallError::Failed("an object cannot call itself".into()));
        }
        self.flush().await?;
        self.rt.object::<O>(name).call(request).await
    }

    /// Submits this event's writes so far and waits until they are durable; effects enqueued
    /// so far are then queued to run (they are durable, whatever the rest of the event does).
    async fn flush(&mut self) -> Result<(), CallError> {
        let ops = self.storage.take_ops();
        let effects = std::mem::take(&mut self.effects);
        let effect_ops: Vec<WriteOp> = effects.iter().map(Pending::write).collect();
        if ops.is_empty() && effects.is_empty() {
            self.rt.inner.store.wait_committed(self.storage.last_ticket).await;
        } else {
            let address = self.core.address.clone();
            let ticket = self
                .rt
                .inner
                .store
                .submit_with(self.health.clone(), || {
                    let mut batch = Vec::new();
                    if !ops.is_empty() {
                        batch.push(ObjectWrites { address, ops });
                    }
                    if !effect_ops.is_empty() {
                        batch.push(ObjectWrites {
                            address: outbox_address(),
                            ops: effect_ops,
                        });
                    }
                    batch
                })
                .map_err(|_| CallError::ShuttingDown)?
                .expect("there were writes");
            self.storage.last_ticket = ticket;
            self.core
                .last_ticket
                .store(ticket, std::sync::atomic::Ordering::Release);
            self.rt.inner.store.wait_committed(ticket).await;
        }
        if self.health.is_poisoned() {
            return Err(CallError::CommitFailed);
        }
        for pending in effects {
            self.rt.inner.outbox.push(&self.rt, pending);
        }
        Ok(())
    }

    // ---- effects

    /// Enqueues an effect: stored with this event's writes, run after they commit, in order,
    /// retried until it succeeds (see [`Object::on_effect`](crate::Object::on_effect)).
    /// Returns its idempotency key.
    pub fn enqueue(&mut self, effect: Effect) -> String {
        self.enqueue_pending(effect, None)
    }

    /// Enqueues an effect whose idempotency key is `key`: a name the object already gave the
    /// work (a record's id), so the backend and the object speak of it the same way. The
    /// object keeps keys unique among its effects.
    pub fn enqueue_keyed(&mut self, effect: Effect, key: &str) {
        self.enqueue_pending(effect, Some(key.to_string()));
    }

    fn enqueue_pending(&mut self, effect: Effect, key: Option<String>) -> String {
        let pending = self
            .rt
            .inner
            .outbox
            .prepare(&self.core.address, effect, key, self.now_ms());
        let key = pending.key().to_string();
        self.effects.push(pending);
        key
    }

    /// This object's effects waiting to run (those of this event not included).
    pub fn outbox(&self) -> OutboxStats {
        self.rt.outbox(&self.core.address)
    }

    // ---- alarm

    /// Sets the object's one alarm to fire at `at_ms` (ms since the epoch). Durable.
    pub fn set_alarm(&mut self, at_ms: i64) {
        self.alarm_change = Some(Some(at_ms));
    }

    /// Removes the object's alarm.
    pub fn delete_alarm(&mut self) {
        self.alarm_change = Some(None);
    }

    /// When the object's alarm is due, if it has one.
    pub fn get_alarm(&self) -> Option<i64> {
        match self.alarm_change {
            Some(change) => change,
            None => self.rt.inner.alarms.get(&self.core.address),
        }
    }
}

/// A JSON text frame.
pub fn json_frame<T: Serialize + ?Sized>(value: &T) -> Frame {
    Frame::text(serde_json::to_string(value).expect("serializing to a string cannot fail for wire types"))
}
