//! The context an object's event runs with: its storage, sockets, alarm and outputs.

use std::sync::Arc;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::address::Address;
use crate::alarm::Alarms;
use crate::auto_response::AutoResponse;
use crate::object::{NewSocket, SocketRef};
use crate::registry::{Settings, SlotCore};
use crate::socket::Frame;
use crate::socket_set::{MAX_ATTACHMENT, MAX_TAGS, SocketRecord};
use crate::storage::view::Storage;
use crate::store::{Health, Output};

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

/// Everything an object can do while it handles an event.
pub struct Context {
    pub(crate) core: Arc<SlotCore>,
    pub(crate) settings: Arc<Settings>,
    pub(crate) storage: Storage,
    pub(crate) outputs: Vec<Output>,
    pub(crate) health: Arc<Health>,
    /// The alarm as this event left it: `Some(new)` once set or deleted in this event.
    pub(crate) alarm_change: Option<Option<i64>>,
    /// The runtime's alarm schedule: the object's current alarm unless this event changed it.
    pub(crate) alarms: Arc<Alarms>,
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

    /// The value of type `T` registered with
    /// [`RuntimeBuilder::setting`](crate::RuntimeBuilder::setting), if any.
    pub fn setting<T: std::any::Any + Send + Sync>(&self) -> Option<&T> {
        self.settings
            .get(&std::any::TypeId::of::<T>())
            .and_then(|v| v.downcast_ref())
    }

    /// The object's storage.
    pub fn storage(&mut self) -> &mut Storage {
        &mut self.storage
    }

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
    pub fn socket(&self, id: crate::SocketId) -> Option<SocketRef> {
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
        let text = serde_json::to_string(value).expect("serializing to a string cannot fail for wire types");
        self.send(socket, Frame::text(text));
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

    /// Sets (or with `None` removes) the request the gateway answers without waking this
    /// object. It stays while the object hibernates. It is an `Arc` so that every object of a
    /// class can share one: a hibernated object then costs none of its memory.
    pub fn set_auto_response(&mut self, auto_response: Option<Arc<AutoResponse>>) {
        *self.core.auto_response.write().expect("auto-response lock poisoned") = auto_response;
    }

    /// When the gateway last auto-responded on `socket` (ms since the epoch; 0: never).
    pub fn last_auto_response_ms(&self, socket: &SocketRef) -> u64 {
        socket.conn.last_auto_response_ms()
    }

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
            None => self.alarms.get(&self.core.address),
        }
    }
}
