//! The sockets of one object, with their tags and attachments: what survives hibernation.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::socket::{Frame, SocketConn, SocketId};

/// Most tags one socket may carry.
pub const MAX_TAGS: usize = 10;
/// Largest serialized attachment, in bytes.
pub const MAX_ATTACHMENT: usize = 16 * 1024;

pub(crate) struct SocketRecord {
    pub(crate) conn: Arc<SocketConn>,
    pub(crate) tags: Box<[Arc<str>]>,
    pub(crate) attachment: Option<Box<[u8]>>,
}

/// An object's accepted sockets. Kept by the object's slot, so it outlives the object's
/// in-memory instance.
#[derive(Default)]
pub struct SocketSet {
    // Held only to look up or to enqueue, never across an await.
    records: Mutex<HashMap<SocketId, SocketRecord>>,
}

impl SocketSet {
    pub(crate) fn insert(&self, record: SocketRecord) {
        self.lock().insert(record.conn.id(), record);
    }

    pub(crate) fn remove(&self, id: SocketId) -> bool {
        self.lock().remove(&id).is_some()
    }

    pub(crate) fn len(&self) -> usize {
        self.lock().len()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.lock().is_empty()
    }

    pub(crate) fn contains(&self, id: SocketId) -> bool {
        self.lock().contains_key(&id)
    }

    /// Connections of the sockets carrying `tag` (all sockets if `None`).
    pub(crate) fn conns(&self, tag: Option<&str>) -> Vec<Arc<SocketConn>> {
        self.lock()
            .values()
            .filter(|r| tag.is_none_or(|t| r.tags.iter().any(|x| &**x == t)))
            .map(|r| r.conn.clone())
            .collect()
    }

    pub(crate) fn conn(&self, id: SocketId) -> Option<Arc<SocketConn>> {
        self.lock().get(&id).map(|r| r.conn.clone())
    }

    pub(crate) fn tags(&self, id: SocketId) -> Vec<String> {
        self.lock()
            .get(&id)
            .map(|r| r.tags.iter().map(|t| t.to_string()).collect())
            .unwrap_or_default()
    }

    pub(crate) fn attachment(&self, id: SocketId) -> Option<Box<[u8]>> {
        self.lock().get(&id).and_then(|r| r.attachment.clone())
    }

    pub(crate) fn set_attachment(&self, id: SocketId, value: Option<Box<[u8]>>) -> bool {
        match self.lock().get_mut(&id) {
            Some(r) => {
                r.attachment = value;
                true
            }
            None => false,
        }
    }

    /// Enqueues `frame` on every socket (with `tag`, if given) except those in `except`.
    pub(crate) fn broadcast(&self, frame: &Frame, tag: Option<&str>, except: &[SocketId]) {
        let records = self.lock();
        for record in records.values() {
            if tag.is_some_and(|t| !record.tags.iter().any(|x| &**x == t)) || except.contains(&record.conn.id()) {
                continue;
            }
            // A full queue closes that socket; the broadcast goes on to the others.
            let _ = record.conn.send(frame.clone());
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<SocketId, SocketRecord>> {
        self.records.lock().expect("socket set poisoned")
    }
}
