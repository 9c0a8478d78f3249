//! The sockets of one object, with their tags and attachments: what survives hibernation.

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
///
/// A vector, not a map: most objects have a few sockets, a hibernated object should cost little,
/// and the hot paths (broadcast, frames in) never look a socket up by id. Lookups by id (a
/// close, `Context::socket`) scan, which stays in the microseconds for ten thousand sockets.
#[derive(Default)]
pub struct SocketSet {
    // Held only to look up or to enqueue, never across an await.
    records: Mutex<Vec<SocketRecord>>,
}

impl SocketSet {
    pub(crate) fn insert(&self, record: SocketRecord) {
        let mut records = self.lock();
        if records.is_empty() {
            // Most objects keep one socket: room for exactly that one.
            records.reserve_exact(1);
        }
        records.push(record);
    }

    pub(crate) fn remove(&self, id: SocketId) -> bool {
        let mut records = self.lock();
        match records.iter().position(|r| r.conn.id() == id) {
            Some(i) => {
                records.swap_remove(i);
                if records.is_empty() {
                    *records = Vec::new();
                }
                true
            }
            None => false,
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.lock().len()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.lock().is_empty()
    }

    pub(crate) fn contains(&self, id: SocketId) -> bool {
        self.lock().iter().any(|r| r.conn.id() == id)
    }

    fn find<T>(&self, id: SocketId, f: impl FnOnce(&mut SocketRecord) -> T) -> Option<T> {
        self.lock().iter_mut().find(|r| r.conn.id() == id).map(f)
    }

    /// Connections of the sockets carrying `tag` (all sockets if `None`).
    pub(crate) fn conns(&self, tag: Option<&str>) -> Vec<Arc<SocketConn>> {
        self.lock()
            .iter()
            .filter(|r| tag.is_none_or(|t| r.tags.iter().any(|x| &**x == t)))
            .map(|r| r.conn.clone())
            .collect()
    }

    pub(crate) fn conn(&self, id: SocketId) -> Option<Arc<SocketConn>> {
        self.find(id, |r| r.conn.clone())
    }

    pub(crate) fn tags(&self, id: SocketId) -> Vec<String> {
        self.find(id, |r| r.tags.iter().map(|t| t.to_string()).collect())
            .unwrap_or_default()
    }

    pub(crate) fn attachment(&self, id: SocketId) -> Option<Box<[u8]>> {
        self.find(id, |r| r.attachment.clone()).flatten()
    }

    pub(crate) fn set_attachment(&self, id: SocketId, value: Option<Box<[u8]>>) -> bool {
        self.find(id, |r| r.attachment = value).is_some()
    }

    /// Enqueues `frame` on every socket (with `tag`, if given) except those in `except`.
    pub(crate) fn broadcast(&self, frame: &Frame, tag: Option<&str>, except: &[SocketId]) {
        let records = self.lock();
        for record in records.iter() {
            if tag.is_some_and(|t| !record.tags.iter().any(|x| &**x == t)) || except.contains(&record.conn.id()) {
                continue;
            }
            // A full queue closes that socket; the broadcast goes on to the others.
            let _ = record.conn.send(frame.clone());
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<SocketRecord>> {
        self.records.lock().expect("socket set poisoned")
    }
}
